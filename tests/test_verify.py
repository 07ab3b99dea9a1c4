"""The verification runs' settings and cost summary (the runs themselves: tests/test_standin_runs.py)."""
import ast
import json
import os

import pytest

from tools.hub import manifest, probe, verify


def _parameters(nb: str) -> set[str]:
    cells = json.loads(manifest.notebook_path(nb).read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c["metadata"].get("tags", []))
    return {t.id for stmt in ast.parse("".join(cell["source"])).body if isinstance(stmt, ast.Assign)
            for t in stmt.targets}


def test_cut_down_parameters_exist_in_each_notebook():
    assert set(verify.CUT_DOWN) == {p.stem for p in manifest.notebooks()}
    for nb, params in verify.CUT_DOWN.items():
        assert set(params) <= _parameters(nb), nb


def test_probe_summary(tmp_path, monkeypatch):
    log = tmp_path / "probe.jsonl"
    monkeypatch.setenv(probe.LOG_VAR, str(log))
    probe.record("load", model="m", seconds=2.0)
    for seconds in (1.0, 2.0, 6.0):
        probe.record("step", step=1, seconds=seconds)
    probe.record("generate", tokens=30, seconds=1.5)
    probe.record("generate", tokens=10, seconds=0.5)
    got = probe.summary(log)
    assert got["train_steps"] == 3 and got["step_s_mean"] == 3.0 and got["step_s_median"] == 2.0
    assert got["load_s"] == 2.0 and got["gen_tok_s"] == 20.0 and got["peak_rss_mb_probe"] > 0
    assert probe.summary(tmp_path / "none.jsonl")["train_steps"] == 0


PROBED = """
import sys, torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments
from tools.hub import probe
probe.install()
GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=32)).save_pretrained(sys.argv[1])
model = GPT2LMHeadModel.from_pretrained(sys.argv[1])
model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=5, min_new_tokens=5, do_sample=False)
data = [{"input_ids": torch.arange(8), "labels": torch.arange(8)}] * 4
args = TrainingArguments(sys.argv[1] + "/run", max_steps=2, per_device_train_batch_size=2, report_to=[], use_cpu=True)
Trainer(model=model, args=args, train_dataset=data).train()
"""


def test_probes_time_loads_steps_and_generation(tmp_path):
    import os
    import subprocess
    import sys

    from utils.paths import ROOT

    log = tmp_path / "probe.jsonl"
    env = {**os.environ, probe.LOG_VAR: str(log), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBED, str(tmp_path / "m")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = probe.summary(log)
    assert got["loads"] == 1 and got["train_steps"] == 2 and got["generated_tokens"] == 5


def test_projection_scales_training_and_generation_to_the_profile():
    row = {"notebook": "05_llama2_squad", "profile": "cpu", "error": "", "seconds": 100.0, "train_s": 10.0,
           "generate_s": 20.0, "parameters": {"SAMPLE_SIZES": [8], "EVAL_QUESTIONS": 10}}
    # cpu: sample_sizes [16, 32, 64] (14x the examples; 6 answer runs instead of 4), eval_questions 50 (5x the answers)
    assert verify.projected_s(row) == 100.0 + 10.0 * 13 + 20.0 * (5 * 6 / 4 - 1)
    assert verify.projected_s({**row, "error": "boom"}) is None


def test_t4_emulation_acts_as_a_t4(monkeypatch, tmp_path):
    """On a CUDA machine with bf16 and 141 GiB (an H200), the emulation leaves fp16 autocast, a 14.2 GiB cap, the
    memory-efficient attention kernel alone, and the bf16 guard in every Trainer; a kernel's startup applies it when
    the environment asks."""
    import types

    import torch
    import transformers.trainer

    from utils import training

    capped, sdpa = {}, {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=141 * 2**30))
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d=None: capped.update(f=f, d=d))
    for kernel in ("flash", "cudnn", "mem_efficient"):
        monkeypatch.setattr(torch.backends.cuda, f"enable_{kernel}_sdp", lambda on, k=kernel: sdpa.update({k: on}))
    monkeypatch.setattr(transformers.trainer, "DEFAULT_CALLBACKS", list(transformers.trainer.DEFAULT_CALLBACKS))
    assert training.precision().dtype == torch.bfloat16  # an H200 as it is
    assert "14.2 GiB of the GPU's 141 GiB" in probe.emulate_t4()
    assert training.precision().dtype == torch.float16 and training.precision().args == {"fp16": True, "bf16": False}
    assert capped["d"] == 0 and capped["f"] == pytest.approx(14.2 / 141)
    assert sdpa == {"flash": False, "cudnn": False, "mem_efficient": True}
    assert transformers.trainer.DEFAULT_CALLBACKS[-1].__name__ == "BF16Guard"
    assert "probe.activate()" in probe.startup_file(tmp_path).read_text()


