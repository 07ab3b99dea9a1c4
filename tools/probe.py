"""Cost probes for a notebook run, installed in its kernel without changing the notebook: model load time, time per
training step, generated tokens per second. Each measurement is one JSON line in $COURSE_PROBE_LOG.

`python -m tools.verify` installs them through an IPython startup file (`startup_file()`).
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
T4_MEMORY = 15 * 2**30  # what a T4 offers (its 16 GB less CUDA's own share)


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
    """Make a bigger GPU behave like a T4 for the course's code: no native bf16 (so training.precision() picks fp16)
    and at most 15 GiB of GPU memory for this process. Call before any CUDA work; returns what it did."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device: nothing to emulate"
    torch.cuda.is_bf16_supported = lambda including_emulation=True: False
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, T4_MEMORY / total), 0)
    return f"T4 emulation: fp16 (no bf16), {T4_MEMORY / 2**30:.0f} GiB of the GPU's {total / 2**30:.0f} GiB"


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


def startup_file(ipython_dir: Path, t4: bool = False) -> Path:
    """An IPython profile whose startup installs the probes, and with `t4` the T4 emulation (the kernel reads
    $IPYTHONDIR at start)."""
    folder = ipython_dir / "profile_default" / "startup"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "00-course-probe.py"
    emulate = "probe.record('emulation', what=probe.emulate_t4())\n" if t4 else ""
    path.write_text(f"from tools import probe\n{emulate}probe.install()\n", encoding="utf-8")
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
