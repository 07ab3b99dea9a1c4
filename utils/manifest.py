"""What each notebook needs from the Hugging Face Hub per profile, read from the notebooks' own SETTINGS cells.

The notebooks' `SETTINGS` dicts are the one source of names; this module only knows which setting key holds what
(a model, a tokenizer, a dataset and how the course's loaders call `load_dataset` on it).
Usage: python -m utils.manifest [--profile cpu] [--nb 05]   (prints the list)
"""
from __future__ import annotations

import argparse
import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .env import PROFILES, ROOT

KINDS = ("model", "tokenizer", "dataset", "metric", "spacy", "nltk")
# Setting keys that name a model whose weights are loaded, and keys that name a model whose tokenizer alone is used.
MODEL_KEYS = ("model", "gpt2_model", "bertscore_model", "embedder", "speed_model")
TOKENIZER_KEYS = ("bert", "gpt2", "chat", "gpt2_tokenizer")
# How the course's loaders call load_dataset for a dataset setting: (data_dir, splits) per call.
# lm.load_texts('path:config') -> train + validation; formats.load_alpaca -> train; squad.load_splits -> train +
# validation; dpo.load_pairs -> data_dir harmless-base and helpful-base, train + test each.
DATASET_CALLS: dict[str, tuple[tuple[str | None, tuple[str, ...]], ...]] = {
    "Salesforce/wikitext": ((None, ("train", "validation")),),
    "yahma/alpaca-cleaned": ((None, ("train",)),),
    "rajpurkar/squad": ((None, ("train", "validation")),),
    "Anthropic/hh-rlhf": (("harmless-base", ("train", "test")), ("helpful-base", ("train", "test"))),
}
DATASET_KEYS = ("data", "dataset", "pairs")
# Datasets the loaders read through their files (hf_hub_download, then load_dataset("json", data_files=...)) instead of
# load_dataset(id): hh-rlhf's subsets have other schemas side by side, and datasets' offline cache cannot find a
# load_dataset(id, data_dir=...) prepared online (it is named after the resolved files, looked up by data_dir).
DATASET_FILES = {"Anthropic/hh-rlhf": "{data_dir}/{split}.jsonl.gz"}
METRIC_KEYS = ("metric",)  # evaluate.load(name) fetches the Space evaluate-metric/<name>
NLTK_DATA = "punkt_tab"  # what nltk_sentence_tokenizer(download=True) fetches


# What a first download of each item costs, in MB: one table, the source of every size the course states (05's first
# table, the README's download totals). Source: the published repositories' file listings on huggingface.co, counting
# the files the course downloads (cache.MODEL_FILES for a model, cache.TOKENIZER_FILES for a tokenizer alone: weights
# in their published dtype, tokenizer and config files; a dataset: the files of the configs or subsets loaded).
# Cross-checked totals (shared/notes/offline-stack.md): Llama-2-7B chat 13.5 GB, roberta-large 1.42 GB, a full cpu
# prefetch ≈ 2.8 GB, gpu ≈ 22 GB. The stand-in Hub's random-weight copies are the same size only for the weights.
HUB_MB = {
    ("model", "gpt2"): 550, ("tokenizer", "gpt2"): 2, ("model", "distilgpt2"): 355,
    ("tokenizer", "bert-base-uncased"): 1,
    ("model", "HuggingFaceTB/SmolLM2-135M-Instruct"): 273, ("tokenizer", "HuggingFaceTB/SmolLM2-135M-Instruct"): 4,
    ("model", "HuggingFaceTB/SmolLM2-360M-Instruct"): 728, ("model", "HuggingFaceTB/SmolLM2-1.7B-Instruct"): 3424,
    ("model", "TinyLlama/TinyLlama-1.1B-Chat-v1.0"): 2202, ("tokenizer", "TinyLlama/TinyLlama-1.1B-Chat-v1.0"): 2,
    ("model", "NousResearch/Llama-2-7b-chat-hf"): 13479, ("model", "roberta-large"): 1423,
    ("model", "sentence-transformers/all-MiniLM-L6-v2"): 92,
    ("dataset", "Salesforce/wikitext"): 8, ("dataset", "rajpurkar/squad"): 16, ("dataset", "yahma/alpaca-cleaned"): 44,
    ("dataset", "Anthropic/hh-rlhf"): 31, ("metric", "evaluate-metric/squad"): 0.01,
}


