"""The craft exercises' checks (utils.exercises): the course's own answer (the notebook's solution cell, or the lesson
code it reimplements) passes on several seeds, and for each exercise a deliberately wrong but plausible answer is
rejected through checks.check with a message naming the input it got wrong."""
import json
import re
from collections import Counter

import pandas as pd
import pytest
import torch

from tools.instructor import SOLUTION_TAG
from utils import bpe, checks, exercises, formats, models, squad
from utils.dpo import dpo_loss
from utils.paths import ROOT


@pytest.fixture(scope="module")
def tok():
    return models.load_tokenizer("local:tiny-llama")


def solution(notebook: str, name: str):
    """The function `name` as the notebook's solution cell defines it: the course's reference answer."""
    for cell in json.loads((ROOT / notebook).read_text(encoding="utf-8"))["cells"]:
        source = "".join(cell["source"])
        if SOLUTION_TAG in cell["metadata"].get("tags", []) and f"def {name}(" in source:
            namespace = {}
            exec(source, namespace)
            return namespace[name]
    raise LookupError(f"{notebook} has no solution cell defining {name}")


def rejected(capsys, exercise: str, condition, hint: str = "a hint") -> str:
    """Run the check; assert it failed with a real explanation (not 'not done', not a crash); return the message."""
    assert not checks.check(exercise, condition, hint=hint)
    out = capsys.readouterr().out
    assert f"❌ Exercise {exercise}: " in out and f"Hint: {hint}" in out
    assert checks.NOT_DONE not in out and "your code raised" not in out, out
    return out


# --- 01.4 -----------------------------------------------------------------------------------------------------

def test_01_4_the_right_history_fit_passes_and_counting_message_text_only_is_rejected(tok, capsys):
    fit_history = solution("01_tokenization.ipynb", "fit_history")
    for seed in range(3):
        assert exercises.check_fit_history(fit_history, tok, seed=seed)

    def content_only(tokenizer, messages, max_tokens):  # forgets the template's markers: keeps too much
        system, turns = messages[:1], messages[1:]

        def size(ms):
            return sum(len(tokenizer(m["content"], add_special_tokens=False)["input_ids"]) for m in ms)

        while len(turns) > 1 and size(system + turns) > max_tokens:
            turns = turns[2:]
        return system + turns

    out = rejected(capsys, "01.4", lambda: exercises.check_fit_history(content_only, tok, seed=1))
    assert re.search(r"render to \d+ tokens, over the budget", out)

    def drops_system(tokenizer, messages, max_tokens):
        return fit_history(tokenizer, messages, max_tokens)[1:]

    out = rejected(capsys, "01.4", lambda: exercises.check_fit_history(drops_system, tok, seed=1))
    assert "dropped the system message" in out


# --- 02.4 -----------------------------------------------------------------------------------------------------

def test_02_4_the_course_functions_pass_and_an_overlapping_merge_or_a_set_count_is_rejected(capsys):
    for seed in range(3):
        assert exercises.check_bpe_functions(bpe.get_stats, bpe.merge, seed=seed)
    assert exercises.check_bpe_functions(lambda ids: Counter(zip(ids, ids[1:])), bpe.merge, seed=0)

    def merge_overlapping(ids, pair, idx):  # moves one step after a match, so 'aaa' becomes two new ids
        out = []
        for i in range(len(ids)):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                out.append(idx)
            elif i == 0 or (ids[i - 1], ids[i]) != pair:
                out.append(ids[i])
        return out

    out = rejected(capsys, "02.4", lambda: exercises.check_bpe_functions(bpe.get_stats, merge_overlapping, seed=0))
    assert "merge([7, 7, 7], (7, 7), 300) gave" in out and "expected [300, 7]" in out

    def count_once(ids):  # a set of pairs: every count is 1
        return dict.fromkeys(zip(ids, ids[1:]), 1)

    out = rejected(capsys, "02.4", lambda: exercises.check_bpe_functions(count_once, bpe.merge, seed=0))
    assert "the counts differ for" in out


