"""Load and validate the course's shipped data files (data/); bad records fail loudly, naming the record."""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CRITERIA = ("harmless", "truthful", "helpful")  # the order in which the rubric decides a pair


class DataError(ValueError):
    """A data file that is missing or a record that does not have the expected form."""


def data_path(name: str) -> Path:
    """Path of a shipped data file, with a clear error when it is missing."""
    path = DATA_DIR / name
    if not path.exists():
        raise DataError(f"data file '{path}' is missing — run from the repository root (git clone … && cd …) "
                        "or restore it with `git checkout -- data/`")
    return path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON-lines file; a line that is not a JSON object raises DataError with its line number."""
    path = Path(path)
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path.name} line {n}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path.name} line {n}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    if not records:
        raise DataError(f"{path.name}: no records")
    return records


def require_text(record: dict[str, Any], fields: Iterable[str], where: str, allow_empty: Iterable[str] = ()) -> None:
    """Check that `record` has each field as a string, non-empty unless listed in `allow_empty`."""
    allow_empty = set(allow_empty)
    for name in fields:
        if name not in record:
            raise DataError(f"{where}: missing field '{name}' (has {sorted(record)})")
        value = record[name]
        if not isinstance(value, str):
            raise DataError(f"{where}: field '{name}' must be a string, got {type(value).__name__}")
        if name not in allow_empty and not value.strip():
            raise DataError(f"{where}: field '{name}' is empty")


# --- the encyclopedic corpus -------------------------------------------------------------------------------

def corpus_text(split: str = "train") -> str:
    """The shipped English encyclopedic corpus ('train' or 'valid'), WikiText-style ` = Title = ` headings kept."""
    if split not in ("train", "valid"):
        raise DataError(f"unknown corpus split '{split}': use 'train' or 'valid'")
    files = sorted(data_path(f"corpus/{split}").glob("*.txt"))
    if not files:
        raise DataError(f"no corpus files in data/corpus/{split}/")
    text = "\n".join(f.read_text(encoding="utf-8").strip() + "\n" for f in files)
    if not text.strip():
        raise DataError(f"data/corpus/{split}/ holds only empty files")
    return text


def corpus_articles(split: str = "train") -> list[dict[str, str]]:
    """Split the corpus into articles: [{'id', 'title', 'text'}], the id naming the file and article number."""
    articles = []
    for f in sorted(data_path(f"corpus/{split}").glob("*.txt")):
        parts = re.split(r"^ = ([^=].*?) = *$", f.read_text(encoding="utf-8"), flags=re.M)
        for n, (title, text) in enumerate(zip(parts[1::2], parts[2::2]), start=1):
            articles.append({"id": f"{f.stem}-{n:02d}", "title": title.strip(), "text": text.strip()})
    return articles


def general_text() -> str:
    """The course's shipped English outside the encyclopedic corpus: instruction records, SQuAD passages and
    questions with their first answer, preference prompts with both answers (the smoke GPT-2's pre-training text)."""
    squad, records = load_squad_sample(), load_instructions()
    return "\n".join([*(" ".join(filter(None, (r["instruction"], r["input"], r["output"]))) for r in records),
                      *sorted({r["context"] for r in squad}),
                      *(r["question"] + " " + r["answers"]["text"][0] for r in squad),
                      *(p["prompt"] + " " + p["chosen"] + " " + p["rejected"] for p in load_preferences())])


# --- instructions (Alpaca form) ----------------------------------------------------------------------------

def validate_instruction(record: dict[str, Any], where: str = "record") -> dict[str, str]:
    """An Alpaca record: non-empty 'instruction' and 'output', an 'input' that may be empty."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a dict with instruction/input/output, got {type(record).__name__}")
    record = {"input": "", **record}
    require_text(record, ("instruction", "input", "output"), where, allow_empty=("input",))
    return {k: record[k] for k in ("instruction", "input", "output")}


def load_instructions(path: str | Path | None = None) -> list[dict[str, str]]:
    """The shipped instruction set (data/instructions.jsonl), every record validated."""
    path = Path(path) if path else data_path("instructions.jsonl")
    return [validate_instruction(r, f"{path.name} record {i}") for i, r in enumerate(read_jsonl(path), start=1)]


# --- SQuAD v1.1 ---------------------------------------------------------------------------------------------

def flatten_squad(doc: dict[str, Any], source: str = "squad") -> list[dict[str, Any]]:
    """SQuAD v1.1 JSON -> flat records {id, title, context, question, answers: {text: [...], answer_start: [...]}},
    the layout of the Hub's `rajpurkar/squad`; every answer must be the span at its offset."""
    if "data" not in doc:
        raise DataError(f"{source}: not SQuAD v1.1 JSON (no top-level 'data')")
    rows, seen = [], set()
    for article in doc["data"]:
        for paragraph in article.get("paragraphs", []):
            context = paragraph.get("context", "")
            for qa in paragraph.get("qas", []):
                where = f"{source} question {qa.get('id', '?')}"
                require_text(qa, ("id", "question"), where)
                if not context.strip():
                    raise DataError(f"{where}: empty context")
                if qa["id"] in seen:
                    raise DataError(f"{where}: duplicate id")
                seen.add(qa["id"])
                answers = qa.get("answers") or []
                if not answers:
                    raise DataError(f"{where}: no answers")
                for a in answers:
                    start, text = a.get("answer_start"), a.get("text", "")
                    if not text or not isinstance(start, int) or context[start:start + len(text)] != text:
                        raise DataError(f"{where}: answer {text!r} is not the context span at offset {start}")
                rows.append({"id": qa["id"], "title": article.get("title", ""), "context": context,
                             "question": qa["question"],
                             "answers": {"text": [a["text"] for a in answers],
                                         "answer_start": [a["answer_start"] for a in answers]}})
    if not rows:
        raise DataError(f"{source}: no questions")
    return rows


def load_squad_sample(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The shipped SQuAD-format sample (data/squad_sample.json) as flat, validated records."""
    path = Path(path) if path else data_path("squad_sample.json")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path.name}: not valid JSON ({err.msg} at line {err.lineno})") from None
    return flatten_squad(doc, path.name)


# --- preference pairs ---------------------------------------------------------------------------------------

def deciding_criterion(chosen: dict[str, int], rejected: dict[str, int]) -> str:
    """The rubric's rule: the first of harmless, truthful, helpful on which the two answers' scores differ."""
    for name in CRITERIA:
        if chosen[name] != rejected[name]:
            return name
    raise DataError("the two answers score the same on every criterion: a tie, not a preference pair")


def validate_pair(record: dict[str, Any], where: str = "pair") -> dict[str, Any]:
    """A preference pair: non-empty prompt/chosen/rejected that differ; rubric scores, when present, must agree."""
    require_text(record, ("prompt", "chosen", "rejected"), where)
    if record["chosen"].strip() == record["rejected"].strip():
        raise DataError(f"{where}: chosen and rejected are the same text — a pair must differ")
    if "chosen_scores" in record:
        decided = deciding_criterion(record["chosen_scores"], record["rejected_scores"])
        if record["chosen_scores"][decided] <= record["rejected_scores"][decided]:
            raise DataError(f"{where}: the rejected answer wins on '{decided}', so chosen/rejected are swapped")
        if record.get("criterion", decided) != decided:
            raise DataError(f"{where}: criterion '{record['criterion']}' but the scores are decided by '{decided}'")
    return record


def load_preferences(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The shipped rubric-labeled preference pairs (data/preferences.jsonl), every pair validated."""
    path = Path(path) if path else data_path("preferences.jsonl")
    return [validate_pair(r, f"{path.name} pair {r.get('id', i)}") for i, r in enumerate(read_jsonl(path), start=1)]


def load_retrieval_questions(path: str | Path | None = None) -> list[dict[str, str]]:
    """The shipped retrieval questions (data/retrieval_questions.jsonl): `question`, the `source` article id that
    answers it, and a short `answer` found in that article's text."""
    path = Path(path) if path else data_path("retrieval_questions.jsonl")
    rows = read_jsonl(path)
    for i, row in enumerate(rows, start=1):
        for field in ("question", "source", "answer"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise DataError(f"{path.name} record {i}: field '{field}' must be a non-empty string")
    return rows
