import math

import pandas as pd
import pytest
import torch

from utils import data, dpo
from utils.data import DataError

GOOD = {"harmless": 2, "truthful": 2, "helpful": 2}
VAGUE = {"harmless": 2, "truthful": 2, "helpful": 0}
FALSE = {"harmless": 2, "truthful": 0, "helpful": 2}
HARMFUL = {"harmless": 0, "truthful": 1, "helpful": 2}


# --- the loss ---------------------------------------------------------------------------------------------

def test_loss_at_equal_log_ratios_is_log_2():
    gen = torch.Generator().manual_seed(0)
    ref_c, ref_r = -50 * torch.rand(5, generator=gen), -50 * torch.rand(5, generator=gen)
    for shift in (0.0, 3.0, -7.5):  # the policy moved both answers by the same log-ratio
        loss, chosen, rejected = dpo.dpo_loss(ref_c + shift, ref_r + shift, ref_c, ref_r, beta=0.1)
        assert loss.item() == pytest.approx(math.log(2), abs=1e-6)
        assert torch.allclose(chosen, rejected)
        assert torch.allclose(chosen, torch.full((5,), 0.1 * shift))


def test_loss_is_the_logistic_loss_of_the_reward_margin():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-10.0, -30.0, -12.0, -25.0))
    loss, chosen, rejected = dpo.dpo_loss(pc, pr, rc, rr, beta=0.5)
    assert chosen.item() == pytest.approx(0.5 * 2) and rejected.item() == pytest.approx(0.5 * -5)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-(1.0 + 2.5))), rel=1e-6)
    assert loss.item() < math.log(2)  # the chosen answer gained on the rejected one: below chance
    swapped, *_ = dpo.dpo_loss(pr, pc, rr, rc, beta=0.5)
    assert swapped.item() > math.log(2)


def test_loss_gradient_pushes_chosen_up_and_rejected_down():
    pc, pr = torch.tensor([-20.0], requires_grad=True), torch.tensor([-20.0], requires_grad=True)
    loss, *_ = dpo.dpo_loss(pc, pr, torch.tensor([-20.0]), torch.tensor([-20.0]), beta=0.2)
    loss.backward()
    assert pc.grad.item() == pytest.approx(-0.1) and pr.grad.item() == pytest.approx(0.1)  # beta * sigmoid(0)


def test_loss_rejects_a_beta_that_is_not_positive():
    z = torch.zeros(2)
    with pytest.raises(ValueError, match="beta must be positive"):
        dpo.dpo_loss(z, z, z, z, beta=0)


# --- pairs from ranked answers ----------------------------------------------------------------------------

def test_ranked_answers_give_every_untied_pair_with_its_deciding_criterion():
    answers = [{"text": "vague one", "scores": VAGUE}, {"text": "harmful", "scores": HARMFUL},
               {"text": "good", "scores": GOOD}, {"text": "vague two", "scores": dict(VAGUE)},
               {"text": "false", "scores": FALSE}]
    pairs = dpo.pairs_from_ranking("q?", answers, pair_id="q")
    found = {(p["chosen"], p["rejected"]): p["criterion"] for p in pairs}
    assert len(pairs) == 10 - 1  # five answers, one tie
    assert ("vague one", "vague two") not in found and ("vague two", "vague one") not in found
    assert found[("good", "vague one")] == "helpful"
    assert found[("false", "harmful")] == "harmless"  # harmless outranks truthful
    assert found[("vague one", "false")] == "truthful"  # truthful outranks helpful
    assert all(data.validate_pair(p) for p in pairs)
    assert len({p["id"] for p in pairs}) == len(pairs)


def test_a_pair_with_chosen_equal_to_rejected_is_refused_with_a_clear_error():
    answers = [{"text": "Paris.", "scores": GOOD}, {"text": "Paris.", "scores": VAGUE}]
    with pytest.raises(DataError, match="chosen and rejected are the same text"):
        dpo.pairs_from_ranking("Capital of France?", answers)


