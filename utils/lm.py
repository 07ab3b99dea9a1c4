"""Causal language modelling: corpus text in, cleaned and cut into blocks; perplexity; decoding strategies."""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from . import ui
from .data import DataError, corpus_text

LOCAL_CORPUS = "local:corpus"
# A WikiText heading: " = Title = ", " = = Section = = ", " = = = Subsection = = = " (raw lines keep the spaces).
_HEADING = re.compile(r"^\s*(=\s+)+\S.*?(\s+=)+\s*$")

# The decoding strategies shown side by side. transformers falls back to top_k=50 whenever sampling and top_k is
# unset, so the top-p and temperature rows switch it off (top_k=0) to show each idea on its own.
STRATEGIES: dict[str, dict[str, Any]] = {
    "greedy": {"do_sample": False},
    "top-k (k=50)": {"do_sample": True, "top_k": 50},
    "top-p (p=0.9)": {"do_sample": True, "top_k": 0, "top_p": 0.9},
    "temperature 0.7": {"do_sample": True, "top_k": 0, "temperature": 0.7},
}


# --- text: load, clean, cut into blocks ---------------------------------------------------------------------

def load_texts(source: str) -> dict[str, list[str]]:
    """Raw lines of the 'train' and 'valid' splits, from the shipped corpus (`'local:corpus'`) or a Hub dataset
    named `'path:config'` (e.g. `'Salesforce/wikitext:wikitext-2-raw-v1'`): one entry point, one code path."""
    if not isinstance(source, str):
        raise TypeError(f"source must be a string such as '{LOCAL_CORPUS}', got {type(source).__name__}")
    if source == LOCAL_CORPUS:
        return {split: corpus_text(split).splitlines() for split in ("train", "valid")}
    path, sep, config = source.partition(":")
    if not sep or not path or not config or path == "local":
        raise DataError(f"unknown text source {source!r}: use '{LOCAL_CORPUS}' (shipped corpus) or a Hub dataset "
                        "as 'path:config', e.g. 'Salesforce/wikitext:wikitext-2-raw-v1'")
    from datasets import load_dataset

    ds = load_dataset(path, config)
    return {"train": list(ds["train"]["text"]), "valid": list(ds["validation"]["text"])}


def is_heading(line: str) -> bool:
    """True for a WikiText heading line such as ' = Title = ' or ' = = Section = = '."""
    return bool(_HEADING.match(line))


def clean_lines(lines: Iterable[str]) -> list[str]:
    """Paragraphs to train on: each line stripped, empty lines and WikiText headings dropped."""
    if isinstance(lines, str):
        raise TypeError("clean_lines takes an iterable of lines, not one string: pass text.splitlines()")
    return [line.strip() for line in lines if line.strip() and not is_heading(line)]


def group_blocks(token_lists: Iterable[Sequence[int]], block_size: int) -> list[list[int]]:
    """Concatenate tokenized paragraphs and cut the stream into blocks of exactly `block_size` tokens; the last,
    shorter piece is dropped, so no block needs padding and every token in a block is a real training target."""
    if not isinstance(block_size, int) or block_size < 2:
        raise ValueError(f"block_size must be an integer >= 2 (a block predicts tokens 2..n from 1..n-1), "
                         f"got {block_size!r}")
    stream = [t for ids in token_lists for t in ids]
    n = len(stream) // block_size * block_size
    return [stream[i:i + block_size] for i in range(0, n, block_size)]


# --- perplexity ---------------------------------------------------------------------------------------------

@dataclass
class Perplexity:
    """Result of `perplexity`: the value, the token-weighted mean loss behind it, and the per-window sums."""

    ppl: float
    loss: float
    n_tokens: int
    window: int
    stride: int
    window_nll: list[float] = field(repr=False)
    window_tokens: list[int] = field(repr=False)

    @property
    def n_windows(self) -> int:
        return len(self.window_tokens)


def context_length(model) -> int:
    """The longest input the model takes (GPT-2: n_positions, Llama: max_position_embeddings)."""
    cfg = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        if isinstance(getattr(cfg, name, None), int):
            return getattr(cfg, name)
    raise ValueError("cannot tell the model's context length from its config: pass window=")


