"""The Hub stand-in: published architectures, real tokenizer families and chat templates, the real repositories'
file layouts (the served path that downloads them is tests/test_standin_runs.py)."""
import json

import pytest

from tools.hub import standin, standin_data
from tools.hub.standin import PUBLISHED
from utils import assets, formats, hubcache
from utils.assets import AssetError

STANDIN_SMOLLM2_SHIFT = 49152 - 17  # real id i -> 49135 + i (specials at the end)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A stand-in Hub with every tokenizer and config (no weights), distilgpt2 with weights, the datasets and the
    metric."""
    root = tmp_path_factory.mktemp("standin")
    for repo_id in PUBLISHED:
        standin.build_model(root, repo_id, weights=repo_id == "distilgpt2")
    for repo_id in standin_data.WRITERS:
        standin_data.build_dataset(root, repo_id)
    standin.build_metric(root, "evaluate-metric/squad")
    return root


def _repo(home, repo_id, kind="model"):
    return standin.repo_dir(home, kind, repo_id)


def _tokenizer(home, repo_id):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_repo(home, repo_id))


def test_gpt2_tokenizer_is_openais(tmp_path):
    from transformers import GPT2TokenizerFast

    tok = GPT2TokenizerFast.from_pretrained(assets.gpt2_tokenizer_dir(tmp_path / "gpt2"))
    assert len(tok) == 50257
    assert tok("Hello world")["input_ids"] == [15496, 995] and tok(" the")["input_ids"] == [262]
    assert tok("<|endoftext|>")["input_ids"] == [50256]


def test_gpt2_files_with_a_wrong_checksum_are_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(assets.GPT2_FILES, "vocab.bpe", ("merges.txt", "0" * 64))
    with pytest.raises(AssetError, match="SHA-256 differs"):
        assets.gpt2_bpe_files(tmp_path)


@pytest.mark.parametrize("repo_id", sorted(PUBLISHED))
def test_config_equals_the_published_values(home, repo_id):
    import torch
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(_repo(home, repo_id))
    for key, value in PUBLISHED[repo_id]["config"].items():
        if key == "rope_theta":
            assert config.rope_parameters["rope_theta"] == value
        elif key == "torch_dtype":
            assert config.dtype == getattr(torch, value)
        elif key.endswith("_token_id") and repo_id.startswith("HuggingFaceTB/SmolLM2"):
            assert getattr(config, key) == value + STANDIN_SMOLLM2_SHIFT, key  # specials at the end
        else:
            assert getattr(config, key) == value, key
    assert config.course_standin == hubcache.MARKER
    tok = _tokenizer(home, repo_id)
    # as published, Llama-2 chat adds <pad> one past its 32,000-row embedding; every other fits its embedding
    quirk = 1 if repo_id == "NousResearch/Llama-2-7b-chat-hf" else 0
    assert len(tok) == config.vocab_size + 1 if quirk else len(tok) <= config.vocab_size
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
    assert json.loads((_repo(home, "roberta-large") / "tokenizer_config.json").read_text())[
        hubcache.MARKER_KEY] == hubcache.MARKER
    assert hubcache.is_standin(_repo(home, "roberta-large"), "tokenizer")
    assert hubcache.is_standin(_repo(home, "gpt2"), "model")  # random weights
    assert not hubcache.is_standin(_repo(home, "gpt2"), "tokenizer")  # OpenAI's own BPE


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
    llama = _tokenizer(home, "NousResearch/Llama-2-7b-chat-hf")  # published without one: 05's fallback renders it
    chat = [{"role": "system", "content": "S"}, *turn, {"role": "assistant", "content": "Yo"}]
    assert llama.apply_chat_template(chat, chat_template=formats.LLAMA2_CHAT_TEMPLATE, tokenize=False) == (
        "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST] Yo </s>")


def test_repositories_have_the_published_layouts(home):
    """The files and names the real repositories have: a loader that works on these works on the Hub's."""
    def files(repo_id, kind):
        folder = _repo(home, repo_id, kind)
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                      if p.is_file() and p.name != standin.REPO_MARKER)

    assert files("Salesforce/wikitext", "dataset") == ["README.md"] + [
        f"wikitext-2-raw-v1/{s}-00000-of-00001.parquet" for s in ("test", "train", "validation")]
    assert "config_name: wikitext-2-raw-v1" in (_repo(home, "Salesforce/wikitext", "dataset") / "README.md").read_text()
    assert files("rajpurkar/squad", "dataset") == ["README.md", "plain_text/train-00000-of-00001.parquet",
                                                   "plain_text/validation-00000-of-00001.parquet"]
    assert files("Anthropic/hh-rlhf", "dataset") == ["README.md", "harmless-base/test.jsonl.gz",
                                                     "harmless-base/train.jsonl.gz", "helpful-base/test.jsonl.gz",
                                                     "helpful-base/train.jsonl.gz",
                                                     "red-team-attempts/red_team_attempts.jsonl.gz"]
    assert files("yahma/alpaca-cleaned", "dataset") == ["README.md", "alpaca_data_cleaned.json"]
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json"} <= set(files("distilgpt2", "model"))
    space = _repo(home, "evaluate-metric/squad", "space")
    assert files("evaluate-metric/squad", "space") == ["README.md", "compute_score.py", "squad.py"]
    from importlib.metadata import version

    assert json.loads((space / standin.REPO_MARKER).read_text())["tags"] == [f"v{version('evaluate')}"]


