"""The one measurements file and what is written from it: the README's run-time table, docs/operations.md's cpu runs
and each notebook's "Run time" line are current, and the cpu column is a range over quiet runs."""
import copy

import pytest

from tools import measurements


def run(projected_s: float, load: list[float], step_s: float = 2.0) -> dict:
    return {"parameters": {"MAX_STEPS": 4}, "seconds": 60.0, "cores": 2, "load_avg": load, "train_steps": 4,
            "step_s_mean": step_s, "train_s": 4 * step_s, "gen_tok_s": 20.0, "peak_rss_mb": 2048.0,
            "projected_s": projected_s}


def test_the_readme_the_operations_page_and_every_run_time_line_are_written_from_the_file():
    assert measurements.stale() == [], "stale: run python -m tools.measurements write"


def test_every_notebook_has_its_notes_gpu_estimate_and_a_smoke_time():
    data = measurements.load()
    for stem, entry in data["notebooks"].items():
        assert entry["gpu_estimate"] and {"gpu"} <= set(entry["notes"]), stem
        assert entry["smoke"] and entry["smoke"][-1]["seconds"] > 0 and entry["smoke"][-1]["source"], stem


def test_the_cpu_column_is_a_range_over_quiet_runs_and_says_when_it_is_not():
    entry = {"cpu": [run(400, [1.0, 2.0], 1.9), run(460, [2.4, 2.0], 2.2), run(430, [1.5, 1.8], 2.0),
                     run(900, [5.0, 6.0], 4.0)]}
    summary = measurements.cpu_summary(entry)
    assert summary == {"runs": 3, "quiet": True, "how": "3 quiet runs", "minutes": "6.7–7.7 min", "step_s": "1.9–2.2 s",
                       "loads": "1.0–2.4"}
    busy = measurements.cpu_summary({"cpu": entry["cpu"][2:]})  # one quiet run: all runs, and it says so
    assert busy["runs"] == 2 and not busy["quiet"] and busy["minutes"] == "7.2–15.0 min"
    assert "2 runs, fewer than 3;" in measurements._cpu_cell(measurements.cpu_summary({"cpu": entry["cpu"][2:]}))
    assert "4 runs, fewer than 3 of them on quiet cores" in measurements._cpu_cell(
        measurements.cpu_summary({"cpu": entry["cpu"][2:] * 2}))
    assert measurements.cpu_summary({"cpu": []}) is None


def test_record_keeps_the_newest_runs_and_refuses_a_failed_one():
    data = copy.deepcopy(measurements.load())
    for i in range(measurements.KEEP + 2):
        measurements.record("cpu", "04_lora_qlora", {**run(100 + i, [1.0, 1.0]), "error": ""}, "test", data)
    runs = data["notebooks"]["04_lora_qlora"]["cpu"]
    assert len(runs) == measurements.KEEP and runs[-1]["projected_s"] == 100 + measurements.KEEP + 1
    assert runs[-1]["source"] == "test" and "error" not in runs[-1]
    with pytest.raises(ValueError, match="failed or unfinished"):
        measurements.record("cpu", "04_lora_qlora", {**run(1, [1, 1]), "error": "boom"}, "test", data)
    with pytest.raises(KeyError, match="09_new"):
        measurements.record("smoke", "09_new", {"seconds": 3.0}, "test", data)


def test_a_notebook_line_and_the_table_carry_the_same_figures():
    data = copy.deepcopy(measurements.load())
    entry = data["notebooks"]["03_full_finetune_gpt2"]
    entry["cpu"] = [run(400, [1.0, 2.0]), run(460, [2.4, 2.0]), run(430, [1.5, 1.8])]
    line = measurements.run_time_line(entry, "363 MB")
    table = measurements.times_table(data, measurements._downloads("cpu"), measurements._downloads("gpu"))
    row = next(r for r in table.splitlines() if r.startswith("| 03 |"))
    assert "6.7–7.7 min" in line and "6.7–7.7 min" in row and "3 quiet runs" in line and "3 quiet runs" in row
    assert f"smoke {measurements._minutes(entry['smoke'][-1]['seconds'])}" in line


def test_the_serving_arithmetic_divides_by_the_load_tests_figures():
    data = measurements.load()
    best = measurements.served_well_tok_s(data)
    page = (measurements.ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
    assert len(best) == 2, "one queued and one batching server"
    for tok_s in best.values():
        assert f"**{tok_s:.0f} tokens/s**" in page and f"÷ {tok_s:.0f} =" in page, tok_s


def test_a_run_whose_cut_cost_the_probes_did_not_see_is_a_lower_bound():
    launched = {**run(175, [1.2, 1.1]), "train_steps": 0, "train_s": 0}  # 08: training in launched processes
    probed = {**run(400, [1.0, 1.0]), "train_s": 30.0}
    assert measurements.lower_bound(launched) and not measurements.lower_bound(probed)
    assert measurements.cpu_summary({"cpu": [launched] * 3})["minutes"] == "at least 2.9 min"
    assert measurements.cpu_summary({"cpu": [probed] * 3})["minutes"] == "6.7 min"
