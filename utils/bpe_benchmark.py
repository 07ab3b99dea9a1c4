"""Notebook 02's benchmark: the simple, fast and Hugging Face BPE trained and encoding on the course's own text, one
thread each, with the three encoders' ids checked to be identical.

Usage: python -m utils.bpe_benchmark [--size 1000000] [--vocab 4096] [--simple-merges 32]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from . import data
from .bpe import Tokenizer, hf_train, to_huggingface
from .bpe_fast import FastTokenizer


def course_text(size: int | None = 1_000_000) -> str:
    """About `size` bytes of the course's own text: the corpus (train and valid), the instruction, SQuAD and
    preference data and the tokenization sample (~0.46 MB distinct), repeated until `size` bytes are reached;
    size=None: all of it once."""
    parts = [data.corpus_text("train"), data.corpus_text("valid"),
             data.data_path("tokenization_sample.txt").read_text(encoding="utf-8")]
    parts += ["\n".join(r.values()) for r in data.load_instructions()]
    parts += [f"{r['context']}\n{r['question']}\n{r['answers']['text'][0]}" for r in data.load_squad_sample()]
    parts += [f"{r['prompt']}\n{r['chosen']}\n{r['rejected']}" for r in data.load_preferences()]
    base = "\n\n".join(parts)
    if size is None:
        return base
    text = base * (size // len(base.encode("utf-8")) + 1)
    return text.encode("utf-8")[:size].decode("utf-8", errors="ignore")


def _timed(fn, *args, **kwargs) -> tuple[Any, float]:
    """Run fn and return its result and the CPU seconds this process spent (steadier than wall time on a shared
    machine; with one thread it is the wall time an idle machine would show)."""
    start = time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - start


def bpe_benchmark(text: str, vocab_size: int = 4096, simple_merges: int = 32, simple_encode_bytes: int = 100_000,
                  progress: bool = False) -> dict[str, Any]:
    """Time training and encoding of the simple, fast and Hugging Face BPE on `text` (Hugging Face single-threaded).

    The simple trainer recounts every pair at every merge, so it runs only the first `simple_merges` merges; the
    fast one is timed on that same job for the training ratio, and on the full job against Hugging Face. Encoding
    uses the fast tokenizer's full vocabulary in all three, on the text's lines (the simple one on the lines of its
    first `simple_encode_bytes`); their ids are checked to be identical.
    """
    os.environ["RAYON_NUM_THREADS"] = "1"  # read when tokenizers first starts its thread pool
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # and this makes each call run serially in any case
    small_vocab = 256 + simple_merges
    simple, t_simple = _timed(Tokenizer().train, text, small_vocab, progress)
    fast_small, t_fast_small = _timed(FastTokenizer().train, text, small_vocab)
    if fast_small.merges != simple.merges:
        raise AssertionError("the fast and simple trainers learned different merges")
    fast, t_fast = _timed(FastTokenizer().train, text, vocab_size)
    hf_trained, t_hf = _timed(hf_train, text, vocab_size, fast.pattern)
    lines = text.splitlines(keepends=True)
    sample, size = [], 0
    for line in lines:  # whole lines, until simple_encode_bytes are reached
        if size >= simple_encode_bytes:
            break
        sample.append(line)
        size += len(line.encode("utf-8"))
    simple_full = Tokenizer(fast.pattern)
    simple_full.merges = dict(fast.merges)
    simple_full._rebuild()
    ids_simple, t_enc_simple = _timed(lambda: [simple_full.encode_ordinary(line) for line in sample])
    ids_fast, t_enc_fast = _timed(lambda: [fast.encode_ordinary(line) for line in lines])
    exported = to_huggingface(fast)
    enc_hf, t_enc_hf = _timed(exported.encode_batch, lines)
    if [e.ids for e in enc_hf] != ids_fast or ids_simple != ids_fast[:len(sample)]:
        raise AssertionError("the three encoders disagree on the benchmark text")
    mb, sample_mb = len(text.encode("utf-8")) / 1e6, size / 1e6
    rows = [
        {"implementation": "simple (utils.bpe)", "train job": f"{simple_merges} merges", "train s": t_simple,
         "encode MB/s": sample_mb / t_enc_simple},
        {"implementation": "fast (utils.bpe_fast)", "train job": f"{simple_merges} merges", "train s": t_fast_small,
         "encode MB/s": None},
        {"implementation": "fast (utils.bpe_fast)", "train job": f"vocab {vocab_size}", "train s": t_fast,
         "encode MB/s": mb / t_enc_fast},
        {"implementation": "HF tokenizers, 1 thread", "train job": f"vocab {vocab_size}", "train s": t_hf,
         "encode MB/s": mb / t_enc_hf},
    ]
    n_merges = len(fast.merges)
    ratios = {"train_fast_vs_simple_speedup": t_simple / t_fast_small,
              # an estimate, not a measurement: the simple trainer's per-merge time times the full job's merges
              "train_fast_vs_simple_full_estimate": t_simple / simple_merges * n_merges / t_fast,
              "train_fast_vs_hf_slowdown": t_fast / t_hf,
              "encode_fast_vs_hf_slowdown": t_enc_fast / t_enc_hf,
              "encode_fast_vs_simple_speedup": (t_enc_simple / sample_mb) / (t_enc_fast / mb)}
    return {"text_bytes": len(text.encode("utf-8")), "vocab_size": vocab_size, "merges": n_merges,
            "simple_merges": simple_merges, "simple_encode_bytes": size,
            "hf_vocab": hf_trained.get_vocab_size(), "rows": rows, "ratios": ratios}


def format_bpe_table(result: dict[str, Any]) -> str:
    """The benchmark as a plain-text table followed by its ratios."""
    lines = [f"BPE benchmark: {result['text_bytes']:,} bytes of course text, vocabulary {result['vocab_size']}",
             f"{'implementation':<26}{'train job':>14}{'train s':>10}{'encode MB/s':>13}"]
    for row in result["rows"]:
        enc = f"{row['encode MB/s']:.2f}" if row["encode MB/s"] else "-"
        lines.append(f"{row['implementation']:<26}{row['train job']:>14}{row['train s']:>10.2f}{enc:>13}")
    r = result["ratios"]
    lines += ["", f"training: fast is {r['train_fast_vs_simple_speedup']:.1f}x faster than simple "
                  f"(same {result['simple_merges']}-merge job)",
              f"training: fast takes {r['train_fast_vs_hf_slowdown']:.1f}x the time of HF tokenizers",
              f"encoding: fast takes {r['encode_fast_vs_hf_slowdown']:.1f}x the time of HF tokenizers "
              f"and is {r['encode_fast_vs_simple_speedup']:.1f}x faster than simple",
              f"(estimate: the full {result['merges']}-merge job would take the simple trainer about "
              f"{r['train_fast_vs_simple_full_estimate']:.0f}x the fast one's time, from its time per merge)",
              "times are CPU seconds of this process (time.process_time)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the simple, fast and Hugging Face BPE (one thread).")
    parser.add_argument("--size", type=int, default=1_000_000, help="bytes of course text (default 1,000,000)")
    parser.add_argument("--vocab", type=int, default=4096, help="vocabulary size (default 4096)")
    parser.add_argument("--simple-merges", type=int, default=32, help="merges the simple trainer runs (default 32)")
    parser.add_argument("--simple-encode-bytes", type=int, default=100_000,
                        help="bytes the simple encoder encodes (default 100,000)")
    args = parser.parse_args(argv)
    result = bpe_benchmark(course_text(args.size), args.vocab, args.simple_merges, args.simple_encode_bytes,
                       progress=sys.stderr.isatty())
    print(format_bpe_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
