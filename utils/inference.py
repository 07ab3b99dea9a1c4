"""CPU inference with llama.cpp (llama-cpp-python): greedy completion, streaming, stop sequences, a chat whose
history is trimmed to the context window, and one benchmark runner for transformers and GGUF files alike."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import report
from .gguf_export import llama_cpp_version

# Greedy decoding in llama.cpp's terms: temperature 0 picks the argmax; no repetition penalty (its default is 1.1
# in some front ends), so that the output can be compared token for token with transformers' do_sample=False.
GREEDY = {"temperature": 0.0, "top_k": 1, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0}


def load_gguf(path: str | Path, n_ctx: int = 512, n_threads: int | None = None, **kwargs: Any):
    """A llama_cpp.Llama for GGUF file `path`: `n_ctx` tokens of context (prompt + answer must fit), `n_threads`
    CPU threads (default: all cores). Quiet unless verbose=True is passed."""
    llama_cpp_version()  # a clear error naming the install command when llama-cpp-python is missing
    from llama_cpp import Llama

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no GGUF file at {path}: export one first (utils.gguf_export.export_all)")
    if n_ctx < 16:
        raise ValueError(f"n_ctx={n_ctx} is too small: it must hold the prompt and the answer (try 512)")
    kwargs.setdefault("verbose", False)
    return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(), **kwargs)


def context_size(llm) -> int:
    """The context the model was loaded with (n_ctx). llama.cpp may round its own buffer up to a multiple of 256,
    but the bindings keep only n_ctx tokens: that is the real limit for prompt + answer."""
    return min(llm.n_ctx(), llm.context_params.n_ctx)


@dataclass
class Completion:
    """A finished completion: the text, why it ended ('stop' = a stop sequence or end-of-sequence token,
    'length' = max_tokens reached) and the token counts."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def complete(llm, prompt: str, max_tokens: int = 64, stop: Sequence[str] = (), **sampling: Any) -> Completion:
    """Greedy completion of `prompt` (unless `sampling` overrides GREEDY); the text ends before any stop sequence."""
    out = llm.create_completion(prompt, max_tokens=max_tokens, stop=list(stop), **{**GREEDY, **sampling})
    choice, usage = out["choices"][0], out["usage"]
    return Completion(choice["text"], choice["finish_reason"], usage["prompt_tokens"], usage["completion_tokens"])


def stream(llm, prompt: str, max_tokens: int = 64, stop: Sequence[str] = (), **sampling: Any) -> Iterator[str]:
    """The same completion, yielded piece by piece as llama.cpp produces it (text that could be the start of a stop
    sequence is held back until it is known not to be one)."""
    for chunk in llm.create_completion(prompt, max_tokens=max_tokens, stop=list(stop), stream=True,
                                       **{**GREEDY, **sampling}):
        piece = chunk["choices"][0]["text"]
        if piece:
            yield piece


# --- chat ---------------------------------------------------------------------------------------------------

def trim_history(messages: list[dict[str, str]], count_tokens: Callable[[list[dict[str, str]]], int],
                 budget: int) -> tuple[list[dict[str, str]], int]:
    """Drop the oldest turns until `count_tokens(messages) <= budget`; a leading system message and the last
    message always stay, and whole exchanges go (a kept history starts with a user message).
    Returns (kept messages, number dropped); ValueError when even the newest message alone does not fit."""
    if not messages:
        raise ValueError("no messages: a chat needs at least one user message")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or "content" not in m:
            raise ValueError(f"message {i} must be a dict with role system/user/assistant and content, got {m!r}")
    system = messages[:1] if messages[0]["role"] == "system" else []
    turns = messages[len(system):]
    dropped = 0
    while len(turns) > 1 and count_tokens(system + turns) > budget:
        turns = turns[1:]
        dropped += 1
        while len(turns) > 1 and turns[0]["role"] != "user":  # never start the history with an answer
            turns = turns[1:]
            dropped += 1
    needed = count_tokens(system + turns)
    if needed > budget:
        raise ValueError(f"the newest message alone needs {needed} prompt tokens, more than the {budget} left in the "
                         "context: shorten it, lower max_tokens or load the model with a larger n_ctx")
    return system + turns, dropped


