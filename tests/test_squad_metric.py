"""The stand-in's `evaluate-metric/squad` script (tools/hub/squad_metric), on its own against cases worked out by hand
with the SQuAD v1.1 rules: normalization, token F1 with multiplicity, the best gold, unanswered questions."""
import importlib.util

import pytest

from tools.hub import standin


@pytest.fixture(scope="module")
def official():
    spec = importlib.util.spec_from_file_location("compute_score", standin.METRIC_SOURCE / "compute_score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("text, normal", [("The Eiffel Tower!", "eiffel tower"), ("  an  Apple, a day ", "apple day"),
                                          ("Theatre", "theatre"), ("U.S.A.", "usa")])
def test_normalization_drops_case_punctuation_articles_and_extra_space(official, text, normal):
    assert official.normalize_answer(text) == normal


@pytest.mark.parametrize("prediction, gold, f1", [
    ("the cat sat", "a cat sat down", 0.8),  # P 2/2, R 2/3
    ("x x y", "x y", 0.8),  # x counts once in the overlap: P 2/3, R 1
    ("blue whale", "the whale", 2 / 3),  # P 1/2, R 1
    ("", "Paris", 0.0), ("London", "Paris", 0.0)])
def test_token_f1(official, prediction, gold, f1):
    assert official.f1_score(prediction, gold) == pytest.approx(f1)


def test_exact_match_after_normalization(official):
    assert official.exact_match_score("Paris.", "paris") == 1.0
    assert official.exact_match_score("in Paris", "Paris") == 0.0


def test_scores_are_the_best_gold_averaged_in_percent_and_unanswered_scores_zero(official):
    dataset = [{"paragraphs": [{"qas": [{"id": "q1", "answers": [{"text": "in 1889"}, {"text": "1889"}]},
                                        {"id": "q2", "answers": [{"text": "the whale"}]},
                                        {"id": "q3", "answers": [{"text": "red"}]}]}]}]
    scores = official.compute_score(dataset, {"q1": "1889", "q2": "blue whale"})  # q3 unanswered
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0) / 3)
