"""The Hub stand-in: published architectures, real tokenizer families and chat templates, datasets that load offline
with the notebooks' own calls."""
import json
import subprocess
import sys

import pytest

from utils import cache, manifest, standin, standin_data
from utils.env import ROOT
from utils.manifest import Item
from utils.standin import PUBLISHED, StandinError

STANDIN_SMOLLM2_SHIFT = 49152 - 17  # real id i -> 49135 + i (specials at the end)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A stand-in home with every tokenizer and config (no weights), distilgpt2 with weights, and the datasets."""
    hf_home = tmp_path_factory.mktemp("standin")
    for repo_id in PUBLISHED:
        standin.build_model(hf_home, repo_id, weights=repo_id == "distilgpt2")
    for item in manifest.unique(manifest.manifest("cpu")):
        if item.kind == "dataset":
            standin_data.build_dataset(hf_home, item)
    return hf_home


def _tokenizer(home, repo_id):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(cache.snapshot(repo_id, home))


def test_gpt2_tokenizer_is_openais(tmp_path):
    from transformers import GPT2TokenizerFast

    tok = GPT2TokenizerFast.from_pretrained(standin.gpt2_tokenizer_dir(tmp_path / "gpt2"))
    assert len(tok) == 50257
    assert tok("Hello world")["input_ids"] == [15496, 995] and tok(" the")["input_ids"] == [262]
    assert tok("<|endoftext|>")["input_ids"] == [50256]


def test_gpt2_files_with_a_wrong_checksum_are_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(standin.GPT2_FILES, "vocab.bpe", ("merges.txt", "0" * 64))
    with pytest.raises(StandinError, match="SHA-256 differs"):
        standin.gpt2_bpe_files(tmp_path)


@pytest.mark.parametrize("repo_id", sorted(PUBLISHED))
def test_config_equals_the_published_values(home, repo_id):
    import torch
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(cache.snapshot(repo_id, home))
    for key, value in PUBLISHED[repo_id]["config"].items():
        if key == "rope_theta":
            assert config.rope_parameters["rope_theta"] == value
        elif key == "torch_dtype":
            assert config.dtype == getattr(torch, value)
        elif key.endswith("_token_id") and repo_id.startswith("HuggingFaceTB/SmolLM2"):
            assert getattr(config, key) == value + STANDIN_SMOLLM2_SHIFT, key  # specials at the end
        else:
            assert getattr(config, key) == value, key
    assert config.course_standin == standin.MARKER
    tok = _tokenizer(home, repo_id)
    assert len(tok) <= config.vocab_size
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(config, name, None) is not None and getattr(tok, name) is not None:
            assert getattr(tok, name) == getattr(config, name), name


def test_tokenizers_are_of_the_real_family(home):
    assert _tokenizer(home, "bert-base-uncased")("Hello world")["input_ids"] == [101, 7592, 2088, 102]
    smol = _tokenizer(home, "HuggingFaceTB/SmolLM2-135M-Instruct")
    specials = [49152 - 17 + i for i in range(3)]  # SmolLM2's 17 special tokens, at the end of the stand-in's vocab
    assert smol.convert_ids_to_tokens(specials) == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert smol("Hello world")["input_ids"] == [15496, 995]  # GPT-2's BPE at GPT-2's ids
    roberta = _tokenizer(home, "roberta-large")
    assert roberta("Hello")["input_ids"][0] == 0 and roberta("Hello")["input_ids"][-1] == 2
    assert roberta.convert_tokens_to_ids("<mask>") == 50264
    llama = _tokenizer(home, "NousResearch/Llama-2-7b-chat-hf")
    assert type(llama).__name__.startswith("LlamaTokenizer") and llama("Hi")["input_ids"][0] == 1
    assert json.loads((cache.snapshot("roberta-large", home) / "tokenizer_config.json").read_text())[
        standin.MARKER_KEY] == standin.MARKER
    assert standin.is_standin(cache.snapshot("roberta-large", home), "tokenizer")
    assert standin.is_standin(cache.snapshot("gpt2", home), "model")  # random weights
    assert not standin.is_standin(cache.snapshot("gpt2", home), "tokenizer")  # OpenAI's own BPE


