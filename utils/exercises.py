"""Checks of the craft exercises (01.4 … 07.4): each takes the learner's answer, runs it on inputs generated here
(never shown in the notebook, new on every run unless a seed is given) against the course's lesson code or the
properties a right answer has, and raises checks.Mismatch naming the first input it gets wrong. Returns True when
every input passes. The reference answers live in the notebooks' solution cells and the tests, not here."""
from __future__ import annotations

import math
import random
from collections.abc import Callable

from . import bpe, formats, squad
from .checks import Mismatch
from .inference import trim_history

WORDS = ("river stone garden music paper winter bridge market engine forest letter silver window valley harbour "
         "candle mirror orchard lantern meadow").split()


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


# --- 01.4 · fit a conversation into the context window ----------------------------------------------------------

def prompt_tokens(tokenizer, messages: list[dict[str, str]]) -> int:
    """Tokens of the prompt the model reads: the messages rendered by the chat template, assistant turn opened."""
    return len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"])


def check_fit_history(fit: Callable, tokenizer, seed: int | None = None, cases: int = 12) -> bool:
    """01.4: `fit(tokenizer, messages, max_tokens)` keeps what inference.trim_history (07's chat) keeps, counting the
    rendered chat template, on generated conversations."""
    rng = random.Random(seed)
    for _ in range(cases):
        messages = [{"role": "system", "content": _sentence(rng, 4, 12)}]
        for _ in range(rng.randint(1, 5)):
            messages += [{"role": "user", "content": _sentence(rng, 3, 20) + "?"},
                         {"role": "assistant", "content": _sentence(rng, 3, 30) + "."}]
        messages.append({"role": "user", "content": _sentence(rng, 3, 20) + "?"})
        low, high = prompt_tokens(tokenizer, [messages[0], messages[-1]]), prompt_tokens(tokenizer, messages)
        budget = rng.randint(low, high + 3)
        expected = trim_history(messages, lambda ms: prompt_tokens(tokenizer, ms), budget)[0]
        got = fit(tokenizer, [dict(m) for m in messages], budget)
        if got == expected:
            continue
        case = f"a conversation of {len(messages)} messages ({high} prompt tokens) and a budget of {budget}"
        if not isinstance(got, list) or not all(m in messages for m in got):
            raise Mismatch(f"{case}: return a list of the original message dicts, unchanged")
        if got[:1] != messages[:1] or got[-1:] != messages[-1:]:
            raise Mismatch(f"{case}: you dropped the system message or the last question; both must stay")
        n = prompt_tokens(tokenizer, got)
        if n > budget:
            raise Mismatch(f"{case}: your {len(got)} messages render to {n} tokens, over the budget")
        raise Mismatch(f"{case}: you kept {len(got)} messages ({n} tokens), but {len(expected)} messages fit "
                       f"({prompt_tokens(tokenizer, expected)} tokens): drop only the oldest whole exchanges")
    return True


# --- 02.4 · BPE training from your own get_stats and merge --------------------------------------------------------

def bpe_merges(get_stats: Callable, merge: Callable, ids: list[int], n_merges: int) -> list[tuple[int, int]]:
    """The merges learned on `ids` by the training loop of part 1, with the given counting and merging functions."""
    merges = []
    for new_id in range(256, 256 + n_merges):
        stats = get_stats(ids)
        if not stats:
            break
        pair = bpe.best_pair(dict(stats))
        ids = merge(ids, pair, new_id)
        merges.append(pair)
    return merges


