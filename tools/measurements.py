"""The course's one file of measured run times, `docs/measurements.json`, and what is written from it.

Producers add to it: `tools.hub.verify` each cpu (or gpu) run, the test suite its smoke times (`add-smoke`), and an
older verify folder can be added by hand (`add-verify`); 07's load test is entered with its source. From it, with the
download sizes of `utils.manifest.HUB_MB`, `write` renders the README's run-time table, each notebook's "Run time"
line, the table of every cpu run in docs/operations.md and the load test in docs/serving.md; `check` (a test) fails
when one of them is stale.

Usage: python -m tools.measurements write | check | add-smoke TIMES.json --source TEXT | add-verify DIR ...
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from pathlib import Path
from typing import Any

from tools.hub.manifest import download_mb, manifest, size_label, unique
from tools.hub.verify import SCALES
from tools.notebooks import absolute_links
from utils.paths import ROOT

FILE = ROOT / "docs" / "measurements.json"
KEEP = 6  # runs kept per notebook and profile: the newest
QUIET_LOAD_PER_CORE = 1.25  # a run is on quiet cores when its load average stayed at or below this many per core
MIN_RUNS = 3  # the cpu column gives a range only over at least this many quiet runs
# What a verify row keeps (the rest, like its error text, stays in runs/verify-*/).
ROW_KEYS = ("parameters", "seconds", "wall_s", "cores", "load_avg", "cpu_s", "train_steps", "step_s_mean", "train_s",
            "generate_s", "gen_tok_s", "peak_rss_mb", "peak_gpu_mb", "projected_s", "projected_quiet_s")
TIMES_TABLE = ("<!-- run times: python -m tools.measurements write -->\n", "<!-- /run times -->")
CPU_RUNS = ("<!-- cpu runs: python -m tools.measurements write -->\n", "<!-- /cpu runs -->")
LOAD_TEST = ("<!-- load test: python -m tools.measurements write -->\n", "<!-- /load test -->")
RUN_TIME_LINE = re.compile(r"^\*\*Run time:\*\*.*?(?=\n\n|\Z)", re.MULTILINE | re.DOTALL)


def load() -> dict[str, Any]:
    """The measurements file as a dict (notebook -> notes, gpu estimate, runs per profile)."""
    return json.loads(FILE.read_text(encoding="utf-8"))


def save(data: dict[str, Any]) -> None:
    FILE.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def record(profile: str, notebook: str, row: dict[str, Any], source: str, data: dict[str, Any] | None = None) -> None:
    """Add one run of `notebook` in `profile` (a verify row, or {"seconds": ...}) to the file, keeping the newest
    KEEP; a failed run is not a time and is refused."""
    if row.get("error") or row.get("seconds") is None:
        raise ValueError(f"{notebook} ({profile}): a failed or unfinished run has no run time to record")
    own = data is None
    data = load() if own else data
    if notebook not in data["notebooks"]:
        raise KeyError(f"{notebook} is not in {FILE.name}: add its entry (notes, gpu estimate) first")
    kept = {k: row[k] for k in ROW_KEYS if k in row}
    kept.update(date=row.get("date") or datetime.date.today().isoformat(), source=source)
    runs = data["notebooks"][notebook].setdefault(profile, [])
    runs.append(kept)
    del runs[:-KEEP]
    if own:
        save(data)


def quiet(run: dict[str, Any]) -> bool:
    """True when the run's load average, at its start and end, stayed within QUIET_LOAD_PER_CORE per core."""
    return bool(run.get("load_avg")) and max(run["load_avg"]) <= QUIET_LOAD_PER_CORE * run.get("cores", 2)


def lower_bound(run: dict[str, Any]) -> bool:
    """True when the run cut a parameter whose cost the probes did not see (08 trains in processes it launches, 07
    generates with llama.cpp): its projection is then the cut-down run's own time, a lower bound."""
    return any(not run.get(cost) for name in run.get("parameters", {}) for _, cost, _ in SCALES[name])


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _span(values: list[float], fmt: str) -> str:
    low, high = format(min(values), fmt), format(max(values), fmt)
    return low if low == high else f"{low}–{high}"


