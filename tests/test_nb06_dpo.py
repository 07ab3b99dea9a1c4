"""06_dpo in smoke: the tiny Llama SFT-tuned, then DPO with TRL on the shipped rubric pairs, measured."""
import math

import pytest

from utils import dpo


@pytest.fixture(scope="module")
def res(notebook):
    return notebook("06_dpo")


def test_policy_is_the_tiny_llama_sft_tuned_here(res):
    r = res["results"]
    assert res["profile"] == "smoke"
    assert r["policy_source"] == "the profile's model" and r["policy"].endswith("sft-16-steps")
    (first_step, first), (last_step, last) = r["sft_losses"][0], r["sft_losses"][-1]
    assert last_step > first_step and last < first


def test_pairs_ranking_demo_and_held_out_split(res):
    r = res["results"]
    assert (r["n_train"], r["n_heldout"], r["dropped"]) == (56, 18, {})
    assert r["removed_for_length"] == {"train": 0, "held out": 0}  # the shipped pairs fit max_length = 192
    assert r["ranking_demo"] == {"answers": 4, "pairs": 5,
                                 "criteria": ["helpful", "helpful", "harmless", "harmless", "harmless"]}
    assert res["headline"]["pairs"] == 56


def test_reward_margins_on_the_training_pairs_rose_from_step_0(res):
    r = res["results"]
    history = r["reward_history"]
    assert history[0]["step"] == 1 and r["margins"][0] == 0 and history[0]["loss"] == pytest.approx(math.log(2))
    assert len(r["margins"]) == r["train"]["steps"] == 14
    assert max(r["margins"]) > 0.5 and sum(r["margins"][-4:]) / 4 > 0.2  # logged batch margins grew
    assert r["train_margin_after"] > 0.5  # the mean margin over all 56 training pairs, 0 at step 0
    assert r["train_accuracy"]["implicit reward"]["after"] > 0.9
    assert r["train"]["seconds"] > 0 and r["train"]["parameters"]["trainable_pct"] < 20


def test_hand_written_loss_equals_trls_on_the_checked_batch(res):
    check = res["results"]["loss_check"]
    assert check["pairs"] == 8 and 0 < check["trl"] < math.log(2) + 0.5
    assert check["abs_diff"] < 1e-5


def test_held_out_accuracy_before_and_after_is_reported(res):
    acc = res["results"]["heldout_accuracy"]
    assert acc["implicit reward"]["before"] == 0.5  # the policy is the reference before DPO: all ties
    for ranking in ("implicit reward", "log-likelihood per token"):
        assert 0 <= acc[ranking]["before"] <= 1 and 0 <= acc[ranking]["after"] <= 1
    assert acc["implicit reward"]["after"] > 0.5  # better than chance on pairs never trained on
    assert res["headline"]["held-out acc after"] == acc["implicit reward"]["after"]
    by_criterion = {row["criterion"]: row for row in res["results"]["heldout_by_criterion"]}
    assert {c: row["pairs"] for c, row in by_criterion.items()} == {"harmless": 6, "helpful": 6, "truthful": 6}


def test_held_out_accuracy_over_three_seeds_is_shown_with_its_verdict(res):
    r = res["results"]
    runs = r["heldout_seeds"]
    assert [row["seed"] for row in runs] == [0, 1, 2] and all(row["before"] == 0.5 for row in runs)
    assert runs[0]["after"] == r["heldout_accuracy"]["implicit reward"]["after"]  # the first run is the one above
    summary = dpo.seed_summary({row["seed"]: row for row in runs})
    assert r["seed_summary"] == pytest.approx(summary)
    assert r["heldout_verdict"] == dpo.heldout_verdict(summary, sum(row["train after"] for row in runs) / 3)
    assert res["headline"]["held-out gain, mean of 3 seeds"] == pytest.approx(summary["gain"])


def test_mean_held_out_gain_over_seeds_is_large_and_beyond_the_spread(res):
    s = res["results"]["seed_summary"]  # spread: the standard deviation of the per-seed gains (the range is shown too)
    assert s["seeds"] == 3 and s["gain"] >= 0.15 and s["gain"] > s["sd"] and s["lowest"] > 0


def test_larger_beta_keeps_the_policy_closer_to_the_reference(res):
    rows = {row["beta"]: row for row in res["results"]["beta_comparison"]}
    assert sorted(rows) == [0.02, 0.1, 0.5]
    drift = [rows[b]["drift per token (nats)"] for b in sorted(rows)]
    gap = [rows[b]["log-ratio gap = margin / β"] for b in sorted(rows)]
    assert drift == sorted(drift, reverse=True) and drift[-1] < 0.7 * drift[0]
    assert gap[-1] < min(gap[:-1])
    assert rows[0.5]["margin (late)"] > rows[0.02]["margin (late)"]  # rewards are scaled by beta
    noise = res["results"]["seed_summary"]["spread"]
    assert res["results"]["beta_verdict"] == dpo.beta_verdict(res["results"]["beta_comparison"], noise)


def test_probes_answered_before_and_after(res):
    r = res["results"]
    assert [p["group"] for p in r["probes"]] == ["decline"] * 2 + ["with care"] * 2 + ["answer"] * 2
    assert all(math.isfinite(p["lean before"]) and math.isfinite(p["lean after"]) for p in r["probes"])
    assert all(isinstance(p["answer before"], str) and isinstance(p["answer after"], str) for p in r["probes"])
    assert r["answer_prompts"] == 6 + 18 and set(r["stop_rates"]) == {"before", "after"}
    assert all(0 <= rate <= 1 for rate in r["stop_rates"].values())
    assert r["stop_verdict"] == dpo.stop_verdict(r["stop_rates"], r["answer_prompts"], res["settings"]["answer_tokens"])
    assert set(r["lean_change"]) == {"decline", "with care", "answer"}


def test_exercise_solutions_pass(res):
    assert res["results"]["exercises"] == {"06.1": True, "06.2": True, "06.3": True}


def test_checkpoints_are_deleted_once_the_results_are_saved(res):
    from pathlib import Path

    assert not list(Path(res["_out_dir"]).glob("dpo-beta*"))


# Every headline figure and outcome-stating sentence of 06, and the test that computes or checks it.
CLAIMS = {
    "headline 'pairs'": "test_pairs_ranking_demo_and_held_out_split",
    "headline 'held-out acc before/after' (seed 0)": "test_held_out_accuracy_before_and_after_is_reported",
    "headline 'held-out gain, mean of 3 seeds', its sd and range; section 9b's sentence (dpo.heldout_verdict)":
        "test_held_out_accuracy_over_three_seeds_is_shown_with_its_verdict",
    "the gain is at least +0.15, above its sd, on every seed":
        "test_mean_held_out_gain_over_seeds_is_large_and_beyond_the_spread",
    "headline 'loss vs TRL |diff|'": "test_hand_written_loss_equals_trls_on_the_checked_batch",
    "section 10: the β sentence (dpo.beta_verdict)": "test_larger_beta_keeps_the_policy_closer_to_the_reference",
    "section 11: free answers' stop rate before/after (dpo.stop_verdict)": "test_probes_answered_before_and_after",
}


def test_every_claim_has_its_check():
    assert all(callable(globals()[name]) for name in CLAIMS.values())