def check_bpe_functions(get_stats: Callable, merge: Callable, seed: int | None = None, n_merges: int = 40) -> bool:
    """02.4: the pair counts, the merges of tricky sequences and the merges learned on three generated texts
    equal those of utils.bpe."""
    for ids, pair in [([7, 7, 7], (7, 7)), ([7, 7, 7, 7], (7, 7)), ([1, 2, 1, 2, 1], (1, 2)), ([3], (3, 3))]:
        if list(merge(list(ids), pair, 300)) != bpe.merge(ids, pair, 300):
            raise Mismatch(f"merge({ids}, {pair}, 300) gave {merge(list(ids), pair, 300)}, "
                           f"expected {bpe.merge(ids, pair, 300)}")
    rng = random.Random(seed)
    pieces = ["ab", "ra", "ca", "da", "aa", "aaa", "é", "zü", " ", " the", "ing", "東"]
    for _ in range(3):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(150, 300)))
        ids = list(text.encode("utf-8"))
        stats = get_stats(list(ids))
        if not isinstance(stats, dict) or dict(stats) != bpe.get_stats(ids):
            wrong = sorted(p for p, n in bpe.get_stats(ids).items() if not isinstance(stats, dict)
                           or stats.get(p) != n)[:3]
            raise Mismatch(f"get_stats should return a dict {{pair: count}} of adjacent pairs; on a generated text "
                           f"of {len(ids)} bytes the counts differ for {wrong}")
        mine, course = bpe_merges(get_stats, merge, ids, n_merges), bpe_merges(bpe.get_stats, bpe.merge, ids,
                                                                                  n_merges)
        if mine != course:
            k = next((i for i, (a, b) in enumerate(zip(mine, course)) if a != b), min(len(mine), len(course)))
            yours, theirs = (m[k] if k < len(m) else "no merge" for m in (mine, course))
            raise Mismatch(f"on a generated text of {len(ids)} bytes, merge {k + 1} differs: yours {yours}, "
                           f"the course's {theirs}")
    return True


# --- 03.4 · unfreeze the last blocks that fit a budget ------------------------------------------------------------

def _block_sizes(model) -> tuple[list[int], int]:
    """Parameters of each GPT-2 block and of the final layer norm."""
    sizes = [0] * model.config.n_layer
    for name, p in model.named_parameters():
        if name.startswith("transformer.h."):
            sizes[int(name.split(".")[2])] += p.numel()
    return sizes, sum(p.numel() for n, p in model.named_parameters() if n.startswith("transformer.ln_f."))


def check_unfreeze_for_budget(choose: Callable, seed: int | None = None, cases: int = 6) -> bool:
    """03.4: on generated GPT-2 shapes (meta device: no memory) and budgets, `choose(model, budget)` returns
    prefixes that train the final layer norm and the most last blocks within the budget."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from .training import count_parameters, freeze_all_but

    rng = random.Random(seed)
    for _ in range(cases):
        config = GPT2Config(n_layer=rng.randint(3, 8), n_embd=rng.choice([32, 64, 96]), n_head=4, vocab_size=500,
                            n_positions=64, bos_token_id=0, eos_token_id=0)
        with torch.device("meta"):
            model = GPT2LMHeadModel(config)
        sizes, norm = _block_sizes(model)
        budget = rng.randint(norm + sizes[0], norm + sum(sizes) + sizes[0] - 1)
        case = f"a GPT-2 of {config.n_layer} blocks of {sizes[0]:,} parameters and a budget of {budget:,}"
        model.requires_grad_(True)
        prefixes = list(choose(model, budget))
        trainable = freeze_all_but(model, prefixes)
        n = count_parameters(model)["trainable"]
        blocks = sorted({int(name.split(".")[2]) for name in trainable if name.startswith("transformer.h.")})
        if n > budget:
            raise Mismatch(f"{case}: your prefixes train {n:,} parameters, over the budget")
        if any(not name.startswith(("transformer.h.", "transformer.ln_f.")) for name in trainable):
            raise Mismatch(f"{case}: only blocks and ln_f may train, not {trainable[0]}")
        if not any(name.startswith("transformer.ln_f.") for name in trainable):
            raise Mismatch(f"{case}: the final layer norm (ln_f) sits after the last block: train it too")
        if blocks != list(range(config.n_layer - len(blocks), config.n_layer)):
            raise Mismatch(f"{case}: you train blocks {blocks}; partial fine-tuning trains the *last* blocks, "
                           "so the backward pass stops early")
        fit = next(k for k in range(config.n_layer, -1, -1) if norm + k * sizes[0] <= budget)  # blocks are equal
        if len(blocks) != fit:
            raise Mismatch(f"{case}: you train {len(blocks)} block(s), but {fit} fit")
    return True


def short_training(model, input_ids, steps: int = 8, lr: float = 1e-3) -> list[float]:
    """Train `model`'s trainable weights for `steps` AdamW steps on one batch; the loss of each step."""
    import torch

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


# --- 04.4 · ChatML messages and the response-only label mask ------------------------------------------------------

