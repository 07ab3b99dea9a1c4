"""Prompt formats: Alpaca records and prompts, ChatML and Llama-2 chat templates, conversion between Alpaca and
chat messages, and response-only labels (the loss sees only the answer's tokens)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from .data import DataError, load_instructions, validate_instruction

# Llama-2 chat: <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ...
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' }}"
    "{% if loop.first and system %}{{ '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' }}{% endif %}"
    "{{ message['content'].strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'].strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

# ChatML: <|im_start|>role\ncontent<|im_end|>\n ... ending with an open assistant turn when asked to.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

TEMPLATES = {"llama2": LLAMA2_CHAT_TEMPLATE, "chatml": CHATML_TEMPLATE}

# The two prompts of Stanford Alpaca: one for records with an input, one for records without.
ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)

# How an Alpaca input joins the instruction in a chat user turn (and where chatml_to_alpaca splits it again).
INPUT_SEPARATOR = "\n\nInput:\n"


# --- Alpaca --------------------------------------------------------------------------------------------------

def alpaca_prompt(record: dict[str, Any]) -> str:
    """The Alpaca prompt for a record: the with-input template when `input` is non-empty, else the no-input one."""
    record = validate_instruction(record)
    template = ALPACA_WITH_INPUT if record["input"].strip() else ALPACA_NO_INPUT
    return template.format(**record)


def alpaca_text(record: dict[str, Any]) -> str:
    """A whole Alpaca training text: the prompt followed by the expected output."""
    return alpaca_prompt(record) + validate_instruction(record)["output"]


def load_alpaca(name: str | Path, limit: int | None = None) -> tuple[list[dict[str, str]], Counter]:
    """Alpaca records from 'local:instructions' (the shipped set), a .jsonl file or a Hub dataset name (its train
    split, the first `limit` valid records), and the count of dropped records by reason. The course's own files must
    be valid (a bad record raises DataError naming it); a Hub dataset's empty instructions or outputs are real-world
    data, dropped and counted."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of records or None, got {limit}")
    if str(name) == "local:instructions":
        return load_instructions()[:limit], Counter()
    if str(name).endswith(".jsonl"):
        return load_instructions(name)[:limit], Counter()
    from datasets import load_dataset

    records, dropped = [], Counter()
    for i, row in enumerate(load_dataset(str(name), split="train"), start=1):
        try:
            records.append(validate_instruction(dict(row), f"{name} record {i}"))
        except DataError as err:
            dropped[str(err).split(": ", 1)[-1]] += 1
        if limit and len(records) == limit:
            break
    return records, dropped


# --- chat messages -------------------------------------------------------------------------------------------

def alpaca_to_chatml(record: dict[str, Any], system: str | None = None) -> list[dict[str, str]]:
    """An Alpaca record as chat messages: [system], user (instruction, then the input after INPUT_SEPARATOR),
    assistant (the output)."""
    record = validate_instruction(record)
    user = record["instruction"] + (INPUT_SEPARATOR + record["input"] if record["input"] else "")
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]


def chatml_to_alpaca(messages: list[dict[str, str]]) -> dict[str, str]:
    """One user turn and one assistant answer (after an optional system message) back to an Alpaca record, the
    user turn split at its first INPUT_SEPARATOR. A system message has no place in Alpaca and is dropped."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) and {"role", "content"} <= set(m)
                                                 for m in messages):
        raise ValueError("messages must be a list of {'role': ..., 'content': ...} dicts")
    turns = [m for m in messages if m["role"] != "system"]
    roles = [m["role"] for m in turns]
    if roles != ["user", "assistant"]:
        raise ValueError(f"an Alpaca record holds exactly one user turn and one assistant answer; got roles {roles} "
                         "(split multi-turn chats into one record per answer first)")
    instruction, _, input_text = turns[0]["content"].partition(INPUT_SEPARATOR)
    return validate_instruction({"instruction": instruction, "input": input_text, "output": turns[1]["content"]},
                                "converted chat")


def prompt_completion(record: dict[str, Any], system: str | None = None) -> dict[str, list[dict[str, str]]]:
    """TRL's conversational prompt/completion form: the messages before the answer, and the answer. The SFT
    trainer renders both with the tokenizer's chat template and computes the loss on the completion only."""
    messages = alpaca_to_chatml(record, system)
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def render_chat(tokenizer, messages: list[dict[str, str]], template: str | None = None,
                add_generation_prompt: bool = False) -> str:
    """Messages as text through `tokenizer.apply_chat_template`: with the tokenizer's own chat template
    (template=None) or a named one, 'llama2' or 'chatml'."""
    if template is not None and template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}: use None (the tokenizer's own) or one of {sorted(TEMPLATES)}")
    return tokenizer.apply_chat_template(messages, chat_template=TEMPLATES.get(template), tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


# --- response-only labels ------------------------------------------------------------------------------------

IGNORE_INDEX = -100  # the label PyTorch's cross-entropy skips


def response_only_labels(tokenizer, messages: list[dict[str, str]], template: str | None = None
                         ) -> dict[str, Any]:
    """Token ids of a conversation whose last message is the assistant's answer, and labels that are -100 on
    every prompt token (the text up to where the answer starts) and the token id on every answer token."""
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("the last message must be the assistant's answer: it is what the loss is computed on")
    kwargs = {"chat_template": TEMPLATES.get(template), "tokenize": True, "return_dict": True}
    # 1. the prompt alone, rendered as the model sees it when it must answer
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, **kwargs)["input_ids"]
    # 2. the whole conversation, answer included: it must start with exactly those prompt tokens
    full = tokenizer.apply_chat_template(messages, **kwargs)["input_ids"]
    if full[:len(prompt)] != prompt:
        raise DataError("the chat template renders the prompt differently when the answer follows it, so the "
                        "prompt tokens cannot be told from the answer tokens; fix the template")
    # 3. labels: -100 (ignored by the loss) over the prompt, the token ids over the answer
    labels = [IGNORE_INDEX] * len(prompt) + full[len(prompt):]
    return {"input_ids": full, "labels": labels, "prompt_length": len(prompt)}


# --- response format adherence -------------------------------------------------------------------------------

def ends_turn(model, tokenizer, messages: list[dict[str, str]]) -> bool:
    """True when, read up to the end of the assistant's reference answer (rendered by the chat template), the model's
    most likely next token is the one the trained format puts there: the end-of-turn (eos) token."""
    import torch

    example = response_only_labels(tokenizer, messages)
    answer = example["input_ids"][example["prompt_length"]:]
    if tokenizer.eos_token_id not in answer:
        raise DataError("the chat template puts no end-of-turn token after the answer: there is no format to follow")
    end = example["prompt_length"] + answer.index(tokenizer.eos_token_id)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([example["input_ids"][:end]], device=model.device)).logits
    return int(logits[0, -1].argmax()) == tokenizer.eos_token_id


def chat_prompts(tokenizer, records: list[dict[str, str]]) -> list[str]:
    """Each Alpaca record's prompt as the chat template renders it for generation: the answer left to the model."""
    return [render_chat(tokenizer, alpaca_to_chatml(r)[:-1], add_generation_prompt=True) for r in records]


def format_adherence(model, tokenizer, records: list[dict[str, str]]) -> float:
    """The share of Alpaca `records` whose reference answer the model ends with the end-of-turn token (`ends_turn`)."""
    if not records:
        raise ValueError("no records to rate")
    model.eval()
    return sum(ends_turn(model, tokenizer, alpaca_to_chatml(r)) for r in records) / len(records)
