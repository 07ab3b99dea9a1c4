from types import SimpleNamespace

import pytest
import torch
from peft import LoraConfig, get_peft_model

from utils import lora, models, training


@pytest.fixture
def llama():
    return models.load_causal_lm("local:tiny-llama", dtype=torch.float32)


@pytest.fixture(scope="module")
def gpt2():
    return models.load_causal_lm("local:tiny-gpt2", dtype=torch.float32)


def test_linear_layers_and_attention_names(llama, gpt2):
    rows = lora.linear_layers(llama)
    cfg = llama.config
    assert len(rows) == 7 * cfg.num_hidden_layers and not any(r["name"].endswith("lm_head") for r in rows)
    k = next(r for r in rows if r["name"].endswith("0.self_attn.k_proj"))
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    assert (k["in"], k["out"]) == (cfg.hidden_size, cfg.num_key_value_heads * head_dim)  # GQA: narrower K
    c_attn = next(r for r in lora.linear_layers(gpt2) if r["name"].endswith("0.attn.c_attn"))
    assert (c_attn["class"], c_attn["in"], c_attn["out"]) == ("Conv1D", 128, 3 * 128)  # fused Q, K, V
    assert lora.attention_modules(llama) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert lora.attention_modules(gpt2) == ["c_attn", "c_proj"]


def test_kv_cache_formula_matches_the_cache_and_known_models(llama, gpt2):
    for model in (llama, gpt2):
        assert lora.kv_cache_bytes_per_token(model.config, 4) == lora.measured_kv_cache_bytes_per_token(model)
    llama2_7b = SimpleNamespace(num_hidden_layers=32, num_attention_heads=32, hidden_size=4096)
    assert lora.kv_cache_bytes_per_token(llama2_7b) == 512 * 1024  # 0.5 MiB per token in fp16
    llama2_70b = SimpleNamespace(num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8,
                                 hidden_size=8192)
    assert lora.kv_cache_bytes_per_token(llama2_70b) == 320 * 1024  # GQA: less than the 7B model


def test_describe_architecture_tells_the_families_apart(llama, gpt2):
    g, m = lora.describe_architecture(gpt2), lora.describe_architecture(llama)
    assert g["positions"].startswith("learned") and m["positions"].startswith("RoPE")
    assert g["attention"].startswith("multi-head") and m["attention"].startswith("grouped-query")
    assert m["peft's default LoRA targets"] == "q_proj, v_proj" and g["peft's default LoRA targets"] == "c_attn"