def check_format_and_mask(to_messages: Callable, mask_prompt: Callable, tokenizer, seed: int | None = None,
                          cases: int = 8) -> bool:
    """04.4: on generated Alpaca records, `to_messages(record)` equals formats.alpaca_to_chatml and
    `mask_prompt(tokenizer, messages)` gives the ids and labels of formats.response_only_labels."""
    rng = random.Random(seed)
    for k in range(cases):
        record = {"instruction": _sentence(rng, 3, 10).capitalize() + ".",
                  "input": _sentence(rng, 2, 12) if k % 2 else "", "output": _sentence(rng, 2, 15) + "."}
        expected = formats.alpaca_to_chatml(record)
        got = to_messages(dict(record))
        if got != expected:
            raise Mismatch(f"a record {'with' if record['input'] else 'without'} an input gave messages {got}, "
                           f"expected {expected}")
        truth = formats.response_only_labels(tokenizer, expected)
        result = mask_prompt(tokenizer, [dict(m) for m in expected])
        ids, labels = result if isinstance(result, tuple) else (None, None)
        if ids is None or list(ids) != truth["input_ids"]:
            raise Mismatch("mask_prompt should return (input_ids, labels), the ids being the whole conversation "
                           "rendered by the tokenizer's chat template")
        for i, (mine, right) in enumerate(zip(labels, truth["labels"])):
            if mine != right:
                where = "the prompt" if right == formats.IGNORE_INDEX else "the answer"
                token = tokenizer.convert_ids_to_tokens(truth["input_ids"][i])
                raise Mismatch(f"position {i} (token {token!r}) belongs to {where}: its label should be {right}, "
                               f"not {mine} (prompt: the first {truth['prompt_length']} tokens)")
        if len(labels) != len(truth["labels"]):
            raise Mismatch(f"{len(labels)} labels for {len(truth['labels'])} tokens: one label per token")
    return True


# --- 05.4 · the SQuAD normalization and token F1 --------------------------------------------------------------

