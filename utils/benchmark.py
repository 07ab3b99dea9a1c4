"""Benchmarks, apart from the lessons' code: the simple, fast and Hugging Face BPE of notebook 02 (training and
encoding, one thread), and transformers against llama.cpp's GGUF files on one CPU for notebook 07 (size, load time,
prompt and generation speed, memory, agreement, perplexity).

Usage: python -m utils.benchmark bpe [--size 1000000] [--vocab 4096] [--simple-merges 32]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import report
from .bpe import Tokenizer, to_huggingface
from .bpe_fast import FastTokenizer
from .gguf_export import llama_cpp_version
from .inference import load_gguf

# --- benchmark: simple vs fast vs Hugging Face tokenizers, single thread -----------------------------------------

def course_text(size: int | None = 1_000_000) -> str:
    """About `size` bytes of the course's own text: the corpus (train and valid), the instruction, SQuAD and
    preference data and the tokenization sample (~0.46 MB distinct), repeated until `size` bytes are reached;
    size=None: all of it once."""
    from . import data

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


def hf_train(text: str, vocab_size: int, pattern: str):
    """Hugging Face `tokenizers`' BPE trainer with our pre-split and all 256 bytes as the starting alphabet."""
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    hf.train_from_iterator([text], trainer)
    return hf


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


# --- transformers and GGUF files on the same CPU (notebook 07) -----------------------------------------------------

def memory_bandwidth(mb: int = 512, repeats: int = 5) -> float:
    """This machine's memory bandwidth in GB/s, measured simply: the best of `repeats` NumPy copies of an `mb` MB
    array, counting the bytes read and the bytes written (larger than the CPU's caches, so it comes from memory)."""
    src = np.ones(mb * 2**20 // 8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best / 1e9


def bf16_native() -> bool:
    """True when this CPU computes in bfloat16 natively (AVX512-BF16 or AMX); elsewhere torch emulates bf16 on the
    CPU, slower than fp32, so the benchmark leaves it out."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    """The highest resident memory this process has used so far (MiB). On Linux the kernel's high-water mark of
    this program (VmHWM; getrusage's figure would include the parent's, as it survives exec)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    try:
        import resource
    except ImportError:  # Windows
        import psutil

        return psutil.Process().memory_info().peak_wset / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # bytes on macOS


def _time_runs(generate: Callable[[list[int]], tuple[list[int], float, float]],
               prompts: list[list[int]]) -> dict[str, Any]:
    """Sum over prompts of `generate(ids) -> (new tokens, seconds to the first token, seconds after it)`: the first
    token's wait is prompt processing, the rest is generation."""
    prompt_s = gen_s = 0.0
    n_prompt = n_gen = 0
    outputs = []
    for ids in prompts:
        out, first_s, rest_s = generate(ids)
        prompt_s, gen_s = prompt_s + first_s, gen_s + rest_s
        n_prompt, n_gen = n_prompt + len(ids), n_gen + len(out) - 1
        outputs.append(out)
    return {"prompt_tok_s": n_prompt / prompt_s, "gen_tok_s": n_gen / gen_s if gen_s > 0 else float("nan"),
            "timed_s": prompt_s + gen_s, "new_tokens": n_gen + len(prompts), "outputs": outputs}


def _llama_generate(llm, max_new: int) -> Callable[[list[int]], tuple[list[int], float, float]]:
    eos = llm.token_eos()

    def run(ids: list[int]) -> tuple[list[int], float, float]:
        llm.reset()  # no reuse of the previous prompt's cache: every run starts cold, as in transformers
        start = time.perf_counter()
        first, out = 0.0, []
        for tok in llm.generate(ids, temp=0.0, repeat_penalty=1.0, reset=True):
            if not out:
                first = time.perf_counter()
            out.append(int(tok))
            if len(out) >= max_new or tok == eos:
                break
        return out, first - start, time.perf_counter() - first

    return run


def _hf_generate(model, max_new: int) -> Callable[[list[int]], tuple[list[int], float, float]]:
    import torch
    from transformers.generation.streamers import BaseStreamer

    class Clock(BaseStreamer):  # generate() calls put() with the prompt, then once per new token
        def __init__(self) -> None:
            self.times: list[float] = []

        def put(self, value) -> None:
            self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    def run(ids: list[int]) -> tuple[list[int], float, float]:
        x = torch.tensor([ids])
        clock = Clock()
        start = time.perf_counter()
        with torch.inference_mode():
            y = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new, do_sample=False,
                               streamer=clock)
        end = time.perf_counter()
        first = clock.times[1] if len(clock.times) > 1 else end
        return y[0, len(ids):].tolist(), first - start, end - first

    return run


def heldout_logits_hf(model, ids: list[int]) -> np.ndarray:
    """Next-token logits of a transformers model at every position of `ids` (one forward pass)."""
    import torch

    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def heldout_logits_gguf(path: str | Path, ids: list[int], n_threads: int | None = None) -> np.ndarray:
    """The same logits from llama.cpp: the file loaded with logits for every position (logits_all=True)."""
    llm = load_gguf(path, n_ctx=max(len(ids), 16), n_threads=n_threads, logits_all=True)
    try:
        llm.eval(ids)
        return np.array(llm.scores[:len(ids)], dtype=np.float32)
    finally:
        llm.close()