@pytest.mark.parametrize("answers, message", [
    ([{"text": "only one", "scores": GOOD}], "at least two answers"),
    ([{"text": "a"}, {"text": "b", "scores": GOOD}], "answer 1 must be a dict with 'text' and 'scores'"),
    ([{"text": "a", "scores": {"harmless": 2}}, {"text": "b", "scores": GOOD}], r"lack \['truthful', 'helpful'\]"),
    ([{"text": "a", "scores": {**GOOD, "helpful": 1.5}}, {"text": "b", "scores": GOOD}], "whole numbers"),
    ([{"text": "a", "scores": GOOD}, {"text": "", "scores": VAGUE}], "field 'rejected' is empty"),
])
def test_bad_rankings_fail_naming_the_problem(answers, message):
    with pytest.raises(DataError, match=message):
        dpo.pairs_from_ranking("q?", answers)


def test_keep_valid_drops_bad_pairs_and_counts_why():
    records = [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a", "rejected": "a"},
               {"prompt": "p", "chosen": "a"}, {"prompt": "p", "chosen": "a", "rejected": " "},
               {"prompt": "p", "chosen": "x", "rejected": "x "}]
    kept, dropped = dpo.keep_valid(records)
    assert kept == records[:1]
    assert dropped == {"chosen and rejected are the same text": 2, "missing field 'rejected'": 1,
                       "field 'rejected' is empty": 1}


# --- preference data --------------------------------------------------------------------------------------

def test_hh_transcripts_become_prompt_chosen_rejected():
    record = {"chosen": "\n\nHuman: How do I boil an egg?\n\nAssistant: Simmer it for 8 minutes.",
              "rejected": "\n\nHuman: How do I boil an egg?\n\nAssistant: Eggs come from hens."}
    assert dpo.hh_to_pair(record, "helpful") == {"prompt": "How do I boil an egg?",
                                                 "chosen": "Simmer it for 8 minutes.",
                                                 "rejected": "Eggs come from hens.", "criterion": "helpful"}
    multi = {k: v + "\n\nHuman: Thanks!\n\nAssistant: Welcome." for k, v in record.items()}
    assert len(dpo.split_dialogue(multi["chosen"])) == 4
    with pytest.raises(DataError, match="single-turn"):
        dpo.hh_to_pair(multi)
    with pytest.raises(DataError, match="not an HH dialogue"):
        dpo.split_dialogue("Assistant: hello")


def test_shipped_pairs_hold_out_evenly_by_criterion():
    train, heldout, dropped = dpo.load_pairs("shipped", n_train=60, n_heldout=18, seed=0)
    assert len(train) == 60 and len(heldout) == 18 and not dropped
    assert {c: sum(p["criterion"] == c for p in heldout) for c in data.CRITERIA} == dict.fromkeys(data.CRITERIA, 6)
    assert not {p["id"] for p in train} & {p["id"] for p in heldout}
    assert dpo.load_pairs("shipped", 60, 18, seed=0)[1] == heldout  # the same seed holds out the same pairs
    with pytest.raises(ValueError, match="n_heldout >= 3"):
        dpo.load_pairs("shipped", 60, 2)


def _fake_hub_files(monkeypatch, rows):
    """hf_hub_download and load_dataset('json', ...) faked: every file holds `rows`; returns the calls made."""
    import datasets
    import huggingface_hub

    calls = []

    def download(repo_id, filename, repo_type):
        calls.append([repo_id, filename, repo_type])
        return f"/cache/{filename}"

    def load(builder, data_files, split):
        calls[-1].append(builder)
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(datasets, "load_dataset", load)
    return calls


def test_hub_pairs_are_converted_filtered_and_validated(monkeypatch):
    def transcript(q, a):
        return f"\n\nHuman: {q}\n\nAssistant: {a}"

    rows = [{"chosen": transcript(f"q{i}", f"good {i}"), "rejected": transcript(f"q{i}", f"bad {i}")}
            for i in range(6)]
    rows += [{"chosen": transcript("same", "x"), "rejected": transcript("same", "x")},
             {"chosen": transcript("a", "b") + transcript("c", "d"),
              "rejected": transcript("a", "b") + transcript("c", "e")}]
    calls = _fake_hub_files(monkeypatch, rows)
    train, heldout, dropped = dpo.load_pairs("Anthropic/hh-rlhf", n_train=6, n_heldout=4, seed=1)
    # each subset's split through its file (works offline from the cache), read as JSON: never load_dataset(data_dir=)
    assert sorted(map(tuple, calls)) == sorted(("Anthropic/hh-rlhf", f"{d}/{s}.jsonl.gz", "dataset", "json")
                                   for d in ("harmless-base", "helpful-base") for s in ("train", "test"))
    assert [p["criterion"] for p in train] == ["harmless"] * 3 + ["helpful"] * 3
    assert len(heldout) == 4 and all(p["chosen"].startswith("good") for p in train + heldout)
    assert set(dropped) <= {"chosen and rejected are the same text", "chosen side is not single-turn"}


