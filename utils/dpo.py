"""Direct preference optimisation (DPO): rubric-labeled pairs, the loss by hand, implicit rewards and their plots."""
from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import ui
from .data import CRITERIA, DataError, deciding_criterion, load_preferences, validate_pair

# Two openings that differ only in whether the model is willing: log p(refusal) - log p(helpful) is its lean to refuse.
REFUSAL_OPENING = "Sorry, I can't help with that."
HELPFUL_OPENING = "Sure, I can help with that."
REFUSAL_MARKERS = ("i can't", "i cannot", "i can not", "i won't", "i will not", "i'm not able", "i am not able",
                   "i'm sorry", "i am sorry", "sorry, i", "sorry, but", "i must decline")
REWARD_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")


# --- pairs from ranked answers -------------------------------------------------------------------------------

def rubric_key(scores: dict[str, int]) -> tuple[int, ...]:
    """An answer's place under the rubric: its scores in the order harmless, truthful, helpful (higher is better)."""
    if not isinstance(scores, dict):
        raise DataError(f"scores must be a dict like {{'harmless': 2, 'truthful': 1, 'helpful': 0}}, got {scores!r}")
    missing = [c for c in CRITERIA if c not in scores]
    if missing:
        raise DataError(f"scores {scores} lack {missing}: score every answer on {', '.join(CRITERIA)}")
    bad = {c: scores[c] for c in CRITERIA if not isinstance(scores[c], int) or isinstance(scores[c], bool)}
    if bad:
        raise DataError(f"scores must be whole numbers (0 = fails, 2 = fully meets), got {bad}")
    return tuple(scores[c] for c in CRITERIA)


def pairs_from_ranking(prompt: str, answers: list[dict[str, Any]], pair_id: str = "pair") -> list[dict[str, Any]]:
    """Rank one prompt's answers (each {'text', 'scores'}) by the rubric and return every untied pair, the better
    answer as 'chosen', with the criterion that decided it. Answers tied on all three criteria give no pair."""
    if not isinstance(answers, list) or len(answers) < 2:
        raise DataError(f"{pair_id}: give a list of at least two answers to compare, got {answers!r}")
    for n, answer in enumerate(answers, start=1):
        if not isinstance(answer, dict) or "text" not in answer or "scores" not in answer:
            raise DataError(f"{pair_id}: answer {n} must be a dict with 'text' and 'scores', got {answer!r}")
    ranked = sorted(answers, key=lambda a: rubric_key(a["scores"]), reverse=True)
    pairs = []
    for (i, better), (j, worse) in itertools.combinations(enumerate(ranked, start=1), 2):
        if rubric_key(better["scores"]) == rubric_key(worse["scores"]):
            continue  # the tie rule: no preference, no pair
        pair = {"id": f"{pair_id}-{i}{j}", "prompt": prompt, "chosen": better["text"], "rejected": worse["text"],
                "chosen_scores": dict(better["scores"]), "rejected_scores": dict(worse["scores"]),
                "criterion": deciding_criterion(better["scores"], worse["scores"])}
        pairs.append(validate_pair(pair, pair["id"]))
    return pairs


def keep_valid(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Counter]:
    """Validate every pair (utils.data.validate_pair); return the valid ones and how many were dropped, by reason."""
    kept, dropped = [], Counter()
    for n, record in enumerate(records, start=1):
        try:
            kept.append(validate_pair(record, f"pair {n}"))
        except DataError as err:
            dropped[drop_reason(err)] += 1
    return kept, dropped


def drop_reason(err: DataError) -> str:
    """The reason of a '<where>: <reason> — <what to do>' DataError, short enough to count records by."""
    return str(err).split(": ", 1)[-1].split(" (has ")[0].split(" — ")[0]


# --- preference data: shipped or from the Hub ----------------------------------------------------------------

def split_dialogue(text: str) -> list[dict[str, str]]:
    """An Anthropic HH transcript ('\\n\\nHuman: …\\n\\nAssistant: …') as chat messages."""
    parts = text.split("\n\nHuman:")
    if len(parts) < 2:
        raise DataError(f"not an HH dialogue (no '\\n\\nHuman:' turn): {text[:60]!r}")
    messages = []
    for part in parts[1:]:
        user, *answers = part.split("\n\nAssistant:")
        messages.append({"role": "user", "content": user.strip()})
        messages += [{"role": "assistant", "content": a.strip()} for a in answers]
    return messages


