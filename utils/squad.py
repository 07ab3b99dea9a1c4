"""Extractive QA on SQuAD v1.1: the official metric written out by hand, prompts, answer cleaning, batched
generation and a human-evaluation sheet."""
from __future__ import annotations

import hashlib
import json
import random
import re
import string
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .data import DataError, load_squad_sample
from .env import hub_reachable
from .formats import LLAMA2_CHAT_TEMPLATE
from .hubcache import present
from .manifest import Item
from .models import load_tokenizer as load

LOCAL_SAMPLE = "local:squad_sample"

# --- the SQuAD v1.1 metric ----------------------------------------------------------------------------------
# The official v1.1 script normalizes both texts, then scores exact match and token F1 against every gold answer
# and keeps the best. Precision and recall are not in the official output: here they are the ones of the gold
# answer that gives the best F1, so that each question's F1 is the harmonic mean of its own P and R.

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)  # ASCII only, as in the official script: an en dash is not removed


def normalize_answer(text: str) -> str:
    """SQuAD normalization, in the official order: lowercase, drop ASCII punctuation, drop the articles a/an/the,
    collapse whitespace."""
    if not isinstance(text, str):
        raise TypeError(f"an answer must be a string, got {type(text).__name__}")
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)  # 1. lowercase, 2. no punctuation
    return " ".join(_ARTICLES.sub(" ", text).split())  # 3. no a/an/the, 4. single spaces


def token_scores(prediction: str, gold: str) -> dict[str, float]:
    """Token precision, recall and F1 of one prediction against one gold answer, in [0, 1]: shared tokens counted
    with multiplicity; 0 when no token is shared (an empty prediction included)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(pred) & Counter(ref)).values())  # tokens in both, each as often as in the rarer side
    if same == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    precision, recall = same / len(pred), same / len(ref)  # shared over predicted tokens, over gold tokens
    return {"precision": precision, "recall": recall, "f1": 2 * precision * recall / (precision + recall)}


def score(prediction: str, golds: Sequence[str]) -> dict[str, float]:
    """One question: exact match (0 or 1) and token P/R/F1, the best over the gold answers (first one on ties)."""
    if isinstance(golds, str) or not isinstance(golds, Sequence):
        raise TypeError(f"golds must be a list of answer strings, got {type(golds).__name__}")
    if not golds:
        raise ValueError("a question needs at least one gold answer to be scored")
    em = max(float(normalize_answer(prediction) == normalize_answer(g)) for g in golds)
    best = max((token_scores(prediction, g) for g in golds), key=lambda s: s["f1"])
    return {"exact_match": em, **best}


def score_all(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Averages over questions, in percent like the official script: exact_match, precision, recall, f1."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions but {len(golds)} gold answer lists: they must pair up")
    if not predictions:
        raise ValueError("nothing to score: no predictions")
    rows = [score(p, g) for p, g in zip(predictions, golds)]
    return {k: 100.0 * sum(r[k] for r in rows) / len(rows) for k in ("exact_match", "precision", "recall", "f1")}


def bertscore(scorer, candidates: Sequence[str], references: Sequence[str],
              batch_size: int = 64) -> tuple[list[float], list[float], list[float]]:
    """BERTScore precision, recall and F1 (in percent) of each candidate against its reference, with bert-score's
    `scorer`; an empty answer scores 0 like its token F1 (bert-score itself fails on one with transformers 5)."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} references: they must pair up")
    said = [i for i, c in enumerate(candidates) if c.strip()]
    scores = [[0.0] * len(candidates) for _ in range(3)]
    if said:
        p, r, f = scorer.score([candidates[i] for i in said], [references[i] for i in said], batch_size=batch_size)
        for out, values in zip(scores, (p, r, f)):
            for i, v in zip(said, values.mul(100).tolist()):
                out[i] = v
    return scores[0], scores[1], scores[2]


# --- data: splits that never share a passage --------------------------------------------------------------

