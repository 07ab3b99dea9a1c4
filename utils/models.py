"""Load tokenizers and models by name: 'local:<name>' for the offline assets, otherwise a Hub id or a folder."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ui
from .assets import causal_loss, local_model
from .env import hub_reachable


class ModelUnavailableError(RuntimeError):
    """A model that cannot be loaded here (offline and not cached, or a wrong name)."""


def resolve(name: str) -> str:
    """'local:<name>' -> the folder of the built asset; anything else is returned unchanged."""
    if not isinstance(name, str) or not name.strip():
        raise ModelUnavailableError(f"model name must be a non-empty string, got {name!r}")
    return str(local_model(name[len("local:"):])) if name.startswith("local:") else name


def _load(loader: Any, name: str, **kwargs: Any) -> Any:
    path = resolve(name)
    try:
        return loader.from_pretrained(path, **kwargs)
    except OSError as err:
        if Path(path).exists():
            raise
        if not hub_reachable():
            raise ModelUnavailableError(
                f"model '{name}' cannot be loaded offline: it is not in the local Hugging Face cache and the Hub "
                "did not answer — run `make prefetch PROFILE=cpu` (or gpu) where there is internet, use "
                "PROFILE='smoke' (local tiny models) or connect to the internet") from err
        raise ModelUnavailableError(f"model '{name}' could not be loaded from the Hub ({err}); check the name, "
                                    "and for gated models (Meta's Llama-2) log in with a token") from err


def load_tokenizer(name: str, **kwargs: Any):
    """AutoTokenizer for `name`, with a pad token (the EOS token) where the model has none."""
    from transformers import AutoTokenizer

    tok = _load(AutoTokenizer, name, **kwargs)
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(name: str, **kwargs: Any):
    """AutoModelForCausalLM for `name`; keyword arguments go to from_pretrained (dtype, quantization_config, …)."""
    from transformers import AutoModelForCausalLM

    return causal_loss(_load(AutoModelForCausalLM, name, **kwargs))


def local_rank() -> int:
    """This process's GPU index on its machine: LOCAL_RANK, set by torchrun and accelerate launch (0 when alone)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def device_map() -> dict[str, int] | str:
    """Where from_pretrained puts a whole model: this process's own GPU, {"": local_rank()} (a fixed {"": 0} would
    put every data-parallel rank on GPU 0), or "cpu" without CUDA. Never split across GPUs."""
    import torch

    return {"": local_rank()} if torch.cuda.is_available() else "cpu"


def cast_floats(model, dtype):
    """Cast the model's floating parameters to `dtype` (quantized 4-bit weights are integers and stay as they are) and
    return it: a tuned 4-bit model then generates in its base's dtype, not in the fp32 of k-bit training's norms."""
    for param in model.parameters():
        if param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)
    return model


# Tokens that end an assistant turn in the common chat formats, besides the tokenizer's own end-of-sequence token.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")


@dataclass(frozen=True)
class Answer:
    """One greedy answer: `text` (special tokens removed, cut before a stop string), `stopped` (it ended at the
    end-of-turn token or a stop string, not at the token limit), `tokens` (how many it generated) and `raw` (the
    decoded tokens as generated, a stop string included)."""
    text: str
    stopped: bool
    tokens: int
    raw: str


def end_of_turn_ids(tok, model=None) -> list[int]:
    """The token ids that end an answer: the tokenizer's end-of-sequence token, the model's generation config's,
    and any of END_OF_TURN_TOKENS the vocabulary holds as one token."""
    ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    vocab = tok.get_vocab()
    ids |= {vocab[t] for t in END_OF_TURN_TOKENS if t in vocab}
    return sorted(ids)


def greedy_answers(model, tok, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 8,
                   stop: str | Sequence[str] = (), chat: bool = False, desc: str = "answers",
                   no_repeat_ngram_size: int = 0) -> list[Answer]:
    """Greedy answers to `prompts` (with `chat`, each is one user message rendered by the chat template), batched
    with left padding behind a progress bar. Each ends at an end-of-turn token (end_of_turn_ids), at a stop
    string, or at `max_new_tokens`; Answer.stopped says which. `no_repeat_ngram_size` n > 0 blocks any repeated
    n-gram (greedy decoding of a small model loops). Notebooks 04, 05 and 06 use it."""
    import torch

    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be at least 1, got {batch_size} and {max_new_tokens}")
    stops = [stop] if isinstance(stop, str) else list(stop)
    if chat:
        prompts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    ends = end_of_turn_ids(tok, model)
    kwargs = {"stop_strings": stops, "tokenizer": tok} if stops else {}
    was_training, out = model.training, []
    model.eval()
    with ui.progress(total=len(prompts), desc=desc, unit="prompt") as bar:
        for start in range(0, len(prompts), batch_size):
            batch = list(prompts[start:start + batch_size])
            enc = tok(batch, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
            with torch.inference_mode():
                ids = model.generate(**enc.to(model.device), max_new_tokens=max_new_tokens, do_sample=False,
                                     temperature=None, top_p=None, use_cache=True, eos_token_id=ends,
                                     pad_token_id=tok.pad_token_id, no_repeat_ngram_size=no_repeat_ngram_size,
                                     **kwargs)
            for row in ids[:, enc["input_ids"].shape[1]:].tolist():
                end = next((i for i, t in enumerate(row) if t in ends), None)
                raw = tok.decode(row, skip_special_tokens=True)
                cut = min((raw.index(s) for s in stops if s in raw), default=None)
                out.append(Answer(text=raw if cut is None else raw[:cut], stopped=end is not None or cut is not None,
                                  tokens=len(row) if end is None else end + 1, raw=raw))
            bar.update(len(batch))
    model.train(was_training)
    return out


def greedy_generate(model, tok, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 8,
                    stop: str | Sequence[str] = (), chat: bool = False, desc: str = "answers") -> list[str]:
    """The decoded text of greedy_answers, as generated (a stop string included): what notebook 05 saves."""
    return [a.raw for a in greedy_answers(model, tok, prompts, max_new_tokens, batch_size, stop, chat, desc)]


def stop_rate(answers: Sequence[Answer]) -> float:
    """The share of answers that ended by themselves (end-of-turn token or stop string) within the token limit."""
    if not answers:
        raise ValueError("no answers to rate")
    return sum(a.stopped for a in answers) / len(answers)


def four_bit_config(dtype: Any = None):
    """QLoRA's quantization: 4-bit NF4 weights with double quantization, computing in `dtype` (default: the course's
    precision rule, training.precision — fp16 on a T4, bf16 on newer GPUs, fp32 on a CPU)."""
    from transformers import BitsAndBytesConfig

    from .training import precision

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype or precision().dtype)