@pytest.mark.parametrize("targets,r", [(["q_proj", "k_proj", "v_proj", "o_proj"], 4),
                                       (["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                         "down_proj"], 8)])
def test_lora_parameter_count_equals_what_peft_trains(llama, targets, r):
    expected = lora.lora_parameter_count(llama, targets, r)
    peft_model = get_peft_model(llama, lora.lora_config(llama, r=r, targets=targets))
    assert training.count_parameters(peft_model)["trainable"] == expected


def test_lora_parameter_count_on_gpt2_conv1d(gpt2):
    import copy

    model = copy.deepcopy(gpt2)
    expected = lora.lora_parameter_count(model, ["c_attn"], 8)
    assert expected == 2 * 8 * (128 + 384)
    peft_model = get_peft_model(model, LoraConfig(r=8, target_modules=["c_attn"], fan_in_fan_out=True,
                                                  task_type="CAUSAL_LM"))
    assert training.count_parameters(peft_model)["trainable"] == expected


def test_lora_config_defaults_and_bad_input(llama):
    config = lora.lora_config(llama, r=8, targets=["q_proj"])
    assert (config.r, config.lora_alpha, config.lora_dropout) == (8, 16, 0.05)
    with pytest.raises(ValueError, match="rank r must be a positive integer"):
        lora.lora_config(llama, r=0, targets=["q_proj"])
    with pytest.raises(ValueError, match="dropout must be in"):
        lora.lora_config(llama, r=4, targets=["q_proj"], dropout=1.0)
    with pytest.raises(ValueError, match=r"\['c_attn'\] match no linear layer of this llama model.*'q_proj'"):
        lora.lora_config(llama, r=4, targets=["q_proj", "c_attn"])
    with pytest.raises(ValueError, match="name at least one target"):
        lora.check_targets(llama, [])
    every = lora.lora_config(None, r=8, targets="all-linear", dropout=0.0)  # 05 and 06: peft picks the layers
    assert (every.target_modules, every.lora_alpha, every.lora_dropout, every.bias) == ("all-linear", 16, 0.0, "none")


def test_bits_per_weight_and_weight_bytes(llama):
    assert lora.bits_per_weight(4, double_quant=False) == 4.5
    assert lora.bits_per_weight(4) == pytest.approx(4.127, abs=1e-3)  # the QLoRA paper's 0.373-bit saving
    with pytest.raises(ValueError, match="bits must be 32, 16, 8 or 4"):
        lora.bits_per_weight(3)
    n = sum(p.numel() for p in llama.parameters())
    assert lora.weight_bytes(llama, 32) == 4 * n and lora.weight_bytes(llama, 16) == 2 * n
    four = models.load_causal_lm("local:tiny-llama", dtype=torch.bfloat16, quantization_config=models.four_bit_config(),
                                 device_map="cpu")
    buffers = sum(b.numel() * b.element_size() for b in four.buffers())
    measured = four.get_memory_footprint() - buffers  # bitsandbytes keeps the block scales outside the parameters
    assert measured < lora.weight_bytes(four, 4) < 1.02 * measured
    assert lora.weight_bytes(four, 4) == lora.weight_bytes(llama, 4)  # same shapes counted from either model


def test_training_state_bytes(llama):
    n = sum(p.numel() for p in llama.parameters())
    assert lora.training_state_bytes(llama, 32) == 12 * n  # fp32 gradient + two fp32 moments
    small = sum(p.numel() for p in llama.parameters() if p.numel() < 4096)
    assert lora.training_state_bytes(llama, 8) == 4 * n + 2 * (n - small) + 8 * small
    with pytest.raises(ValueError, match="optimizer_bits must be 32 or 8"):
        lora.training_state_bytes(llama, 16)


def test_merge_matches_the_adapter_model_and_reloads(llama, tmp_path):
    batch = {"input_ids": torch.tensor([[1, 50, 60, 70, 80], [0, 0, 1, 90, 91]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])}
    base_logits = lora.logits(llama, batch)
    assert (base_logits[1, :2] == 0).all()  # padding positions are left out of comparisons
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(llama, config)  # random B, so the adapter changes the outputs
    peft_model.save_pretrained(tmp_path / "adapter")
    adapter_bytes = lora.weights_size(tmp_path / "adapter")
    assert adapter_bytes >= 4 * lora.lora_parameter_count(llama, ["q_proj", "v_proj"], 4)
    merged, diff = lora.merge_adapter(peft_model, batch)
    assert diff <= 1e-4
    assert lora.max_abs_diff(base_logits, lora.logits(merged, batch)) > 1e-3  # the merge changed the weights
    assert type(merged).__name__ == "LlamaForCausalLM" and not any("lora" in n for n, _ in merged.named_parameters())
    merged.save_pretrained(tmp_path / "merged")
    assert lora.weights_size(tmp_path / "merged") > 10 * adapter_bytes
    reloaded = models.load_causal_lm(str(tmp_path / "merged"), dtype=torch.float32)
    assert lora.max_abs_diff(lora.logits(merged, batch), lora.logits(reloaded, batch)) == 0


def test_size_and_diff_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no weight files"):
        lora.weights_size(tmp_path)
    with pytest.raises(ValueError, match="logits shapes differ"):
        lora.max_abs_diff(torch.zeros(1, 2, 3), torch.zeros(1, 3, 3))


def test_save_fp16_halves_the_file_and_the_reloaded_copy_gives_the_same_logits(tmp_path):
    model = models.load_causal_lm("local:tiny-llama", dtype=torch.float32)
    batch = {"input_ids": torch.tensor([[1, 20, 30, 40, 50]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    lora.save_fp16(model, tmp_path)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    reloaded = models.load_causal_lm(str(tmp_path), dtype=torch.float32)
    assert lora.max_abs_diff(lora.logits(model, batch), lora.logits(reloaded, batch)) == 0
    assert lora.weights_size(tmp_path) < 0.55 * 4 * sum(p.numel() for p in model.parameters())
