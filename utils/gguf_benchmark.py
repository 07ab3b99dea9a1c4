"""Notebook 07's benchmark: transformers against llama.cpp's GGUF files on one CPU (size, load time, prompt and
generation speed, memory, agreement with fp32, perplexity), each variant in a fresh process."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import ui
from .gguf_export import llama_cpp_version
from .inference import load_gguf


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
    for backend, precision, target in ui.progress(variants, show=progress, desc="benchmark"):
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
