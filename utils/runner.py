"""Execute the course notebooks headless with papermill and print a one-screen summary of their results.

Usage: python -m utils.runner [--profile smoke] [01 03 ...]   (numbers or file names; default: all)
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from .env import ROOT, runs_dir
from .report import load_results


def notebooks(select: list[str] | None = None) -> list[Path]:
    """The course notebooks in order, optionally only those whose name starts with one of `select`."""
    found = sorted(ROOT.glob("[0-9][0-9]_*.ipynb"))
    if select:
        found = [p for p in found if any(p.name.startswith(s) or p.stem == s for s in select)]
        if not found:
            raise SystemExit(f"no notebook matches {select}")
    return found


def run_notebook(path: Path, profile: str = "auto", out_dir: Path | None = None,
                 parameters: dict[str, Any] | None = None, timeout: int = 1800) -> tuple[dict[str, Any], float]:
    """Execute one notebook (cwd = repository root), write the executed copy, return its results and seconds."""
    import papermill as pm

    out_dir = Path(out_dir or runs_dir())
    out_dir.mkdir(parents=True, exist_ok=True)
    env_before = os.environ.get("COURSE_RUNS_DIR")
    os.environ["COURSE_RUNS_DIR"] = str(out_dir)  # the kernel inherits it: results land beside the executed copy
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(path), str(out_dir / path.name), parameters={"PROFILE": profile, **(parameters or {})},
                            cwd=str(ROOT), kernel_name="python3", progress_bar=False, execution_timeout=timeout)
    finally:
        if env_before is None:
            os.environ.pop("COURSE_RUNS_DIR", None)
        else:
            os.environ["COURSE_RUNS_DIR"] = env_before
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
