"""LoRA helpers: what a model's attention looks like to LoRA (linear layers, KV cache), LoRA configs with checked
targets, parameter and memory arithmetic, adapter size on disk, and merging an adapter with a logits check."""
from __future__ import annotations

from pathlib import Path
from typing import Any

# Module classes LoRA can wrap: torch's Linear, GPT-2's Conv1D (a transposed linear), bitsandbytes' 8/4-bit linears.
LINEAR_CLASSES = ("Linear", "Conv1D", "Linear8bitLt", "Linear4bit")
NF4_BLOCK = 64  # weights per NF4 block, each block with its own absmax scale
NESTED_BLOCK = 256  # absmax scales per second-level block under double quantization


# --- the architecture LoRA sees ------------------------------------------------------------------------------

def linear_layers(model) -> list[dict[str, Any]]:
    """Every linear-like module except the output head: name, class, in/out features and weight count."""
    rows = []
    for name, module in model.named_modules():
        kind = type(module).__name__
        if kind not in LINEAR_CLASSES or name.split(".")[-1] == "lm_head":
            continue
        if kind == "Conv1D":  # GPT-2 stores the weight as (in, out)
            n_in, n_out = module.weight.shape
        else:
            n_in, n_out = module.in_features, module.out_features
        rows.append({"name": name, "class": kind, "in": n_in, "out": n_out, "weights": n_in * n_out})
    return rows


def attention_modules(model) -> list[str]:
    """The distinct short names (last part) of the linear layers inside attention blocks: c_attn/c_proj in GPT-2,
    q_proj/k_proj/v_proj/o_proj in Llama."""
    names = {row["name"].split(".")[-1] for row in linear_layers(model)
             if any(part in ("attn", "self_attn", "attention") for part in row["name"].split("."))}
    return sorted(names)


def kv_cache_bytes_per_token(config, bytes_per_value: int = 2) -> int:
    """Computed: keys and values kept per generated token = 2 x layers x KV heads x head size x bytes. Multi-head
    attention keeps one K/V head per query head; grouped-query attention shares each K/V head among several."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * bytes_per_value


def measured_kv_cache_bytes_per_token(model, n_tokens: int = 16) -> float:
    """Measured: run `n_tokens` through the model with the cache on and add up the cached key/value tensors."""
    import torch

    ids = torch.ones(1, n_tokens, dtype=torch.long, device=model.device)
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
        cache = out["cache"] if "cache" in out else out.past_key_values  # renamed `cache` in transformers 5.x
    total = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    return total / n_tokens


def describe_architecture(model) -> dict[str, Any]:
    """The facts that matter for LoRA and inference, read from a loaded causal LM (GPT-2 or Llama family)."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    cfg = model.config
    kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    learned = [n for n, p in model.named_parameters() if n.endswith("wpe.weight")]
    rope = getattr(cfg, "rope_parameters", None) or {}
    positions = (f"learned table ({model.get_parameter(learned[0]).shape[0]} positions)" if learned
                 else f"RoPE (rotary, no parameters, theta {rope.get('rope_theta', '?')})")
    attention = ("multi-head" if kv_heads == cfg.num_attention_heads
                 else "multi-query" if kv_heads == 1 else "grouped-query")
    dtype = next(model.parameters()).dtype
    return {
        "model type": cfg.model_type,
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": cfg.num_hidden_layers,
        "hidden size": cfg.hidden_size,
        "positions": positions,
        "attention": f"{attention}: {cfg.num_attention_heads} query heads, {kv_heads} key/value heads",
        "attention linear layers": ", ".join(attention_modules(model)),
        "peft's default LoRA targets": ", ".join(PEFT_DEFAULTS.get(cfg.model_type, ["(none: name them)"])),
        "weights dtype": str(dtype).removeprefix("torch."),
        "KV cache bytes per token, computed": kv_cache_bytes_per_token(cfg, dtype.itemsize),
        "KV cache bytes per token, measured": measured_kv_cache_bytes_per_token(model),
    }


# --- LoRA configuration and counting -------------------------------------------------------------------------

