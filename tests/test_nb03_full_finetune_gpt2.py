import math

import pytest


@pytest.fixture(scope="module")
def res(notebook):
    return notebook("03_full_finetune_gpt2")


def test_data_is_cleaned_tokenized_and_grouped(res):
    r = res["results"]
    block = res["settings"]["block_size"]
    for split in ("train", "valid"):
        assert r["blocks"][split] == r["split_tokens"][split] // block > 0  # only the short rest is dropped
    assert r["split_tokens"]["train"] > 4 * r["split_tokens"]["valid"]


def test_perplexity_is_checked_against_the_library_and_uses_a_sliding_window(res):
    r = res["results"]
    assert r["loss_check"]["ours"] == pytest.approx(r["loss_check"]["library"], rel=1e-5)
    before = r["before"]
    assert before["windows"] > 1 and before["stride"] == r["window"] // 2  # the text is longer than the context
    assert math.exp(before["loss"]) == pytest.approx(before["ppl"])
    # the smoke model is pre-trained (on other texts): far better than a uniform guess over its vocabulary
    assert before["ppl"] < 0.5 * r["vocab_size"]


def test_more_context_lowers_perplexity_and_costs_more_windows(res):
    strides = res["results"]["strides"]
    assert [s["windows"] for s in strides] == sorted(s["windows"] for s in strides)
    assert strides[0]["perplexity"] > strides[-1]["perplexity"]


def test_the_head_is_tied_and_partial_trains_fewer_parameters(res):
    r = res["results"]
    assert r["tied_head"] is True
    rows = {row["method"]: row for row in r["table"]}
    assert list(rows) == ["full", "partial", "partial + tied head"]
    full, partial, tied = rows["full"], rows["partial"], rows["partial + tied head"]
    assert full["trainable %"] == 100.0
    assert 0 < partial["trainable"] < tied["trainable"] < full["trainable"]
    assert tied["trainable"] - partial["trainable"] == r["parts"]["token embeddings (wte)"]  # the head is wte
    assert sum(r["parts"].values()) == full["trainable"]


def test_perplexity_fell_for_every_method_and_full_gained_most(res):
    rows = {row["method"]: row for row in res["results"]["table"]}
    for row in rows.values():
        assert row["ppl after"] < row["ppl before"] and row["val loss after"] < row["val loss before"]
        assert row["train s"] > 0 and row["tokens/s"] > 0 and row["peak MB"] > 0
    assert rows["full"]["ppl after"] < rows["partial"]["ppl after"] < res["results"]["before"]["ppl"]
    assert res["headline"]["ppl full"] == pytest.approx(rows["full"]["ppl after"], abs=0.01)


def test_loss_curves_for_every_method(res):
    settings = res["settings"]
    for curves in res["results"]["curves"].values():
        steps = [step for step, _ in curves["eval"]]
        assert steps == list(range(settings["eval_every"], settings["max_steps"] + 1, settings["eval_every"]))
        assert curves["train"][-1][0] == settings["max_steps"]
    full = res["results"]["curves"]["full"]["train"]
    assert full[-1][1] < full[0][1]


def test_a_resumed_run_ends_like_an_uninterrupted_one(res):
    resume, max_steps = res["results"]["resume"], res["settings"]["max_steps"]
    assert resume["resumed_from"].endswith(f"checkpoint-{res['settings']['eval_every']}")
    assert res["settings"]["eval_every"] < resume["stop_at"] < 2 * res["settings"]["eval_every"]
    assert resume["final_step_resumed"] == resume["final_step_uninterrupted"] == max_steps
    a, b = resume["uninterrupted"], resume["resumed"]
    for split in ("train", "eval"):
        assert [s for s, _ in a[split]] == [s for s, _ in b[split]]
        assert [x for _, x in a[split]] == pytest.approx([x for _, x in b[split]], abs=1e-5)
    assert resume["max_loss_diff"] < 1e-5


def test_generations_and_decoding_strategies(res):
    r = res["results"]
    strategies = ["greedy", "top-k (k=50)", "top-p (p=0.9)", "temperature 0.7"]
    assert [g["strategy"] for g in r["generations"]] == strategies * 2
    greedy = [g for g in r["generations"] if g["strategy"] == "greedy"]
    assert all(g["before"] != g["full"] for g in greedy)  # fine-tuning changed what the model writes
    possible = r["next_token_possible"]
    assert possible["greedy"] == 1 and possible["top-k (k=50)"] == 50
    assert possible["temperature 0.7"] == r["vocab_size"] > possible["top-p (p=0.9)"]
    copied = r["copied_word_pairs"]  # the decoding sentence is computed from these (verdicts.rate_change)
    assert set(copied) == {"before", "full", "partial"} and all(0 <= v <= 1 for v in copied.values())


def test_exercise_solutions_pass(res):
    assert res["results"]["exercises"] == {"03.1": True, "03.2": True, "03.3": True, "03.4": True}



def test_full_fine_tuning_beats_the_no_context_baseline(res):
    r = res["results"]
    full = next(row for row in r["table"] if row["method"] == "full")
    assert full["ppl after"] < r["unigram_ppl"]  # more than word frequencies: the model uses its context


def test_checkpoints_are_deleted_once_the_results_are_saved(res):
    from pathlib import Path

    assert not (Path(res["_out_dir"]) / "checkpoints").exists()  # Kaggle's 20 GB: 03 left ~9 GB on a T4


# Every headline figure and outcome-stating sentence of 03, and the test that computes or checks it.
CLAIMS = {
    "headline 'ppl before', 'ppl full', 'ppl partial', 'partial trainable %'":
        "test_full_fine_tuning_beats_the_no_context_baseline",
    "section 7: generated word pairs found in the training text, before → after (lm.seen_ngrams)":
        "test_generations_and_decoding_strategies",
    "section 6: a resumed run ends like an uninterrupted one": "test_a_resumed_run_ends_like_an_uninterrupted_one",
}


def test_every_claim_has_its_check():
    assert all(callable(globals()[name]) for name in CLAIMS.values())