class ManifestError(ValueError):
    """A notebook whose SETTINGS cannot be read, or a dataset the loaders do not know."""


@dataclass(frozen=True)
class Item:
    """One thing a notebook needs: a model, a tokenizer, one dataset (config, data_dir, splits), spaCy or NLTK data.
    `required` is False for spaCy/NLTK data, which the notebook replaces with a fallback it names."""

    kind: str
    id: str
    config: str | None = None
    data_dir: str | None = None
    splits: tuple[str, ...] = ()
    setting: str = ""
    required: bool = True

    def label(self) -> str:
        """A readable one-line name, e.g. 'dataset Anthropic/hh-rlhf (data_dir harmless-base; train, test)'."""
        extra = [f"config {self.config}" if self.config else "", f"data_dir {self.data_dir}" if self.data_dir else "",
                 ", ".join(self.splits)]
        extra = "; ".join(e for e in extra if e)
        return f"{self.kind} {self.id}" + (f" ({extra})" if extra else "")


def notebooks() -> list[Path]:
    """The course's numbered notebooks, in order."""
    return sorted(ROOT.glob("[0-9][0-9]_*.ipynb"))


def notebook_path(nb: str) -> Path:
    """'05', '05_llama2_squad' or a path -> the notebook file; ManifestError naming the choices otherwise."""
    if Path(nb).suffix == ".ipynb" and Path(nb).is_file():
        return Path(nb)
    found = [p for p in notebooks() if p.stem == nb or p.stem.split("_")[0] == nb]
    if len(found) != 1:
        raise ManifestError(f"no notebook '{nb}': use one of " + ", ".join(p.stem.split("_")[0] for p in notebooks()))
    return found[0]


class _Opaque(str):
    """A setting computed at run time (e.g. os.cpu_count()): kept as its source text."""


def _value(node: ast.AST, names: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Dict):
        return {_value(k, names): _value(v, names) for k, v in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(e, names) for e in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -node.operand.value
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    return _Opaque(ast.unparse(node))


def settings(nb: str) -> dict[str, dict[str, Any]]:
    """The `SETTINGS = {...}` dict of notebook `nb`, read from its code without running it (names bound to
    constants earlier in the same cell, such as WIKITEXT, are substituted; anything computed stays as its source)."""
    path = notebook_path(nb)
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] != "code" or "SETTINGS" not in source:
            continue
        names: dict[str, Any] = {}
        for stmt in ast.parse(source).body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                value = _value(stmt.value, names)
                if stmt.targets[0].id == "SETTINGS":
                    if not isinstance(value, dict) or set(value) != set(PROFILES):
                        raise ManifestError(f"{path.name}: SETTINGS must be a dict with the keys {PROFILES}")
                    return value
                names[stmt.targets[0].id] = value
    raise ManifestError(f"{path.name} has no `SETTINGS = {{...}}` assignment in a code cell")


def dataset_files(item: Item) -> list[str]:
    """The repository files a dataset read through its files needs ([] for one read with load_dataset(id))."""
    pattern = DATASET_FILES.get(item.id)
    return [pattern.format(data_dir=item.data_dir, split=s) for s in item.splits] if pattern else []


def _dataset_items(key: str, value: str) -> list[Item]:
    path, _, config = value.partition(":")
    if path not in DATASET_CALLS:
        raise ManifestError(f"setting '{key}' names dataset '{path}', which the manifest does not know how the "
                            f"loaders read: add it to utils.manifest.DATASET_CALLS ({sorted(DATASET_CALLS)})")
    return [Item("dataset", path, config or None, data_dir, splits, key) for data_dir, splits in DATASET_CALLS[path]]