def test_bf16_guard_stops_a_bf16_gpu_tensor_in_training(monkeypatch):
    """With a fake 'on the GPU' test: a bf16 trainable weight, a bf16 input at step 1, bf16 optimizer state."""
    import types

    import torch

    monkeypatch.setattr(probe, "_on_gpu", lambda t: True)
    guard, step1 = probe.bf16_guard()(), types.SimpleNamespace(global_step=1)
    with pytest.raises(probe.PrecisionError, match="trainer built: .*trainable weight"):
        guard.on_train_begin(None, None, None, model=torch.nn.Linear(2, 2).to(torch.bfloat16))
    model = torch.nn.Linear(2, 2)
    guard.on_train_begin(None, None, None, model=model, optimizer=None)  # fp32: passes
    with pytest.raises(probe.PrecisionError, match=r"step 1 inputs: .*input \(3, 2\)"):
        model(torch.ones(3, 2, dtype=torch.bfloat16))
    model(torch.ones(3, 2))  # the hook checked only the first step's inputs
    optimizer = types.SimpleNamespace(state={"w": {"exp_avg": torch.zeros(2, dtype=torch.bfloat16)}})
    with pytest.raises(probe.PrecisionError, match="step 1: .*optimizer state exp_avg"):
        guard.on_step_end(None, step1, None, model=model, optimizer=optimizer)


def test_the_child_run_puts_the_repository_first_on_pythonpath_and_keeps_the_rest(monkeypatch, tmp_path):
    """The gpu check installs its wheels into a folder on PYTHONPATH: the child must still see it."""
    from utils.paths import ROOT

    monkeypatch.setenv("PYTHONPATH", "/tmp/course-site")
    env = verify.child_env(tmp_path, str(tmp_path), tmp_path / "log", t4=True)
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/tmp/course-site"]
    assert env[probe.EMULATE_VAR] == "1" and env["CUDA_VISIBLE_DEVICES"] == "0"


def test_quiet_estimate_removes_the_wait_for_other_jobs():
    row = {"projected_s": 1000.0, "cpu_s": 600.0, "cores": 2, "seconds": 600.0}
    assert verify.quiet_s(row) == 500.0  # the kernel had half the cores' time: the rest was waiting
    assert verify.quiet_s({**row, "cpu_s": 1500.0}) == 1000.0  # never more than the measured projection
    assert verify.quiet_s({**row, "projected_s": None}) is None


def test_markdown_table_reports_each_measurement():
    row = {"notebook": "06_dpo", "seconds": 600.0, "parameters": {"STEPS": 4}, "train_steps": 12, "step_s_mean": 5.25,
           "gen_tok_s": 12.4, "peak_rss_mb": 4096.0, "load_avg": [1.2, 1.9], "projected_s": 900.0}
    table = verify.markdown_table([row, {**row, "notebook": "07_x", "train_steps": 0, "projected_s": None,
                                         "load_avg": None}])
    assert "| 06 | 10.0 min, {'STEPS': 4} | 12 × 5.2 | 12 | 4.0 GB | 1.2 → 1.9 | 15.0 min |" in table
    assert "| 07 |" in table and "failed" in table and "not recorded" in table
    timed_out = {**row, "seconds": None, "peak_rss_mb": None, "wall_s": 3600.0, "projected_s": None}
    assert "| 06 | stopped after 60.0 min, {'STEPS': 4} | 12 × 5.2 | 12 | — | 1.2 → 1.9 | failed |" in (
        verify.markdown_table([timed_out]))