def lora_config(model, r: int, targets: list[str] | str, alpha: int | None = None, dropout: float = 0.05):
    """The course's one LoRA recipe: a peft LoraConfig for a causal LM, alpha 2 r unless given, no bias. `targets`
    is a list of layer short names, checked against `model`'s linear layers (a typo would otherwise fail deep inside
    peft, or match nothing), or peft's "all-linear" (every linear layer but the output head; `model` may be None)."""
    from peft import LoraConfig

    if not isinstance(r, int) or r < 1:
        raise ValueError(f"rank r must be a positive integer, got {r!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if targets != "all-linear":
        check_targets(model, targets)
        targets = list(targets)
    return LoraConfig(r=r, lora_alpha=alpha if alpha is not None else 2 * r, lora_dropout=dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")


def check_targets(model, targets: list[str]) -> dict[str, int]:
    """How many linear layers each target short name matches; ValueError naming the choices if one matches none."""
    if not targets:
        raise ValueError("name at least one target module for LoRA")
    short = [row["name"].split(".")[-1] for row in linear_layers(model)]
    counts = {t: short.count(t) for t in targets}
    missing = [t for t, n in counts.items() if n == 0]
    if missing:
        raise ValueError(f"target module(s) {missing} match no linear layer of this {model.config.model_type} model; "
                         f"its linear layers are {sorted(set(short))}")
    return counts


def lora_parameter_count(model, targets: list[str], r: int) -> int:
    """Computed: LoRA adds A (r x in) and B (out x r) to each targeted layer, r (in + out) weights per layer."""
    check_targets(model, targets)
    return sum(r * (row["in"] + row["out"]) for row in linear_layers(model) if row["name"].split(".")[-1] in targets)


def bits_per_weight(bits: int, double_quant: bool = True) -> float:
    """Storage per weight: 32/16/8 bits, or NF4's 4 bits plus its block scales: one fp32 absmax per 64 weights
    (+0.5 bit), or with double quantization an 8-bit absmax and one fp32 per 256 blocks (+0.127 bit)."""
    if bits in (32, 16, 8):
        return float(bits)
    if bits != 4:
        raise ValueError(f"bits must be 32, 16, 8 or 4, got {bits}")
    scales = 8 / NF4_BLOCK + 32 / (NF4_BLOCK * NESTED_BLOCK) if double_quant else 32 / NF4_BLOCK
    return 4 + scales


def weight_bytes(model, bits: int, double_quant: bool = True) -> float:
    """Computed size of a model's weights when its linear layers are stored in `bits` and everything else
    (embeddings, norms, output head) in 16 bits, as bitsandbytes leaves them; bits >= 16 store all alike."""
    quantized = sum(row["weights"] for row in linear_layers(model))
    total = sum(p.numel() * (2 if type(p).__name__ == "Params4bit" else 1) for p in model.parameters())
    other_bits = bits if bits >= 16 else 16
    return (quantized * bits_per_weight(bits, double_quant) + (total - quantized) * other_bits) / 8


def training_state_bytes(model, optimizer_bits: int = 32) -> float:
    """Computed memory that training adds to the weights: a gradient (the weight's dtype) and two Adam moments per
    trainable weight; 8-bit Adam stores the moments in 1 byte each, except in tensors under 4096 values (fp32)."""
    if optimizer_bits not in (32, 8):
        raise ValueError(f"optimizer_bits must be 32 or 8, got {optimizer_bits}")
    total = 0.0
    for p in model.parameters():
        if p.requires_grad:
            moments = 2 if optimizer_bits == 8 and p.numel() >= 4096 else 8
            total += p.numel() * (p.element_size() + moments)
    return total


# --- adapters on disk and merging ----------------------------------------------------------------------------

def weights_size(folder: str | Path) -> int:
    """Bytes of the weight files (*.safetensors, *.bin) in a saved model or adapter folder."""
    folder = Path(folder)
    files = [f for f in folder.glob("*") if f.suffix in (".safetensors", ".bin")]
    if not files:
        raise FileNotFoundError(f"no weight files (*.safetensors, *.bin) in {folder}: save the model there first")
    return sum(f.stat().st_size for f in files)


def logits(model, batch: dict[str, Any]):
    """The model's logits for a batch, in eval mode and without gradients, as float32 on the CPU; padding positions
    (attention_mask 0) are set to 0, so that comparisons look at real tokens only."""
    import torch

    model.eval()
    with torch.no_grad():
        out = model(**{k: v.to(model.device) for k, v in batch.items()}).logits.float().cpu()
    if "attention_mask" in batch:
        out = torch.where(batch["attention_mask"].cpu().bool()[..., None], out, 0.0)
    return out


def max_abs_diff(a, b) -> float:
    """Largest absolute difference between two logits tensors of the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"logits shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return (a - b).abs().max().item()


def merge_adapter(peft_model, batch: dict[str, Any]):
    """Fold the LoRA update B A (scaled by alpha / r) into the base weights with `merge_and_unload`; return the
    plain merged model and the max absolute logits difference to the adapter model on `batch`."""
    before = logits(peft_model, batch)
    merged = peft_model.merge_and_unload()
    return merged, max_abs_diff(before, logits(merged, batch))


def save_fp16(model, folder: str | Path) -> None:
    """Save `model` with its weights in fp16 (half the disk of fp32), its in-memory weights rounded the same way (in
    their own dtype) so that a reloaded copy compares equal. Buffers (e.g. RoPE frequencies) are left as they are."""
    import torch

    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    for p in model.parameters():
        p.data = p.data.to(torch.float16)
    model.save_pretrained(folder)
    for name, p in model.named_parameters():
        p.data = p.data.to(dtypes[name])


def trainable_4bit(model):
    """Keep a 4-bit model's weights in bitsandbytes' trainable layout on every CPU, and return the model.

    On CPUs with AVX512-BF16, bitsandbytes 0.50 repacks a Linear4bit weight for fast inference the first time the layer
    runs in eval mode without gradients (a probe, a baseline, the Trainer's evaluation) and keeps that layout: later
    training steps then take an inference kernel that has no backward, and the gradients that flow through the frozen
    4-bit weights to the layers below are silently wrong (torch warns 'gemv_4bit: an autograd kernel was not
    registered'). Undo any repacking and switch it off for this model; a GPU never repacks."""
    import bitsandbytes as bnb
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse  # private: bitsandbytes is pinned <0.51

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            w = module.weight
            if getattr(w.quant_state, "packing_format_for_cpu", False):
                w.data, w.quant_state = _convert_weight_packed_for_cpu_inverse(w.data, w.quant_state)
    return model


def prepare_4bit(model):
    """QLoRA's preparation of a 4-bit base (04 and 08): `trainable_4bit`, then peft's prepare_model_for_kbit_training
    (fp32 norms and embeddings, frozen base) with non-reentrant activation checkpointing, which DDP needs (peft's
    default, reentrant, fails under DDP with 'Expected to mark a variable ready only once')."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(trainable_4bit(model), use_gradient_checkpointing=True,
                                           gradient_checkpointing_kwargs={"use_reentrant": False})