def test_chat_templates_render_the_real_formats(home):
    turn = [{"role": "user", "content": "Hi"}]
    smol = _tokenizer(home, "HuggingFaceTB/SmolLM2-360M-Instruct")
    assert smol.apply_chat_template(turn, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    zephyr = _tokenizer(home, "TinyLlama/TinyLlama-1.1B-Chat-v1.0")
    rendered = zephyr.apply_chat_template([{"role": "system", "content": "S"}, *turn], tokenize=False,
                                          add_generation_prompt=True)
    assert rendered == "<|system|>\nS</s>\n<|user|>\nHi</s>\n<|assistant|>\n"
    llama = _tokenizer(home, "NousResearch/Llama-2-7b-chat-hf")
    chat = [{"role": "system", "content": "S"}, *turn, {"role": "assistant", "content": "Yo"}]
    assert llama.apply_chat_template(chat, tokenize=False) == "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST] Yo </s>"


def test_cache_completeness(home):
    assert cache.missing(manifest.needs("03", "cpu"), home) == []
    assert cache.missing(manifest.needs("02", "cpu"), home) == []  # the gpt2 tokenizer (weights not needed)
    lacking = cache.missing(manifest.needs("04", "cpu"), home)
    assert [i.id for i in lacking] == ["HuggingFaceTB/SmolLM2-135M-Instruct", "gpt2"]  # built without weights
    assert cache.missing([Item("dataset", "rajpurkar/squad", splits=("train", "test"))], home)  # no test split


LOADS = """
import json
from collections import Counter
from datasets import load_dataset
from utils import formats, lm, models, squad
texts = lm.load_texts("Salesforce/wikitext:wikitext-2-raw-v1")
alpaca = formats.load_alpaca("yahma/alpaca-cleaned", 800)
train, valid = squad.load_splits("rajpurkar/squad")
hh = {f"{d}/{s}": load_dataset("Anthropic/hh-rlhf", data_dir=d, split=s) for d in ("harmless-base", "helpful-base")
      for s in ("train", "test")}
model = models.load_causal_lm("distilgpt2")
print(json.dumps({"train_lines": len(texts["train"]), "empty": texts["train"].count(""),
                  "headings": sum(lm.is_heading(t) for t in texts["train"]), "alpaca": len(alpaca),
                  "longest_input": max(len(r["input"]) for r in alpaca), "squad": [len(train), len(valid)],
                  "multi_gold": sum(len(r["answers"]["text"]) > 1 for r in valid),
                  "train_golds": sorted({len(r["answers"]["text"]) for r in train}),
                  "hh": {k: len(v) for k, v in hh.items()}, "hh_columns": hh["helpful-base/test"].column_names,
                  "multi_turn": sum(r["chosen"].count("Human:") > 1 for r in hh["harmless-base/train"]),
                  "identical": sum(r["chosen"] == r["rejected"] for r in hh["harmless-base/train"]),
                  "layers": model.config.n_layer, "standin": model.config.course_standin}))
"""


def test_notebook_calls_load_the_standin_offline(home):
    env = {**standin.standin_env(home), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", LOADS], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["train_lines"] > 1000 and got["empty"] > 100 and got["headings"] > 20
    assert got["alpaca"] == 140 and got["longest_input"] > 4000
    assert got["squad"] == [80, 60] and got["multi_gold"] > 5 and got["train_golds"] == [1]
    assert min(got["hh"].values()) > 5 and got["hh_columns"] == ["chosen", "rejected"]
    assert got["multi_turn"] == 1 and got["identical"] == 1
    assert got["layers"] == 6 and got["standin"] == standin.MARKER


def test_weights_are_sharded_seeded_and_load_without_missing_keys(tmp_path, monkeypatch):
    """The writer the 7B stand-in uses: one tensor at a time, shards with an index, the published dtype."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    config = {**PUBLISHED["HuggingFaceTB/SmolLM2-135M-Instruct"]["config"], "hidden_size": 64,
              "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "head_dim": 16, "vocab_size": 256}
    monkeypatch.setitem(PUBLISHED, "tiny/smol", {"tokenizer": "smollm2", "config": config})
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "config.json").write_text(json.dumps(config))
        n = standin.write_weights("tiny/smol", tmp_path / run, shard_bytes=40_000)
    shards = sorted(p.name for p in (tmp_path / "a").glob("*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "a" / "model.safetensors.index.json").is_file()
    assert all(torch.equal(load_file(tmp_path / "a" / s)[k], load_file(tmp_path / "b" / s)[k])
               for s in shards for k in load_file(tmp_path / "a" / s))  # seeded: the same bytes twice
    model, info = AutoModelForCausalLM.from_pretrained(tmp_path / "a", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.dtype == torch.bfloat16 and model.lm_head.weight is model.model.embed_tokens.weight
    assert n == model.num_parameters()


def test_smollm2_standin_pretokenizer_is_one_llama_cpp_recognizes(home):
    """llama.cpp's converter names a BPE pre-tokenizer by the hash of its ids on one fixed text: the stand-in's ids
    on that text are GPT-2's, whose hash the converter knows."""
    import ast
    import re

    from transformers import GPT2TokenizerFast

    from utils import gguf_export

    source = (gguf_export.find_converter(fetch=True).parent / "conversion" / "base.py").read_text(encoding="utf-8")
    chktxt = ast.literal_eval(re.search(r"^\s*chktxt = (.+)$", source, re.M).group(1))
    gpt2 = GPT2TokenizerFast.from_pretrained(standin.gpt2_tokenizer_dir(home / "gpt2-check"))
    assert _tokenizer(home, "HuggingFaceTB/SmolLM2-135M-Instruct").encode(chktxt) == gpt2.encode(chktxt)


def test_gpt2_bpe_keeps_each_special_once_even_where_gpt2_has_it(tmp_path):
    # GPT-2 itself ends with <|endoftext|>: asked for as a tail special, it must not also stay in the middle
    standin._gpt2_bpe(tmp_path, 50_259, tail=["<|endoftext|>", "<|im_end|>"])
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    assert sorted(vocab.values()) == list(range(len(vocab)))  # contiguous ids, none lost to a duplicate
    assert vocab["<|endoftext|>"] == len(vocab) - 2 and vocab["<|im_end|>"] == len(vocab) - 1
