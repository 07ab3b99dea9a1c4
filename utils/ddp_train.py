"""The training script every data-parallel process runs (notebook 08): 04's LoRA/QLoRA recipe, one copy per process.

Launched, never imported by a notebook: `accelerate launch --multi_gpu --num_processes 2 -m utils.ddp_train ...` or
`torchrun --nproc_per_node 2 -m utils.ddp_train ...`. One run per `--dropout` value, one after the other in the same
processes (a launch costs more start-up than a tiny model's training), each in `<out>/dropout-<value>/`. Rank 0
writes the adapter and results.json (losses, the sample ids each rank saw per micro-batch, step times, CPU time);
the other ranks write nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from . import env, formats, lora, models, training

RESULTS = "results.json"


def run_dir(out: str | Path, dropout: float) -> Path:
    """Where the run with LoRA dropout `dropout` of a launch writing to `out` keeps its adapter and results."""
    return Path(out) / f"dropout-{float(dropout)}"


class TooManyProcessesError(SystemExit):
    """More processes on this machine than GPUs it can see: two ranks would share a GPU (or one would find none)."""


def check_gpus(processes: int, gpus: int) -> None:
    """Refuse `processes` local processes on `gpus` visible GPUs (none: CPU, any number of processes goes)."""
    if gpus and processes > gpus:
        raise TooManyProcessesError(
            f"{processes} processes on this machine but {gpus} GPU(s) visible: data parallelism puts one process on "
            f"each GPU. Launch with --num_processes {gpus} (accelerate) or --nproc_per_node {gpus} (torchrun), or make "
            "more GPUs visible (CUDA_VISIBLE_DEVICES)")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="'local:<name>', a Hub id or a folder")
    p.add_argument("--dataset", required=True, help="Alpaca records: 'local:instructions' or a Hub dataset")
    p.add_argument("--records", type=int, default=0, help="first N records (0: all)")
    p.add_argument("--max-length", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=4, help="per process")
    p.add_argument("--accumulation", type=int, default=1, help="gradient accumulation steps")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--lora-r", type=int, default=8, help="LoRA rank")
    p.add_argument("--dropout", type=float, nargs="+", default=[0.05], help="LoRA dropout, one run each (04: 0.05)")
    p.add_argument("--qlora", action="store_true", help="4-bit NF4 base (QLoRA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="folder for each run's adapter and results.json (rank 0)")
    return p.parse_args(argv)


def load_model(name: str, qlora: bool):
    """04's base: fp32 weights for LoRA, NF4 prepared for k-bit training for QLoRA; on this process's own GPU."""
    import torch

    if not qlora:
        return models.load_causal_lm(name, dtype=torch.float32, device_map=models.device_map())
    store = torch.float16 if training.precision().fp16 else torch.bfloat16
    return lora.prepare_4bit(models.load_causal_lm(name, dtype=store, quantization_config=models.four_bit_config(),
                                                   device_map=models.device_map()))


def watch_samples(trainer) -> list[list[int]]:
    """A list that fills with the training-set row ids of every micro-batch this process runs (read from the
    input ids the model receives; -1 for a row not found)."""
    index = {tuple(ids): i for i, ids in enumerate(trainer.train_dataset["input_ids"])}
    seen: list[list[int]] = []

    def hook(module, args, kwargs):
        if module.training:
            ids, mask = kwargs["input_ids"], kwargs.get("attention_mask")
            lengths = mask.sum(1).tolist() if mask is not None else [ids.shape[1]] * len(ids)
            seen.append([index.get(tuple(row[:n].tolist()), -1) for row, n in zip(ids, lengths)])

    trainer.model.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def step_timer():
    """A TrainerCallback recording the wall seconds of every optimizer step (from the previous step's end)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            self.seconds.append(now - self.last)
            self.last = now

    return StepTimer()


def allreduce_ms(numel: int, repeats: int = 5) -> float:
    """Median milliseconds of one all-reduce of `numel` fp32 values (the trainable gradients) between the ranks."""
    import torch
    import torch.distributed as dist

    device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    grads = torch.zeros(numel, device=device)
    dist.all_reduce(grads)  # the first call sets up the connection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dist.all_reduce(grads)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def gather(mine: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rank's record, in rank order (just this one when not distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [mine]
    everyone: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    return everyone


def train(args: argparse.Namespace, dropout: float) -> dict[str, Any] | None:
    """Train one LoRA (or QLoRA) adapter with 04's recipe and LoRA `dropout` in this process, as one rank of the
    launch; rank 0 saves the adapter and returns (and writes) the results, the other ranks return None."""
    import torch
    import torch.distributed as dist
    from datasets import Dataset
    from trl import SFTTrainer

    check_gpus(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), torch.cuda.device_count())
    env.set_seed(args.seed)
    records, _ = formats.load_alpaca(args.dataset, args.records or None)
    data = Dataset.from_list([formats.prompt_completion(r) for r in records])
    model = load_model(args.model, args.qlora)
    out = run_dir(args.out, dropout)
    peft = lora.lora_config(model, r=args.lora_r, targets=lora.attention_modules(model), dropout=dropout)
    config = training.sft_config(str(out), args.steps, args.batch_size, args.lr,
                                 args.max_length, save_steps=args.steps, seed=args.seed, save_strategy="no",
                                 logging_steps=1, gradient_accumulation_steps=args.accumulation)
    trainer = training.fp32_trainable(SFTTrainer(model=model, args=config, train_dataset=data,
                                                 processing_class=models.load_tokenizer(args.model), peft_config=peft))
    seen, timer = watch_samples(trainer), step_timer()
    trainer.add_callback(timer)
    trainable = training.count_parameters(trainer.model)["trainable"]
    reduce_ms = allreduce_ms(trainable) if dist.is_available() and dist.is_initialized() else 0.0
    cpu = time.process_time()
    trainer.train()
    mine = {"rank": trainer.args.process_index, "local_rank": trainer.args.local_process_index,
            "node": int(os.environ.get("GROUP_RANK", "0")), "device": str(trainer.args.device),
            "micro_batches": seen, "step_seconds": timer.seconds, "cpu_seconds": time.process_time() - cpu}
    ranks = gather(mine)
    trainer.save_model(str(out / "adapter"))  # every rank calls it; only rank 0 writes
    if not trainer.args.should_save:
        return None
    results = {"world_size": trainer.args.world_size, "accumulation": args.accumulation,
               "batch_size": args.batch_size, "steps": trainer.state.global_step, "dropout": dropout,
               "qlora": args.qlora, "trainable": trainable, "allreduce_ms": reduce_ms, "ranks": ranks,
               "distributed": str(trainer.args.parallel_mode), "backend": dist.get_backend() if ranks[1:] else None,
               "ddp_find_unused_parameters": trainer.args.ddp_find_unused_parameters,
               "mixed_precision": "fp16" if config.fp16 else "bf16" if config.bf16 else "no",
               "losses": [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e],
               "load_average": os.getloadavg()[0]}
    (out / RESULTS).write_text(json.dumps(results), encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    for dropout in args.dropout:
        train(args, dropout)


if __name__ == "__main__":
    main()