def cpu_summary(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The cpu column from the quiet runs (all runs when fewer than MIN_RUNS are quiet, said so): projected full
    run range, per-step range, counts."""
    runs = [r for r in entry.get("cpu", []) if r.get("projected_s")]
    if not runs:
        return None
    calm = [r for r in runs if quiet(r)]
    used = calm if len(calm) >= MIN_RUNS else runs
    minutes = [r["projected_s"] / 60 for r in used]
    steps = [r["step_s_mean"] for r in used if r.get("step_s_mean")]
    at_least = "at least " if any(lower_bound(r) for r in used) else ""
    n = len(used)
    how = (f"{n} quiet runs" if len(calm) >= MIN_RUNS else f"{n} run{'s' * (n > 1)}, fewer than {MIN_RUNS}"
           if n < MIN_RUNS else f"{n} runs, fewer than {MIN_RUNS} of them on quiet cores")
    return {"runs": n, "quiet": len(calm) >= MIN_RUNS, "how": how, "minutes": at_least + (
            _span(minutes, ".1f") + " min" if max(minutes) >= 1.5 else _span([m * 60 for m in minutes], ".0f") + " s"),
            "step_s": _span(steps, ".1f") + " s" if steps else "—",
            "loads": _span([x for r in used for x in r["load_avg"]], ".1f")}


def _cpu_cell(s: dict[str, Any] | None) -> str:
    if s is None:
        return "not measured yet"
    return f"{s['minutes']} ({s['how']}; load {s['loads']})"


def _downloads(profile: str) -> dict[str, str]:
    """Each notebook's first download in `profile`, and under "all" every item once."""
    by_nb = manifest(profile)
    return {**{stem: size_label(download_mb(items)) for stem, items in by_nb.items()},
            "all": size_label(download_mb(unique(by_nb)))}


def _smoke(entry: dict[str, Any]) -> str:
    return _minutes(entry["smoke"][-1]["seconds"]) if entry.get("smoke") else "not measured yet"


def times_table(data: dict[str, Any], cpu_mb: dict[str, str], gpu_mb: dict[str, str]) -> str:
    """The README's table: per notebook its smoke time, the cpu range and per-step time, the gpu estimate and the
    first download of each profile (`_downloads`)."""
    lines = ["| notebook | smoke (CI) | cpu, 2 cores, projected full run | cpu s per training step | "
             "gpu, T4 (estimate) | first download cpu / gpu |", "| --- | --- | --- | --- | --- | --- |"]
    for stem, entry in data["notebooks"].items():
        summary = cpu_summary(entry)
        lines.append(f"| {stem[:2]} | {_smoke(entry)} | {_cpu_cell(summary)} | "
                     f"{summary['step_s'] if summary else '—'} | {entry['gpu_estimate']} | "
                     f"{cpu_mb[stem]} / {gpu_mb[stem]} |")
    smoke_all = sum(e["smoke"][-1]["seconds"] for e in data["notebooks"].values() if e.get("smoke"))
    lines.append(f"| all | {_minutes(smoke_all)} | | | | {cpu_mb['all']} / {gpu_mb['all']} (each item once) |")
    return "\n".join(lines)


def run_time_line(entry: dict[str, Any], cpu_download: str) -> str:
    """A notebook's "Run time" paragraph, from the same figures as the README's table."""
    s = cpu_summary(entry)
    notes = entry["notes"]
    cpu = (f"cpu {s['minutes']} on 2 cores (projected from cut-down runs against the Hub stand-in: {s['how']}), "
           f"plus a first download of {cpu_download}" if s else "cpu not measured yet")
    parts = [f"smoke {_smoke(entry)} on 2 CPU cores, offline"
             + (f" ({notes['smoke']})" if notes.get("smoke") else ""),
             cpu + (f" ({notes['cpu']})" if notes.get("cpu") else ""),
             f"gpu {entry['gpu_estimate']}" + (f" ({notes['gpu']})" if notes.get("gpu") else "")]
    return absolute_links("**Run time:** " + "; ".join(parts) + ". Every figure comes from the [README's run-time "
                          "table](README.md#run-times-and-first-downloads).")


def cpu_runs_table(data: dict[str, Any]) -> str:
    """Every recorded cpu run: its cut-down parameters, steps × s/step, tok/s, peak RSS, load average, projection."""
    lines = ["| notebook | date | run (cut-down) | training steps × s/step | generated tok/s | peak RSS | "
             "load average | projected full run | quiet |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for stem, entry in data["notebooks"].items():
        for r in entry.get("cpu", []):
            steps = f"{r['train_steps']} × {r['step_s_mean']:.1f}" if r.get("train_steps") else "—"
            tok_s = f"{r['gen_tok_s']:.0f}" if r.get("gen_tok_s") else "—"
            full = ("≥ " if lower_bound(r) else "") + _minutes(r["projected_s"])
            lines.append(f"| {stem[:2]} | {r['date']} | {_minutes(r['seconds'])}, {r['parameters'] or 'as set'} | "
                         f"{steps} | {tok_s} | {r['peak_rss_mb'] / 1024:.1f} GB | "
                         f"{' → '.join(map(str, r['load_avg']))} | {full} | "
                         f"{'yes' if quiet(r) else 'no'} |")
    return "\n".join(lines)


def load_test_table(data: dict[str, Any]) -> str:
    """07's load test as docs/serving.md shows it: per server and number of users, the rates and latencies."""
    lines = ["| server | users | tokens/s (all users) | median first token (s) | p95 latency (s) | failed | "
             "served well |", "| --- | --- | --- | --- | --- | --- | --- |"]
    shown = None
    for r in data["serving"]["rows"]:
        name, shown = ("" if r["server"] == shown else r["server"]), r["server"]
        lines.append(f"| {name} | {r['users']} | {r['tok_s']:.0f} | {r['median_first_token_s']:.2f} | "
                     f"{r['p95_latency_s']:.2f} | {r['failed']} | {r['served_well']} |")
    return "\n".join(lines)


def served_well_tok_s(data: dict[str, Any]) -> dict[str, float]:
    """Per server, the tokens/s at the most users it served well: what docs/serving.md's arithmetic divides by."""
    best: dict[str, float] = {}
    for r in data["serving"]["rows"]:
        if r["served_well"] == "yes":
            best[r["server"]] = r["tok_s"]
    return best


def _replace_block(text: str, markers: tuple[str, str], body: str, where: str) -> str:
    start, end = markers
    if start not in text or end not in text:
        raise ValueError(f"{where} has no block {start.strip()} … {end}: add the two markers where the table goes")
    head, rest = text.split(start, 1)
    return head + start + body + "\n" + end + rest.split(end, 1)[1]


def rendered(data: dict[str, Any]) -> dict[Path, str]:
    """Each file written from the measurements, as it should read now."""
    out = {}
    readme, ops = ROOT / "README.md", ROOT / "docs" / "operations.md"
    cpu_mb, gpu_mb = _downloads("cpu"), _downloads("gpu")  # each reads every notebook's SETTINGS: once a render
    out[readme] = _replace_block(readme.read_text(encoding="utf-8"), TIMES_TABLE, times_table(data, cpu_mb, gpu_mb),
                                 "README.md")
    out[ops] = _replace_block(ops.read_text(encoding="utf-8"), CPU_RUNS, cpu_runs_table(data), "docs/operations.md")
    serving = ROOT / "docs" / "serving.md"
    out[serving] = _replace_block(serving.read_text(encoding="utf-8"), LOAD_TEST, load_test_table(data),
                                  "docs/serving.md")
    for stem, entry in data["notebooks"].items():
        path = ROOT / f"{stem}.ipynb"
        nb = json.loads(path.read_text(encoding="utf-8"))
        header, found = next((c, m) for c in nb["cells"] if c["cell_type"] == "markdown"
                             for m in [RUN_TIME_LINE.search("".join(c["source"]))] if m)
        text = found.string
        header["source"] = (text[:found.start()] + run_time_line(entry, cpu_mb[stem]) + text[found.end():]
                            ).splitlines(True)
        out[path] = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    return out


def stale(data: dict[str, Any] | None = None) -> list[str]:
    """The files whose tables or run-time lines differ from the measurements."""
    return [str(p.relative_to(ROOT)) for p, text in rendered(data or load()).items()
            if p.read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["write", "check", "add-smoke", "add-verify"])
    parser.add_argument("paths", nargs="*", type=Path, help="add-smoke: a smoke-times JSON; add-verify: folders")
    parser.add_argument("--source", default="", help="where the figures come from (a CI run, a machine)")
    args = parser.parse_args(argv)
    data = load()
    if args.command == "add-smoke":
        for path in args.paths:
            for stem, seconds in json.loads(path.read_text()).items():
                record("smoke", stem, {"seconds": round(seconds, 1)}, args.source or str(path), data)
    elif args.command == "add-verify":
        for row_file in sorted(f for folder in args.paths for f in folder.glob("*.verify.json")):
            row = json.loads(row_file.read_text())
            if row.get("error"):
                print(f"[measurements] skipped {row_file}: the run failed")
                continue
            row["date"] = datetime.date.fromtimestamp(row_file.stat().st_mtime).isoformat()
            record(row["profile"], row["notebook"], row, args.source or "tools.hub.verify", data)
    if args.command == "check":
        old = stale(data)
        print("\n".join(f"{p}: stale (python -m tools.measurements write)" for p in old) or "all up to date")
        return 1 if old else 0
    save(data)
    for path, text in rendered(data).items():
        path.write_text(text, encoding="utf-8")
    print(f"[measurements] {FILE.relative_to(ROOT)} → README.md, docs/operations.md, docs/serving.md and the "
          "notebooks' run-time lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