@dataclass
class Chat:
    """A multi-turn chat over a llama.cpp model through its chat template (`template`, else the one stored in the
    GGUF file; ValueError when there is neither). Before every answer the history is trimmed, oldest first, so
    prompt + answer fit in n_ctx."""

    llm: Any
    system: str = ""
    max_tokens: int = 64
    template: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)
    dropped: int = 0  # messages trimmed away so far
    last_prompt_tokens: int = 0  # tokens of the prompt sent for the latest answer

    def __post_init__(self) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.template or self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError("this GGUF file has no chat template, and guessing one gives the wrong special tokens: "
                             "export a model whose tokenizer has one, or pass template= (e.g. formats.TEMPLATES[...])")
        bos, eos = (self.llm.detokenize([t], special=True).decode("utf-8", "replace")
                    for t in (self.llm.token_bos(), self.llm.token_eos()))
        self.formatter = Jinja2ChatFormatter(template=template, bos_token=bos, eos_token=eos,
                                             stop_token_ids=[self.llm.token_eos()])
        self.llm.chat_handler = self.formatter.to_chat_handler()  # create_chat_completion renders with this template

    def prompt(self, messages: list[dict[str, str]]) -> str:
        """The text the model reads for `messages`: the chat template applied, ending where the answer starts."""
        return self.formatter(messages=messages).prompt

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return len(self.llm.tokenize(self.prompt(messages).encode("utf-8"), add_bos=False, special=True))

    def context(self, user: str) -> list[dict[str, str]]:
        """The messages sent for the next answer: system, as much recent history as fits, and `user`."""
        system = [{"role": "system", "content": self.system}] if self.system else []
        kept, dropped = trim_history(system + self.history + [{"role": "user", "content": user}],
                                     self.count_tokens, context_size(self.llm) - self.max_tokens)
        self.dropped += dropped
        self.last_prompt_tokens = self.count_tokens(kept)
        return kept

    def ask(self, user: str, on_piece: Callable[[str], None] | None = None, **sampling: Any) -> str:
        """Answer `user` (greedy unless `sampling` says otherwise), streaming pieces to `on_piece` when given,
        and keep the exchange in the history."""
        if not isinstance(user, str) or not user.strip():
            raise ValueError("the user message must be a non-empty string")
        messages = self.context(user)
        pieces = []
        for chunk in self.llm.create_chat_completion(messages=messages, max_tokens=self.max_tokens, stream=True,
                                                     **{**GREEDY, **sampling}):
            piece = chunk["choices"][0]["delta"].get("content") or ""
            if piece:
                pieces.append(piece)
                if on_piece:
                    on_piece(piece)
        answer = "".join(pieces).strip()
        self.history = [m for m in messages if m["role"] != "system"] + [{"role": "assistant", "content": answer}]
        return answer


def chat_box(chat: Chat, placeholder: str = "Ask something and press Send", **sampling: Any):
    """A small chat window (ipywidgets: JupyterLab, Colab): the conversation, a text box and a Send button; the
    answer streams in as llama.cpp writes it. Returns (widget, send): send(text) runs one turn, as the button does."""
    import html

    import ipywidgets as widgets

    log = widgets.HTML(layout=widgets.Layout(border="1px solid #ccc", padding="6px", min_height="80px"))
    text = widgets.Text(placeholder=placeholder, layout=widgets.Layout(width="70%"))
    button = widgets.Button(description="Send", button_style="primary")

    def render(extra: list[dict[str, str]] = ()) -> None:
        lines = [f"<b>{'you' if m['role'] == 'user' else 'model'}:</b> {html.escape(m['content'])}"
                 for m in [*chat.history, *extra]]
        log.value = "<br>".join(lines) + (f"<br><i>{chat.dropped} old message(s) trimmed to fit the context</i>"
                                          if chat.dropped else "")

    def send(message: str | None = None) -> str:
        message = text.value if message is None else message
        text.value = ""
        if not message.strip():
            return ""
        pieces: list[str] = []

        def show(piece: str) -> None:
            pieces.append(piece)
            render([{"role": "user", "content": message}, {"role": "assistant", "content": "".join(pieces)}])

        answer = chat.ask(message, on_piece=show, **sampling)
        render()
        return answer

    class Window(widgets.VBox):
        """The chat window, with the conversation as plain text where widgets do not render (a saved copy)."""

        def _repr_mimebundle_(self, **kwargs: Any) -> dict:
            bundle = super()._repr_mimebundle_(**kwargs)
            bundle["text/plain"] = "\n".join(f"{'you' if m['role'] == 'user' else 'model'}: {m['content']}"
                                              for m in chat.history) or "(an empty chat window)"
            return bundle

    button.on_click(lambda _: send())
    return Window([log, widgets.HBox([text, button])]), send


# --- the benchmark ------------------------------------------------------------------------------------------

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
