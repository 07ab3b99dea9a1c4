"""Shared fixtures: run a notebook once per session in the smoke profile and hand its results to the tests."""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tools.runner import run_notebook
from utils.paths import ROOT

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach for the network
_TIMES: dict[str, float] = {}
_RESULTS: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="session")
def notebook(tmp_path_factory) -> Callable[..., dict[str, Any]]:
    """notebook('03_full_finetune_gpt2') -> its results.json, executing it in smoke the first time it is asked."""
    out = tmp_path_factory.mktemp("runs")

    def run(name: str, **parameters: Any) -> dict[str, Any]:
        key = name + repr(sorted(parameters.items()))
        if key not in _RESULTS:
            results, seconds = run_notebook(ROOT / f"{name}.ipynb", "smoke", out / key_dir(key), parameters)
            _RESULTS[key], _TIMES[key] = results, seconds
            results["_out_dir"] = str(out / key_dir(key) / name)
        return _RESULTS[key]

    return run


def key_dir(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in key)[:80]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _TIMES:
        terminalreporter.write_sep("-", "notebook run times (smoke profile)")
        for key, seconds in _TIMES.items():
            terminalreporter.write_line(f"{key:<60} {seconds:7.1f} s")
        terminalreporter.write_line(f"{'all notebooks':<60} {sum(_TIMES.values()):7.1f} s")
        plain = {key.split("[")[0]: seconds for key, seconds in _TIMES.items() if key.endswith("[]")}
        (ROOT / "runs").mkdir(exist_ok=True)
        (ROOT / "runs" / "smoke-times.json").write_text(json.dumps(plain, indent=1))
        terminalreporter.write_line("written to runs/smoke-times.json: python -m tools.measurements add-smoke "
                                    "runs/smoke-times.json --source '<where>' records them")


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A scratch data folder with a two-file corpus, for tests of the loaders."""
    for split in ("train", "valid"):
        (tmp_path / "corpus" / split).mkdir(parents=True)
    train = " = Alpha = \n\nFirst text.\n\n = Beta = \n\n = = Part = = \n\nB.\n"
    (tmp_path / "corpus" / "train" / "a.txt").write_text(train)
    (tmp_path / "corpus" / "valid" / "a.txt").write_text(" = Gamma = \n\nHeld out.\n")
    return tmp_path
