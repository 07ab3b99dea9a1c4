from pathlib import Path

import pytest
import torch

from utils import lora, models, verdicts

LORA_RUNS = ["LoRA r=4", "LoRA r=8", "LoRA r=16"]


@pytest.fixture(scope="module")
def res(notebook):
    out = notebook("04_lora_qlora")
    assert out["profile"] == "smoke"
    return out["results"]


def test_formats_masking_and_bad_records(res):
    assert res["round_trip_ok"] is True
    masking = res["masking"]
    assert masking["masked_exactly_the_prompt"] and masking["matches_trl"]
    assert masking["prompt_tokens"] > 0 and masking["answer_tokens"] > 0
    assert [m.split(":")[0] for m in res["rejected"]] == ["bad_instructions.jsonl record 2"] * 2
    assert "missing field 'output'" in res["rejected"][0] and "'instruction' is empty" in res["rejected"][1]


def test_architecture_look_measures_the_kv_cache(res):
    gpt2, llama = res["architecture"].values()
    assert gpt2["positions"].startswith("learned") and llama["positions"].startswith("RoPE")
    assert "grouped-query" in llama["attention"]
    for arch in (gpt2, llama):
        assert arch["KV cache bytes per token, computed"] == arch["KV cache bytes per token, measured"] > 0
    assert llama["KV cache bytes per token, computed"] < gpt2["KV cache bytes per token, computed"]


def test_lora_lowers_eval_loss_with_fewer_trainable_parameters(res):
    runs, trainable = res["runs"], res["trainable"]
    for name in LORA_RUNS + ["QLoRA r=16", "full"]:
        assert runs[name]["eval loss after"] < runs[name]["eval loss before"], name
        assert runs[name]["train time (s)"] > 0 and runs[name]["tokens/s"] > 0
    assert trainable["full"] > trainable["LoRA r=16"] > trainable["LoRA r=8"] > trainable["LoRA r=4"] > 0
    assert trainable["LoRA r=16"] == 2 * trainable["LoRA r=8"] == 4 * trainable["LoRA r=4"]
    assert all(runs[n]["computed r(in+out)"] == trainable[n] for n in LORA_RUNS)
    sizes = [runs[n]["weights on disk (MB)"] for n in LORA_RUNS]
    assert sizes == sorted(sizes) and sizes[-1] < runs["full"]["weights on disk (MB)"] / 10


def test_qlora_ran_on_a_4bit_base(res):
    assert res["qlora"]["ran"] is True
    memory = {row["bits"]: row for row in res["memory"]}
    measured = [memory[b]["measured (MB)"] for b in (32, 16, 8, 4)]
    assert measured == sorted(measured, reverse=True)
    assert memory[4]["linear layer classes"] == {"Linear4bit": 14}
    assert memory[4]["computed (MB)"] == pytest.approx(memory[4]["measured (MB)"], rel=0.02)
    q, lo = res["runs"]["QLoRA r=16"], res["runs"]["LoRA r=16"]
    assert q["trainable"] == lo["trainable"] and q["weights in memory (MB)"] < 0.6 * lo["weights in memory (MB)"]


def test_merged_model_matches_the_adapter_and_reloads(res):
    merge = res["merge"]
    assert merge["max_abs_diff"] <= 1e-4 and merge["reload_max_abs_diff"] <= 1e-4
    folder = Path(merge["merged_dir"])
    assert (folder / "model.safetensors").stat().st_size == pytest.approx(merge["merged_mb"] * 2**20)
    assert (folder / "tokenizer.model").exists()  # what notebook 07's GGUF converter reads
    model = models.load_causal_lm(str(folder), dtype=torch.float32)
    tok = models.load_tokenizer(str(folder))
    assert sum(p.numel() for p in model.parameters()) == res["trainable"]["full"]
    assert not any("lora" in n for n, _ in model.named_parameters())
    batch = tok(["<s>[INST] Name a colour. [/INST]"], return_tensors="pt", add_special_tokens=False)
    assert torch.isfinite(lora.logits(model, batch)).all()
    assert merge["adapter_mb"] < merge["merged_mb"] / 10
    assert merge["qlora_merge_diff"] > merge["max_abs_diff"]  # the quantization error, not a merge error


def test_disk_kept_to_what_the_lesson_needs(res):
    out = Path(res["merge"]["merged_dir"]).parent
    assert not list(out.glob("checkpoints/*/checkpoint-*"))  # deleted once each run was saved
    weights = Path(res["merge"]["merged_dir"]) / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as st:
        assert {str(st.get_slice(k).get_dtype()) for k in st.keys()} == {"F16"}  # merged weights in fp16
    assert res["merge"]["merged_mb"] * 2**20 < 2.1 * res["trainable"]["full"]  # 2 bytes a weight, not 4


def test_answers_and_exercises(res):
    assert len(res["answers"]) == 3
    assert all(isinstance(row[k], str) for row in res["answers"] for k in ("before", "after (LoRA merged)"))
    assert res["exercises"] == {"04.1": True, "04.2": True, "04.3": True, "04.4": True}


def test_tuning_teaches_the_response_format(res):
    rates = res["format_adherence"]
    assert rates["instructions"] == res["splits"]["held_out"] + res["splits"]["eval"]  # every one kept out of training
    assert rates["LoRA r=16, merged"] > rates["base model"]  # ends its answer with the end-of-turn token more often
    free = rates["free_stop"]
    assert set(free) == {"base model", "LoRA r=16, merged"} and all(0 <= v <= 1 for v in free.values())
    assert rates["verdict"] == [
        verdicts.rate_change("Teacher-forced, the end-of-turn rate", rates["base model"], rates["LoRA r=16, merged"]),
        verdicts.rate_change(f"free generation, the share of answers ending within {rates['new_tokens']} tokens",
                             *free.values())]


# Every headline figure and outcome-stating sentence of 04, and the test that computes or checks it.
CLAIMS = {
    "headline 'LoRA r=16 eval loss', 'full FT eval loss'": "test_lora_lowers_eval_loss_with_fewer_trainable_parameters",
    "headline 'LoRA r=16 trainable %'": "test_lora_lowers_eval_loss_with_fewer_trainable_parameters",
    "headline 'format adherence base -> tuned', 'free stop base -> tuned' and section 8's sentence":
        "test_tuning_teaches_the_response_format",
    "headline 'merge max |dlogit|'": "test_merged_model_matches_the_adapter_and_reloads",
}


def test_every_claim_has_its_check():
    assert all(callable(globals()[name]) for name in CLAIMS.values())