def items(profile_settings: dict[str, Any]) -> list[Item]:
    """What one profile's settings need from the Hub and the NLP data servers ('local:' names and the shipped
    data need nothing)."""
    out: list[Item] = []
    for key, value in profile_settings.items():
        if isinstance(value, _Opaque):  # computed in the notebook (e.g. lm.LOCAL_CORPUS): not a Hub name
            continue
        if key in DATASET_KEYS and isinstance(value, str) and not value.startswith("local") and value != "shipped":
            out += _dataset_items(key, value)
        elif not isinstance(value, str) or value.startswith("local:"):
            continue
        elif key in MODEL_KEYS:
            out.append(Item("model", value, setting=key))
        elif key in TOKENIZER_KEYS:
            out.append(Item("tokenizer", value, setting=key))
        elif key in METRIC_KEYS:  # optional: without it 05 skips its comparison with the official metric
            out.append(Item("metric", f"evaluate-metric/{value}", setting=key, required=False))
        elif key == "spacy":
            out.append(Item("spacy", value, setting=key, required=False))
    if profile_settings.get("fetch_nltk_data") is True:
        out.append(Item("nltk", NLTK_DATA, setting="fetch_nltk_data", required=False))
    # a model loaded with its weights also gives its tokenizer: one entry per id, the stronger kind wins
    models = {i.id for i in out if i.kind == "model"}
    return [i for i in out if not (i.kind == "tokenizer" and i.id in models)]


def needs(nb: str, profile: str) -> list[Item]:
    """What notebook `nb` needs in `profile`, from its SETTINGS."""
    if profile not in PROFILES:
        raise ManifestError(f"unknown profile '{profile}': use one of {PROFILES}")
    return items(settings(nb)[profile])


def manifest(profile: str, nbs: list[str] | None = None, kinds: list[str] | None = None) -> dict[str, list[Item]]:
    """{notebook stem: items} for `profile` and the given notebooks (default: all), of the given kinds (default:
    all)."""
    paths = [notebook_path(nb) for nb in nbs] if nbs else notebooks()
    return {p.stem: [i for i in needs(str(p), profile) if not kinds or i.kind in kinds] for p in paths}


def unique(by_notebook: dict[str, list[Item]]) -> list[Item]:
    """Each item once across notebooks, in first-seen order (a model also needed as a tokenizer counts once)."""
    seen: dict[tuple, Item] = {}
    for entries in by_notebook.values():
        for item in entries:
            seen.setdefault((item.kind, item.id, item.config, item.data_dir), item)
    models = {i.id for i in seen.values() if i.kind == "model"}
    return [i for i in seen.values() if not (i.kind == "tokenizer" and i.id in models)]


def download_mb(entries: list[Item]) -> float:
    """MB a first download of `entries` costs (HUB_MB; a dataset counted once for all its subsets and splits)."""
    keys = {(i.kind, i.id) for i in entries if i.kind in ("model", "tokenizer", "dataset", "metric")}
    unknown = keys - set(HUB_MB)
    if unknown:
        raise ManifestError(f"no download size for {sorted(unknown)}: add it to utils.manifest.HUB_MB with its source")
    return sum(HUB_MB[k] for k in keys)


def _size(mb: float) -> str:
    return "—" if not mb else f"{mb / 1000:.1f} GB" if mb >= 1000 else f"{mb:.0f} MB"


def sizes_table() -> str:
    """The README's table of first-download sizes: per notebook for cpu and gpu, and each profile's total."""
    lines = ["| notebook | cpu | gpu |", "| --- | --- | --- |"]
    by_profile = {p: manifest(p) for p in ("cpu", "gpu")}
    for stem in by_profile["cpu"]:
        lines.append(f"| {stem[:2]} | " + " | ".join(_size(download_mb(by_profile[p][stem])) for p in by_profile)
                     + " |")
    totals = " | ".join(_size(download_mb(unique(by_profile[p]))) for p in by_profile)
    return "\n".join([*lines, f"| all, each item once | {totals} |"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=PROFILES)
    parser.add_argument("--nb", action="append", help="notebook number or name (repeatable; default all)")
    parser.add_argument("--sizes", action="store_true", help="print the README's table of first-download sizes")
    args = parser.parse_args(argv)
    if args.sizes:
        print(sizes_table())
        return
    by_notebook = manifest(args.profile, args.nb)
    for stem, entries in by_notebook.items():
        print(f"{stem} [{args.profile}] first download ≈ {download_mb(entries) / 1000:.2f} GB")
        for item in entries:
            print(f"  {item.label()}" + ("" if item.required else "  (optional: the notebook has a fallback)"))
    print(f"all of them ≈ {download_mb(unique(by_notebook)) / 1000:.1f} GB")


if __name__ == "__main__":
    main()
