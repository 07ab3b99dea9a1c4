import math
import mmap
import re
import time

import pytest
import torch

from utils import models, training


@pytest.fixture(scope="module")
def gpt2():
    return models.load_causal_lm("local:tiny-gpt2")


def test_tied_head_counts_once(gpt2):
    counts = training.count_parameters(gpt2)
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight
    assert counts["total"] == sum({id(p): p.numel() for p in gpt2.parameters()}.values())
    assert counts["trainable_pct"] == 100.0


def test_freeze_all_but_leaves_exactly_the_named_parameters(gpt2):
    names = training.freeze_all_but(gpt2, ["transformer.h.1.", "transformer.ln_f."])
    assert names and all(n.startswith(("transformer.h.1.", "transformer.ln_f.")) for n in names)
    assert not gpt2.transformer.wte.weight.requires_grad
    expected = sum(p.numel() for n, p in gpt2.named_parameters() if n in names)
    assert training.count_parameters(gpt2)["trainable"] == expected
    with pytest.raises(ValueError, match="no parameter name starts with"):
        training.freeze_all_but(gpt2, ["transformer.h.9."])
    for p in gpt2.parameters():
        p.requires_grad = True


def test_measure_times_counts_tokens_and_sees_memory_grow():
    with training.Measure() as m:
        block = torch.ones(64, 2**20 // 8)  # 64 MiB held while measuring
        m.tokens(1000)
        del block
    assert m.seconds > 0 and m.tokens_per_s > 0
    assert m.peak_mb > 64 and "RSS" in m.memory_kind


def test_measure_base_is_the_memory_in_use_at_the_start():
    with training.Measure() as m:
        # 64 MiB of fresh pages, held long enough for the sampler to see them. An anonymous mmap always adds to the
        # resident memory; a tensor may reuse pages an earlier test freed but the allocator kept (the suite's order).
        block = mmap.mmap(-1, 64 * 2**20)
        block.write(b"\x01" * len(block))
        time.sleep(0.2)
        block.close()
    assert 0 < m.base_mb < m.peak_mb
    assert m.peak_mb - m.base_mb > 48  # what the block added, without the process's baseline


def test_loss_history_splits_train_and_eval():
    log = [{"loss": 3.0, "step": 1}, {"eval_loss": 2.5, "step": 1}, {"loss": 2.0, "step": 2}, {"train_runtime": 1.0}]
    assert training.loss_history(log) == {"train": [(1, 3.0), (2, 2.0)], "eval": [(1, 2.5)]}
    fig = training.plot_losses({"full": training.loss_history(log)})
    assert len(fig.axes[0].lines) == 2


# --- one mixed-precision rule for every trainer -----------------------------------------------------------

def test_precision_rule_fp16_on_a_t4_bf16_where_native_fp32_on_a_cpu(monkeypatch):
    assert training.precision() == training.Precision(torch.float32, fp16=False, bf16=False)  # this CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    t4 = training.precision()  # a T4: torch only emulates bf16
    assert (t4.dtype, t4.args) == (torch.float16, {"fp16": True, "bf16": False})
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    ampere = training.precision()
    assert (ampere.dtype, ampere.args) == (torch.bfloat16, {"fp16": False, "bf16": True})
    assert training.precision(fp16=True).args == {"fp16": True, "bf16": False}  # asked for, as on a T4


def _course_trainer(kind: str, prec: training.Precision):
    """Each notebook's trainer, built the way that notebook builds it, in miniature and with `prec`."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import Trainer, TrainingArguments
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    tok = models.load_tokenizer("local:tiny-llama")
    lora = LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM")
    chat = Dataset.from_list([{"prompt": [{"role": "user", "content": "Hi?"}],
                               "completion": [{"role": "assistant", "content": "Hello."}]}] * 4)
    common = {"output_dir": "unused", "use_cpu": True, "report_to": [], "max_steps": 1, **prec.args}
    four_bit = {"quantization_config": models.four_bit_config(prec.dtype), "dtype": prec.dtype, "device_map": "cpu"}
    if kind == "03 Trainer, full fine-tuning":
        gpt2 = models.load_causal_lm("local:tiny-gpt2", dtype=torch.float32)
        return Trainer(model=gpt2, args=TrainingArguments(**common))
    if kind == "04 SFTTrainer, QLoRA (peft_config)":
        qbase = prepare_model_for_kbit_training(models.load_causal_lm("local:tiny-llama", **four_bit))
        return SFTTrainer(model=qbase, args=SFTConfig(**common), train_dataset=chat, processing_class=tok,
                          peft_config=lora)
    if kind == "05 SFTTrainer, QLoRA (PeftModel)":
        qbase = prepare_model_for_kbit_training(models.load_causal_lm("local:tiny-llama", **four_bit))
        return SFTTrainer(model=get_peft_model(qbase, lora), args=SFTConfig(**common), train_dataset=chat,
                          processing_class=tok)
    pairs = Dataset.from_list([{"prompt": [{"role": "user", "content": "Hi?"}],
                                "chosen": [{"role": "assistant", "content": "Hello."}],
                                "rejected": [{"role": "assistant", "content": "Go."}]}] * 4)
    policy = models.load_causal_lm("local:tiny-llama", dtype=prec.dtype)
    return DPOTrainer(model=policy, args=DPOConfig(**common), train_dataset=pairs, processing_class=tok,
                      peft_config=lora)


@pytest.mark.parametrize("kind", ["03 Trainer, full fine-tuning", "04 SFTTrainer, QLoRA (peft_config)",
                                  "05 SFTTrainer, QLoRA (PeftModel)", "06 DPOTrainer, LoRA on a half-precision policy"])
def test_every_trainer_of_the_course_keeps_trainable_parameters_fp32_under_fp16(kind):
    prec = training.precision(fp16=True)  # what a T4 gets; the trainers are only built here, not run
    trainer = training.fp32_trainable(_course_trainer(kind, prec))
    dtypes = {str(p.dtype) for p in trainer.model.parameters() if p.requires_grad}
    assert dtypes == {"torch.float32"}, f"{kind}: trainable parameters in {dtypes}"
    assert trainer.args.fp16 and not trainer.args.bf16


def _args(fp16: bool):
    import types

    return types.SimpleNamespace(fp16=fp16)


@pytest.mark.parametrize("logs,culprit", [({"loss": float("nan"), "grad_norm": 1.0}, "loss = nan"),
                                          ({"loss": 0.7, "rewards/margins": float("inf")}, "rewards/margins = inf"),
                                          ({"eval_loss": float("-inf")}, "eval_loss = -inf")])
def test_a_non_finite_loss_or_reward_stops_fp16_training_naming_step_and_remedy(logs, culprit):
    import types

    callback = training.finite_logs()
    with pytest.raises(training.NonFiniteError,
                       match=rf"step 7: {re.escape(culprit)} — fp16 overflowed.*fp32.*learning rate.*PROFILE='cpu'"):
        callback.on_log(_args(True), types.SimpleNamespace(global_step=7), None, logs=logs)
    # a skipped fp16 step's gradient norm is the scaler at work, not an overflow of the model
    callback.on_log(_args(True), types.SimpleNamespace(global_step=1), None, logs={"loss": 2.0, "grad_norm": math.nan})


def test_fp16_trainers_get_the_overflow_check(gpt2):
    import types

    added = []
    trainer = types.SimpleNamespace(model=gpt2, args=_args(True), add_callback=added.append)
    training.fp32_trainable(trainer)
    assert [type(c).__name__ for c in added] == ["FiniteLogs"]
    training.fp32_trainable(types.SimpleNamespace(model=gpt2, args=_args(False), add_callback=added.append))
    assert len(added) == 1  # fp32 and bf16 have the range: no check


def test_04_trains_with_an_8bit_optimizer_that_is_not_paged():
    """Paged state sits in CUDA unified memory: max_memory_allocated misses it and bitsandbytes never frees it."""
    import json

    from transformers import Trainer, TrainingArguments

    from utils.paths import ROOT

    cells = json.loads((ROOT / "04_lora_qlora.ipynb").read_text())["cells"]
    recipe = next("".join(c["source"]) for c in cells if "def sft_args" in "".join(c["source"]))
    optim = re.search(r'optim="([^"]+)"', recipe).group(1)
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(TrainingArguments("unused", optim=optim, use_cpu=True))
    assert "bitsandbytes" in cls.__module__ and kwargs.get("optim_bits") == 8 and not kwargs.get("is_paged")


def test_a_tuned_model_generates_in_its_bases_dtype(gpt2):
    import copy

    model = models.cast_floats(copy.deepcopy(gpt2), torch.float16)
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    assert {p.dtype for p in models.cast_floats(model, torch.float32).parameters()} == {torch.float32}


def test_a_headless_run_prints_one_line_per_training_run(gpt2, monkeypatch, tmp_path, capsys):
    from transformers import Trainer, TrainingArguments

    monkeypatch.setenv("TQDM_DISABLE", "1")
    blocks = [{"input_ids": torch.arange(8), "labels": torch.arange(8)}] * 4
    args = TrainingArguments(str(tmp_path), max_steps=2, logging_steps=1, per_device_train_batch_size=2,
                             save_strategy="no", report_to=[], use_cpu=True)
    trainer = training.fp32_trainable(Trainer(model=gpt2, args=args, train_dataset=blocks))
    names = [type(c).__name__ for c in trainer.callback_handler.callbacks]
    assert "OneLine" in names and not {"NotebookProgressCallback", "ProgressCallback", "PrinterCallback"} & set(names)
    trainer.train()
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and re.fullmatch(r"trained 2 steps in [\d.]+ s: loss [\d.]+ → [\d.]+", printed[0])
