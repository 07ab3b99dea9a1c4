"""Byte-pair encoding from scratch, the readable version: train, encode, decode, save and load (minbpe style).

The algorithm, on UTF-8 bytes: start from the 256 byte values, repeatedly merge the most frequent adjacent pair
into a new token, and remember the merges in order. Encoding replays the merges by rank; decoding joins bytes.
`utils.bpe_fast` is the same tokenizer made fast; this module is the reference it must agree with.

Rules both implementations share, so that their merges are identical:
- ties: among the pairs with the highest count, the pair with the smallest ids (first id, then second) wins;
- a merge whose bytes are already a token reuses that token's id (one id per byte string, as Hugging Face's
  trainer does), so training stops when the vocabulary holds `vocab_size` distinct tokens or no pair is left;
- encoding merges the adjacent pair of lowest rank first, the leftmost one on ties, one occurrence at a time
  (what Hugging Face's BPE model does).
"""
from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import regex

from . import ui

# The pre-split patterns of GPT-2 and of GPT-4 (cl100k): text is cut into chunks (words with their leading space,
# numbers, punctuation runs, whitespace) and merges never cross a chunk boundary.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT4_SPLIT_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|"""
                      r"""\s*[\r\n]|\s+(?!\S)|\s+""")
FORMAT = "utils.bpe/1"