def test_malformed_hh_records_are_dropped_and_counted_by_reason_not_raised(monkeypatch):
    def transcript(q, a):
        return f"\n\nHuman: {q}\n\nAssistant: {a}"

    good = [{"chosen": transcript(f"q{i}", f"good {i}"), "rejected": transcript(f"q{i}", f"bad {i}")}
            for i in range(4)]
    bad = [{"chosen": transcript("a", "b"), "rejected": transcript("a", "b") + transcript("c", "d")},
           {"chosen": transcript("a", "b"), "rejected": transcript("other prompt", "d")},
           {"chosen": transcript("a", "b") + transcript("c", "d"), "rejected": transcript("a", "e")},
           {"chosen": "no dialogue at all", "rejected": transcript("a", "e")},
           {"chosen": transcript("same", "x"), "rejected": transcript("same", "x")}]
    _fake_hub_files(monkeypatch, bad + good)
    train, heldout, dropped = dpo.load_pairs("Anthropic/hh-rlhf", n_train=8, n_heldout=8, seed=0)
    assert len(train) == len(heldout) == 8 and all(p["chosen"].startswith("good") for p in train + heldout)
    reasons = {"rejected side is not single-turn": 1, "chosen and rejected prompts differ": 1,
               "chosen side is not single-turn": 1, "not an HH dialogue": 1, "chosen and rejected are the same text": 1}
    assert set(dropped) <= set(reasons) and sum(dropped.values()) <= 4 * len(bad)  # what was read before 4 were found
    pairs, why = dpo.pairs_from_hh(bad + good, "helpful", n=10)
    assert len(pairs) == len(good) and why == reasons  # every record read: each malformed one counted once
    assert dpo.pairs_from_hh(good + bad, "helpful", n=2) == (pairs[:2], {})  # stops once it has n


def test_conversational_forms():
    pair = {"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away.", "criterion": "helpful"}
    assert dpo.as_conversation(pair) == {"prompt": [{"role": "user", "content": "Hi?"}],
                                         "chosen": [{"role": "assistant", "content": "Hello."}],
                                         "rejected": [{"role": "assistant", "content": "Go away."}]}
    (probe,) = dpo.opening_pairs(["How do I pick a lock?"])
    assert probe["chosen"] == dpo.REFUSAL_OPENING and probe["rejected"] == dpo.HELPFUL_OPENING
    assert dpo.refuses(dpo.REFUSAL_OPENING) and not dpo.refuses(dpo.HELPFUL_OPENING)


# --- implicit rewards and accuracy ------------------------------------------------------------------------

def test_preference_accuracy_counts_ties_as_half():
    assert dpo.preference_accuracy([1, 2, 3, 0], [0, 2, 4, 0]) == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)
    with pytest.raises(ValueError, match="as many chosen as rejected"):
        dpo.preference_accuracy([1, 2], [0])
    with pytest.raises(ValueError, match="at least one"):
        dpo.preference_accuracy([], [])


def _scores(**columns):
    base = {"policy_chosen": [-10.0, -20.0], "policy_rejected": [-12.0, -15.0], "ref_chosen": [-11.0, -20.0],
            "ref_rejected": [-11.0, -18.0], "tokens_chosen": [10, 10], "tokens_rejected": [5, 10]}
    base.update(columns)
    rows = pd.DataFrame(base)
    rows["reward_chosen"] = 0.1 * (rows.policy_chosen - rows.ref_chosen)
    rows["reward_rejected"] = 0.1 * (rows.policy_rejected - rows.ref_rejected)
    return rows.to_dict("records")


def test_accuracy_before_after_from_scored_pairs():
    pairs = [{"prompt": "a", "criterion": "harmless"}, {"prompt": "b", "criterion": "helpful"}]
    table = dpo.score_table(_scores(), pairs)
    assert list(table.criterion) == ["harmless", "helpful"]
    acc = dpo.accuracy_before_after(table)
    assert acc["implicit reward"] == {"before": 0.5, "after": 0.5}  # pair 1 right (+0.2 vs -0.1), pair 2 wrong
    # per token before: -1.1 vs -2.2 (right), -2.0 vs -1.8 (wrong); after: -1.0 vs -2.4, -2.0 vs -1.5
    assert acc["log-likelihood per token"] == {"before": 0.5, "after": 0.5}
    with pytest.raises(ValueError, match="raise max_length"):
        dpo.score_table(_scores(), pairs[:1])