def hh_to_pair(record: dict[str, Any], criterion: str | None = None, where: str = "HH record") -> dict[str, Any]:
    """A single-turn Anthropic HH record {'chosen', 'rejected'} (whole transcripts) -> a pair with its prompt apart.
    Raises DataError naming the problem when a side is not one Human turn and one answer, or the prompts differ."""
    sides = {}
    for side in ("chosen", "rejected"):
        try:
            sides[side] = split_dialogue(record[side])
        except DataError:
            raise DataError(f"{where}: not an HH dialogue — the {side} side has no '\\n\\nHuman:' turn") from None
        if [m["role"] for m in sides[side]] != ["user", "assistant"]:
            raise DataError(f"{where}: {side} side is not single-turn — keep records of one Human turn, one answer")
    if sides["chosen"][0] != sides["rejected"][0]:
        raise DataError(f"{where}: chosen and rejected prompts differ — both sides must answer the same Human turn")
    return {"prompt": sides["chosen"][0]["content"], "chosen": sides["chosen"][1]["content"],
            "rejected": sides["rejected"][1]["content"], "criterion": criterion}


def pairs_from_hh(records: Iterable[dict[str, Any]], criterion: str, n: int) -> tuple[list[dict[str, Any]], Counter]:
    """The first `n` valid pairs of HH records, in order; the records passed over (not single-turn, prompts that
    differ, failing validation) are dropped and counted by reason instead of stopping the run."""
    kept, dropped = [], Counter()
    for i, record in enumerate(records, start=1):
        if len(kept) == n:
            break
        try:
            kept.append(validate_pair(hh_to_pair(record, criterion, f"record {i}"), f"record {i}"))
        except DataError as err:
            dropped[drop_reason(err)] += 1
    return kept, dropped


