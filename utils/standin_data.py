"""The stand-in's datasets: wikitext-2-raw-v1, alpaca-cleaned, squad and hh-rlhf with their real schemas, built from
the shipped data plus the awkward rows the real datasets have, written as the prepared Arrow cache that `datasets`
reads with HF_DATASETS_OFFLINE=1."""
from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .data import corpus_text, load_instructions, load_preferences, load_squad_sample
from .manifest import Item

VALID_PASSAGES = 6  # SQuAD sample passages that form the validation split (60 questions: cpu evaluates 50)


def _features(kind: str):
    from datasets import Features, List, Value

    text = Value("string")
    return {"wikitext": Features({"text": text}),
            "alpaca": Features({"output": text, "input": text, "instruction": text}),
            "squad": Features({"id": text, "title": text, "context": text, "question": text,
                               "answers": {"text": List(text), "answer_start": List(Value("int32"))}}),
            "hh": Features({"chosen": text, "rejected": text})}[kind]


def wikitext_rows() -> dict[str, list[dict[str, str]]]:
    """WikiText's raw form: one row per line, each as ' <line> \n' (a space on both sides, as the real rows), ''
    for blank lines, ' = Heading = ' lines kept."""
    def rows(split: str) -> list[dict[str, str]]:
        return [{"text": f" {line.strip()} \n" if line.strip() else ""} for line in corpus_text(split).splitlines()]

    valid = rows("valid")
    return {"train": rows("train"), "validation": valid, "test": valid}


def alpaca_rows() -> dict[str, list[dict[str, str]]]:
    """The shipped instructions, plus one whose input is far longer than any profile's max_length (real
    alpaca-cleaned has inputs of thousands of characters)."""
    records = [{"output": r["output"], "input": r["input"], "instruction": r["instruction"]}
               for r in load_instructions()]
    article = " ".join(corpus_text("valid").split()[:900])
    records.insert(3, {"instruction": "Summarize the following article in two sentences.", "input": article,
                       "output": "The article describes its subject's history and features. It ends with its legacy."})
    return {"train": records}


def squad_rows() -> dict[str, list[dict[str, Any]]]:
    """SQuAD v1.1's flat schema: train has one answer per question (as the real train split), validation keeps
    every gold answer (a quarter of the questions have several); the splits come from different passages."""
    rows = load_squad_sample()
    contexts = list(dict.fromkeys(r["context"] for r in rows))
    held = set(contexts[-VALID_PASSAGES:])

    def record(r: dict[str, Any], all_golds: bool) -> dict[str, Any]:
        answers = r["answers"] if all_golds else {k: v[:1] for k, v in r["answers"].items()}
        return {"id": r["id"], "title": r["title"], "context": r["context"], "question": r["question"],
                "answers": answers}

    return {"train": [record(r, False) for r in rows if r["context"] not in held],
            "validation": [record(r, True) for r in rows if r["context"] in held]}


def _dialogue(*turns: str) -> str:
    return "".join(f"\n\n{'Human' if n % 2 == 0 else 'Assistant'}: {t}" for n, t in enumerate(turns)).rstrip(" ")


def hh_awkward_rows(pairs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The rows the real hh-rlhf has that a loader must survive: a multi-turn dialogue, identical sides, an empty
    answer, a rejected side whose prompt differs from the chosen one, and a prompt longer than max_length."""
    a, b = pairs[0], pairs[1]
    long_prompt = "Please read this and tell me what it is about. " + " ".join(corpus_text("valid").split()[:400])
    return [{"chosen": _dialogue(a["prompt"], a["chosen"], "Why?", "Because it is safer."),
             "rejected": _dialogue(a["prompt"], a["rejected"], "Why?", "No reason.")},
            {"chosen": _dialogue(a["prompt"], a["chosen"]), "rejected": _dialogue(a["prompt"], a["chosen"])},
            {"chosen": _dialogue(b["prompt"], b["chosen"]), "rejected": _dialogue(b["prompt"], "")},
            {"chosen": _dialogue(a["prompt"], a["chosen"]), "rejected": _dialogue(b["prompt"], b["rejected"])},
            {"chosen": _dialogue(long_prompt, b["chosen"]), "rejected": _dialogue(long_prompt, b["rejected"])}]


def hh_rows(data_dir: str) -> dict[str, list[dict[str, str]]]:
    """One hh-rlhf subset: harmless-base from the shipped harmless pairs, helpful-base from the helpful and
    truthful ones, as whole '\\n\\nHuman: …\\n\\nAssistant: …' transcripts; about a third of them form the test split,
    and each split gets the awkward rows."""
    criteria = {"harmless-base": ("harmless",), "helpful-base": ("helpful", "truthful")}[data_dir]
    pairs = [p for p in load_preferences() if p["criterion"] in criteria]
    rows = [{"chosen": _dialogue(p["prompt"], p["chosen"]), "rejected": _dialogue(p["prompt"], p["rejected"])}
            for p in pairs]
    cut = len(rows) * 2 // 3
    odd = hh_awkward_rows(pairs)
    return {"train": odd[:3] + rows[:cut] + odd[3:], "test": odd[:3] + rows[cut:] + odd[3:]}


ROWS: dict[str, tuple[str, Callable[..., dict[str, list[dict[str, Any]]]]]] = {
    "Salesforce/wikitext": ("wikitext", wikitext_rows), "yahma/alpaca-cleaned": ("alpaca", alpaca_rows),
    "rajpurkar/squad": ("squad", squad_rows), "Anthropic/hh-rlhf": ("hh", hh_rows)}
CONFIG_NAMES = {"rajpurkar/squad": "plain_text"}  # the config a plain load_dataset(id) prepares


def build_dataset(hf_home: Path, item: Item) -> Path:
    """Write `item`'s splits as datasets' prepared cache (dataset_info.json + <name>-<split>.arrow) where
    load_dataset(id, config, data_dir=…) finds it offline; returns the folder."""
    from datasets import BuilderConfig, DatasetInfo, SplitDict, SplitInfo
    from datasets.arrow_writer import ArrowWriter
    from datasets.naming import camelcase_to_snakecase

    if item.id not in ROWS:
        raise ValueError(f"the stand-in has no rows for dataset '{item.id}' (known: {sorted(ROWS)})")
    kind, make = ROWS[item.id]
    splits = make(item.data_dir) if item.data_dir else make()
    features = _features(kind)
    *namespace, name = item.id.split("/")
    name = camelcase_to_snakecase(name)
    config_name = item.config or CONFIG_NAMES.get(item.id, "default")
    kwargs = {"data_dir": item.data_dir} if item.data_dir else {}
    config_id = BuilderConfig(config_name).create_config_id(kwargs)
    digest = hashlib.sha256(json.dumps(splits, sort_keys=True).encode()).hexdigest()[:16]
    folder = hf_home / "datasets" / "___".join([*namespace, name]) / config_id / "0.0.0" / digest
    tmp = folder.with_name(digest + ".incomplete")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    split_dict = SplitDict(dataset_name=name)
    for split, rows in splits.items():
        with ArrowWriter(features=features, path=str(tmp / f"{name}-{split}.arrow")) as writer:
            for row in rows:
                writer.write(features.encode_example(row))
            count, size = writer.finalize()
        split_dict.add(SplitInfo(name=split, num_bytes=size, num_examples=count, dataset_name=name))
    DatasetInfo(dataset_name=name, config_name=config_id, features=features, splits=split_dict,
                version="0.0.0").write_to_directory(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder
