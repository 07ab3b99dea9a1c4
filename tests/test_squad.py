"""utils.squad: the hand-written SQuAD v1.1 metric against cases worked out from the official rules, the splits,
prompts, the cleaning rule, batched generation and the rating sheet."""
import pytest

from utils import models, squad
from utils.data import load_squad_sample

# (prediction, golds, exact match, precision, recall, F1), each worked out by hand from the v1.1 rules:
# lowercase -> drop ASCII punctuation -> drop a/an/the -> collapse whitespace; tokens shared with multiplicity;
# the best F1 over the golds (P and R are that gold's).
CASES = [
    # punctuation and case vanish
    ("Paris!", ["Paris"], 1, 1, 1, 1),
    ("  the   VOLGA ", ["Volga"], 1, 1, 1, 1),
    # punctuation goes before the articles: "the u.s." -> "the us" -> "us"
    ("the U.S.", ["US"], 1, 1, 1, 1),
    # articles are whole words only: "theater" keeps its "the"
    ("The theater", ["theater"], 1, 1, 1, 1),
    # a longer span: pred "in black forest of germany" (5 tokens) vs gold "black forest" (2): 2 shared
    ("in the Black Forest of Germany", ["the Black Forest"], 0, 2 / 5, 1, 4 / 7),
    # several golds: EM against the second; the comma in "2,850" is dropped, giving "2850"
    ("2,850 kilometres", ["roughly 2,850 kilometres", "2,850 kilometres", "2,850"], 1, 1, 1, 1),
    # several golds, none exact: "about 2850" vs "roughly 2850 kilometres" F1 0.4, vs "2850" F1 2/3 (kept)
    ("about 2,850", ["roughly 2,850 kilometres", "2,850"], 0, 1 / 2, 1, 2 / 3),
    # shared tokens count with multiplicity: "volga volga" vs "volga" shares one token
    ("the the Volga Volga", ["Volga"], 0, 1 / 2, 1, 2 / 3),
    # empty prediction
    ("", ["Volga"], 0, 0, 0, 0),
    # no token in common
    ("the Danube", ["the Volga"], 0, 0, 0, 0),
    # a hyphen is deleted, not turned into a space: "wellknown" vs "well known"
    ("well known", ["well-known"], 0, 0, 0, 0),
    # an en dash is not ASCII punctuation: it stays inside the token
    ("Rhine–Main–Danube Canal", ["the Rhine–Main–Danube Canal"], 1, 1, 1, 1),
    ("Rhine Main Danube Canal", ["Rhine–Main–Danube Canal"], 0, 1 / 4, 1 / 2, 1 / 3),
    # v1.1 quirk: a gold that normalizes to nothing matches an empty prediction exactly but has no tokens for F1
    ("The", ["the"], 1, 0, 0, 0),
]


@pytest.mark.parametrize("prediction, golds, em, precision, recall, f1", CASES)
def test_score_follows_the_official_v1_1_rules(prediction, golds, em, precision, recall, f1):
    got = squad.score(prediction, golds)
    assert got["exact_match"] == em
    assert got["precision"] == pytest.approx(precision)
    assert got["recall"] == pytest.approx(recall)
    assert got["f1"] == pytest.approx(f1)


def test_normalize_answer_applies_the_steps_in_order():
    assert squad.normalize_answer("  A cat, an Owl and THE dog!  ") == "cat owl and dog"
    assert squad.normalize_answer("Anna's atheist theme") == "annas atheist theme"


def test_score_all_averages_in_percent():
    got = squad.score_all(["Paris", "in the Black Forest of Germany"], [["Paris"], ["the Black Forest"]])
    assert got["exact_match"] == pytest.approx(50.0)
    assert got["f1"] == pytest.approx(100 * (1 + 4 / 7) / 2)
    assert got["precision"] == pytest.approx(100 * (1 + 2 / 5) / 2)
    assert got["recall"] == pytest.approx(100.0)


