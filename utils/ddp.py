"""Data-parallel training from a notebook (08): launch `utils.ddp_train` in child processes with accelerate (or
torchrun), read back what each rank saw, compare runs, and say from the numbers what they mean.

A subprocess, not `accelerate.notebook_launcher`: that refuses once the kernel has started CUDA or bitsandbytes
(importing peft loads it), and the kernel's one-GPU rule (env.one_gpu_on_kaggle) must not reach the ranks.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .ddp_train import RESULTS, run_dir
from .env import detect_platform

SCRIPT = "utils.ddp_train"
T4_SCRIPT = "tools.hub.t4_rank"  # the same script under the gpu check's T4 emulation (COURSE_EMULATE_T4=1)
# Assumptions of the 2×T4 estimate (labelled as such wherever used): PCIe 3.0 x16 moves about 6 GB/s each way in
# practice between two T4s without NVLink (as on Kaggle); a gpu-profile QLoRA step on one T4 takes about a second.
PCIE_GB_S = 6.0
T4_STEP_S = 1.0


class LaunchError(RuntimeError):
    """A launched training run that failed or ran past its time; the message ends with its last output lines."""


def free_port() -> int:
    """A TCP port free on this machine now, for the ranks' rendezvous (a fixed 29500 collides with a second run)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_gpus(cuda: bool) -> list[str]:
    """The GPUs the ranks may use: none without CUDA in the kernel (or where the profile hid an unusable one);
    otherwise every GPU of the machine (`nvidia-smi`), also on Kaggle where the kernel itself sees only the first;
    a CUDA_VISIBLE_DEVICES set by hand elsewhere is kept."""
    preset = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not cuda:
        return []
    if preset and detect_platform() != "Kaggle":
        return [g.strip() for g in preset.split(",") if g.strip()]
    out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                         text=True, check=True).stdout
    return out.split()


def plan(gpus: list[str], most: int = 2) -> tuple[int, str]:
    """How many processes to launch (one per GPU, at most `most`; on a CPU `most` with gloo) and why, in words."""
    if not gpus:
        return most, f"no GPU: {most} processes on the CPU, talking through gloo"
    n = min(most, len(gpus))
    if n == 1:
        return 1, (f"one GPU ({gpus[0]}): one process, so the 'data-parallel' run is the one-process run itself; "
                   "on Kaggle choose GPU T4 ×2 to see two")
    return n, f"{len(gpus)} GPUs ({','.join(gpus)}): {n} processes, one per GPU, talking through NCCL"


def launch_env(gpus: list[str]) -> dict[str, str]:
    """The ranks' environment: the kernel's (offline switches, COURSE_EMULATE_T4 and the rest) with the GPUs listed
    explicitly, and one CPU thread per process (two processes of two threads each fight over two cores)."""
    return {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(gpus), "OMP_NUM_THREADS": "1"}


def script_args(settings: dict[str, Any], out: Path, dropouts: list[float], accumulation: int, seed: int = 0
                ) -> list[str]:
    """utils.ddp_train's arguments from a profile's settings: one run per LoRA dropout in `dropouts`."""
    args = ["--model", settings["model"], "--dataset", settings["dataset"], "--records", str(settings["records"] or 0),
            "--max-length", str(settings["max_length"]), "--batch-size", str(settings["batch_size"]),
            "--accumulation", str(accumulation), "--steps", str(settings["max_steps"]), "--lr", str(settings["lr"]),
            "--lora-r", str(settings["r"]), "--dropout", *map(str, dropouts), "--seed", str(seed), "--out", str(out)]
    return args + (["--qlora"] if settings["qlora"] else [])


def script() -> str:
    """The module each rank runs: utils.ddp_train, or under the gpu check's T4 emulation its wrapper in tools/hub
    (named, not imported: the lessons never import the machinery)."""
    return T4_SCRIPT if os.environ.get("COURSE_EMULATE_T4") == "1" else SCRIPT


def accelerate_command(processes: int, port: int, mixed_precision: str, args: list[str]) -> list[str]:
    """`accelerate launch` of the script: --multi_gpu for two or more processes, on GPUs or (gloo) the CPU alike;
    its --cpu flag would silently run one process."""
    multi = ["--multi_gpu", "--main_process_port", str(port)] if processes > 1 else []
    return [sys.executable, "-m", "accelerate.commands.launch", *multi, "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", mixed_precision, "--dynamo_backend", "no",
            "-m", script(), *args]


