"""`make prefetch`: download what a profile's notebooks need into the local Hugging Face caches, from the Hub
(HF_ENDPOINT) with the libraries' own download code; and `check`, whether they are there (utils.hubcache).
Nothing here imports a Hugging Face library before a download: they read the offline switches when first imported.

Usage: python -m tools.hub.prefetch prefetch --profile cpu [--nb 05] | python -m tools.hub.prefetch check --profile cpu
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from utils.hubcache import hf_home, missing, present
from utils.manifest import KINDS, Item, dataset_files

from . import manifest

MODEL_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]  # what prefetch takes from a model repo
TOKENIZER_FILES = ["*.json", "*.model", "*.txt", "*.jinja"]


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

    from utils.env import hub_endpoint, hub_reachable

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["prefetch", "check"])
    parser.add_argument("--profile", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--nb", action="append", help="notebook number or name (repeatable; default all)")
    parser.add_argument("--kind", action="append", choices=KINDS, help="only these kinds (default all)")
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