def test_metric_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one gold"):
        squad.score("Paris", [])
    with pytest.raises(TypeError, match="list of answer strings"):
        squad.score("Paris", "Paris")
    with pytest.raises(TypeError, match="must be a string"):
        squad.score(None, ["Paris"])
    with pytest.raises(ValueError, match="pair up"):
        squad.score_all(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="no predictions"):
        squad.score_all([], [])


def test_split_by_context_never_shares_a_passage():
    rows = load_squad_sample()
    train, held = squad.split_by_context(rows, 0.25, seed=0)
    assert len(train) + len(held) == len(rows)
    assert squad.overlap(train, held) == {"shared ids": 0, "shared passages": 0}
    assert len({r["context"] for r in held}) == round(0.25 * len({r["context"] for r in rows}))
    assert squad.split_by_context(rows, 0.25, seed=0) == (train, held)
    assert squad.overlap(rows[:5], rows[3:8]) == {"shared ids": 2, "shared passages": 1}


def test_split_sample_and_loader_reject_bad_input():
    rows = load_squad_sample()
    with pytest.raises(ValueError, match="between 0 and 1"):
        squad.split_by_context(rows, 1.5)
    with pytest.raises(ValueError, match="at least two"):
        squad.split_by_context(rows[:3], 0.5)
    with pytest.raises(ValueError, match="cannot draw 500"):
        squad.sample(rows, 500)
    assert squad.sample(rows, 10, seed=1)[:4] == squad.sample(rows, 4, seed=1)


def test_clean_answer_is_one_rule():
    assert squad.clean_answer(' "the Volga."\nQuestion: next') == "the Volga"
    assert squad.clean_answer("  Donaueschingen  ") == "Donaueschingen"
    assert squad.clean_answer("\nlater line") == ""
    assert squad.clean_answer("U.S.") == "U.S"


@pytest.fixture(scope="module")
def tiny():
    tok = models.load_tokenizer("local:tiny-llama")
    return tok, models.load_causal_lm("local:tiny-llama")


def test_prompts_use_the_llama2_chat_format(tiny):
    tok, _ = tiny
    train, held = squad.split_by_context(load_squad_sample(), 0.25)
    row = held[0]
    zero = squad.build_prompt(tok, row, "instruction")
    assert zero.startswith("<s>[INST] <<SYS>>\n" + squad.SYSTEM_PROMPT + "\n<</SYS>>\n\nContext: ")
    assert zero.endswith(f"Question: {row['question']} [/INST]")
    few = squad.build_prompt(tok, row, "demonstration", shots=train[:2])
    assert few.count("[INST]") == 3 and few.count("<<SYS>>") == 1
    assert f"[/INST] {train[0]['answers']['text'][0]} </s><s>[INST] Context: {train[1]['context']}" in few
    assert few.endswith(zero.split("<</SYS>>\n\n")[1])
    completion = squad.build_prompt(tok, row, "completion")
    assert completion.startswith("<s>Context: ") and completion.endswith("\nAnswer:") and "[INST]" not in completion
    with pytest.raises(ValueError, match="unknown prompting style"):
        squad.build_prompt(tok, row, "chatty")
    with pytest.raises(ValueError, match="needs example questions"):
        squad.build_prompt(tok, row, "demonstration")


def test_fitting_skips_rows_too_long_to_train_on(tiny):
    tok, _ = tiny
    rows = load_squad_sample()
    lengths = [len(tok.apply_chat_template(squad.messages(r, r["answers"]["text"][0]), tokenize=True,
                                           return_dict=True)["input_ids"]) for r in rows[:10]]
    limit = sorted(set(lengths))[len(set(lengths)) // 2]  # some rows fit, some do not
    kept, skipped = squad.fitting(tok, rows[:10], 3, limit)
    assert len(kept) == 3 and skipped == sum(n > limit for n in lengths[:rows.index(kept[-1]) + 1])
    with pytest.raises(ValueError, match="raise max_length"):
        squad.fitting(tok, rows[:10], 10, limit)


def test_generate_answers_batches_and_stops_at_a_line_break(tiny):
    tok, model = tiny
    rows = load_squad_sample()[:4]
    prompts = [squad.build_prompt(tok, r, "completion") for r in rows]
    one_batch = models.greedy_generate(model, tok, prompts, max_new_tokens=12, batch_size=4, stop="\n")
    assert len(one_batch) == 4 and all(isinstance(a, str) for a in one_batch)
    assert all("\n" not in a.rstrip("\n") for a in one_batch)
    assert models.greedy_generate(model, tok, prompts, max_new_tokens=12, batch_size=3, stop="\n") == one_batch
    with pytest.raises(ValueError, match="at least 1"):
        models.greedy_generate(model, tok, prompts, max_new_tokens=0)


def test_rating_sheet_round_trip(tmp_path):
    import pandas as pd

    rows = [dict(r, prediction=r["answers"]["text"][0] if i % 2 else "no idea")
            for i, r in enumerate(load_squad_sample()[:12])]
    path = squad.export_sheet(rows, tmp_path / "sheet.csv", n=6, seed=0)
    sheet = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(sheet.columns) == list(squad.SHEET_COLUMNS) and len(sheet) == 6
    assert (sheet["rating"] == "").all()
    empty = squad.summarize_sheet(path)
    assert empty.loc["(unrated)", "count"] == 6 and empty.loc["correct", "count"] == 0

    sheet.loc[:2, "rating"] = ["correct", " Wrong", "partially"]
    sheet.to_csv(path, index=False)
    assert squad.export_sheet(rows, path, n=3, seed=1) == path  # a rated sheet is kept, not overwritten
    assert pd.read_csv(path, dtype=str, keep_default_na=False).equals(sheet)
    scores = pd.DataFrame({"id": [r["id"] for r in rows], "f1": range(12)}).set_index("id")
    summary = squad.summarize_sheet(path, scores)
    assert summary["count"].to_dict() == {"correct": 1, "partially": 1, "wrong": 1, "(unrated)": 3}
    assert summary.loc["wrong", "share of rated %"] == pytest.approx(100 / 3)
    assert summary.loc["correct", "mean f1"] == scores.loc[sheet.at[0, "id"], "f1"]

    sheet.loc[3, "rating"] = "maybe"
    sheet.to_csv(path, index=False)
    with pytest.raises(ValueError, match="row 5 .*'maybe' is not one of"):
        squad.summarize_sheet(path)
    sheet.drop(columns="rating").to_csv(path, index=False)
    with pytest.raises(ValueError, match="missing column"):
        squad.read_sheet(path)


def test_load_splits_uses_a_datasets_train_and_validation_splits(tmp_path):
    import json

    rows = load_squad_sample()
    train, held = squad.split_by_context(rows, 0.25)
    folder = tmp_path / "squad_like"
    folder.mkdir()
    for name, part in (("train", train), ("validation", held)):
        (folder / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in part))
    got_train, got_eval = squad.load_splits(str(folder))
    assert got_train == train and got_eval == held
    (folder / "validation.jsonl").unlink()
    with pytest.raises(squad.DataError, match=r"no \['validation'\] split"):
        squad.load_splits(str(folder))
    assert squad.load_splits(squad.LOCAL_SAMPLE) == squad.split_by_context(rows, 0.25)