def get_stats(ids: Sequence[int], counts: dict[tuple[int, int], int] | None = None,
              weight: int = 1) -> dict[tuple[int, int], int]:
    """Count adjacent pairs in `ids` (adding `weight` per occurrence into `counts` when given)."""
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge(ids: Sequence[int], pair: tuple[int, int], idx: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` by `idx`, left to right, without overlaps ('aaa' -> 'Za')."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(idx)  # the pair, replaced; skip both of its ids
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def best_pair(stats: dict[tuple[int, int], int]) -> tuple[int, int]:
    """The pair to merge next: the highest count, ties broken by the smallest ids (the shared tie-break rule)."""
    return min(stats, key=lambda pair: (-stats[pair], pair))


def render_token(token: bytes) -> str:
    """A printable form of a token's bytes: UTF-8 where it decodes, control characters escaped (e.g. \\u000a)."""
    text = token.decode("utf-8", errors="replace")
    return "".join(f"\\u{ord(ch):04x}" if unicodedata.category(ch)[0] == "C" else ch for ch in text)


def crosses_categories(token: bytes) -> bool:
    """True for a token that glues a letter or digit to what follows it in another category ('e ', 's,', 'a1'):
    what merging across pre-split chunks produces. Tokens that are not whole UTF-8 characters count as False."""
    try:
        text = token.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return regex.search(r"[\p{L}\p{N}][^\p{L}\p{N}]|\p{L}\p{N}|\p{N}\p{L}", text) is not None


def check_text(text: Any, name: str = "text") -> str:
    """Raise a clear TypeError unless `text` is a str (bytes must be decoded first)."""
    if not isinstance(text, str):
        hint = " — decode it first: data.decode('utf-8')" if isinstance(text, (bytes, bytearray)) else ""
        raise TypeError(f"{name} must be a str, got {type(text).__name__}{hint}")
    return text


class Tokenizer:
    """Byte-level BPE with an optional regex pre-split and special tokens; the simple, readable implementation.

    `byte_ids[b]` is the id of raw byte b (default: b itself); files such as GPT-2's number bytes differently.
    """

    def __init__(self, pattern: str | None = GPT4_SPLIT_PATTERN, byte_ids: Sequence[int] | None = None) -> None:
        self.pattern = pattern
        self.compiled = regex.compile(pattern) if pattern else None
        self.byte_ids = list(range(256)) if byte_ids is None else [int(i) for i in byte_ids]
        if len(self.byte_ids) != 256 or len(set(self.byte_ids)) != 256:
            raise ValueError("byte_ids must give 256 distinct ids, one for each byte value")
        self.merges: dict[tuple[int, int], int] = {}  # (left id, right id) -> new id, in rank order
        self.special_tokens: dict[str, int] = {}
        self._rebuild()

    # --- vocabulary ---------------------------------------------------------------------------------------------

    def _rebuild(self) -> None:
        """Derive the vocabulary (id -> bytes) and the merge ranks from byte_ids and merges."""
        self.vocab = {i: bytes([b]) for b, i in enumerate(self.byte_ids)}
        for (a, b), idx in self.merges.items():
            self.vocab.setdefault(idx, self.vocab[a] + self.vocab[b])
        self.ranks = {pair: rank for rank, pair in enumerate(self.merges)}

    def __len__(self) -> int:
        """Number of tokens: bytes, merged tokens and special tokens."""
        return len(self.vocab) + len(self.special_tokens)

    def register_special_tokens(self, tokens: dict[str, int]) -> None:
        """Add special tokens such as {'<|endoftext|>': 4096}; their ids must not be taken by other tokens."""
        for name, idx in tokens.items():
            if not isinstance(name, str) or not name or not isinstance(idx, int):
                raise ValueError(f"a special token is a non-empty str with an int id, got {name!r}: {idx!r}")
            others = {i for n, i in self.special_tokens.items() if n != name}
            if idx in self.vocab or idx in others:
                raise ValueError(f"special token {name!r}: id {idx} is already used; pick an id >= {len(self)}")
            self.special_tokens[name] = idx

    def first_merges(self, n: int) -> Tokenizer:
        """A copy that keeps only the first `n` merges: every prefix of the merge list is itself a tokenizer."""
        out = type(self)(self.pattern, self.byte_ids)
        out.merges = dict(list(self.merges.items())[:n])
        out.special_tokens = dict(self.special_tokens)
        out._rebuild()
        return out

    # --- training -----------------------------------------------------------------------------------------------

    def split_text(self, text: str) -> list[str]:
        """Pre-split `text` into chunks with the regex pattern; registered special tokens are cut out, never merged."""
        check_text(text)
        parts = [text]
        if self.special_tokens:
            parts = regex.split(self._special_pattern(self.special_tokens), text)
        if self.compiled is None:
            return [p for p in parts if p]
        return [chunk for part in parts for chunk in self.compiled.findall(part)]

    @staticmethod
    def _special_pattern(names: Iterable[str]) -> str:
        """A regex matching any of `names`, the longest first (so '<|a|>x' wins over '<|a|>')."""
        return "|".join(regex.escape(s) for s in sorted(names, key=len, reverse=True))

    def _check_vocab_size(self, vocab_size: Any) -> int:
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
            raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        if vocab_size < 256:
            raise ValueError(f"vocab_size must be at least 256 (one token per byte value), got {vocab_size}")
        return vocab_size

    def train(self, text: str, vocab_size: int, progress: bool = False) -> Tokenizer:
        """Learn merges on `text` until the vocabulary has `vocab_size` tokens (or no pair is left).

        The simple way: every step recounts all pairs in all chunks, then merges the best pair everywhere.
        """
        vocab_size = self._check_vocab_size(vocab_size)
        # 1. pre-split the text into chunks, and each chunk into byte ids: merges never cross chunks
        chunks = [[self.byte_ids[b] for b in chunk.encode("utf-8")] for chunk in self.split_text(text)]
        self.merges = {}
        self._rebuild()
        by_bytes = {token: idx for idx, token in self.vocab.items()}
        next_id = max(self.vocab) + 1
        bar = _progress(progress, vocab_size - len(self.vocab), "BPE training (simple)")
        while len(self.vocab) < vocab_size:
            # 2. count every adjacent pair in every chunk (the simple way: from scratch, each time)
            stats: dict[tuple[int, int], int] = {}
            for ids in chunks:
                get_stats(ids, stats)
            if not stats:
                break  # every chunk is a single token: nothing left to merge
            # 3. the most frequent pair becomes a token, with the next free id
            pair = best_pair(stats)
            token = self.vocab[pair[0]] + self.vocab[pair[1]]
            idx = by_bytes.get(token)
            if idx is None:  # a new token; otherwise the merge reuses the id its bytes already have
                idx, next_id = next_id, next_id + 1
                self.vocab[idx] = by_bytes[token] = token
                bar.update(1)
            self.merges[pair] = idx
            # 4. replace the pair by the new id everywhere, then count again
            chunks = [merge(ids, pair, idx) for ids in chunks]
        bar.close()
        self._rebuild()
        return self

    # --- encoding and decoding ----------------------------------------------------------------------------------

    def _encode_chunk(self, data: bytes) -> list[int]:
        """Apply the merges to one chunk: the adjacent pair of lowest rank first (the leftmost on ties)."""
        ids = [self.byte_ids[b] for b in data]
        while len(ids) >= 2:
            rank, i = min((self.ranks.get(pair, len(self.ranks)), i) for i, pair in enumerate(zip(ids, ids[1:])))
            if rank == len(self.ranks):
                break  # no adjacent pair was ever merged
            ids[i:i + 2] = [self.merges[ids[i], ids[i + 1]]]
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text` ignoring special tokens (their text is encoded like any other)."""
        check_text(text)
        chunks = self.compiled.findall(text) if self.compiled is not None else ([text] if text else [])
        return [idx for chunk in chunks for idx in self._encode_chunk(chunk.encode("utf-8"))]

    def _special_set(self, value: str | Iterable[str], name: str) -> set[str]:
        if value == "all":
            return set(self.special_tokens)
        if value == "none":
            return set()
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise TypeError(f"{name} must be 'all', 'none' or a set of special-token strings, got {value!r}")
        unknown = sorted(set(value) - set(self.special_tokens))
        if unknown:
            known = sorted(self.special_tokens) or "none registered"
            raise ValueError(f"{name}: unknown special token(s) {unknown}; registered: {known} "
                             "(add them with register_special_tokens)")
        return set(value)

    def encode(self, text: str, allowed_special: str | Iterable[str] = "none",
               disallowed_special: str | Iterable[str] = "all") -> list[int]:
        """Encode `text` to ids. Special tokens in `allowed_special` become their ids; one in `disallowed_special`
        found in the text raises ValueError (pass disallowed_special=() to encode it as ordinary text)."""
        check_text(text)
        allowed = self._special_set(allowed_special, "allowed_special")
        disallowed = self._special_set(disallowed_special, "disallowed_special") - allowed
        found = sorted(s for s in disallowed if s in text)
        if found:
            raise ValueError(f"the text contains the special token(s) {found}, which are not allowed here. "
                             f"Pass allowed_special={set(found)} to encode them as special tokens, or "
                             "disallowed_special=() to encode them as ordinary text.")
        if not allowed:
            return self.encode_ordinary(text)
        parts = regex.split("(" + self._special_pattern(allowed) + ")", text)
        ids: list[int] = []
        for i, part in enumerate(parts):  # odd positions hold the special tokens the split kept
            ids.extend([self.special_tokens[part]] if i % 2 else self.encode_ordinary(part))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Ids back to text; bytes that do not form valid UTF-8 become U+FFFD."""
        inverse = {idx: name.encode("utf-8") for name, idx in self.special_tokens.items()}
        out = []
        for idx in ids:
            token = self.vocab.get(idx, inverse.get(idx))
            if token is None:
                raise ValueError(f"unknown token id {idx}: this tokenizer has ids "
                                 f"{min(self.vocab)}..{max([*self.vocab, *inverse])}")
            out.append(token)
        return b"".join(out).decode("utf-8", errors="replace")

    # --- saving, loading and reading the vocabulary -------------------------------------------------------------

    def vocab_table(self) -> list[dict[str, Any]]:
        """One row per merged token in rank order: id, the token, and the two tokens it was made of."""
        return [{"rank": rank, "id": idx, "token": render_token(self.vocab[idx]),
                 "left": render_token(self.vocab[a]), "right": render_token(self.vocab[b]),
                 "bytes": len(self.vocab[idx])} for rank, ((a, b), idx) in enumerate(self.merges.items())]

    def save(self, prefix: str | Path) -> tuple[Path, Path]:
        """Write `<prefix>.json` (everything load needs) and `<prefix>.vocab` (a readable dump, one merge a line)."""
        prefix = Path(prefix)
        model, readable = prefix.with_name(prefix.name + ".json"), prefix.with_name(prefix.name + ".vocab")
        doc = {"format": FORMAT, "pattern": self.pattern, "byte_ids": self.byte_ids,
               "special_tokens": self.special_tokens, "merges": [[a, b, idx] for (a, b), idx in self.merges.items()]}
        model.write_text(json.dumps(doc), encoding="utf-8")
        lines = [f"{r['id']}\t[{r['token']}]\t<- [{r['left']}] + [{r['right']}]" for r in self.vocab_table()]
        lines += [f"{idx}\t{name}\t(special)" for name, idx in self.special_tokens.items()]
        readable.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return model, readable

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a tokenizer written by `save` (the .json file)."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read a tokenizer from {path}: {err}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"{path} is not a tokenizer saved by utils.bpe (expected format {FORMAT!r})")
        tok = cls(doc["pattern"], doc["byte_ids"])
        tok.merges = {(a, b): idx for a, b, idx in doc["merges"]}
        tok._rebuild()
        tok.register_special_tokens(doc["special_tokens"])
        return tok


def _progress(show: bool, total: int, desc: str):
    """A tqdm bar when asked, else a stand-in with the same update/close methods."""
    if show:

        return ui.progress(total=total, desc=desc)

    class _Quiet:
        def update(self, n: int = 1) -> None:
            pass

        def close(self) -> None:
            pass

    return _Quiet()


# --- Hugging Face interop: the same tokenizer as a `tokenizers` byte-level BPE, and back -------------------------

def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map: printable bytes stand for themselves, the rest map above U+0100."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def to_huggingface(tok: Tokenizer):
    """Export to a Hugging Face `tokenizers.Tokenizer`: byte-level BPE with the same pre-split and special tokens."""
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    b2u = bytes_to_unicode()

    def text(token: bytes) -> str:
        return "".join(b2u[b] for b in token)

    vocab = {text(token): idx for idx, token in tok.vocab.items()}
    vocab.update(tok.special_tokens)
    merges = [(text(tok.vocab[a]), text(tok.vocab[b])) for a, b in tok.merges]
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges))
    steps = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    if tok.pattern:
        steps.insert(0, pre_tokenizers.Split(Regex(tok.pattern), behavior="isolated"))
    hf.pre_tokenizer = pre_tokenizers.Sequence(steps)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(name, special=True, normalized=False) for name in tok.special_tokens])
    return hf


