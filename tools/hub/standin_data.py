"""The stand-in's datasets: wikitext-2-raw-v1, alpaca-cleaned, squad and hh-rlhf with their real schemas and their
real repositories' file layouts (parquet, JSON, jsonl.gz, dataset cards with their YAML `configs`), built from the
shipped data plus the awkward rows the real datasets have."""
from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from utils.data import corpus_text, load_instructions, load_preferences, load_squad_sample

from .standin import publish, scratch

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


ALPACA_EMPTY = 2  # rows of the stand-in's alpaca with an empty instruction or output (the real one has such rows)


def alpaca_rows() -> dict[str, list[dict[str, str]]]:
    """The shipped instructions, plus one whose input is far longer than any profile's max_length (real
    alpaca-cleaned has inputs of thousands of characters) and ALPACA_EMPTY rows with an empty output or instruction."""
    records = [{"output": r["output"], "input": r["input"], "instruction": r["instruction"]}
               for r in load_instructions()]
    article = " ".join(corpus_text("valid").split()[:900])
    records.insert(3, {"instruction": "Summarize the following article in two sentences.", "input": article,
                       "output": "The article describes its subject's history and features. It ends with its legacy."})
    records.insert(5, {"instruction": "Describe the picture.", "input": "", "output": ""})
    records.insert(9, {"instruction": "", "input": "", "output": "Hello."})
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


def red_team_rows() -> list[dict[str, Any]]:
    """hh-rlhf's red-team-attempts have another schema (a transcript with ratings, no chosen/rejected): the reason a
    loader must name the subset it reads."""
    return [{"transcript": _dialogue(p["prompt"], p["rejected"]), "min_harmlessness_score_transcript": -1.5,
             "num_params": "52B", "model_type": "plain lm", "rating": 2.0, "task_description": p["prompt"],
             "tags": None, "is_upworker": False} for p in load_preferences()[:4]]


# Dataset cards: the published cards' YAML front matter (`configs` where the repository has them: a repository without
# a loading script needs them to name its configs; `default: true` marks the config a plain load_dataset(id) takes).
CARDS = {
    "Salesforce/wikitext": """---
language:
- en
license:
- cc-by-sa-3.0
- gfdl
pretty_name: WikiText
configs:
- config_name: wikitext-2-raw-v1
  data_files:
  - split: test
    path: wikitext-2-raw-v1/test-*
  - split: train
    path: wikitext-2-raw-v1/train-*
  - split: validation
    path: wikitext-2-raw-v1/validation-*
---
""",
    "rajpurkar/squad": """---
language:
- en
license: cc-by-sa-4.0
pretty_name: SQuAD
configs:
- config_name: plain_text
  data_files:
  - split: train
    path: plain_text/train-*
  - split: validation
    path: plain_text/validation-*
  default: true
---
""",
    "Anthropic/hh-rlhf": """---
license: mit
tags:
- human-feedback
---
""",
    "yahma/alpaca-cleaned": """---
license: cc-by-4.0
language:
- en
tags:
- instruction-finetuning
pretty_name: Alpaca-Cleaned
task_categories:
- text-generation
---
""",
}
STANDIN_NOTE = ("\n# Course stand-in\n\nRows built from the course's shipped data: the real schema and layout, not the "
                "real data.\n")


def _parquet(rows: list[dict[str, Any]], kind: str, path: Path) -> None:
    from datasets import Dataset

    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows, features=_features(kind)).to_parquet(str(path))


def _jsonl_gz(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _wikitext(folder: Path) -> None:
    for split, rows in wikitext_rows().items():
        _parquet(rows, "wikitext", folder / "wikitext-2-raw-v1" / f"{split}-00000-of-00001.parquet")


def _squad(folder: Path) -> None:
    for split, rows in squad_rows().items():
        _parquet(rows, "squad", folder / "plain_text" / f"{split}-00000-of-00001.parquet")


def _hh(folder: Path) -> None:
    for subset in ("harmless-base", "helpful-base"):
        for split, rows in hh_rows(subset).items():
            _jsonl_gz(rows, folder / subset / f"{split}.jsonl.gz")
    _jsonl_gz(red_team_rows(), folder / "red-team-attempts" / "red_team_attempts.jsonl.gz")


def _alpaca(folder: Path) -> None:
    (folder / "alpaca_data_cleaned.json").write_text(json.dumps(alpaca_rows()["train"], indent=4, ensure_ascii=False),
                                                     encoding="utf-8")


WRITERS: dict[str, Callable[[Path], None]] = {"Salesforce/wikitext": _wikitext, "rajpurkar/squad": _squad,
                                              "Anthropic/hh-rlhf": _hh, "yahma/alpaca-cleaned": _alpaca}


def build_dataset(root: Path, repo_id: str) -> Path:
    """Write dataset `repo_id` in its real repository's layout, with its card, under the stand-in Hub's root."""
    if repo_id not in WRITERS:
        raise ValueError(f"the stand-in has no rows for dataset '{repo_id}' (known: {sorted(WRITERS)})")
    folder = scratch(root)
    try:
        WRITERS[repo_id](folder)
        (folder / "README.md").write_text(CARDS[repo_id] + STANDIN_NOTE, encoding="utf-8")
        return publish(root, "dataset", repo_id, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