def test_four_bit_config_computes_in_fp32_on_a_cpu_by_the_course_rule(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert models.four_bit_config().bnb_4bit_compute_dtype == torch.float32  # no GPU: no emulated bf16
    assert models.four_bit_config(torch.float16).bnb_4bit_compute_dtype == torch.float16


def test_a_finished_run_is_read_back_and_an_unfinished_one_redone(tmp_path):
    calls = []

    def make():
        calls.append(1)
        return ["Volga", "Vienna"]

    key = {"model": "m", "style": "instruction", "eval_ids": ["a", "b"]}
    first = squad.saved_run(tmp_path, "few-shot k=3 (demonstration)", key, make)
    assert first["raw"] == ["Volga", "Vienna"] and not first["reused"] and first["seconds"] >= 0
    again = squad.saved_run(tmp_path, "few-shot k=3 (demonstration)", key, make)
    assert again == {**first, "reused": True} and len(calls) == 1  # a rerun after an interruption: not generated
    squad.saved_run(tmp_path, "few-shot k=3 (demonstration)", {**key, "eval_ids": ["a"]}, make)
    assert len(calls) == 2  # other settings: other answers
    assert len(list(tmp_path.glob("few-shot-k-3-demonstration-*.json"))) == 2 and not list(tmp_path.glob("*.tmp"))


def test_bertscore_gives_an_empty_answer_zero_instead_of_failing():
    from bert_score import BERTScorer

    from utils import models

    scorer = BERTScorer(model_type=models.resolve("local:minilm"), num_layers=6)
    p, r, f = squad.bertscore(scorer, ["", "the Volga", "  "], ["Volga", "Volga", "Danube"])
    assert f[0] == p[0] == r[0] == 0.0 and f[2] == 0.0
    assert 50 < f[1] <= 100
    with pytest.raises(ValueError, match="pair up"):
        squad.bertscore(scorer, ["a"], [])


def test_greedy_generate_with_chat_answers_as_one_user_message(tiny):
    """chat=True renders each prompt as a single user turn: the same ids and answer as the template tokenized
    directly and generated on its own (how notebook 06 asks its probe prompts)."""
    import torch

    tok, model = tiny
    prompt = "Name a river in Europe."
    ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id)
    alone = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert models.greedy_generate(model, tok, [prompt], 10, batch_size=1, chat=True) == [alone]


def test_greedy_answers_say_whether_each_ended_by_itself(tiny):
    tok, model = tiny
    prompts = [squad.build_prompt(tok, r, "completion") for r in load_squad_sample()[:3]]
    free = models.greedy_answers(model, tok, prompts, max_new_tokens=12, batch_size=3)
    assert [a.raw for a in free] == models.greedy_generate(model, tok, prompts, 12, batch_size=3)
    assert all(a.stopped or a.tokens == 12 for a in free)  # not ended by itself: cut at the token limit
    cut = models.greedy_answers(model, tok, prompts, max_new_tokens=12, batch_size=3, stop=["\n", " "])
    for a in cut:  # a stop string ends the answer and is cut off its text
        assert a.stopped == (("\n" in a.raw) or (" " in a.raw)) and "\n" not in a.text and " " not in a.text
    assert models.stop_rate(cut) == sum(a.stopped for a in cut) / 3
    assert tok.eos_token_id in models.end_of_turn_ids(tok, model)
    with pytest.raises(ValueError, match="no answers"):
        models.stop_rate([])


def test_greedy_answers_can_block_a_repeated_ngram(tiny):
    import torch

    tok, model = tiny
    the = tok("the", add_special_tokens=False)["input_ids"][-1]
    hook = model.lm_head.register_forward_hook(  # 'the' always wins: greedy decoding would repeat it forever
        lambda module, args, out: out + 100 * torch.nn.functional.one_hot(torch.tensor(the), out.shape[-1]))
    try:
        looping = models.greedy_answers(model, tok, ["Hi"], max_new_tokens=8)[0]
        blocked = models.greedy_answers(model, tok, ["Hi"], max_new_tokens=8, no_repeat_ngram_size=3)[0]
    finally:
        hook.remove()
    assert looping.raw.split() == ["the"] * 8
    assert blocked.raw.split()[:2] == ["the", "the"] and blocked.raw != looping.raw  # the third id was blocked