def squad_cases(rng: random.Random, n: int) -> list[tuple[str, list[str]]]:
    """Generated (prediction, golds) pairs with articles, punctuation, case, spacing and several golds."""
    vocab = ["Volga", "river", "second-longest", "U.S.", "rock'n'roll", "2,850", "(about)", "km;", "Another",
             "theatre", "Europe!", "an", "A", "the", "The", "a", "Anna", "then", "east", "\"quoted\"", "40%"]
    cases = [("the Volga", ["Volga"]), ("", ["Vienna"]), ("Volga Volga river", ["the Volga", "Volga river"]),
             ("an another theatre", ["a theatre"]), ("U.S.A.", ["USA"])]
    while len(cases) < n:
        golds = [" ".join(rng.choices(vocab, k=rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
        pred = rng.choice(golds).split() + rng.choices(vocab, k=rng.randint(0, 4))
        rng.shuffle(pred)
        cases.append(((" " * rng.randint(1, 2)).join(pred), golds))
    return cases


def check_squad_metric(normalize: Callable, f1: Callable, seed: int | None = None, cases: int = 200) -> bool:
    """05.4: `normalize(text)` equals squad.normalize_answer and `f1(prediction, golds)` squad.score's F1 (0–1)
    on generated cases."""
    for prediction, golds in squad_cases(random.Random(seed), cases):
        for text in (prediction, *golds):
            if normalize(text) != squad.normalize_answer(text):
                raise Mismatch(f"normalize({text!r}) gave {normalize(text)!r}, expected "
                               f"{squad.normalize_answer(text)!r}")
        mine, right = f1(prediction, list(golds)), squad.score(prediction, golds)["f1"]
        if not isinstance(mine, (int, float)) or not math.isclose(mine, right, abs_tol=1e-9):
            raise Mismatch(f"f1({prediction!r}, {golds}) gave {mine!r}, expected {right:.4f} (between 0 and 1)")
    return True


# --- 06.3 · the DPO loss from four log-probabilities -------------------------------------------------------------

def check_dpo_loss(loss_fn: Callable, seed: int | None = None, batches: int = 6, trl_batch: tuple | None = None
                   ) -> bool:
    """06.3: `loss_fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)` equals the mean DPO loss of
    utils.dpo.dpo_loss on generated batches and betas, stays finite on pairs ranked very wrong or very right, and,
    given trl_batch = (four log-probability tensors, beta, TRL's loss, tolerance), equals TRL's loss on that batch."""
    import torch

    from .dpo import dpo_loss

    gen = torch.Generator().manual_seed(seed if seed is not None else random.randrange(2**31))
    cases = []
    for _ in range(batches):
        n = int(torch.randint(1, 9, (1,), generator=gen))
        beta = float(torch.empty(1).uniform_(0.05, 0.5, generator=gen))
        cases.append(([-30 * torch.rand(n, generator=gen) for _ in range(4)], beta))
    far = torch.tensor([-20.0, -4000.0])  # one pair ranked very right, one very wrong: margins of ±200 and more
    cases.append(([far, far.flip(0), torch.full((2,), -2000.0), torch.full((2,), -2000.0)], cases[0][1]))
    for logps, beta in cases:
        n, right = len(logps[0]), float(dpo_loss(*logps, beta=beta)[0])
        mine = loss_fn(*[t.clone() for t in logps], beta)
        if not (isinstance(mine, float) or (torch.is_tensor(mine) and mine.numel() == 1)):
            raise Mismatch("return one number, the loss of the batch (a float or a 0-d tensor)")
        margins = beta * ((logps[0] - logps[2]) - (logps[1] - logps[3]))
        case = f"a batch of {n} pairs with beta={beta:.3f} and margins from {margins.min():.1f} to {margins.max():.1f}"
        if not math.isfinite(float(mine)):
            raise Mismatch(f"{case}: your loss is {float(mine)}; with large margins log(sigmoid(x)) underflows: "
                           "compute it in a numerically stable way")
        if not math.isclose(float(mine), right, rel_tol=1e-5, abs_tol=1e-5):
            sums = " (that is the sum over the pairs: take the mean)" if math.isclose(float(mine), n * right,
                                                                                     rel_tol=1e-5) else ""
            raise Mismatch(f"{case}: your loss {float(mine):.5f}, expected {right:.5f}{sums}")
    if trl_batch is not None:
        logps, beta, trl_loss, tolerance = trl_batch
        mine = float(loss_fn(*[t.detach().float().cpu() for t in logps], beta))
        if not abs(mine - trl_loss) <= tolerance:
            raise Mismatch(f"on the batch of section 8, your loss {mine:.6f} differs from TRL's {trl_loss:.6f}")
    return True


# --- 07.4 · the quantization that fits a memory budget -------------------------------------------------------------

def quant_tables(rng: random.Random, n: int):
    """Generated benchmark tables: sizes shrink with fewer bits; agreement mostly does, with ties and surprises."""
    import pandas as pd

    names = ["fp32", "f16", "q8_0", "q6_K", "q5_0", "q4_K_M", "q4_0", "q3_K", "q2_K"]
    tables = []
    for _ in range(n):
        chosen = sorted(rng.sample(range(len(names)), rng.randint(3, 6)))
        size, agreement, rows = rng.uniform(50, 500), 1.0, {}
        for i in chosen:
            rows[names[i]] = {"size_mb": round(size, 1), "top1_agreement": round(agreement, 3)}
            size *= rng.uniform(0.4, 0.8)
            agreement = min(1.0, max(0.0, agreement - rng.choice([0.0, 0.0, 0.01, 0.05, -0.02])))
        tables.append(pd.DataFrame(rows).T)
    return tables


def check_pick_quant(pick: Callable, benchmark=None, seed: int | None = None, cases: int = 30) -> bool:
    """07.4: `pick(table, budget_mb)` names the row of best top1_agreement among those whose size_mb fits (the
    smaller on ties; None when none fits), on generated tables and budgets, and on `benchmark`."""
    rng = random.Random(seed)
    tables = quant_tables(rng, cases) + ([benchmark[["size_mb", "top1_agreement"]]] if benchmark is not None else [])
    for table in tables:
        sizes = sorted(table["size_mb"])
        for budget in [sizes[0] / 2, *sizes, rng.uniform(sizes[0], sizes[-1] * 1.2)]:
            mine, fits = pick(table.copy(), budget), table[table["size_mb"] <= budget]
            best = fits[fits["top1_agreement"] == fits["top1_agreement"].max()]  # the most faithful that fit
            right = None if fits.empty else best["size_mb"].idxmin()  # ... and of those, the smallest
            if mine != right:
                raise Mismatch(f"with a budget of {budget:.6f} MB (a size equal to it fits) and this table:\n"
                               f"{table.to_string()}\nyou picked {mine!r}, expected {right!r}")
    return True