def windows(n: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """Sliding windows (begin, end, first): feed tokens begin..end-1, score first..end-1. Every token but the first
    is scored exactly once, after the first window with at least `window - stride` tokens of context."""
    if not 1 <= stride < window:
        raise ValueError(f"stride must be in 1..window-1 (window {window}), got {stride}: a window needs at least "
                         "one token of context before the first token it scores")
    spans, prev_end = [], 0
    for begin in range(0, n, stride):
        end = min(begin + window, n)
        spans.append((begin, end, max(prev_end, begin + 1)))
        prev_end = end
        if end == n:
            break
    return spans


def perplexity(model, input_ids: Sequence[int], window: int | None = None, stride: int | None = None,
               batch_size: int = 8, progress: bool = False) -> Perplexity:
    """exp(mean loss per predicted token) of `model` on one token sequence, token-weighted, scored by a window
    (default: the model's context) that slides by `stride` tokens (default: half the window)."""
    ids = torch.as_tensor(input_ids, dtype=torch.long).flatten()
    window, stride = _window_and_stride(model, ids.numel(), window, stride)
    # 1. cut the sequence into overlapping windows; each token is scored once, in the first window where it has
    #    at least window - stride tokens of context before it
    spans = windows(ids.numel(), window, stride)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    nll, counts = [], []
    with torch.no_grad():
        for batch in ui.progress(_batches(spans, batch_size), show=progress, desc="perplexity"):
            x = torch.stack([ids[b:e] for b, e, _ in batch]).to(device)
            # 2. labels: the tokens themselves, with the context-only part of each window masked out
            labels = x.clone()
            for row, (b, _, first) in enumerate(batch):
                labels[row, : first - b] = -100  # context only: scored by an earlier window (or never: token 0)
            # 3. the loss of predicting token t+1 from the logits at t, summed per window
            out = model(input_ids=x)
            logits = getattr(out, "logits", out)[:, :-1].float()
            loss = F.cross_entropy(logits.transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none")
            nll += loss.sum(dim=1).tolist()
            counts += (labels[:, 1:] != -100).sum(dim=1).tolist()
    model.train(was_training)
    # 4. perplexity = exp(total loss / tokens scored): a mean over tokens, not over windows
    mean = sum(nll) / sum(counts)
    return Perplexity(math.exp(mean), mean, sum(counts), window, stride, nll, counts)


def _window_and_stride(model, n_tokens: int, window: int | None, stride: int | None) -> tuple[int, int]:
    """The window (default: the model's context) and stride (default: half the window) perplexity uses, checked."""
    if n_tokens < 2:
        raise ValueError(f"perplexity needs at least 2 tokens (one to predict from, one to predict), got {n_tokens}")
    try:
        limit = context_length(model)
    except ValueError:
        if window is None:
            raise
        limit = None
    window = window or limit
    if not isinstance(window, int) or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window!r}")
    if limit is not None and window > limit:
        raise ValueError(f"window {window} is longer than the model's context ({limit} tokens): use window<={limit}")
    stride = stride or window // 2
    if not isinstance(stride, int):
        raise ValueError(f"stride must be an integer, got {stride!r}")
    return window, stride


def _batches(spans: list[tuple[int, int, int]], size: int) -> list[list[tuple[int, int, int]]]:
    """Group consecutive windows of equal length (only the last can be shorter) into batches of `size`."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {size!r}")
    out: list[list[tuple[int, int, int]]] = []
    for span in spans:
        if out and len(out[-1]) < size and out[-1][0][1] - out[-1][0][0] == span[1] - span[0]:
            out[-1].append(span)
        else:
            out.append([span])
    return out


# --- decoding strategies ------------------------------------------------------------------------------------

def generate(model, tokenizer, prompts: Sequence[str], strategies: dict[str, dict[str, Any]] | None = None,
             max_new_tokens: int = 40, seed: int = 0) -> list[dict[str, str]]:
    """Continue every prompt with every decoding strategy; rows {prompt, strategy, text} (the continuation only).
    The sampler is reseeded before each generation, so two models differ only by their weights."""
    from transformers import GenerationConfig

    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, not one string")
    strategies = STRATEGIES if strategies is None else strategies
    device = next(model.parameters()).device
    rows = []
    for prompt in prompts:
        enc = tokenizer(prompt, return_tensors="pt").to(device)
        for name, options in strategies.items():
            config = GenerationConfig(max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                      eos_token_id=tokenizer.eos_token_id, **options)
            torch.manual_seed(seed)
            with torch.no_grad():
                out = model.generate(**enc, generation_config=config)
            text = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            rows.append({"prompt": prompt, "strategy": name, "text": text})
    return rows


def seen_ngrams(texts: Iterable[str], reference: str, n: int = 2) -> float:
    """The share of the word n-grams in `texts` (lowercased words) that also occur in `reference`: how much of what a
    model writes it could have copied from that text. 0.0 when the texts have no n-gram."""
    def grams(text: str) -> list[tuple[str, ...]]:
        words = re.findall(r"[a-z]+", text.lower())
        return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]

    known = set(grams(reference))
    written = [g for text in texts for g in grams(text)]
    return sum(g in known for g in written) / len(written) if written else 0.0


def strategy_warpers(options: dict[str, Any]):
    """The transformers logits warpers that `generate` applies for `options`, in its order:
    temperature, then top-k, then top-p (top_k unset means 50 when sampling, as in generate)."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers = LogitsProcessorList()
    if not options.get("do_sample", False):
        return warpers
    temperature, top_k, top_p = options.get("temperature", 1.0), options.get("top_k", 50), options.get("top_p", 1.0)
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return warpers


def next_token_choices(model, tokenizer, prompt: str, strategies: dict[str, dict[str, Any]] | None = None,
                       top: int = 8):
    """How each strategy reshapes the next-token distribution after `prompt`: (a DataFrame of the probability
    each strategy gives the model's `top` most likely tokens, {strategy: how many tokens it leaves possible})."""
    import pandas as pd

    strategies = STRATEGIES if strategies is None else strategies
    device = next(model.parameters()).device
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, -1].float()
    order = logits[0].argsort(descending=True)[:top]
    table = {"token": [repr(tokenizer.decode([int(t)])) for t in order]}
    possible = {}
    for name, options in strategies.items():
        if options.get("do_sample", False):
            probs = strategy_warpers(options)(ids, logits.clone()).softmax(-1)[0]
        else:  # greedy: all mass on the arg-max
            probs = torch.zeros_like(logits[0]).scatter(0, logits[0].argmax().view(1), 1.0)
        table[name] = probs[order].tolist()
        possible[name] = int((probs > 0).sum())
    return pd.DataFrame(table).set_index("token"), possible
