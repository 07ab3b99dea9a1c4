"""What a run needs from the Hugging Face Hub, from its settings: which setting key holds what (a model, a tokenizer,
a dataset and how the course's loaders call `load_dataset` on it), and what a first download of it costs.

The notebooks' `SETTINGS` dicts are the one source of names; `tools.hub.manifest` reads them from the notebook files
(the manifest of every notebook and profile, for prefetch, the stand-in and verify). Imports no other course module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
# the files the course downloads (tools.hub.prefetch's MODEL_FILES for a model, TOKENIZER_FILES for a tokenizer alone:
# weights in their published dtype, tokenizer and config files; a dataset: the files of the configs or subsets loaded).
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


class Opaque(str):
    """A setting computed at run time (e.g. os.cpu_count()), as read from a notebook's code: kept as its source
    text, and no Hub name."""


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
        if isinstance(value, Opaque):  # computed in the notebook (e.g. lm.LOCAL_CORPUS): not a Hub name
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


def download_mb(entries: list[Item]) -> float:
    """MB a first download of `entries` costs (HUB_MB; a dataset counted once for all its subsets and splits)."""
    keys = {(i.kind, i.id) for i in entries if i.kind in ("model", "tokenizer", "dataset", "metric")}
    unknown = keys - set(HUB_MB)
    if unknown:
        raise ManifestError(f"no download size for {sorted(unknown)}: add it to utils.manifest.HUB_MB with its source")
    return sum(HUB_MB[k] for k in keys)
