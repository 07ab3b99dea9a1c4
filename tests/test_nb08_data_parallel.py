"""08_data_parallel in smoke: two gloo processes against one process with accumulation, and the same script launched
as two "machines" on this host with torchrun's c10d rendezvous."""
import math
from pathlib import Path

import pytest

from utils import ddp, ddp_train


@pytest.fixture(scope="module")
def res(notebook):
    return notebook("08_data_parallel")


def test_two_gloo_processes_ran_the_recipe_for_ddp(res):
    r = res["results"]
    assert res["profile"] == "smoke" and r["processes"] == 2 and r["gpus"] == []
    par = r["runs"]["parallel"]["0.0"]
    assert (par["world_size"], par["backend"], par["distributed"]) == (2, "gloo", "ParallelMode.DISTRIBUTED")
    assert par["ddp_find_unused_parameters"] is False and par["mixed_precision"] == "no"
    assert [rank["rank"] for rank in par["ranks"]] == [0, 1]
    single = r["runs"]["single"]
    assert {run["world_size"] for run in single.values()} == {1} and single["0.05"]["accumulation"] == 2
    assert single["0.05"]["dropout"] == 0.05 and single["0.0"]["dropout"] == 0.0


def test_rank_slices_are_disjoint_and_make_up_the_global_batch(res):
    r = res["results"]
    assert r["disjoint"] and r["covers"]
    steps = ddp.global_batches(r["runs"]["parallel"]["0.0"])
    assert len(steps) == 6 and all(len(piece) == 4 and -1 not in piece for step in steps for piece in step)


def test_two_processes_equal_one_process_with_accumulation_bitwise(res):
    r = res["results"]
    assert r["dropout 0"] == {"loss": 0.0, "lora": 0.0}
    assert 0 < r["dropout"]["loss"] < 0.5 and 0 < r["dropout"]["lora"]  # other masks: measured, small


def test_speed_is_measured_and_explained(res):
    r = res["results"]
    speeds = {row["index"]: row for row in r["speed"]}
    for name in ("single", "parallel"):
        assert speeds[name]["samples/s"] > 0 and speeds[name]["seconds per step"] > 0
        assert speeds[name]["samples per step"] == 8
    assert f"{speeds['parallel']['samples/s']:.1f} samples/s" in r["verdict"][0]
    assert r["verdict"][-1].startswith("Estimate, not measured") and r["allreduce_ms"] > 0


def test_only_rank_0_wrote_and_exercises_pass(res):
    out = Path(res["_out_dir"])
    for launch in ("parallel", "single"):
        assert sorted(p.name for p in (out / launch).iterdir()) == ["dropout-0.0", "dropout-0.05", "launch.log"]
        for dropout in (0.0, 0.05):
            assert sorted(p.name for p in ddp_train.run_dir(out / launch, dropout).iterdir()) == [
                "adapter", "results.json"]
    assert res["results"]["exercises"] == {"08.1": True, "08.2": True}


def test_the_script_runs_as_two_machines_with_a_c10d_rendezvous(res, tmp_path):
    """Two torchrun agents on this host, one process each, meeting at localhost:PORT: the same losses and LoRA
    weights as the notebook's two-process accelerate run."""
    args = ddp.script_args(res["settings"], tmp_path, [0.0], 1)
    cmd = ddp.torchrun_command(2, 1, f"localhost:{ddp.free_port()}", f"test-{tmp_path.name}", args)
    nodes = [ddp.start(cmd, ddp.launch_env([]), tmp_path / f"node{n}.log") for n in range(2)]
    for n, node in enumerate(nodes):
        ddp.finish(node, tmp_path / f"node{n}.log", timeout=240)
    run = ddp.read(tmp_path, 0.0)
    assert run["world_size"] == 2 and sorted(rank["node"] for rank in run["ranks"]) == [0, 1]
    par = res["results"]["runs"]["parallel"]["0.0"]
    assert ddp.loss_diff(run, par) == 0 and math.isfinite(run["losses"][-1][1])
    assert ddp.lora_diff(tmp_path, Path(res["_out_dir"]) / "parallel", 0.0) == 0


# Every headline figure and outcome-stating sentence of 08, and the test that computes or checks it.
CLAIMS = {
    "headline 'processes'": "test_two_gloo_processes_ran_the_recipe_for_ddp",
    "headline 'max |loss diff| dropout 0' (bitwise equal)":
        "test_two_processes_equal_one_process_with_accumulation_bitwise",
    "headline 'max |loss diff| dropout 0.05' (measured)":
        "test_two_processes_equal_one_process_with_accumulation_bitwise",
    "headline 'samples/s 1 -> 2 processes' and the speed sentences (ddp.verdict)":
        "test_speed_is_measured_and_explained",
    "the rank slices are disjoint and cover the batch": "test_rank_slices_are_disjoint_and_make_up_the_global_batch",
}


def test_every_claim_has_its_check():
    assert all(callable(globals()[name]) for name in CLAIMS.values())
