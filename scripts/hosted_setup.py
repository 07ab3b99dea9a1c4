"""Install what a hosted platform (Colab, Kaggle) lacks for the course: requirements/course.txt, never torch.

The first cell of every notebook clones the course and calls `install()` in its kernel, which sees the modules already
imported and so says whether the runtime must be restarted. Standard library only: it runs before anything is
installed. From a shell: python scripts/hosted_setup.py
"""
from __future__ import annotations

import importlib.metadata as md
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COURSE_LIST = ROOT / "requirements" / "course.txt"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def canonical(name: str) -> str:
    """A distribution name as pip compares it: lowercase, runs of '-', '_', '.' as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path: Path = COURSE_LIST) -> list[str]:
    """The requirement lines of `path` without comments and blank lines; ValueError naming a line pip would refuse."""
    reqs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.split(" #", 1)[0].split("\t#", 1)[0].strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("-") or not NAME.match(text) or "#" in text:
            raise ValueError(f"{path.name} line {number}: {line!r} is not a plain requirement; the hosted install "
                             "passes each line to pip on its own, so write one 'name<specifier>' per line")
        reqs.append(text)
    return reqs


def installed() -> dict[str, str]:
    """Installed distributions: canonical name -> version."""
    return {canonical(d.metadata["Name"]): d.version for d in md.distributions() if d.metadata["Name"]}


def changes(before: dict[str, str], after: dict[str, str]) -> list[tuple[str, str, str]]:
    """(name, old version or '-', new version) for every distribution the install added or changed."""
    return [(name, before.get(name, "-"), version) for name, version in sorted(after.items())
            if before.get(name) != version]


def loaded_changed(changed: list[tuple[str, str, str]], loaded: set[str]) -> list[str]:
    """Names of changed distributions whose modules the kernel had already imported (the old code is still in use)."""
    owners = md.packages_distributions()
    names = {name for name, old, _ in changed if old != "-"}
    return sorted({canonical(dist) for module in loaded for dist in owners.get(module, [])} & names)


def pip_command() -> list[str]:
    """pip of this Python; COURSE_PIP replaces it (the tests record the call instead of installing)."""
    override = os.environ.get("COURSE_PIP")
    return shlex.split(override) if override else [sys.executable, "-m", "pip"]


def install(loaded: set[str] | None = None) -> list[tuple[str, str, str]]:
    """pip-install requirements/course.txt, print what changed and whether a restart is needed; return the changes.
    `loaded`: the top-level modules already imported (default: this process's). RuntimeError when pip fails."""
    loaded = {m.split(".")[0] for m in sys.modules} if loaded is None else loaded
    reqs = read_requirements()
    print(f"[course setup] installing what this platform lacks from requirements/course.txt ({len(reqs)} packages "
          "checked, torch kept as it is); usually 20-60 s", flush=True)
    before, start = installed(), time.perf_counter()
    done = subprocess.run([*pip_command(), "install", "-q", *reqs])
    if done.returncode != 0:
        raise RuntimeError(f"pip failed (exit {done.returncode}): see its message above. Check the connection (on "
                           "Kaggle: Settings > Internet on) and run the cell again.")
    changed = changes(before, installed())
    seconds = time.perf_counter() - start
    if changed:
        print(f"[course setup] {len(changed)} packages installed or changed in {seconds:.0f} s:")
        print("\n".join(f"  {name:<28} {old:>12} -> {new}" for name, old, new in changed))
    else:
        print(f"[course setup] nothing to install: the platform has every package ({seconds:.0f} s)")
    stale = loaded_changed(changed, loaded)
    if stale:
        print(f"[course setup] RESTART NEEDED: {', '.join(stale)} changed after this runtime imported them. Restart "
              "the runtime (Colab: Runtime > Restart session; Kaggle: Run > Restart & clear cell outputs), then run "
              "all cells again: this cell will then find everything installed.")
    else:
        print("[course setup] ready: no restart needed")
    return changed


if __name__ == "__main__":
    install()
