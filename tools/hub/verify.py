"""Run notebooks in the cpu (or gpu) profile against the Hub stand-in, offline, with cut-down step counts and
evaluation sizes, and record what they cost: per-step training time, load time, generated tokens/s, peak RSS.
The stand-in is built (tools.hub.standin), served as a Hub (tools.hub.server), downloaded by `tools.hub.prefetch`
into a cache of its own, and the notebooks then run offline from that cache: the learner's path after `make prefetch`.

Usage: python -m tools.hub.verify --profile cpu [05 ...]   (exit 1 if a notebook fails)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from utils.env import OFFLINE_SWITCHES
from utils.manifest import KINDS
from utils.paths import ROOT, runs_dir

# Parameters that cut a notebook's steps and evaluation sizes for a verification run (sizes of models and
# sequences stay those of the profile).
CUT_DOWN: dict[str, dict[str, Any]] = {
    "01_tokenization": {},
    "02_bpe_from_scratch": {},
    "03_full_finetune_gpt2": {"MAX_STEPS": 40},
    "04_lora_qlora": {"MAX_STEPS": 6},
    "05_llama2_squad": {"SAMPLE_SIZES": [8], "EVAL_QUESTIONS": 10},
    "06_dpo": {"STEPS": 4},
    "07_gguf_inference": {"MAX_NEW_TOKENS": 16},
    "08_data_parallel": {"MAX_STEPS": 4},
}
# How a cut-down parameter scales a cost back to the profile's own setting: (setting, the cost it scales, how the
# setting counts that cost's work: the number itself, or a function of it).
SCALES: dict[str, list[tuple[str, str, Any]]] = {
    "MAX_STEPS": [("max_steps", "train_s", None)], "STEPS": [("steps", "train_s", None)],
    "SAMPLE_SIZES": [("sample_sizes", "train_s", sum),  # 05: examples trained
                     ("sample_sizes", "generate_s", lambda sizes: 3 + len(sizes))],  # 3 baselines + a run per size
    "EVAL_QUESTIONS": [("eval_questions", "generate_s", None)],
    "MAX_NEW_TOKENS": [("max_new_tokens", "generate_s", None)]}
_CHILD = """
import contextlib, json, resource, sys, traceback
from pathlib import Path
from tools import runner
from tools.hub import probe
path, profile, out, params = sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4])
in_process = sys.argv[5] == "in-process"
if in_process:
    probe.activate()  # a kernel does this from its startup file
try:
    with contextlib.redirect_stdout(sys.stderr):  # the cells' output goes to the log; stdout carries the result
        _, seconds = (runner.run_cells if in_process else runner.run_notebook)(Path(path), profile, out, params)
    error = ""
except Exception as err:  # papermill's error names the cell and the exception; run_cells' traceback goes to the log
    traceback.print_exc()
    seconds, error = None, f"{type(err).__name__}: {err}"
# the kernel's peak memory and CPU time, or this process's own when the cells ran here
usage = resource.getrusage(resource.RUSAGE_SELF if in_process else resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": seconds, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
                  "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "error": error}))
"""


def pythonpath() -> str:
    """The repository first on PYTHONPATH, ahead of what is there (e.g. the folder the gpu check installed its wheels
    into), for every process verify starts."""
    return os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


def standin_home() -> Path:
    """The Hugging Face cache that verify's prefetch fills from the stand-in Hub (COURSE_STANDIN_HOME, default
    .cache/standin-home; git-ignored): separate from the learner's own cache."""
    return Path(os.environ.get("COURSE_STANDIN_HOME", ROOT / ".cache" / "standin-home"))


