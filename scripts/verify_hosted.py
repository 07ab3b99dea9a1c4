"""Run the notebooks' real first cell in a venv seeded like Colab or Kaggle, and check what it did to the platform.

Usage: python scripts/verify_hosted.py [colab|kaggle ...]   (`make verify-hosted`; needs PyPI, a few minutes each)
For each platform it builds a throwaway venv with the versions in requirements/platforms/<platform>-<date>.txt (torch
is the CPU build on this disk: the platforms' CUDA builds are GBs), runs the setup cell with COURSE_HOSTED=1 against a
clone of this repository, and asserts: no invalid requirement, no new pip conflict, no platform pin broken, numpy kept
or the restart notice shown, `import utils, transformers, peft, trl, bitsandbytes, datasets` working afterwards, and
a second run of the cell (what a learner does after the restart) installing nothing.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hosted_setup import ROOT, canonical, read_requirements  # noqa: E402

PLATFORMS = ROOT / "requirements" / "platforms"
TORCH = "torch==2.13.0"  # the CPU wheel on this machine's disk stands in for the platforms' CUDA builds
IMPORTS = "import utils, transformers, peft, trl, bitsandbytes, datasets; print(transformers.__version__)"


def platform_file(name: str) -> Path:
    """requirements/platforms/<name>-<date>.txt; ValueError listing the known platforms."""
    found = sorted(PLATFORMS.glob(f"{name}-*.txt"))
    if not found:
        known = sorted({p.name.split("-")[0] for p in PLATFORMS.glob("*.txt")})
        raise ValueError(f"no package list for platform '{name}': choose from {known}")
    return found[-1]


def platform_rules(path: Path) -> tuple[set[str], list[str]]:
    """From a platform file's comments: the packages it provides (canonical names) and its pins (requirements)."""
    provides, pins = set(), []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# provides:"):
            provides |= {canonical(n) for n in line.split(":", 1)[1].split()}
        elif line.startswith("# pin:"):
            pins.append(line.split(":", 1)[1].split("(")[0].strip())
    return provides, pins


def seed_versions(path: Path) -> list[str]:
    """The `name==version` lines of a platform file (what its venv is seeded with)."""
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and ln[0] != "#"]


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def _pip_check(py: Path) -> set[str]:
    return {ln for ln in _run([str(py), "-m", "pip", "check"]).stdout.splitlines() if "has requirement" in ln
            or "requires" in ln}


def _version(py: Path, dist: str) -> str:
    return _run([str(py), "-c", f"import importlib.metadata as m; print(m.version('{dist}'))"]).stdout.strip()


def verify(name: str, work: Path) -> dict:
    """Seed a venv like platform `name`, run the first cell in it, return what happened; AssertionError on a failure."""
    path = platform_file(name)
    venv, py = work / "venv", work / "venv" / "bin" / "python"
    print(f"[{name}] seeding {venv} from {path.name}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    seeded = _run([str(py), "-m", "pip", "install", "-q", TORCH, *seed_versions(path)])
    assert seeded.returncode == 0, f"seeding failed: {seeded.stderr[-2000:]}"
    conflicts_before, numpy_before = _pip_check(py), _version(py, "numpy")
    cell = json.loads((ROOT / "01_tokenization.ipynb").read_text())["cells"][1]["source"]
    driver = "import numpy, pandas, psutil\n" + "".join(cell)  # a kernel has these loaded when the cell runs
    env = {"COURSE_HOSTED": "1", "COURSE_REPO_URL": f"file://{ROOT}", "PATH": f"{venv}/bin:/usr/bin:/bin",
           "HOME": str(work)}
    start = time.perf_counter()
    ran = _run([str(py), "-c", driver], cwd=work, env=env)
    seconds = time.perf_counter() - start
    print(ran.stdout[-3000:], ran.stderr[-3000:], sep="\n", flush=True)
    assert ran.returncode == 0, f"the first cell failed on {name}"
    assert "Invalid requirement" not in ran.stderr
    new_conflicts = _pip_check(py) - conflicts_before
    assert not new_conflicts, f"the install broke platform packages: {sorted(new_conflicts)}"
    numpy_after = _version(py, "numpy")
    assert numpy_after == numpy_before or "RESTART NEEDED" in ran.stdout, (numpy_before, numpy_after)
    imported = _run([str(py), "-c", IMPORTS], cwd=work / ROOT.name, env=env)  # the cell clones into the repo's name
    assert imported.returncode == 0, f"imports failed after the install: {imported.stderr[-1500:]}"
    again = _run([str(py), "-c", driver], cwd=work, env=env)  # after the restart: the cell runs once more
    assert again.returncode == 0 and "nothing to install" in again.stdout and "no restart needed" in again.stdout, (
        f"the second run of the cell (after a restart) was not clean: {again.stdout[-1500:]}")
    changed = re.findall(r"^\s+(\S+)\s+(\S+) -> (\S+)$", ran.stdout, flags=re.M)
    return {"platform": name, "list": path.name, "seconds": round(seconds), "changed": changed,
            "restart": "RESTART NEEDED" in ran.stdout, "numpy": [numpy_before, numpy_after]}


def main(names: list[str]) -> int:
    read_requirements()  # fail early on an invalid line
    reports = []
    for name in names or ["colab", "kaggle"]:
        with tempfile.TemporaryDirectory(prefix=f"hosted-{name}-") as tmp:
            reports.append(verify(name, Path(tmp)))
    for r in reports:
        print(f"{r['platform']}: first cell {r['seconds']} s, {len(r['changed'])} packages changed, numpy "
              f"{r['numpy'][0]} -> {r['numpy'][1]}, restart notice: {r['restart']}")
        print("  " + ", ".join(f"{n} {a}->{b}" for n, a, b in r["changed"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
