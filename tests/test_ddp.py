"""Data parallelism (08): the recipe's DDP settings for QLoRA, the launch environment and commands, the checks on what
the ranks saw, the computed sentences, and that a failed launch leaves no process behind."""
import os
import subprocess
import sys
import time

import pytest
import torch

from utils import ddp, ddp_train, lora, models, training


def test_each_rank_places_the_whole_model_on_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert models.device_map() == {"": 1}
    monkeypatch.delenv("LOCAL_RANK")
    assert models.device_map() == {"": 0}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert models.device_map() == "cpu"


def test_qlora_under_ddp_non_reentrant_checkpointing_and_no_unused_parameter_search(tmp_path):
    from datasets import Dataset
    from trl import SFTTrainer

    base = models.load_causal_lm("local:tiny-llama", quantization_config=models.four_bit_config(torch.float32),
                                 device_map=models.device_map())
    qbase = lora.prepare_4bit(base)
    peft = lora.lora_config(qbase, r=4, targets=lora.attention_modules(qbase))
    chat = Dataset.from_list([{"prompt": [{"role": "user", "content": "Hi?"}],
                               "completion": [{"role": "assistant", "content": "Hello."}]}] * 4)
    config = training.sft_config(str(tmp_path), 2, 2, 1e-3, 32, 2)
    trainer = SFTTrainer(model=qbase, args=config, train_dataset=chat, peft_config=peft,
                         processing_class=models.load_tokenizer("local:tiny-llama"))
    assert config.ddp_find_unused_parameters is False
    assert trainer.accelerator.ddp_handler.find_unused_parameters is False
    funcs = [m._gradient_checkpointing_func for m in trainer.model.modules()
             if getattr(m, "gradient_checkpointing", False)]
    assert funcs and all(f.keywords == {"use_reentrant": False} for f in funcs)


def test_more_processes_than_gpus_is_refused_with_the_fix():
    ddp_train.check_gpus(2, 2)
    ddp_train.check_gpus(4, 0)  # the CPU: gloo runs any number
    with pytest.raises(ddp_train.TooManyProcessesError, match=r"2 processes .* 1 GPU\(s\).*--num_processes 1"):
        ddp_train.check_gpus(2, 1)


