"""Training runs: the precision rule, parameter counts, freezing, wall time, tokens/s, peak memory, loss curves."""
from __future__ import annotations

import gc
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil

from . import ui


@dataclass(frozen=True)
class Precision:
    """How every trainer of the course computes here: `dtype` for half-precision loads and the 4-bit compute dtype;
    `args` are the fp16/bf16 autocast flags for TrainingArguments (both off: plain fp32)."""

    dtype: Any
    fp16: bool = False
    bf16: bool = False

    @property
    def args(self) -> dict[str, bool]:
        return {"fp16": self.fp16, "bf16": self.bf16}


def precision(fp16: bool | None = None) -> Precision:
    """The course's one mixed-precision rule: fp16 autocast on a GPU without native bf16 (a T4), bf16 on one with
    it, fp32 on a CPU (bf16 is emulated there, slowly). `fp16=True` asks for the T4's fp16 anywhere (tests)."""
    import torch

    cuda = torch.cuda.is_available()
    if fp16 or (fp16 is None and cuda and not torch.cuda.is_bf16_supported(including_emulation=False)):
        return Precision(torch.float16, fp16=True)
    return Precision(torch.bfloat16, bf16=True) if cuda else Precision(torch.float32)


def sft_config(output_dir: str, max_steps: int, batch_size: int, lr: float, max_length: int, save_steps: int,
               seed: int = 0, **overrides: Any):
    """The course's one SFT recipe (04's runs, 08's data-parallel script): the same steps, batch, schedule, answer-only
    loss, 8-bit AdamW, activation checkpointing and precision for every run. It is DDP-ready: non-reentrant
    checkpointing and no search for unused parameters (reentrant checkpointing with that search crashes a PEFT model
    under DDP). `overrides` replace any field (e.g. gradient_accumulation_steps, logging_steps)."""
    import torch
    from trl import SFTConfig

    on_gpu = torch.cuda.is_available()
    recipe = dict(
        output_dir=output_dir, max_steps=max_steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size, learning_rate=lr, warmup_steps=max(1, max_steps // 10),
        max_length=max_length, completion_only_loss=True, optim="adamw_bnb_8bit",
        activation_checkpointing=True, activation_checkpointing_kwargs={"use_reentrant": False},
        ddp_find_unused_parameters=False, use_cpu=not on_gpu, **precision().args,
        logging_steps=max(1, max_steps // 4), save_strategy="steps", save_steps=save_steps, save_total_limit=1,
        include_num_input_tokens_seen="non_padding", report_to=[], seed=seed, dataloader_pin_memory=on_gpu)
    return SFTConfig(**{**recipe, **overrides})


def fp32_trainable(trainer):
    """Cast every trainable parameter of a freshly built trainer to fp32 and return the trainer. trl casts QLoRA
    adapters to bf16, and fp16 autocast's gradient scaler cannot unscale 16-bit gradients (a T4 stops at step 1).
    Under fp16 it also adds `finite_logs()`, which stops the run at the first non-finite loss or reward."""
    import torch

    for param in trainer.model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    if trainer.args.fp16:
        trainer.add_callback(finite_logs())
    if ui.headless():
        one_line_progress(trainer)
    return trainer


def one_line_progress(trainer):
    """Replace the trainer's live progress display with one printed line per training run (steps, seconds, first and
    last logged loss): a headless run would save each live table half-drawn ('Training Loss: No log')."""
    from transformers import ProgressCallback, TrainerCallback
    from transformers.utils.notebook import NotebookProgressCallback

    class OneLine(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            losses = [log["loss"] for log in state.log_history if "loss" in log]
            trend = f": loss {losses[0]:.3f} → {losses[-1]:.3f}" if losses else ""
            print(f"trained {state.global_step} steps in {time.perf_counter() - self.start:.1f} s{trend}")

    for callback in (NotebookProgressCallback, ProgressCallback):
        trainer.remove_callback(callback)
    trainer.add_callback(OneLine)
    return trainer


class NonFiniteError(FloatingPointError):
    """A logged loss or reward became inf or NaN: fp16 overflowed (or training diverged)."""


def _watched(key: str) -> bool:
    """Logged values that must stay finite: losses, and DPO's rewards and logits (train and eval)."""
    return key.endswith("loss") or any(part in key for part in ("rewards/", "logits/"))


def finite_logs():
    """A TrainerCallback (built here: transformers loads only when a trainer is) that checks every log."""
    from transformers import TrainerCallback

    class FiniteLogs(TrainerCallback):
        """Stop training at the first logged loss, reward or logit that is inf or NaN, naming the step and the
        remedies (a skipped fp16 step's gradient norm is normal and not checked)."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            bad = {k: v for k, v in (logs or {}).items()
                   if _watched(k) and isinstance(v, float) and not math.isfinite(v)}
            if bad:
                raise NonFiniteError(
                    f"step {state.global_step}: {', '.join(f'{k} = {v}' for k, v in bad.items())} — "
                    f"{'fp16 overflowed' if args.fp16 else 'training diverged'}, and the run would go on training on "
                    "garbage. Remedies: keep the layers that overflow in fp32 (load the model with "
                    "dtype=torch.float32, or cast its norms and attention to float32), lower the learning rate, or "
                    "run PROFILE='cpu'")

    return FiniteLogs()


def free_memory() -> None:
    """Release what deleted models held: Python's unreachable objects, then CUDA's cached blocks."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def count_parameters(model) -> dict[str, float]:
    """Trainable and total parameter counts (unique tensors, so tied weights count once) and the share trainable."""
    seen, total, trainable = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel() * (2 if p.__class__.__name__ == "Params4bit" else 1)  # 4-bit packs two values per byte
        total += n
        trainable += n if p.requires_grad else 0
    return {"trainable": trainable, "total": total, "trainable_pct": 100.0 * trainable / max(total, 1)}


def freeze_all_but(model, prefixes: Iterable[str]) -> list[str]:
    """Freeze every parameter except those whose name starts with one of `prefixes`; return the trainable names.
    Raises ValueError when a prefix matches nothing (a typo would silently freeze the whole model)."""
    prefixes = list(prefixes)
    names = [n for n, _ in model.named_parameters()]
    unmatched = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if unmatched:
        raise ValueError(f"no parameter name starts with {unmatched}; names look like {names[:3]}")
    for name, param in model.named_parameters():
        param.requires_grad = any(name.startswith(p) for p in prefixes)
    return [n for n, p in model.named_parameters() if p.requires_grad]


@dataclass
class Measure:
    """`with Measure() as m: ...` → m.seconds, m.peak_mb (CUDA max allocated on GPU, sampled process RSS on CPU)
    and m.base_mb (the same measure at the start: the peak minus it is what the block added).
    Call m.tokens(n) to count processed tokens; m.tokens_per_s then follows."""

    interval: float = 0.02
    seconds: float = 0.0
    peak_mb: float = 0.0
    base_mb: float = 0.0
    n_tokens: int = 0
    memory_kind: str = ""
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def tokens(self, n: int) -> None:
        self.n_tokens += int(n)

    @property
    def tokens_per_s(self) -> float:
        return self.n_tokens / self.seconds if self.seconds else 0.0

    def __enter__(self) -> Measure:
        import torch

        self._cuda = torch.cuda.is_available()
        if self._cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base_mb = torch.cuda.memory_allocated() / 2**20
            self.memory_kind = "CUDA max allocated"
        else:
            self.memory_kind = "process RSS (sampled)"
            self._proc = psutil.Process()
            self._peak = self._proc.memory_info().rss
            self.base_mb = self._peak / 2**20
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        self._t0 = time.perf_counter()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: Any) -> None:
        import torch

        if self._cuda:
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self._t0
        if self._cuda:
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self._peak, self._proc.memory_info().rss) / 2**20


def loss_history(log_history: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Split a transformers Trainer's `state.log_history` into train and eval loss curves of (step, loss)."""
    curves: dict[str, list[tuple[int, float]]] = {"train": [], "eval": []}
    for entry in log_history:
        if "loss" in entry:
            curves["train"].append((entry["step"], entry["loss"]))
        if "eval_loss" in entry:
            curves["eval"].append((entry["step"], entry["eval_loss"]))
    return curves


def plot_losses(curves_by_run: dict[str, dict[str, list[tuple[int, float]]]], title: str = "Loss"):
    """One plot: a train (solid) and eval (dashed) curve per run; returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (run, curves) in enumerate(curves_by_run.items()):
        color = f"C{i}"
        for split, style in (("train", "-"), ("eval", "--")):
            if curves.get(split):
                steps, losses = zip(*curves[split])
                ax.plot(steps, losses, style, color=color, marker="o" if split == "eval" else None,
                        label=f"{run} ({split})")
    ax.set(xlabel="step", ylabel="loss", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