# --- 03.4 -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unfreeze_for_budget():
    return solution("03_full_finetune_gpt2.ipynb", "unfreeze_for_budget")


def test_03_4_the_last_blocks_within_budget_pass_first_blocks_or_one_too_many_are_rejected(capsys,
                                                                                           unfreeze_for_budget):
    for seed in range(3):
        assert exercises.check_unfreeze_for_budget(unfreeze_for_budget, seed=seed)

    def first_blocks(model, budget):
        n = len(unfreeze_for_budget(model, budget)) - 1
        return [f"transformer.h.{i}." for i in range(n)] + ["transformer.ln_f."]

    out = rejected(capsys, "03.4", lambda: exercises.check_unfreeze_for_budget(first_blocks, seed=0))
    assert "trains the *last* blocks" in out

    def one_too_many(model, budget):  # adds the block that crosses the budget
        n, layers = len(unfreeze_for_budget(model, budget)) - 1, model.config.n_layer
        return [f"transformer.h.{i}." for i in range(max(0, layers - n - 1), layers)] + ["transformer.ln_f."]

    out = rejected(capsys, "03.4", lambda: exercises.check_unfreeze_for_budget(one_too_many, seed=0))
    assert "over the budget" in out

    def one_too_few(model, budget):  # stops one block early (every budget here fits at least one block)
        return unfreeze_for_budget(model, budget)[:-1]

    out = rejected(capsys, "03.4", lambda: exercises.check_unfreeze_for_budget(one_too_few, seed=0))
    assert re.search(r"you train \d+ block\(s\), but \d+ fit", out)