@contextmanager
def served_hub(root: Path) -> Iterator[str]:
    """The stand-in Hub under `root` served by tools.hub.server in a child process on a free port; yields its
    HF_ENDPOINT and stops the server on exit (also when the body fails)."""
    proc = subprocess.Popen([sys.executable, "-m", "tools.hub.server", str(root)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": pythonpath()})
    try:
        line = proc.stdout.readline().strip()
        if not line.startswith("HF_ENDPOINT="):
            raise RuntimeError(f"the stand-in Hub did not start (exit {proc.poll()}): {line!r}")
        yield line.split("=", 1)[1]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cache_command(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "tools.hub.prefetch", *args], cwd=ROOT, env=env)
    if done.returncode:
        raise RuntimeError(f"`python -m tools.hub.prefetch {' '.join(args)}` failed (exit {done.returncode}): "
                           "see above")


def prefetched(profile: str, nbs: list[str] | None = None, hf_home: Path | None = None,
               kinds: list[str] | None = None, direct_models: bool = False) -> Path:
    """Build the stand-in of what `nbs` need in `profile`, serve it, download it into `hf_home` with `make prefetch`'s
    command, then check offline that the cache is complete; returns `hf_home`. With `direct_models` (the gpu check:
    a 13.5 GB Llama-2 is impractical to serve there) models and tokenizers are hard-linked into the cache instead,
    and only datasets and metrics are served and downloaded."""
    from tools.hub import manifest, standin

    hf_home = Path(hf_home or standin_home())
    root = standin.build(profile, nbs, kinds=kinds)
    if direct_models:
        for item in manifest.unique(manifest.manifest(profile, nbs, kinds)):
            if item.kind in ("model", "tokenizer"):
                standin.link_into_cache(root, hf_home, item.id)
        kinds = [k for k in kinds or KINDS if k not in ("model", "tokenizer")]
    selection = [a for nb in nbs or [] for a in ("--nb", nb)] + [a for k in kinds or [] for a in ("--kind", k)]
    online = {k: v for k, v in os.environ.items() if k not in OFFLINE_SWITCHES}
    with served_hub(root) as endpoint:
        print(f"[verify] prefetch {profile} from the stand-in Hub at {endpoint} into {hf_home}", flush=True)
        _cache_command(["prefetch", "--profile", profile, *selection],
                       {**online, "HF_HOME": str(hf_home), "HF_ENDPOINT": endpoint, "PYTHONPATH": pythonpath()})
    _cache_command(["check", "--profile", profile, *selection],
                   {**os.environ, **standin.offline_env(hf_home), "PYTHONPATH": pythonpath()})
    return hf_home


def child_env(hf_home: Path, ipython_dir: str, log: Path, t4: bool) -> dict[str, str]:
    """The run's environment: the stand-in's Hub, the probes' startup and log, the repository put first on PYTHONPATH
    (ahead of what is there, e.g. the folder the gpu check installed its wheels into), and with `t4` one GPU acting
    as a T4 (an environment variable, so every process the run starts inherits it)."""
    from tools.hub import probe
    from tools.hub.standin import offline_env

    return {**os.environ, **offline_env(hf_home), "IPYTHONDIR": ipython_dir, probe.LOG_VAR: str(log),
            "PYTHONPATH": pythonpath(), **({"CUDA_VISIBLE_DEVICES": "0", probe.EMULATE_VAR: "1"} if t4 else {})}


def verify_one(nb: Path, profile: str, out_dir: Path, hf_home: Path, timeout: int = 3600,
               t4: bool = False, in_process: bool = False) -> dict[str, Any]:
    """Run one notebook against the stand-in in a child process (in a kernel whose peak RSS is the child's children's,
    or `in_process` in the child itself, its output in <notebook>.log) with the cost probes installed, and with `t4`
    on one GPU made to act as a T4; returns the measurements and the error ('' when it passed)."""
    from tools.hub import probe

    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out_dir / nb.stem, ignore_errors=True)  # a fresh run: no checkpoint of an earlier one to resume
    log = out_dir / f"{nb.stem}.probe.jsonl"
    log.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as ipython_dir, open(out_dir / f"{nb.stem}.log", "w") as cells_log:
        probe.startup_file(Path(ipython_dir))
        params = json.dumps(CUT_DOWN.get(nb.stem, {}))
        start, load_before = time.perf_counter(), os.getloadavg()[0]
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(nb), profile, str(out_dir), params,
                                 "in-process" if in_process else "kernel"], cwd=ROOT,
                                env=child_env(hf_home, ipython_dir, log, t4), stdout=subprocess.PIPE,
                                stderr=cells_log, text=True, start_new_session=True)  # a timeout ends the kernel too
        try:
            stdout, why = proc.communicate(timeout=timeout)[0], ""
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            stdout, why = "", f"timed out after {timeout} s (the probe log has the steps done so far)"
    stderr = why or (out_dir / f"{nb.stem}.log").read_text(errors="replace")
    lines = stdout.strip().splitlines()
    child = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {
        "seconds": None, "peak_rss_mb": None, "cpu_s": None,
        "error": stderr.strip()[-2000:] or f"exit {proc.returncode}"}
    row = {"notebook": nb.stem, "profile": profile, "parameters": CUT_DOWN.get(nb.stem, {}),
           "wall_s": round(time.perf_counter() - start, 1), "cores": os.cpu_count(),
           "load_avg": [round(load_before, 1), round(os.getloadavg()[0], 1)], **child, **probe.summary(log)}
    row["projected_s"] = projected_s(row)
    row["projected_quiet_s"] = quiet_s(row)
    (out_dir / f"{nb.stem}.verify.json").write_text(json.dumps(row, indent=1), encoding="utf-8")
    return row