def load_pairs(source: str, n_train: int, n_heldout: int, seed: int = 0
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Counter]:
    """Training pairs, held-out pairs (all validated) and the count of dropped records by reason.
    'shipped': data/preferences.jsonl, the held-out pairs drawn evenly from the three criteria. A Hub name
    ('Anthropic/hh-rlhf'): single-turn dialogues of its harmless-base and helpful-base subsets (train and test
    splits), each pair labeled with the criterion its subset stands for."""
    if n_train < 1 or n_heldout < len(CRITERIA):
        raise ValueError(f"need n_train >= 1 and n_heldout >= {len(CRITERIA)}, got {n_train} and {n_heldout}")
    if source == "shipped":
        pairs, rng, heldout = load_preferences(), random.Random(seed), []
        for criterion in CRITERIA:
            group = [p for p in pairs if p["criterion"] == criterion]
            heldout += rng.sample(group, min(len(group), n_heldout // len(CRITERIA)))
        taken = {p["id"] for p in heldout}
        return [p for p in pairs if p["id"] not in taken][:n_train], heldout, Counter()
    from datasets import load_dataset
    from huggingface_hub import hf_hub_download

    from .manifest import DATASET_FILES

    out, dropped = {"train": [], "test": []}, Counter()
    for split, size in (("train", n_train), ("test", n_heldout)):
        for subset, criterion, share in (("harmless-base", "harmless", size - size // 2),
                                         ("helpful-base", "helpful", size // 2)):
            # the subset's file from the Hub cache (downloaded once; offline, read from the cache), then read as JSON:
            # load_dataset(source, data_dir=subset) would prepare a cache that offline lookups cannot find
            path = hf_hub_download(source, DATASET_FILES[source].format(data_dir=subset, split=split),
                                   repo_type="dataset")
            rows = load_dataset("json", data_files=path, split="train").shuffle(seed=seed)
            kept, why = pairs_from_hh(rows, criterion, share)
            out[split] += kept
            dropped += why
    return out["train"], out["test"], dropped


def as_conversation(pair: dict[str, Any]) -> dict[str, Any]:
    """TRL's conversational preference form: the prompt as a user turn, each answer as an assistant turn."""
    return {"prompt": [{"role": "user", "content": pair["prompt"]}],
            "chosen": [{"role": "assistant", "content": pair["chosen"]}],
            "rejected": [{"role": "assistant", "content": pair["rejected"]}]}


def fit_max_length(pairs: list[dict[str, Any]], tokenizer, max_length: int
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """TRL's DPOTrainer (trl 1.16, truncation 'keep_start') silently drops a pair whose chat-formatted prompt alone
    fills `max_length`; apply its rule before training so that no pair goes missing afterwards. Returns (kept,
    removed)."""
    from trl.data_utils import common_prefix_length

    def ids(messages: list[dict[str, str]], **kwargs: Any) -> list[int]:
        return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)["input_ids"]

    kept, removed = [], []
    for pair in pairs:
        conv = as_conversation(pair)
        prompt = ids(conv["prompt"], add_generation_prompt=True)
        prompt_len = min(common_prefix_length(prompt, ids(conv["prompt"] + conv[side]))
                         for side in ("chosen", "rejected"))  # where TRL starts the completion
        (kept if prompt_len < max_length else removed).append(pair)
    return kept, removed


def opening_pairs(prompts: list[str]) -> list[dict[str, Any]]:
    """For each prompt, the refusal opening as 'chosen' and the helpful opening as 'rejected': scored like a
    preference pair, log p(chosen) - log p(rejected) is the model's lean towards refusing that prompt."""
    return [{"prompt": p, "chosen": REFUSAL_OPENING, "rejected": HELPFUL_OPENING} for p in prompts]


# --- the DPO loss and implicit rewards -----------------------------------------------------------------------

def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float):
    """DPO's sigmoid loss from the summed log-probabilities of each answer under the policy and the reference
    (1-D tensors, one value per pair). Returns (mean loss, chosen rewards, rejected rewards); reward = β·log π/π_ref."""
    import torch.nn.functional as F

    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    return loss, chosen_rewards.detach(), rejected_rewards.detach()


def sequence_logps(model, batch: dict[str, Any]):
    """Summed log-probability of the completion tokens of each row of a TRL preference batch (input_ids,
    attention_mask, completion_mask), computed from the full logits."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["input_ids"][:, 1:].unsqueeze(-1)
    token_logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets).squeeze(-1)
    return (token_logps * batch["completion_mask"][:, 1:]).sum(dim=-1)


def pair_scores(model, batches, beta: float, desc: str | None = None) -> list[dict[str, float]]:
    """For each pair of `batches` (TRL preference batches: chosen rows, then rejected rows): the log-probabilities
    under the policy (adapter on) and the reference (adapter off), token counts, and the implicit rewards.
    With `desc`, a progress bar of that name is shown."""
    import torch

    rows, was_training = [], model.training
    model.eval()
    with torch.no_grad():
        for batch in ui.progress(batches, show=desc is not None, desc=desc, leave=False):
            batch = {k: v.to(model.device) for k, v in batch.items() if hasattr(v, "to")}
            policy = sequence_logps(model, batch)
            with model.disable_adapter():
                ref = sequence_logps(model, batch)
            tokens = batch["completion_mask"][:, 1:].sum(dim=-1)
            (pc, pr), (rc, rr), (nc, nr) = policy.chunk(2), ref.chunk(2), tokens.chunk(2)
            for i in range(len(pc)):
                rows.append({"policy_chosen": pc[i].item(), "policy_rejected": pr[i].item(),
                             "ref_chosen": rc[i].item(), "ref_rejected": rr[i].item(),
                             "tokens_chosen": int(nc[i]), "tokens_rejected": int(nr[i]),
                             "reward_chosen": beta * (pc[i] - rc[i]).item(),
                             "reward_rejected": beta * (pr[i] - rr[i]).item()})
    model.train(was_training)
    return rows


def score_table(rows: list[dict[str, float]], pairs: list[dict[str, Any]]):
    """pair_scores rows joined with their pairs' prompt and criterion (a pandas DataFrame), checking none is lost."""
    import pandas as pd

    if len(rows) != len(pairs):
        raise ValueError(f"{len(pairs)} pairs but {len(rows)} scores: TRL dropped pairs whose prompt fills max_length "
                         "— remove them first with fit_max_length, or raise max_length")
    table = pd.DataFrame(rows)
    table.insert(0, "criterion", [p.get("criterion") for p in pairs])
    table.insert(0, "prompt", [p["prompt"] for p in pairs])
    return table


def preference_accuracy(chosen, rejected) -> float:
    """Share of pairs whose chosen answer scores higher; a tie counts half (a coin flip: no preference)."""
    chosen, rejected = list(chosen), list(rejected)
    if len(chosen) != len(rejected) or not chosen:
        raise ValueError(f"need as many chosen as rejected scores, at least one; got {len(chosen)} and {len(rejected)}")
    return sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected)) / len(chosen)


def accuracy_before_after(table) -> dict[str, dict[str, float]]:
    """Held-out preference accuracy before (reference = adapter off) and after DPO, by two rankings: the implicit
    reward β·log(π/π_ref) (zero for every pair before training: all ties) and the log-likelihood per token."""
    t = table
    zeros = [0.0] * len(t)
    return {
        "implicit reward": {"before": preference_accuracy(zeros, zeros),
                            "after": preference_accuracy(t.reward_chosen, t.reward_rejected)},
        "log-likelihood per token": {
            "before": preference_accuracy(t.ref_chosen / t.tokens_chosen, t.ref_rejected / t.tokens_rejected),
            "after": preference_accuracy(t.policy_chosen / t.tokens_chosen, t.policy_rejected / t.tokens_rejected)},
    }


# --- reward metrics over training ----------------------------------------------------------------------------

def reward_history(log_history: list[dict[str, Any]]):
    """The reward metrics TRL's DPOTrainer logged, one row per logged training step (a pandas DataFrame)."""
    import pandas as pd

    rows = [{"step": e["step"], "loss": e.get("loss"), **{k: e[k] for k in REWARD_KEYS}}
            for e in log_history if all(k in e for k in REWARD_KEYS)]
    if not rows:
        raise ValueError("no reward metrics in this log history: train with trl's DPOTrainer and logging_steps >= 1")
    return pd.DataFrame(rows).set_index("step")


def plot_reward_metrics(histories: dict[str, Any], title: str = "Implicit rewards on the training pairs",
                        betas: dict[str, float] | None = None):
    """Left: rewards of chosen and rejected answers and their margin; right: preference accuracy; one color per run.
    `histories` maps a run name to its reward_history table. With `betas` (run name -> β) the rewards are divided
    by β, giving log-ratios log(π/π_ref) that compare across β. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (run, h) in enumerate(histories.items()):
        color, scale = f"C{i}", 1.0 / betas[run] if betas else 1.0
        left.plot(h.index, scale * h["rewards/margins"], "-", color=color, lw=2, label=f"{run}: margin")
        left.plot(h.index, scale * h["rewards/chosen"], "--", color=color, lw=1, label=f"{run}: chosen")
        left.plot(h.index, scale * h["rewards/rejected"], ":", color=color, lw=1, label=f"{run}: rejected")
        right.plot(h.index, h["rewards/accuracies"], "-o", color=color, ms=3, label=run)
    left.axhline(0, color="grey", lw=0.8)
    ylabel = "log-ratio  log(π/π_ref) = reward / β  (nats)" if betas else "implicit reward  β·log(π/π_ref)"
    left.set(xlabel="step", ylabel=ylabel, title=title)
    right.set(xlabel="step", ylabel="share of the batch with chosen > rejected", ylim=(-0.05, 1.05),
              title="Preference accuracy per training batch")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --- answers before and after --------------------------------------------------------------------------------

def refuses(text: str) -> bool:
    """True when an answer opens by declining (a plain keyword check on its first 80 characters)."""
    return any(m in text[:80].lower().replace("’", "'") for m in REFUSAL_MARKERS)


def require_chat_template(folder: str | Path) -> None:
    """Raise DataError when a model folder has no chat template, which chat preference pairs need."""
    folder = Path(folder)
    config = folder / "tokenizer_config.json"
    if not ((folder / "chat_template.jinja").exists() or (
            config.exists() and "chat_template" in json.loads(config.read_text(encoding="utf-8")))):
        raise DataError(f"{folder} has no chat template, which chat preference pairs need: save the tokenizer of a "
                        "chat model beside it, or leave MODEL_NAME=None for the profile's model")


# --- verdicts computed from the run ----------------------------------------------------------------------------

def seed_summary(accuracies: dict[int, dict[str, float]]) -> dict[str, float]:
    """Held-out preference accuracy over seeds ({seed: {'before', 'after'}}): the mean before and after, the mean
    gain (after - before), its spread as the standard deviation over seeds ('sd', 0 for one seed) and as the range
    ('spread', max - min), and the smallest per-seed gain."""
    if not accuracies:
        raise ValueError("no seeds to summarise")
    gains = [a["after"] - a["before"] for a in accuracies.values()]
    mean = sum(gains) / len(gains)
    sd = (sum((g - mean) ** 2 for g in gains) / (len(gains) - 1)) ** 0.5 if len(gains) > 1 else 0.0
    return {"seeds": len(gains), "before": sum(a["before"] for a in accuracies.values()) / len(gains),
            "after": sum(a["after"] for a in accuracies.values()) / len(gains),
            "gain": mean, "sd": sd, "spread": max(gains) - min(gains), "lowest": min(gains)}


def heldout_verdict(summary: dict[str, float], train_after: float, min_gain: float = 0.15) -> str:
    """The held-out result in one sentence, from seed_summary's numbers and the training pairs' accuracy after DPO:
    a gain counts as learned when it is at least `min_gain`, larger than its standard deviation over seeds, and
    every seed gained; the range over seeds is said either way."""
    s = summary
    said = (f"Over {s['seeds']} seeds, held-out preference accuracy went from {s['before']:.2f} to {s['after']:.2f} "
            f"(mean gain {s['gain']:+.2f}, standard deviation over seeds {s['sd']:.2f}, range {s['spread']:.2f}; "
            f"training pairs {train_after:.2f})")
    if s["gain"] >= min_gain and s["gain"] > s["sd"] and s["lowest"] > 0:
        band = (f", though one seed alone lands anywhere in a {s['spread']:.2f}-wide band"
                if s["spread"] >= s["gain"] else "")
        return said + f": every seed gained, and the preference carried over to pairs never trained on{band}."
    if s["gain"] > 0:
        return said + (f": a gain, but under {min_gain:+.2f}, within the seeds' disagreement, or not on every seed, "
                       "so it may be luck; the training pairs were learned more than the rubric.")
    return said + ": no gain on pairs never trained on; the training pairs were memorised, the rubric not learned."


def beta_verdict(rows: list[dict[str, float]], noise: float) -> str:
    """The β comparison in one or two sentences, from its rows ({'beta', 'drift per token (nats)',
    'held-out accuracy'}); held-out accuracies that differ by no more than `noise` (the spread over seeds) are
    called the same."""
    rows = sorted(rows, key=lambda r: r["beta"])
    drift = [r["drift per token (nats)"] for r in rows]
    betas = ", ".join(f"{r['beta']:g}" for r in rows)
    steady = all(a > b for a, b in zip(drift, drift[1:]))
    said = (f"From β = {betas}, the drift per token went " + " → ".join(f"{d:.2f}" for d in drift) + " nats: "
            + ("the larger β, the closer the policy stayed to the reference. " if steady else
               "it did not fall steadily as β grew, so this run does not show β holding the policy back. "))
    acc = [r["held-out accuracy"] for r in rows]
    if max(acc) - min(acc) <= noise:
        return said + (f"Held-out accuracy ({', '.join(f'{a:.2f}' for a in acc)}) differs by no more than the "
                       f"spread over seeds ({noise:.2f}): no β generalised better here.")
    best = rows[acc.index(max(acc))]["beta"]
    return said + (f"Held-out accuracy ({', '.join(f'{a:.2f}' for a in acc)}) was highest at β = {best:g}, by more "
                   f"than the spread over seeds ({noise:.2f}).")


def stop_verdict(rates: dict[str, float], prompts: int, max_new_tokens: int) -> str:
    """How often free generation ended by itself within `max_new_tokens`, before vs after ({'before', 'after'})."""
    said = (f"Of {prompts} free answers, {rates['before']:.0%} ended with the end-of-turn token within "
            f"{max_new_tokens} tokens before DPO and {rates['after']:.0%} after")
    if rates["after"] < rates["before"]:
        return said + ": tuning made the model stop less often."
    return said + (": tuning kept the model's habit of ending its turn." if rates["after"] == rates["before"] else
                   ": tuning made the model end its turn more often.")