def test_llama2_tokenizer_has_the_published_quirks(home):
    """NousResearch/Llama-2-7b-chat-hf as published: no chat template, pad = <unk> (id 0), an added <pad> at 32000."""
    folder = _repo(home, "NousResearch/Llama-2-7b-chat-hf")
    assert "chat_template" not in json.loads((folder / "tokenizer_config.json").read_text())
    assert not (folder / "chat_template.jinja").exists()
    assert json.loads((folder / "special_tokens_map.json").read_text())["pad_token"] == "<unk>"
    assert json.loads((folder / "added_tokens.json").read_text()) == {"<pad>": 32000}
    assert json.loads((folder / "config.json").read_text())["pad_token_id"] == 0
    tok = _tokenizer(home, "NousResearch/Llama-2-7b-chat-hf")
    assert tok.chat_template is None and tok.pad_token == "<unk>" and tok.pad_token_id == 0
    assert len(tok) == 32001 and tok.convert_tokens_to_ids("<pad>") == 32000  # one past the 32,000-row embedding


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
    gpt2 = GPT2TokenizerFast.from_pretrained(assets.gpt2_tokenizer_dir(home / "gpt2-check"))
    assert _tokenizer(home, "HuggingFaceTB/SmolLM2-135M-Instruct").encode(chktxt) == gpt2.encode(chktxt)


def test_gpt2_bpe_keeps_each_special_once_even_where_gpt2_has_it(tmp_path):
    # GPT-2 itself ends with <|endoftext|>: asked for as a tail special, it must not also stay in the middle
    standin._gpt2_bpe(tmp_path, 50_259, tail=["<|endoftext|>", "<|im_end|>"])
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    assert sorted(vocab.values()) == list(range(len(vocab)))  # contiguous ids, none lost to a duplicate
    assert vocab["<|endoftext|>"] == len(vocab) - 2 and vocab["<|im_end|>"] == len(vocab) - 1


def test_gpu_checks_direct_mode_puts_a_model_where_a_download_would(home, tmp_path):
    from utils.manifest import Item

    snapshot = standin.link_into_cache(home, tmp_path, "distilgpt2")
    assert hubcache.snapshot("distilgpt2", tmp_path) == snapshot
    assert hubcache.present(Item("model", "distilgpt2"), tmp_path)
    assert (snapshot / "model.safetensors").stat().st_ino == (
        standin.repo_dir(home, "model", "distilgpt2") / "model.safetensors").stat().st_ino  # linked, not copied