def next_token_scores(logits: np.ndarray, ids: list[int]) -> tuple[np.ndarray, float]:
    """From next-token logits at every position of `ids`: the token each position predicts (argmax), and the
    perplexity of the text, exp(mean negative log-probability of each actual next token)."""
    if logits.ndim != 2 or len(logits) != len(ids) or len(ids) < 2:
        raise ValueError(f"need one row of logits per token id (2 or more): got logits {logits.shape} for "
                         f"{len(ids)} ids")
    x = logits[:-1].astype(np.float64)
    log_probs = x - x.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    nll = -log_probs[np.arange(len(ids) - 1), ids[1:]].mean()
    return logits[:-1].argmax(-1), float(np.exp(nll))


def _measure(backend: str, precision: str, target: str, prompts: list[list[int]], heldout: list[int] | None,
             max_new: int, n_threads: int, n_ctx: int) -> dict[str, Any]:
    """One benchmark row. Runs in a fresh process, so that load time and memory are this model's alone; without
    `heldout` ids, speed and memory only."""
    if backend == "transformers":
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(n_threads)
        libraries_mb = _rss_mb()
        start = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(target, dtype=getattr(torch, precision)).eval()
        load_s = time.perf_counter() - start
        size_mb, generate = model.get_memory_footprint() / 1e6, _hf_generate(model, max_new)
    else:
        llama_cpp_version()
        libraries_mb = _rss_mb()
        start = time.perf_counter()
        model = load_gguf(target, n_ctx=n_ctx, n_threads=n_threads)
        load_s = time.perf_counter() - start
        size_mb, generate = Path(target).stat().st_size / 1e6, _llama_generate(model, max_new)
    generate(prompts[0][:8])  # warm-up: first-call allocations are not what we measure
    timing = _time_runs(generate, prompts)
    peak_mb = _peak_rss_mb()
    if backend == "llama.cpp":
        model.close()
    if heldout is None:
        top1, perplexity = np.array([]), float("nan")
    else:
        logits = (heldout_logits_hf(model, heldout) if backend == "transformers"
                  else heldout_logits_gguf(target, heldout, n_threads))
        top1, perplexity = next_token_scores(logits, heldout)
    return {"size_mb": size_mb, "load_s": load_s, "prompt_tok_s": timing["prompt_tok_s"],
            "gen_tok_s": timing["gen_tok_s"], "timed_s": timing["timed_s"], "libraries_mb": libraries_mb,
            "peak_rss_mb": peak_mb, "perplexity": perplexity, "top1": top1.tolist(), "outputs": timing["outputs"]}


def run_benchmark(model_dir: str | Path, gguf_files: dict[str, str | Path], prompts: list[list[int]],
                  heldout: list[int] | None, max_new_tokens: int = 64, n_threads: int | None = None, n_ctx: int = 512,
                  bf16: bool | None = None, progress: bool = True):
    """One table, measured in one run with the same token ids and greedy decoding: transformers fp32 (the
    reference), bf16 where the CPU has it, and each GGUF file, each in a fresh process. Columns: size (file on
    disk; for transformers the weights it holds in memory), load time, prompt and generation tokens/s, the process's
    memory once its libraries are loaded and at its peak, top-1 agreement with fp32 and perplexity on the held-out
    ids, and the share of prompts whose greedy continuation equals fp32's. `heldout=None` gives a speed table: no
    agreement or perplexity columns (for a model whose weights are random)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import pandas as pd

    if not prompts or not all(prompts) or (heldout is not None and len(heldout) < 2):
        raise ValueError("need at least one non-empty prompt (token ids) and a held-out text of 2+ tokens")
    n_threads = n_threads or os.cpu_count() or 1
    bf16 = bf16_native() if bf16 is None else bf16
    variants = [("transformers", "float32", str(model_dir))]
    variants += [("transformers", "bfloat16", str(model_dir))] if bf16 else []
    variants += [("llama.cpp", name, str(path)) for name, path in gguf_files.items()]
    spawn = multiprocessing.get_context("spawn")  # a clean process per row: no memory or threads left over
    rows, reference = [], None
    for backend, precision, target in report.progress(variants, show=progress, desc="benchmark"):
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            row = pool.submit(_measure, backend, precision, target, prompts, heldout, max_new_tokens, n_threads,
                              n_ctx).result()
        top1, outputs = np.array(row.pop("top1")), row.pop("outputs")
        reference = reference or {"top1": top1, "outputs": outputs}
        name = {"float32": "fp32", "bfloat16": "bf16"}.get(precision, precision)
        rows.append({"variant": f"{backend} {name}", "backend": backend, "precision": name, **row,
                     "top1_agreement": float((top1 == reference["top1"]).mean()) if len(top1) else float("nan"),
                     "same_text_as_fp32": float(np.mean([a == b for a, b in zip(outputs, reference["outputs"])]))})
    quality = ["top1_agreement", "perplexity"] if heldout is not None else []
    columns = ["backend", "precision", "size_mb", "load_s", "prompt_tok_s", "gen_tok_s", "timed_s", "libraries_mb",
               "peak_rss_mb", *quality, "same_text_as_fp32"]
    return pd.DataFrame(rows).set_index("variant")[columns]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the simple, fast and Hugging Face BPE (one thread).")
    parser.add_argument("command", choices=["bpe"])
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