def hf_train(text: str, vocab_size: int, pattern: str):
    """Hugging Face `tokenizers`' BPE trainer with our pre-split and all 256 bytes as the starting alphabet."""
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    hf.train_from_iterator([text], trainer)
    return hf


def from_huggingface(hf: Any, pattern: str = GPT2_SPLIT_PATTERN, cls: type[Tokenizer] = Tokenizer) -> Tokenizer:
    """Load the merges of a Hugging Face byte-level BPE (a `tokenizers.Tokenizer` or a fast transformers tokenizer,
    e.g. GPT-2's) into our tokenizer class `cls`, keeping its ids; `pattern` is the pre-split it uses."""
    backend = getattr(hf, "backend_tokenizer", hf)
    doc = json.loads(backend.to_str())
    model = doc["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"expected a BPE model, got {model.get('type')!r}")
    u2b = {ch: b for b, ch in bytes_to_unicode().items()}
    vocab: dict[str, int] = model["vocab"]
    missing = [ch for ch in u2b if ch not in vocab]
    if missing:
        raise ValueError(f"not a byte-level BPE: {len(missing)} of the 256 byte characters are not in its vocabulary")
    tok = cls(pattern, byte_ids=[vocab[ch] for b, ch in sorted(bytes_to_unicode().items())])
    for pair in model["merges"]:
        left, right = pair.split(" ") if isinstance(pair, str) else pair
        if left + right not in vocab or any(ch not in u2b for ch in left + right):
            raise ValueError(f"merge {left!r} + {right!r} is not byte-level BPE (is this a GPT-2-style tokenizer?)")
        tok.merges[vocab[left], vocab[right]] = vocab[left + right]
    tok._rebuild()
    tok.register_special_tokens({t["content"]: t["id"] for t in doc.get("added_tokens", []) if t.get("special")})
    return tok
