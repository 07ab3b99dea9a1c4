"""Execute the course notebooks headless with papermill (or, without Jupyter, in-process: `run_cells`) and print a
one-screen summary of their results.

Usage: python -m tools.runner [--profile smoke] [01 03 ...]   (numbers or file names; default: all)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from utils.paths import ROOT, runs_dir
from utils.report import load_results


def notebooks(select: list[str] | None = None) -> list[Path]:
    """The course notebooks in order, optionally only those whose name starts with one of `select`."""
    found = sorted(ROOT.glob("[0-9][0-9]_*.ipynb"))
    if select:
        found = [p for p in found if any(p.name.startswith(s) or p.stem == s for s in select)]
        if not found:
            raise SystemExit(f"no notebook matches {select}")
    return found


# A headless run saves its outputs for reading later. Progress-bar widgets do not survive in the saved copy (they show
# as bars frozen at 0 %), so bars are off there: tqdm's own switch, and the Hugging Face libraries' (which pass
# `disable=` themselves). Read by the kernel when it imports them, so set before it starts.
HEADLESS_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


def ipc_kernel_manager() -> type:
    """A kernel manager on local IPC sockets in a folder only this user can open: nothing listens on TCP, so the kernel
    has no 'running over TCP without encryption' warning to print. Its socket files go when it shuts down."""
    from jupyter_client.manager import AsyncKernelManager  # here: a machine without Jupyter can still run_cells

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            folder = Path(tempfile.gettempdir()) / f"course-kernels-{os.getuid()}"
            folder.mkdir(mode=0o700, exist_ok=True)
            super().__init__(transport="ipc", ip=str(folder / "kernel"), **kwargs)

    return IPCKernelManager


@contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """Set `env` in os.environ for the block (a kernel started inside inherits it), then restore what was there."""
    before = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_notebook(path: Path, profile: str = "auto", out_dir: Path | None = None,
                 parameters: dict[str, Any] | None = None, timeout: int = 1800) -> tuple[dict[str, Any], float]:
    """Execute one notebook (cwd = repository root), write the executed copy, return its results and seconds."""
    import papermill as pm

    out_dir = Path(out_dir or runs_dir())
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with environ({**HEADLESS_ENV, "COURSE_RUNS_DIR": str(out_dir)}):  # results land beside the executed copy
        pm.execute_notebook(str(path), str(out_dir / path.name), parameters={"PROFILE": profile, **(parameters or {})},
                            cwd=str(ROOT), kernel_name="python3", progress_bar=False, execution_timeout=timeout,
                            kernel_manager_class=ipc_kernel_manager())
    seconds = time.perf_counter() - start
    return load_results(out_dir / path.stem / "results.json"), seconds


def run_cells(path: Path, profile: str = "auto", out_dir: Path | None = None,
              parameters: dict[str, Any] | None = None) -> tuple[dict[str, Any], float]:
    """Execute a notebook's code cells in this process, in order and in one namespace, without Jupyter (the GPU
    machine has no papermill or kernel): the parameters are set after its parameters cell, as papermill injects them,
    and outputs go to stdout. An error names the cell. Returns its results and seconds."""
    out_dir = Path(out_dir or runs_dir())
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    namespace: dict[str, Any] = {"__name__": "__main__", "display": print}
    start = time.perf_counter()
    with environ({**HEADLESS_ENV, "COURSE_RUNS_DIR": str(out_dir)}):
        for number, cell in enumerate(cells):
            if cell["cell_type"] != "code":
                continue
            print(f"[cell {number}]", flush=True)
            exec(compile("".join(cell["source"]), f"{path.name} cell {number}", "exec"), namespace)  # noqa: S102
            if "parameters" in cell["metadata"].get("tags", []):
                namespace.update({"PROFILE": profile, **(parameters or {})})
    seconds = time.perf_counter() - start
    return load_results(out_dir / path.stem / "results.json"), seconds


def summary(rows: list[tuple[str, float, dict[str, Any] | None, str]]) -> str:
    """A plain-text table: notebook, seconds, profile and headline figures (or the error)."""
    lines = [f"{'notebook':<28} {'time':>7}  {'profile':<7}  headline results"]
    for name, seconds, res, error in rows:
        if res is None:
            lines.append(f"{name:<28} {seconds:>6.0f}s  {'-':<7}  FAILED: {error}")
            continue
        figures = ", ".join(f"{k}={_fmt(v)}" for k, v in res["headline"].items())
        lines.append(f"{name:<28} {seconds:>6.0f}s  {res['profile']:<7}  {figures}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("select", nargs="*", help="notebook numbers or names (default: all)")
    parser.add_argument("--profile", default="auto", help="auto (default), smoke, cpu or gpu")
    args = parser.parse_args(argv)
    rows = []
    for path in notebooks(args.select):
        print(f"[course] running {path.name} (profile {args.profile}) ...", flush=True)
        start = time.perf_counter()
        try:
            res, seconds = run_notebook(path, args.profile)
            rows.append((path.stem, seconds, res, ""))
        except Exception as err:  # keep going: one failed notebook must not hide the others' results
            rows.append((path.stem, time.perf_counter() - start, None, str(err).strip().splitlines()[-1][:160]))
        print(f"[course] {path.name}: {rows[-1][1]:.0f} s", flush=True)
    print("\n" + summary(rows))
    print(f"\nexecuted notebooks and results: {runs_dir()}/")
    return 0 if all(r[2] is not None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
