"""SQuAD v1.1 exact match and F1 as an `evaluate` metric: the course's stand-in of the Space `evaluate-metric/squad`,
with the same inputs and outputs (predictions {id, prediction_text}; references {id, answers {text, answer_start}})."""
import datasets
import evaluate

from .compute_score import compute_score

_DESCRIPTION = "SQuAD v1.1: exact match and token F1 of normalized answers, best over the gold answers, in percent."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of {'id': str, 'prediction_text': str}
    references: list of {'id': str, 'answers': {'text': list[str], 'answer_start': list[int]}}
Returns:
    {'exact_match': float, 'f1': float}, both in percent
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Squad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                "references": {"id": datasets.Value("string"), "answers": datasets.features.Sequence(
                    {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")})}}),
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"])

    def _compute(self, predictions, references):
        answers = {p["id"]: p["prediction_text"] for p in predictions}
        dataset = [{"paragraphs": [{"qas": [{"id": r["id"], "answers": [{"text": t} for t in r["answers"]["text"]]}
                                            for r in references]}]}]
        return compute_score(dataset=dataset, predictions=answers)
