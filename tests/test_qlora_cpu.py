"""QLoRA gradients on a CPU stay right after the 4-bit model has run in eval mode (a probe, a baseline, an eval)."""
import torch
from peft import LoraConfig, get_peft_model

from utils import lora, models


def layer0_lora_grads(probe_first: bool, keep_trainable: bool) -> dict[str, torch.Tensor]:
    """Gradients of layer 0's LoRA weights after one backward pass on the tiny 4-bit Llama."""
    tok = models.load_tokenizer("local:tiny-llama")
    batch = tok(["The river flows through the old town and into the sea."], return_tensors="pt")
    model = models.load_causal_lm("local:tiny-llama", quantization_config=models.four_bit_config(torch.float32),
                                  device_map="cpu")
    if keep_trainable:
        model = lora.trainable_4bit(model)
    if probe_first:
        model.eval()
        with torch.no_grad():
            model(**batch)
    model.train()
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    peft_model(**batch, labels=batch["input_ids"]).loss.backward()
    return {n: p.grad for n, p in peft_model.named_parameters() if p.requires_grad and "layers.0." in n}


def test_a_probe_before_training_leaves_the_gradients_unchanged():
    reference = layer0_lora_grads(probe_first=False, keep_trainable=True)
    after_probe = layer0_lora_grads(probe_first=True, keep_trainable=True)
    assert reference and reference.keys() == after_probe.keys()
    for name, grad in reference.items():
        assert torch.allclose(grad, after_probe[name], atol=1e-5), name