def torchrun_command(nnodes: int, nproc: int, endpoint: str, job: str, args: list[str]) -> list[str]:
    """`torchrun` of the script as one of `nnodes` machines meeting at `endpoint` (host:port) through the c10d
    rendezvous: the same command is started on every machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--nproc_per_node", str(nproc),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", job, "-m", script(), *args]


def shown(cmd: list[str]) -> str:
    """A launch command as one types it: `accelerate launch ...` or `torchrun ...` instead of python -m."""
    names = {"accelerate.commands.launch": "accelerate launch", "torch.distributed.run": "torchrun"}
    return f"{names.get(cmd[2], cmd[2])} {shlex.join(cmd[3:])}"


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `cmd` in a process group of its own (so that all its ranks can be stopped together), output to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=Path(__file__).resolve().parent.parent)


def finish(proc: subprocess.Popen, log: Path, timeout: float) -> None:
    """Wait for a started run; on failure or after `timeout` seconds kill its whole process group and raise
    LaunchError with the end of its log."""
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        if proc.poll() is None or code:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    if code != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:])
        why = f"ran past {timeout:.0f} s" if code is None else f"exited with code {code}"
        raise LaunchError(f"{shlex.join(proc.args)} {why}; full log: {log}\n{tail}")


def launch(processes: int, settings: dict[str, Any], out: Path, dropouts: list[float], accumulation: int,
           gpus: list[str], mixed_precision: str, timeout: float, seed: int = 0) -> dict[float, dict[str, Any]]:
    """Train with `processes` ranks through accelerate, one run per LoRA dropout, and return rank 0's results of
    each, with the wall seconds of the whole launch (start-up included) and the command."""
    args = script_args(settings, out, dropouts, accumulation, seed)
    cmd = accelerate_command(processes, free_port(), mixed_precision, args)
    begin = time.perf_counter()
    finish(start(cmd, launch_env(gpus), out / "launch.log"), out / "launch.log", timeout)
    launched = {"wall_seconds": time.perf_counter() - begin, "command": shown(cmd)}
    return {d: {**read(out, d), **launched} for d in dropouts}


def read(out: Path, dropout: float) -> dict[str, Any]:
    """The results.json that rank 0 wrote for the run with LoRA dropout `dropout` of a launch into `out`."""
    return json.loads((run_dir(out, dropout) / RESULTS).read_text(encoding="utf-8"))


def global_batches(run: dict[str, Any]) -> list[list[list[int]]]:
    """Per optimizer step, the sample ids of each of its pieces: one list per rank (per micro-batch when one
    process accumulates)."""
    per = run["accumulation"]
    return [[rank["micro_batches"][step * per + k] for rank in run["ranks"] for k in range(per)]
            for step in range(run["steps"])]


def disjoint(run: dict[str, Any]) -> bool:
    """Whether no sample id appears twice within any optimizer step of `run` (across its ranks and micro-batches)."""
    return all(len({i for piece in step for i in piece}) == sum(map(len, step)) for step in global_batches(run))


def covers(parallel: dict[str, Any], single: dict[str, Any]) -> bool:
    """Whether every step's pieces in `parallel` make up the very global batch that `single` ran in its accumulated
    micro-batches of the same step."""
    par, one = global_batches(parallel), global_batches(single)
    return len(par) == len(one) and all(sorted(sum(a, [])) == sorted(sum(b, [])) for a, b in zip(par, one))


def loss_diff(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Largest absolute difference between two runs' losses, step by step (the steps must match)."""
    if [s for s, _ in a["losses"]] != [s for s, _ in b["losses"]]:
        raise ValueError("the two runs logged different steps")
    return max(abs(x - y) for (_, x), (_, y) in zip(a["losses"], b["losses"]))


def lora_diff(a: Path, b: Path, dropout: float) -> float:
    """Largest absolute difference between the LoRA weights saved by two launches (into `a` and `b`) for `dropout`."""
    from safetensors.torch import load_file

    x, y = (load_file(run_dir(f, dropout) / "adapter" / "adapter_model.safetensors") for f in (a, b))
    if x.keys() != y.keys():
        raise ValueError("the adapters have different tensors")
    return max((x[k] - y[k]).abs().max().item() for k in x)