def projected_s(row: dict[str, Any]) -> float | None:
    """The profile's full run time from a cut-down one: measured training and generation seconds scaled by the
    profile's steps (sample sizes, questions, tokens) over the run's, plus everything else as measured."""
    from tools.hub.manifest import settings

    if row["error"] or row["seconds"] is None:
        return None
    full = settings(row["notebook"])[row["profile"]]
    ratios = {"train_s": 1.0, "generate_s": 1.0}
    for param, value in row["parameters"].items():
        for key, cost, count in SCALES[param]:
            count = count or (lambda v: v)
            ratios[cost] *= count(full[key]) / count(value)
    return round(row["seconds"] + sum((row[cost] or 0) * (r - 1) for cost, r in ratios.items()), 1)


def quiet_s(row: dict[str, Any]) -> float | None:
    """An estimate of the projected run on the same cores with nothing else running: the projection scaled by the
    kernel's CPU seconds per core over its wall seconds (1 when the run had the cores to itself; other jobs only
    stretch the wall time). Assumes the kernel keeps every core busy, so it is a lower bound."""
    if row.get("projected_s") is None or not row.get("cpu_s") or not row.get("seconds"):
        return None
    return round(row["projected_s"] * min(1.0, row["cpu_s"] / row["cores"] / row["seconds"]), 1)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The measurements as the README's table: per notebook the cut-down run, its per-step time, peak memory and the
    profile's projected run time."""
    lines = ["| notebook | run (cut-down) | training steps × s/step | generated tok/s | peak RSS | load average | "
             "projected full run |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        steps = f"{r['train_steps']} × {r['step_s_mean']:.1f}" if r["train_steps"] else "—"
        tok_s = f"{r['gen_tok_s']:.0f}" if r["gen_tok_s"] else "—"
        full = f"{r['projected_s'] / 60:.1f} min" if r["projected_s"] else "failed"
        load = " → ".join(map(str, r["load_avg"])) if r.get("load_avg") else "not recorded"
        # a run that timed out or crashed reported no seconds or memory of its own: its wall time says how far it got
        run = f"{r['seconds'] / 60:.1f} min" if r["seconds"] else f"stopped after {r['wall_s'] / 60:.1f} min"
        rss = f"{r['peak_rss_mb'] / 1024:.1f} GB" if r["peak_rss_mb"] else "—"
        lines.append(f"| {r['notebook'][:2]} | {run}, {r['parameters'] or 'as set'} | {steps} | {tok_s} | {rss} | "
                     f"{load} | {full} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from tools import measurements
    from tools.hub import manifest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("select", nargs="*", help="notebook numbers or names (default: all)")
    parser.add_argument("--profile", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per notebook (default 3600)")
    parser.add_argument("--table", action="store_true", help="print the last runs' measurements as a markdown table")
    parser.add_argument("--t4", action="store_true", help="on a bigger GPU, act as a T4: one GPU, fp16 (no bf16), "
                        "14.2 GiB of memory, no flash attention, a bf16 guard (probe.emulate_t4)")
    parser.add_argument("--in-process", action="store_true", help="run the cells in the child process, without "
                        "papermill or a Jupyter kernel (a machine that has neither)")
    args = parser.parse_args(argv)
    paths = [manifest.notebook_path(s) for s in args.select] if args.select else manifest.notebooks()
    out_dir = runs_dir() / f"verify-{args.profile}{'-t4' if args.t4 else ''}"
    if args.table:
        rows = [json.loads((out_dir / f"{p.stem}.verify.json").read_text()) for p in paths
                if (out_dir / f"{p.stem}.verify.json").is_file()]
        for row in rows:  # the projection follows the notebook's current settings
            row["projected_s"] = projected_s(row)
        print(markdown_table(rows))
        return 0
    hf_home = prefetched(args.profile, [p.stem for p in paths], direct_models=args.profile == "gpu")
    rows = []
    for nb in paths:
        print(f"[verify] {nb.stem} in {args.profile} against the stand-in, parameters {CUT_DOWN.get(nb.stem, {})}",
              flush=True)
        rows.append(verify_one(nb, args.profile, out_dir, hf_home, args.timeout, args.t4, args.in_process))
        row = rows[-1]
        if not row["error"]:
            measurements.record(args.profile, nb.stem, row, f"tools.hub.verify{' --t4' if args.t4 else ''}")
        status = "FAILED: " + row["error"].strip().splitlines()[-1][:200] if row["error"] else "passed"
        print(f"[verify] {nb.stem}: {status} in {row['wall_s']} s; steps {row['train_steps']} × "
              f"{row['step_s_mean']} s, loads {row['load_s']} s, {row['gen_tok_s']} generated tok/s, "
              f"peak RSS {row['peak_rss_mb']} MB, peak GPU {row['peak_gpu_mb']} MB; projected full {args.profile} "
              f"run {row['projected_s']} s (on quiet cores, estimate: {row['projected_quiet_s']} s)", flush=True)
    (out_dir / "summary.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(f"[verify] measurements: {out_dir}/summary.json; finished runs added to {measurements.FILE.name} (write the "
          "README's table from it: python -m tools.measurements write)")
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
