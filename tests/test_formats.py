import json
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from utils import data, formats, models
from utils.data import DataError


@pytest.fixture(scope="module")
def tok():
    return models.load_tokenizer("local:tiny-llama")


RECORD = {"instruction": "Shorten this.", "input": "It is the case that it rains.", "output": "It rains."}
NO_INPUT = {"instruction": "Name a colour.", "input": "", "output": "Blue."}


def test_alpaca_prompt_uses_the_template_that_fits_the_record():
    assert formats.alpaca_prompt(RECORD) == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\nShorten this.\n\n"
        "### Input:\nIt is the case that it rains.\n\n### Response:\n")
    assert formats.alpaca_prompt(NO_INPUT) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nName a colour.\n\n### Response:\n")
    no_input_field = {"instruction": "Name a colour.", "output": "Blue."}
    assert formats.alpaca_prompt(no_input_field) == formats.alpaca_prompt(NO_INPUT)
    assert formats.alpaca_text(NO_INPUT).endswith("### Response:\nBlue.")


def test_alpaca_to_chatml_puts_the_input_in_the_user_turn():
    assert formats.alpaca_to_chatml(RECORD, system="Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Shorten this.\n\nInput:\nIt is the case that it rains."},
        {"role": "assistant", "content": "It rains."}]
    assert formats.prompt_completion(NO_INPUT) == {"prompt": [{"role": "user", "content": "Name a colour."}],
                                                   "completion": [{"role": "assistant", "content": "Blue."}]}


def test_round_trip_alpaca_chatml_alpaca_on_the_shipped_records():
    records = data.load_instructions()
    assert all(formats.chatml_to_alpaca(formats.alpaca_to_chatml(r, system="S")) == r for r in records)


text = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() and formats.INPUT_SEPARATOR not in s)


@settings(max_examples=200, deadline=None)
@given(instruction=text, input_text=st.one_of(st.just(""), text), output=text)
def test_round_trip_holds_for_any_text_without_the_separator(instruction, input_text, output):
    record = {"instruction": instruction, "input": input_text, "output": output}
    assert formats.chatml_to_alpaca(formats.alpaca_to_chatml(record)) == record


@pytest.mark.parametrize("messages,error,message", [
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
     ValueError, "exactly one user turn and one assistant answer"),
    ([{"role": "assistant", "content": "b"}], ValueError, r"got roles \['assistant'\]"),
    ([{"role": "user"}], ValueError, "list of {'role'"),
    ("user: hi", ValueError, "list of {'role'"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": " "}], DataError,
     "converted chat: field 'output' is empty"),
])
def test_chatml_to_alpaca_rejects_what_alpaca_cannot_hold(messages, error, message):
    with pytest.raises(error, match=message):
        formats.chatml_to_alpaca(messages)


def test_bad_alpaca_record_is_rejected_before_formatting():
    with pytest.raises(DataError, match="field 'output' is empty"):
        formats.alpaca_to_chatml({"instruction": "Do it.", "output": ""})
    with pytest.raises(DataError, match="missing field 'instruction'"):
        formats.alpaca_prompt({"output": "x"})