def equality(loss: float, weights: float, dropout: float) -> str:
    """One sentence on how far the data-parallel run is from one process with accumulation, from the measured
    largest loss and LoRA weight differences."""
    same = loss == 0 and weights == 0
    return (f"LoRA dropout {dropout}: " + ("losses and LoRA weights are bitwise equal" if same else
            f"the losses differ by at most {loss:.2e}, the LoRA weights by at most {weights:.2e}")
            + " between the data-parallel run and one process with gradient accumulation.")


STATE_BYTES = {"weights": 4, "gradients": 4, "Adam moments": 8}  # per trainable weight, full fp32 fine-tuning


def full_finetune_gb(params: float, gpus: int = 1, zero3: bool = False) -> float:
    """GB per GPU that full fp32 fine-tuning with Adam holds before activations: 16 bytes a weight; DDP keeps all of it
    on every GPU, ZeRO-3 (or FSDP) splits it across the `gpus`."""
    return params * sum(STATE_BYTES.values()) / (gpus if zero3 else 1) / 1e9


def speed(run: dict[str, Any]) -> dict[str, float]:
    """Samples per second and seconds per optimizer step (median, the first step left out: it warms up), and CPU
    seconds per sample summed over the ranks."""
    steps = run["ranks"][0]["step_seconds"]
    step = statistics.median(steps[1:] or steps)
    per_step = run["world_size"] * run["batch_size"] * run["accumulation"]
    cpu = sum(rank["cpu_seconds"] for rank in run["ranks"])
    return {"processes": run["world_size"], "samples per step": per_step, "seconds per step": step,
            "samples/s": per_step / step, "CPU s per sample": cpu / (per_step * len(steps))}


def verdict(one: dict[str, float], two: dict[str, float], allreduce_ms: float, trainable: int,
            on_gpu: bool, load: float) -> list[str]:
    """Sentences on the measured speeds of one process (with accumulation) and of the data-parallel run: how much
    faster or slower, why, and (where the run was on the CPU) what two T4s would give, labelled an estimate."""
    ratio = two["samples/s"] / one["samples/s"]
    n, piece = int(two["processes"]), two["samples per step"] / two["processes"]
    micro = one["seconds per step"] * piece / one["samples per step"]  # one process's time for the same piece
    share = allreduce_ms / 1000 / two["seconds per step"]
    said = [f"{n} processes trained {two['samples/s']:.1f} samples/s, one process {one['samples/s']:.1f}: "
            f"{ratio:.2f}× the speed ({two['seconds per step'] * 1000:.0f} ms against "
            f"{one['seconds per step'] * 1000:.0f} ms per step of {two['samples per step']:.0f} samples)."]
    if n > 1:
        said.append(f"Each process ran its {piece:.0f} samples of a step in {two['seconds per step'] * 1000:.0f} ms; "
                    f"one process ran the same {piece:.0f} as a micro-batch in {micro * 1000:.0f} ms. The all-reduce "
                    f"of the {trainable:,} LoRA gradients took {allreduce_ms:.1f} ms, {share:.1%} of a step"
                    + (": it is not what costs time." if share < 0.1 else "."))
    if n > 1 and not on_gpu:
        cpu = two["CPU s per sample"] / one["CPU s per sample"] - 1
        cost = f"they spent {cpu:+.0%} CPU time per sample against one process"
        busy = f"load average {load:.1f} at the end of the run"
        if ratio < 0.9:
            said.append(f"Slower on the CPU: the {n} processes share the machine's {os.cpu_count()} cores ({busy}) "
                        f"and wait for each other at every step; {cost}.")
        else:
            said.append(("About as fast" if ratio <= 1.1 else "Faster") + f" on the CPU only because one process runs "
                        f"on one thread here and {n} processes use {n} of the machine's {os.cpu_count()} cores; "
                        f"{cost}, and on busy cores ({busy}) the ratio changes from run to run.")
    if not on_gpu:
        gb = trainable * 4 / 1e9
        ms = 2 * gb / PCIE_GB_S * 1000  # a ring all-reduce of two ranks sends and receives the gradients once each
        est = 2 * T4_STEP_S / (T4_STEP_S + ms / 1000)
        said.append(f"Estimate, not measured (no GPU in this run): on 2×T4 each process has a GPU of its own; "
                    f"the all-reduce of {gb * 1e3:.2f} MB of gradients costs about {ms:.2f} ms over PCIe (assumed "
                    f"{PCIE_GB_S:.0f} GB/s) against a T4 step of about {T4_STEP_S:.0f} s (assumed), so two T4s would "
                    f"train about {est:.2f}× the samples/s of one.")
    return said
