import json

import numpy as np
import pandas as pd
import pytest

from utils import env, report


def test_results_json_has_headline_and_plain_types(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    ctx = env.start("99_demo", "smoke", {"smoke": {}, "cpu": {}, "gpu": {}})
    table = pd.DataFrame({"method": ["full"], "ppl": [np.float32(3.5)]})
    path = report.save_results(ctx, {"table": table, "nan": float("nan"), "arr": np.arange(3)}, {"ppl": 3.5})
    doc = json.loads(path.read_text())
    assert doc["headline"] == {"ppl": 3.5} and doc["profile"] == "smoke"
    assert doc["results"] == {"table": [{"index": 0, "method": "full", "ppl": 3.5}], "nan": None, "arr": [0, 1, 2]}
    with pytest.raises(ValueError, match="headline"):
        report.save_results(ctx, {}, {})


def test_headline_shown_after_saving_holds_plain_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    ctx = env.start("99_demo", "smoke", {"smoke": {}, "cpu": {}, "gpu": {}})
    headline = {"chars per token": round(np.float64(2.6612), 2), "rate": np.float32(0.5), "n": np.int64(3)}
    path = report.save_results(ctx, {}, headline)
    assert repr(headline) == "{'chars per token': 2.66, 'rate': 0.5, 'n': 3}"  # what the notebook's last line shows
    assert json.loads(path.read_text())["headline"] == headline


def test_progress_bars_are_off_in_headless_runs_and_when_not_asked_for(monkeypatch):
    from utils.ui import progress

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert not progress(range(3)).disable and progress(range(3), show=False).disable
    monkeypatch.setenv("TQDM_DISABLE", "1")  # what tools.runner sets for the kernels it starts
    assert progress(range(3)).disable and list(progress(range(3))) == [0, 1, 2]