def _tiny_peft_llama():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    return get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM"))


def _batch():
    ids = torch.tensor([[1, 5, 6, 7, 8], [1, 5, 9, 10, 0], [1, 5, 11, 0, 0], [1, 5, 12, 13, 14]])
    return {"input_ids": ids, "attention_mask": (ids > 0).long(),
            "completion_mask": torch.tensor([[0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 1]])}


def test_sequence_logps_sums_the_completion_tokens_only():
    model, batch = _tiny_peft_llama(), _batch()
    model.eval()
    with torch.no_grad():
        got = dpo.sequence_logps(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp = torch.log_softmax(logits, -1)
    expected = [sum(logp[row, t - 1, batch["input_ids"][row, t]].item() for t in range(1, 5)
                    if batch["completion_mask"][row, t]) for row in range(4)]
    assert got.tolist() == pytest.approx(expected, abs=1e-5)


def test_pair_scores_reference_is_the_adapter_switched_off():
    model, batch = _tiny_peft_llama(), _batch()
    rows = dpo.pair_scores(model, [batch], beta=0.1)  # a fresh LoRA adapter is zero: policy == reference
    assert len(rows) == 2 and [r["tokens_chosen"] for r in rows] == [3, 2] and rows[1]["tokens_rejected"] == 3
    assert all(r["reward_chosen"] == 0 and r["reward_rejected"] == 0 for r in rows)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.add_(0.5)
    moved = dpo.pair_scores(model, [batch], beta=0.1)
    assert moved[0]["ref_chosen"] == pytest.approx(rows[0]["ref_chosen"])
    assert moved[0]["policy_chosen"] != pytest.approx(rows[0]["policy_chosen"])
    assert moved[0]["reward_chosen"] == pytest.approx(0.1 * (moved[0]["policy_chosen"] - moved[0]["ref_chosen"]))


def test_pairs_trl_would_drop_for_length_are_removed_before_training_and_scoring_cannot_fail():
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from utils import models

    tokenizer = models.load_tokenizer("local:tiny-llama")
    pairs = [{"prompt": f"Question {i}?", "chosen": "A short answer.", "rejected": "No."} for i in range(3)]
    pairs.insert(1, {"prompt": "A long question " * 40, "chosen": "Yes.", "rejected": "No."})  # fills max_length
    kept, removed = dpo.fit_max_length(pairs, tokenizer, max_length=48)
    assert kept == [pairs[0], *pairs[2:]] and removed == [pairs[1]]

    def as_dataset(ps):
        return Dataset.from_list([dpo.as_conversation(p) for p in ps])

    model = models.load_causal_lm("local:tiny-llama")
    args = DPOConfig(output_dir="unused", max_length=48, per_device_eval_batch_size=2, report_to=[], use_cpu=True)
    trainer = DPOTrainer(model=model, args=args, processing_class=tokenizer, train_dataset=as_dataset(kept),
                         eval_dataset={"all": as_dataset(pairs), "kept": as_dataset(kept)},
                         peft_config=_lora_config())
    assert len(trainer.eval_dataset["all"]) == len(kept)  # TRL's own rule removes the same pair
    rows = dpo.pair_scores(trainer.model, trainer.get_eval_dataloader("kept"), beta=0.1)
    assert len(dpo.score_table(rows, kept)) == len(kept)


def _lora_config():
    from peft import LoraConfig

    return LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM")


# --- logged metrics and plot ------------------------------------------------------------------------------

def test_reward_history_and_plot():
    log = [{"step": s, "loss": 0.7 - 0.1 * s, "rewards/chosen": 0.1 * s, "rewards/rejected": -0.1 * s,
            "rewards/margins": 0.2 * s, "rewards/accuracies": min(1.0, 0.3 * s)} for s in (1, 2, 3)]
    log.append({"step": 3, "train_runtime": 1.0})
    history = dpo.reward_history(log)
    assert list(history.index) == [1, 2, 3] and history["rewards/margins"].iloc[-1] == pytest.approx(0.6)
    fig = dpo.plot_reward_metrics({"β = 0.1": history, "β = 0.5": history * 2})
    left, right = fig.axes
    assert len(left.lines) == 2 * 3 + 1 and len(right.lines) == 2
    scaled = dpo.plot_reward_metrics({"β = 0.5": history}, betas={"β = 0.5": 0.5})
    assert scaled.axes[0].lines[0].get_ydata()[-1] == pytest.approx(0.6 / 0.5)
    assert "reward / β" in scaled.axes[0].get_ylabel()
    with pytest.raises(ValueError, match="no reward metrics"):
        dpo.reward_history([{"step": 1, "loss": 0.5}])


def test_refuses_reads_the_opening_only():
    assert dpo.refuses("I can’t help with that, but here is a safer idea.")
    assert dpo.refuses("I'm sorry, I won't write that.")
    assert not dpo.refuses("Water boils at 100 °C at sea level.")
    assert not dpo.refuses("Water boils at 100 °C. " + "x" * 80 + " I can't say more.")


# --- the policy of notebook 04 ----------------------------------------------------------------------------

def test_a_policy_folder_without_a_chat_template_is_refused(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text('{"eos_token": "</s>"}')
    with pytest.raises(DataError, match="no chat template"):
        dpo.require_chat_template(tmp_path)
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}")
    dpo.require_chat_template(tmp_path)


# --- verdicts ----------------------------------------------------------------------------------------------

def _seeds(*afters):
    return dpo.seed_summary({seed: {"before": 0.5, "after": a} for seed, a in enumerate(afters)})


def test_seed_summary_gives_mean_gain_its_standard_deviation_and_range():
    s = _seeds(0.72, 0.78, 0.83)
    assert s["seeds"] == 3 and s["before"] == 0.5 and s["lowest"] == pytest.approx(0.22)
    assert s["gain"] == pytest.approx(0.2767, abs=1e-4) and s["spread"] == pytest.approx(0.11)
    assert s["sd"] == pytest.approx(0.0551, abs=1e-4) and _seeds(0.7)["sd"] == 0.0
    with pytest.raises(ValueError, match="no seeds"):
        dpo.seed_summary({})


@pytest.mark.parametrize("afters, says", [
    ((0.72, 0.78, 0.83), "carried over to pairs never trained on"),
    ((0.56, 0.72, 0.78), "one seed alone lands anywhere in a 0.22-wide band"),  # +0.19 > sd 0.12, < range 0.22
    ((0.44, 0.72, 0.89), "may be luck"),  # mean gain +0.18, but one seed lost and the sd is 0.23
    ((0.56, 0.56, 0.61), "may be luck"),  # steady, but under +0.15
    ((0.5, 0.44, 0.5), "no gain"),
])
def test_heldout_verdict_follows_the_numbers(afters, says):
    sentence = dpo.heldout_verdict(_seeds(*afters), train_after=1.0)
    assert says in sentence and "training pairs 1.00" in sentence
    assert f"to {sum(afters) / 3:.2f}" in sentence


def _beta_rows(drifts, accuracies):
    return [{"beta": b, "drift per token (nats)": d, "held-out accuracy": a}
            for b, d, a in zip((0.02, 0.1, 0.5), drifts, accuracies)]


def test_beta_verdict_follows_the_numbers():
    same = dpo.beta_verdict(_beta_rows((0.34, 0.24, 0.17), (0.56, 0.56, 0.56)), noise=0.11)
    assert "the larger β, the closer the policy stayed" in same and "no β generalised better" in same
    best = dpo.beta_verdict(_beta_rows((0.34, 0.24, 0.17), (0.56, 0.89, 0.61)), noise=0.11)
    assert "highest at β = 0.1" in best
    unsteady = dpo.beta_verdict(_beta_rows((0.2, 0.3, 0.1), (0.6, 0.6, 0.6)), noise=0.0)
    assert "did not fall steadily" in unsteady and "closer the policy stayed" not in unsteady
    assert "no β generalised better" in unsteady  # equal accuracies are never called a difference


def test_stop_verdict_follows_the_rates():
    assert "more often" in dpo.stop_verdict({"before": 0.25, "after": 0.75}, 24, 96)
    assert "stop less often" in dpo.stop_verdict({"before": 0.75, "after": 0.25}, 24, 96)
    assert "kept" in dpo.stop_verdict({"before": 0.5, "after": 0.5}, 24, 96)
    assert "25% ended" in dpo.stop_verdict({"before": 0.25, "after": 0.75}, 24, 96)
