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
        block = torch.ones(16, 2**20)  # 64 MiB, held long enough for the sampler to see it
        time.sleep(0.2)
        del block
    assert 0 < m.base_mb < m.peak_mb
    assert m.peak_mb - m.base_mb > 48  # what the block added, without the process's baseline


def test_loss_history_splits_train_and_eval():
    log = [{"loss": 3.0, "step": 1}, {"eval_loss": 2.5, "step": 1}, {"loss": 2.0, "step": 2}, {"train_runtime": 1.0}]
    assert training.loss_history(log) == {"train": [(1, 3.0), (2, 2.0)], "eval": [(1, 2.5)]}
    fig = training.plot_losses({"full": training.loss_history(log)})
    assert len(fig.axes[0].lines) == 2