def split_by_context(rows: Sequence[dict[str, Any]], eval_share: float = 0.25,
                     seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hold out whole passages: every question on a held-out passage goes to the evaluation split, so no context
    (and no question id) is in both. `eval_share` is the share of passages held out."""
    if not 0 < eval_share < 1:
        raise ValueError(f"eval_share must be between 0 and 1 (a share of the passages), got {eval_share}")
    by_context: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_context[row["context"]].append(row)
    if len(by_context) < 2:
        raise ValueError(f"only {len(by_context)} passage(s): a split by passage needs at least two")
    contexts = sorted(by_context)
    random.Random(seed).shuffle(contexts)
    n_eval = min(len(contexts) - 1, max(1, round(eval_share * len(contexts))))
    held = set(contexts[:n_eval])
    train = [r for r in rows if r["context"] not in held]
    return train, [r for r in rows if r["context"] in held]


def load_splits(name: str, seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and evaluation questions as flat records: 'local:squad_sample' is the shipped sample with a quarter of
    its passages held out; any other name is a Hub dataset whose train and validation splits are used as they are
    (SQuAD's come from different Wikipedia articles)."""
    if name == LOCAL_SAMPLE:
        return split_by_context(load_squad_sample(), 0.25, seed)
    from datasets import load_dataset

    ds = load_dataset(name)
    missing = {"train", "validation"} - set(ds)
    if missing:
        raise DataError(f"dataset '{name}' has no {sorted(missing)} split; it has {sorted(ds)}")
    return ds["train"].to_list(), ds["validation"].to_list()


def sample(rows: Sequence[dict[str, Any]], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` records drawn without replacement in a seeded order (the first k of a larger draw are a draw of k)."""
    if not 0 < n <= len(rows):
        raise ValueError(f"cannot draw {n} questions from {len(rows)}: ask for between 1 and {len(rows)}")
    return random.Random(seed).sample(list(rows), n)


def overlap(train: Sequence[dict[str, Any]], evaluation: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many question ids and passages the two sets share (both must be 0 for an honest evaluation)."""
    return {"shared ids": len({r["id"] for r in train} & {r["id"] for r in evaluation}),
            "shared passages": len({r["context"] for r in train} & {r["context"] for r in evaluation})}


# --- prompts ------------------------------------------------------------------------------------------------

SYSTEM_PROMPT = ("You answer questions about a passage. Reply with the shortest span of the passage that answers "
                 "the question, copied word for word, and nothing else.")
STYLES = ("instruction", "completion", "demonstration")


def messages(row: dict[str, Any], answer: str | None = None, system: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """The chat turns for one question: a system instruction, the passage and question, and the answer if given."""
    turns = [{"role": "system", "content": system},
             {"role": "user", "content": f"Context: {row['context']}\nQuestion: {row['question']}"}]
    return turns + ([{"role": "assistant", "content": answer}] if answer is not None else [])


def load_tokenizer(name: str):
    """The model's tokenizer with the Llama-2 chat template where it ships none (NousResearch's Llama-2-7b-chat-hf
    publishes none); its own pad token is kept (Llama-2: <unk>, id 0, never the added <pad> one past the embedding)."""
    tok = load(name)
    if tok.chat_template is None:
        tok.chat_template = LLAMA2_CHAT_TEMPLATE
    return tok


def build_prompt(tok, row: dict[str, Any], style: str = "instruction",
                 shots: Sequence[dict[str, Any]] = ()) -> str:
    """The full prompt text, special tokens included (tokenize it with add_special_tokens=False).
    instruction: the chat template with the system instruction; demonstration: the same with `shots` answered as
    earlier turns (few-shot); completion: plain text ending in 'Answer:' for the model to continue."""
    if style not in STYLES:
        raise ValueError(f"unknown prompting style '{style}': use one of {STYLES}")
    if (style == "demonstration") != bool(shots):
        raise ValueError("the demonstration style needs example questions in `shots`, and only it takes them")
    if style == "completion":
        bos = tok.bos_token if tok.bos_token and tok("x")["input_ids"][0] == tok.bos_token_id else ""
        return f"{bos}Context: {row['context']}\nQuestion: {row['question']}\nAnswer:"
    turns = messages(row)
    for shot in reversed(shots):
        turns[1:1] = messages(shot, shot["answers"]["text"][0])[1:]
    return tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)


def fitting(tok, rows: Sequence[dict[str, Any]], n: int, max_length: int) -> tuple[list[dict[str, Any]], int]:
    """The first `n` rows whose training text (prompt and first gold answer) fits in `max_length` tokens, so that
    truncation never cuts an answer off; also returns how many longer rows were passed over."""
    kept, skipped = [], 0
    for row in rows:
        ids = tok.apply_chat_template(messages(row, row["answers"]["text"][0]), tokenize=True, return_dict=True)
        if len(ids["input_ids"]) <= max_length:
            kept.append(row)
            if len(kept) == n:
                return kept, skipped
        else:
            skipped += 1
    raise ValueError(f"only {len(kept)} of {len(rows)} questions fit in max_length={max_length} tokens but {n} are "
                     "needed: raise max_length or ask for fewer examples")


# --- generation and the cleaning rule -----------------------------------------------------------------------

def clean_answer(text: str) -> str:
    """The one cleaning rule: keep the text before the first line break, then strip surrounding spaces, quotation
    marks and a final full stop."""
    return text.split("\n", 1)[0].strip().strip("\"'“”‘’").strip().removesuffix(".").strip()


# --- the human-evaluation sheet -----------------------------------------------------------------------------

RATINGS = ("correct", "partially", "wrong")
SHEET_COLUMNS = ("id", "question", "context", "gold", "prediction", "rating", "comment")


def saved_run(folder: str | Path, name: str, key: dict[str, Any], make: Callable[[], list[str]]) -> dict[str, Any]:
    """The raw answers of run `name`, saved in `folder` as JSON under the run's name and a hash of `key` (everything
    that shapes them): loaded when a finished run left them, else made by `make()`, timed and saved — so an
    interrupted notebook resumes after its last finished run. Returns {'raw', 'seconds', 'reused'}."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]
    path = Path(folder) / f"{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-')}-{digest}.json"
    if path.is_file():
        return {**json.loads(path.read_text(encoding="utf-8")), "reused": True}
    start = time.perf_counter()
    run = {"raw": list(make()), "seconds": time.perf_counter() - start}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(run), encoding="utf-8")
    tmp.replace(path)  # written whole or not at all: a run cut off mid-write is redone, never read half
    return {**run, "reused": False}


def export_sheet(rows: Sequence[dict[str, Any]], path: str | Path, n: int, seed: int = 0) -> Path:
    """Write a CSV of `n` predictions drawn at random (id, question, context, gold, prediction) with empty 'rating'
    and 'comment' columns for a rater; scores are left out so that they do not sway the rating. A sheet already at
    `path` that holds ratings is kept as it is: a rerun never wipes a rater's work."""
    import pandas as pd

    need = {"id", "question", "context", "answers", "prediction"}
    if rows and need - set(rows[0]):
        raise ValueError(f"each row needs {sorted(need)}; missing {sorted(need - set(rows[0]))}")
    path = Path(path)
    if path.exists() and (read_sheet(path)["rating"] != "").any():
        return path
    picked = sample(rows, n, seed)
    sheet = pd.DataFrame([{"id": r["id"], "question": r["question"], "context": r["context"],
                           "gold": " | ".join(r["answers"]["text"]), "prediction": r["prediction"],
                           "rating": "", "comment": ""} for r in picked], columns=list(SHEET_COLUMNS))
    sheet.to_csv(path, index=False)
    return path


def read_sheet(path: str | Path):
    """A rating sheet as a DataFrame; a missing column or a rating other than correct/partially/wrong (or empty)
    raises ValueError naming the row."""
    import pandas as pd

    sheet = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in SHEET_COLUMNS if c not in sheet.columns]
    if missing:
        raise ValueError(f"{Path(path).name}: missing column(s) {missing}: not a sheet written by export_sheet "
                         "(move it away and export a fresh one)")
    sheet["rating"] = sheet["rating"].str.strip().str.lower()
    bad = sheet[~sheet["rating"].isin([*RATINGS, ""])]
    if len(bad):
        row = bad.index[0]
        raise ValueError(f"{Path(path).name} row {row + 2} (id {sheet.at[row, 'id']}): rating "
                         f"'{bad.at[row, 'rating']}' is not one of {RATINGS} (or empty while unrated)")
    return sheet


def summarize_sheet(path: str | Path, scores=None):
    """Count the ratings of a filled sheet (and the unrated rows), with the share of rated rows in percent; with
    `scores` (a DataFrame indexed by id), also the mean of each score column per rating."""
    import pandas as pd

    sheet = read_sheet(path)
    sheet["rating"] = sheet["rating"].replace("", "(unrated)")
    order = [*RATINGS, "(unrated)"]
    table = sheet["rating"].value_counts().reindex(order, fill_value=0).rename("count").to_frame()
    rated = int(table.loc[list(RATINGS), "count"].sum())
    table["share of rated %"] = [100.0 * c / rated if rated and r in RATINGS else float("nan")
                                 for r, c in table["count"].items()]
    if scores is not None:
        joined = sheet.join(scores, on="id")
        means = joined.groupby("rating")[list(scores.columns)].mean().reindex(order)
        table = table.join(means.add_prefix("mean "))
    return pd.DataFrame(table).rename_axis("rating")


def official_metric(name: str = "squad") -> tuple[Any, str]:
    """evaluate's metric `name` (its Space evaluate-metric/<name>) when the Hub answers or `make prefetch` cached it,
    else None and why not."""
    online = hub_reachable()
    if not (online or present(Item("metric", f"evaluate-metric/{name}"))):
        return None, "the Hub is not reachable (offline) and `make prefetch` has not cached it"
    import evaluate

    if not online:  # offline, evaluate warns that it uses "the latest cached version": that is the point here
        evaluate.logging.set_verbosity_error()
    return evaluate.load(name), ""