def test_render_chat_llama2_and_chatml_exactly(tok):
    messages = formats.alpaca_to_chatml(NO_INPUT, system="Be brief.")
    assert formats.render_chat(tok, messages, "llama2") == (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nName a colour. [/INST] Blue. </s>")
    assert formats.render_chat(tok, messages) == formats.render_chat(tok, messages, "llama2")  # the model's own
    assert formats.render_chat(tok, messages[:-1], "chatml", add_generation_prompt=True) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n"
        "<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="unknown template 'alpaca'"):
        formats.render_chat(tok, messages, "alpaca")


@pytest.mark.parametrize("template", [None, "chatml"])
def test_labels_are_minus_100_exactly_on_the_prompt_tokens(tok, template):
    messages = formats.alpaca_to_chatml(RECORD, system="Be brief.")
    out = formats.response_only_labels(tok, messages, template)
    prompt_text = formats.render_chat(tok, messages[:-1], template, add_generation_prompt=True)
    prompt_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
    p = out["prompt_length"]
    assert p == len(prompt_ids) and out["input_ids"][:p] == prompt_ids
    assert out["labels"][:p] == [formats.IGNORE_INDEX] * p
    assert out["labels"][p:] == out["input_ids"][p:] and len(out["labels"]) == len(out["input_ids"])
    answer = tok.decode(out["input_ids"][p:], skip_special_tokens=True)
    assert answer.strip() == "It rains." + ("<|im_end|>" if template == "chatml" else "")


def test_labels_need_the_answer_last(tok):
    with pytest.raises(ValueError, match="last message must be the assistant's answer"):
        formats.response_only_labels(tok, [{"role": "user", "content": "Hi"}])


def test_load_alpaca_shipped_file_limit_and_bad_records(tmp_path):
    assert formats.load_alpaca("local:instructions") == (data.load_instructions(), Counter())
    assert len(formats.load_alpaca("local:instructions", limit=5)[0]) == 5
    with pytest.raises(ValueError, match="limit must be a positive number"):
        formats.load_alpaca("local:instructions", limit=0)
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps(NO_INPUT) + "\n" + json.dumps({"instruction": "Do", "input": ""}) + "\n")
    with pytest.raises(DataError, match="mine.jsonl record 2: missing field 'output'"):
        formats.load_alpaca(path)


def test_load_alpaca_drops_and_counts_empty_hub_rows(monkeypatch):
    """Real alpaca-cleaned has rows with an empty instruction or output: a Hub dataset's are dropped and counted, and
    `limit` counts the records kept."""
    import datasets

    rows = [NO_INPUT, {**NO_INPUT, "output": ""}, {**NO_INPUT, "instruction": " "}, {**NO_INPUT, "output": ""},
            {**NO_INPUT, "output": "Fine."}, {**NO_INPUT, "output": "Also fine."}]
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: rows)
    records, dropped = formats.load_alpaca("someone/alpaca", limit=2)
    assert [r["output"] for r in records] == [NO_INPUT["output"], "Fine."]
    assert dropped == Counter({"field 'output' is empty": 2, "field 'instruction' is empty": 1})


class NextToken(torch.nn.Module):
    """A stand-in model whose most likely next token is always `token`."""

    def __init__(self, token: int, vocab: int):
        super().__init__()
        self.token, self.vocab, self.device = token, vocab, torch.device("cpu")
        self.seen = []

    def forward(self, input_ids):
        self.seen.append(input_ids[0].tolist())
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.token] = 1.0
        return SimpleNamespace(logits=logits)


def test_format_adherence_asks_for_the_end_of_turn_right_after_the_answer(tok):
    records = [RECORD, NO_INPUT]
    stops = NextToken(tok.eos_token_id, len(tok))
    assert formats.format_adherence(stops, tok, records) == 1.0
    full = formats.response_only_labels(tok, formats.alpaca_to_chatml(NO_INPUT))["input_ids"]
    assert stops.seen[-1] == full[:full.index(tok.eos_token_id)]  # read up to the answer's end, the eos not shown
    assert tok.decode(stops.seen[-1]).rstrip().endswith("Blue.")
    assert formats.format_adherence(NextToken(5, len(tok)), tok, records) == 0.0  # rambles on
    with pytest.raises(ValueError, match="no records"):
        formats.format_adherence(stops, tok, [])


def test_chat_prompts_end_where_the_answer_would_start(tok):
    prompt = formats.chat_prompts(tok, [RECORD])[0]
    full = formats.render_chat(tok, formats.alpaca_to_chatml(RECORD))
    assert full.startswith(prompt) and full[len(prompt):].strip().startswith("It rains.")