def test_the_ranks_see_every_gpu_and_the_kernels_environment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # the kernel's one-GPU rule on Kaggle
    monkeypatch.setenv("COURSE_EMULATE_T4", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    env = ddp.launch_env(["0", "1"])
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1" and env["COURSE_EMULATE_T4"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    assert ddp.launch_env([])["CUDA_VISIBLE_DEVICES"] == ""  # no GPU: the ranks get none either
    assert ddp.launch_gpus(False) == []
    assert ddp.plan([])[0] == 2 and ddp.plan(["0", "1", "2"])[0] == 2
    processes, why = ddp.plan(["0"])
    assert processes == 1 and "one process" in why


def test_on_kaggle_the_ranks_get_both_gpus_though_the_kernel_sees_one(monkeypatch):
    import types

    monkeypatch.setattr(ddp.subprocess, "run", lambda *a, **k: types.SimpleNamespace(stdout="0\n1\n"))
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # env.one_gpu_on_kaggle's cut, for the kernel alone
    assert ddp.launch_gpus(True) == ["0", "1"]
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # chosen by hand on a local machine: kept
    assert ddp.launch_gpus(True) == ["2", "3"]


def test_accelerate_is_launched_multi_gpu_never_cpu_and_on_a_free_port():
    cmd = ddp.accelerate_command(2, 41234, "fp16", ["--out", "x"])
    assert "--multi_gpu" in cmd and "--cpu" not in cmd and cmd[cmd.index("--main_process_port") + 1] == "41234"
    assert cmd[cmd.index("--mixed_precision") + 1] == "fp16" and cmd[-3:] == [ddp.SCRIPT, "--out", "x"]
    assert "--multi_gpu" not in ddp.accelerate_command(1, 41234, "no", [])
    assert 1024 < ddp.free_port() < 65536


def _run(world: int, accumulation: int, batches: list[list[int]], losses: list[float]) -> dict:
    per_rank = [batches[r::world] for r in range(world)] if accumulation == 1 else [batches]
    return {"world_size": world, "accumulation": accumulation, "steps": len(losses), "batch_size": 2,
            "ranks": [{"micro_batches": b, "step_seconds": [0.5, 0.2, 0.2], "cpu_seconds": 0.6 * world}
                      for b in per_rank],
            "losses": [[i + 1, x] for i, x in enumerate(losses)]}


def test_rank_slices_disjoint_and_covering_the_global_batch():
    batches = [[0, 1], [2, 3], [4, 5], [6, 7]]
    single, parallel = _run(1, 2, batches, [1.0, 0.5]), _run(2, 1, batches, [1.0, 0.5])
    assert ddp.global_batches(parallel) == [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]
    assert ddp.disjoint(parallel) and ddp.covers(parallel, single) and ddp.loss_diff(parallel, single) == 0
    assert not ddp.disjoint(_run(2, 1, [[0, 1], [1, 3], [4, 5], [6, 7]], [1.0, 0.5]))
    assert not ddp.covers(_run(2, 1, [[0, 1], [2, 9], [4, 5], [6, 7]], [1.0, 0.5]), single)


def test_sentences_are_computed_from_the_numbers():
    assert "bitwise equal" in ddp.equality(0.0, 0.0, 0.0)
    assert "at most 3.00e-04" in ddp.equality(3e-4, 1e-6, 0.05)
    one = ddp.speed(_run(1, 2, [[0, 1], [2, 3], [4, 5], [6, 7]], [1.0, 0.5]))
    two = dict(ddp.speed(_run(2, 1, [[0, 1], [2, 3], [4, 5], [6, 7]], [1.0, 0.5])), **{"seconds per step": 0.4})
    two["samples/s"] = 4 / 0.4
    assert one["samples/s"] == pytest.approx(20.0) and one["samples per step"] == 4
    said = ddp.verdict(one, two, allreduce_ms=2.0, trainable=1000, on_gpu=False, load=1.5)
    assert said[0].startswith("2 processes trained 10.0 samples/s, one process 20.0: 0.50× the speed")
    assert "0.5% of a step" in said[1] and said[2].startswith("Slower on the CPU") and "load average 1.5" in said[2]
    assert "+300% CPU time per sample" in said[2] and said[3].startswith("Estimate, not")
    faster = ddp.verdict(one, {**two, "samples/s": 30.0}, allreduce_ms=2.0, trainable=1000, on_gpu=False, load=1.5)
    assert "1.50× the speed" in faster[0] and faster[2].startswith("Faster on the CPU only because")
    even = ddp.verdict(one, {**two, "samples/s": 21.0}, allreduce_ms=2.0, trainable=1000, on_gpu=False, load=1.5)
    assert even[2].startswith("About as fast on the CPU")
    assert len(ddp.verdict(one, two, 2.0, 1000, on_gpu=True, load=1.5)) == 2  # measured on GPUs: no estimate
    assert ddp.full_finetune_gb(1e9) == 16 and ddp.full_finetune_gb(1e9, 8, zero3=True) == 2


def test_a_run_past_its_time_is_killed_with_all_its_children(tmp_path):
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); " \
           "print('started', flush=True); time.sleep(60)"
    proc = ddp.start([sys.executable, "-c", code], dict(os.environ), tmp_path / "log")
    time.sleep(1)
    with pytest.raises(ddp.LaunchError, match="(?s)ran past 1 s.*started"):
        ddp.finish(proc, tmp_path / "log", timeout=1)
    for _ in range(50):  # SIGKILL is immediate; the orphaned grandchild is reaped by init a moment later
        left = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout
        if not left:
            break
        time.sleep(0.1)
    assert left == ""


def test_under_t4_emulation_every_rank_runs_the_emulating_wrapper(monkeypatch):
    monkeypatch.setenv("COURSE_EMULATE_T4", "1")
    assert ddp.accelerate_command(2, 1234, "fp16", ["--out", "x"])[-4:] == ["-m", "tools.hub.t4_rank", "--out", "x"]
    monkeypatch.delenv("COURSE_EMULATE_T4")
    assert ddp.torchrun_command(2, 1, "localhost:1", "job", [])[-1] == "utils.ddp_train"