def test_03_4_short_training_lowers_the_loss_of_the_unfrozen_blocks(unfreeze_for_budget):
    model = models.load_causal_lm("local:tiny-gpt2", dtype=torch.float32)
    from utils import training

    training.freeze_all_but(model, unfreeze_for_budget(model, training.count_parameters(model)["total"] // 4))
    batch = torch.randint(0, model.config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(0))
    losses = exercises.short_training(model, batch, steps=6)
    assert len(losses) == 6 and losses[-1] < losses[0]


# --- 04.4 -----------------------------------------------------------------------------------------------------

def test_04_4_the_course_format_passes_and_a_mask_that_forgets_the_assistant_header_is_rejected(tok, capsys):
    def mask_course(tokenizer, messages):
        r = formats.response_only_labels(tokenizer, messages)
        return r["input_ids"], r["labels"]

    assert exercises.check_format_and_mask(formats.alpaca_to_chatml, mask_course, tok, seed=0)

    def masks_the_answer_too(tokenizer, messages):
        ids, labels = mask_course(tokenizer, messages)
        return ids, labels[:-1] + [formats.IGNORE_INDEX]  # 'no loss on the end token'

    out = rejected(capsys, "04.4", lambda: exercises.check_format_and_mask(formats.alpaca_to_chatml,
                                                                          masks_the_answer_too, tok, seed=0))
    assert "belongs to the answer" in out

    def input_on_its_own_line(record):  # a plausible layout, but not the one the course trains on
        user = record["instruction"] + ("\n" + record["input"] if record["input"] else "")
        return [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]

    out = rejected(capsys, "04.4", lambda: exercises.check_format_and_mask(input_on_its_own_line, mask_course, tok,
                                                                          seed=0))
    assert "a record with an input gave messages" in out


# --- 05.4 -----------------------------------------------------------------------------------------------------

def test_05_4_the_course_metric_passes_and_plausible_shortcuts_are_rejected(capsys):
    def course_f1(prediction, golds):
        return squad.score(prediction, golds)["f1"]

    for seed in range(3):
        assert exercises.check_squad_metric(squad.normalize_answer, course_f1, seed=seed)

    def punctuation_to_space(text):  # 'second-longest' becomes two tokens
        text = "".join(" " if ch in squad._PUNCTUATION else ch for ch in text.lower())
        return " ".join(w for w in text.split() if w not in ("a", "an", "the"))

    out = rejected(capsys, "05.4", lambda: exercises.check_squad_metric(punctuation_to_space, course_f1, seed=0))
    assert "normalize(" in out and "expected" in out

    def first_gold_only(prediction, golds):
        return squad.token_scores(prediction, golds[0])["f1"]

    out = rejected(capsys, "05.4", lambda: exercises.check_squad_metric(squad.normalize_answer, first_gold_only,
                                                                       seed=0))
    assert "f1('Volga Volga river', ['the Volga', 'Volga river'])" in out


# --- 06.3 -----------------------------------------------------------------------------------------------------

def test_06_3_the_course_loss_passes_and_a_summed_or_reference_free_loss_is_rejected(capsys):
    for seed in range(3):
        assert exercises.check_dpo_loss(lambda *a: dpo_loss(*a[:4], beta=a[4])[0], seed=seed)

    def summed(pc, pr, rc, rr, beta):
        return -torch.nn.functional.logsigmoid(beta * ((pc - rc) - (pr - rr))).sum()

    out = rejected(capsys, "06.3", lambda: exercises.check_dpo_loss(summed, seed=0))
    assert "the sum over the pairs: take the mean" in out

    def no_reference(pc, pr, rc, rr, beta):
        return -torch.nn.functional.logsigmoid(beta * (pc - pr)).mean()

    out = rejected(capsys, "06.3", lambda: exercises.check_dpo_loss(no_reference, seed=0))
    assert re.search(r"a batch of \d+ pairs with beta=0\.\d+ and margins .*: your loss [\d.]+, expected [\d.]+", out)

    def naive(pc, pr, rc, rr, beta):  # -log(sigmoid(x)) is inf once sigmoid(x) rounds to 0
        return -torch.log(torch.sigmoid(beta * ((pc - rc) - (pr - rr)))).mean()

    out = rejected(capsys, "06.3", lambda: exercises.check_dpo_loss(naive, seed=0))
    assert "your loss is inf" in out and "numerically stable" in out

    logps = [torch.tensor([-12.0, -30.5]), torch.tensor([-14.0, -29.0]), torch.tensor([-13.0, -30.0]),
             torch.tensor([-13.5, -29.5])]
    trl = float(dpo_loss(*logps, beta=0.1)[0])
    assert exercises.check_dpo_loss(lambda *a: dpo_loss(*a[:4], beta=a[4])[0], seed=0,
                                    trl_batch=(logps, 0.1, trl, 1e-5))
    out = rejected(capsys, "06.3", lambda: exercises.check_dpo_loss(
        lambda *a: dpo_loss(*a[:4], beta=a[4])[0], seed=0, trl_batch=(logps, 0.1, trl + 0.01, 1e-5)))
    assert "differs from TRL's" in out


# --- 07.4 -----------------------------------------------------------------------------------------------------

def test_07_4_the_best_agreement_within_budget_passes_and_the_biggest_file_that_fits_is_rejected(capsys):
    bench = pd.DataFrame({"size_mb": [15.7, 7.9, 4.2, 2.3], "top1_agreement": [1.0, 1.0, 0.99, 0.9]},
                         index=["transformers fp32", "llama.cpp f16", "llama.cpp q8_0", "llama.cpp q4_0"])
    choose_quant = solution("07_gguf_inference.ipynb", "choose_quant")
    assert choose_quant(bench, 10) == "llama.cpp f16" and choose_quant(bench, 2) is None
    for seed in range(3):
        assert exercises.check_pick_quant(choose_quant, bench, seed=seed)

    def biggest_that_fits(table, budget_mb):  # "more bits, more faithful": not true on ties and surprises
        fits = table[table["size_mb"] <= budget_mb]
        return None if fits.empty else fits["size_mb"].idxmax()

    out = rejected(capsys, "07.4", lambda: exercises.check_pick_quant(biggest_that_fits, bench, seed=0))
    assert "you picked" in out and "expected" in out


def test_a_learner_exception_inside_a_check_is_reported_not_raised(capsys):
    assert not checks.check("05.4", lambda: exercises.check_squad_metric(squad.normalize_answer, lambda p, g: 1 / 0),
                            hint="h")
    assert "your code raised ZeroDivisionError" in capsys.readouterr().out
