"""The official SQuAD v1.1 scoring rule, written for the course's stand-in of the `evaluate-metric/squad` Space:
answers are normalized (lower case, no punctuation, no articles a/an/the, single spaces), then exact match and token
F1 are taken against each gold answer and the best counts; both are averaged over questions, in percent."""
import re
import string
from collections import Counter


def normalize_answer(text: str) -> str:
    """Lower case, punctuation and the articles a/an/the removed, white space collapsed."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1_score(prediction: str, gold: str) -> float:
    """Token F1 of the normalized answers: overlap counted with multiplicity."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction: str, gold: str) -> float:
    """1.0 when the normalized answers are equal."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def compute_score(dataset: list[dict], predictions: dict[str, str]) -> dict[str, float]:
    """EM and F1 in percent over every question of a SQuAD-format `dataset`; an unanswered question scores 0."""
    exact = f1 = total = 0.0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    continue
                golds = [a["text"] for a in qa["answers"]]
                exact += max(exact_match_score(predictions[qa["id"]], g) for g in golds)
                f1 += max(f1_score(predictions[qa["id"]], g) for g in golds)
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}
