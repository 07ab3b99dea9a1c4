"""Cost probes for a notebook run, installed in its kernel without changing the notebook: model load time, time per
training step, generated tokens per second. Each measurement is one JSON line in $COURSE_PROBE_LOG.

`python -m tools.hub.verify` installs them through an IPython startup file (`startup_file()`), or calls `activate()`
itself when it runs the cells in-process. With COURSE_EMULATE_T4=1 in the environment (inherited by the processes a run
starts) a bigger GPU acts as a T4 (`emulate_t4`).
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

LOG_VAR = "COURSE_PROBE_LOG"
EMULATE_VAR = "COURSE_EMULATE_T4"
T4_MEMORY = int(14.2 * 2**30)  # what a T4 leaves PyTorch (its 15 GiB less the CUDA context and driver's share)


class PrecisionError(RuntimeError):
    """Under the T4 emulation, a bf16 tensor on the GPU where a T4 run keeps fp32 or fp16."""


def record(event: str, **fields: Any) -> None:
    """Append one measurement (with the process's peak RSS so far, in MB) to the probe log, if one is set."""
    path = os.environ.get(LOG_VAR)
    if path:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        fields["peak_rss_mb"] = round(peak_mb, 1)
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            fields["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"event": event, **fields}) + "\n")


def emulate_t4() -> str:
    """Make a bigger GPU behave like a T4 for the course's code: no native bf16 (so training.precision() picks fp16),
    at most 14.2 GiB of GPU memory for this process, attention by the memory-efficient kernel as on a T4 (flash and
    cuDNN attention off), and `bf16_guard` in every Trainer. Call before any CUDA work; returns what it did."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device: nothing to emulate"
    torch.cuda.is_bf16_supported = lambda including_emulation=True: False
    device = int(os.environ.get("LOCAL_RANK", "0"))  # a data-parallel rank's own GPU (08)
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, T4_MEMORY / total), device)
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_cudnn_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(True)
    import transformers.trainer

    transformers.trainer.DEFAULT_CALLBACKS.append(bf16_guard())
    return (f"T4 emulation: fp16 (no bf16), memory-efficient attention, {T4_MEMORY / 2**30:.1f} GiB of the GPU's "
            f"{total / 2**30:.0f} GiB")


def _on_gpu(tensor) -> bool:
    return tensor.device.type == "cuda"


def bf16_on_gpu(model, optimizer=None, inputs: Any = ()) -> list[str]:
    """Names of the bf16 GPU tensors among `model`'s trainable parameters, `optimizer`'s state and `inputs` (nested
    args and kwargs)."""
    import torch

    def bad(t: Any) -> bool:
        return isinstance(t, torch.Tensor) and t.dtype == torch.bfloat16 and _on_gpu(t)

    found = [f"trainable {name}" for name, p in model.named_parameters() if p.requires_grad and bad(p)]
    state = getattr(optimizer, "state", {}) if optimizer is not None else {}
    found += [f"optimizer state {key}" for per_param in state.values() for key, t in per_param.items() if bad(t)]
    flat = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
    while flat:
        item = flat.pop()
        if isinstance(item, (list, tuple)):
            flat += item
        elif isinstance(item, dict):
            flat += item.values()
        elif bad(item):
            found.append(f"input {tuple(item.shape)}")
    return found


def bf16_guard():
    """A TrainerCallback class for the emulation: raise PrecisionError when a bf16 GPU tensor is among the trainable
    parameters or the optimizer's state once the trainer starts and after step 1, or among step 1's inputs; a T4 run
    has none (the course's precision rule), so a regression fails on the big GPU too."""
    from transformers import TrainerCallback

    def check(where: str, found: list[str]) -> None:
        if found:
            raise PrecisionError(f"{where}: bf16 on the GPU where a T4 has none ({', '.join(found[:5])}): the "
                                 "precision rule (utils.training.precision, fp32_trainable) was bypassed")

    class BF16Guard(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            check("trainer built", bf16_on_gpu(model, optimizer))

            def first_inputs(module, args, kwargs):
                check("step 1 inputs", bf16_on_gpu(module, None, [args, kwargs]))
                self.hook.remove()

            self.hook = model.register_forward_pre_hook(first_inputs, with_kwargs=True)

        def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
            if state.global_step == 1:
                check("step 1", bf16_on_gpu(model, optimizer))

    return BF16Guard


def activate() -> None:
    """What a verification run's kernel (or in-process run) does first: the T4 emulation when COURSE_EMULATE_T4=1 is
    set, then the probes."""
    if os.environ.get(EMULATE_VAR) == "1":
        record("emulation", what=emulate_t4())
    install()


def install() -> None:
    """Wrap from_pretrained and generate, and add a step timer to every Trainer (TRL's trainers included)."""
    import transformers.trainer
    from transformers import GenerationMixin, PreTrainedModel, TrainerCallback

    load = PreTrainedModel.from_pretrained.__func__

    def from_pretrained(cls, name, *args, **kwargs):
        start = time.perf_counter()
        model = load(cls, name, *args, **kwargs)
        record("load", model=str(name), cls=cls.__name__, seconds=round(time.perf_counter() - start, 3))
        return model

    generate = GenerationMixin.generate

    def timed_generate(self, *args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        start = time.perf_counter()
        out = generate(self, *args, **kwargs)
        seqs = getattr(out, "sequences", out)
        if ids is not None and hasattr(seqs, "shape"):
            new = int(seqs.shape[0] * (seqs.shape[-1] - ids.shape[-1]))
            record("generate", tokens=new, seconds=round(time.perf_counter() - start, 4))
        return out

    class StepTimer(TrainerCallback):
        """Seconds per optimizer step (all its gradient-accumulation micro-batches)."""

        def on_step_begin(self, args, state, control, **kwargs):
            self.start, self.cpu = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            record("step", step=state.global_step, seconds=round(time.perf_counter() - self.start, 4),
                   cpu_s=round(time.process_time() - self.cpu, 4))

    PreTrainedModel.from_pretrained = classmethod(from_pretrained)
    GenerationMixin.generate = timed_generate
    transformers.trainer.DEFAULT_CALLBACKS.append(StepTimer)


def startup_file(ipython_dir: Path) -> Path:
    """An IPython profile whose startup calls `activate()` (the kernel reads $IPYTHONDIR at start)."""
    folder = ipython_dir / "profile_default" / "startup"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "00-course-probe.py"
    path.write_text("from tools.hub import probe\nprobe.activate()\n", encoding="utf-8")
    return path


def summary(log: Path) -> dict[str, Any]:
    """Load seconds, per-step seconds (mean, median, count), generated tokens/s and peak RSS from a probe log."""
    import statistics

    events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []
    steps = [e["seconds"] for e in events if e["event"] == "step"]
    cpus = [e["cpu_s"] for e in events if e["event"] == "step" and "cpu_s" in e]
    loads = [e for e in events if e["event"] == "load"]
    gens = [e for e in events if e["event"] == "generate"]
    gen_s = sum(e["seconds"] for e in gens)
    return {"train_steps": len(steps), "step_s_mean": round(statistics.fmean(steps), 3) if steps else None,
            "step_s_median": round(statistics.median(steps), 3) if steps else None,
            "train_s": round(sum(steps), 1),
            "step_cpu_s_mean": round(statistics.fmean(cpus), 3) if cpus else None,
            "loads": len(loads), "load_s": round(sum(e["seconds"] for e in loads), 1),
            "load_s_max": max((e["seconds"] for e in loads), default=None),
            "generated_tokens": sum(e["tokens"] for e in gens), "generate_s": round(gen_s, 1),
            "gen_tok_s": round(sum(e["tokens"] for e in gens) / gen_s, 1) if gen_s else None,
            "peak_rss_mb_probe": max((e["peak_rss_mb"] for e in events), default=None),
            "peak_gpu_mb": max((e.get("peak_gpu_mb", 0) for e in events), default=0) or None,
            "emulation": next((e["what"] for e in events if e["event"] == "emulation"), None)}
