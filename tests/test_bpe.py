"""utils.bpe (simple) and utils.bpe_fast (fast): the algorithm, agreement with each other and with Hugging Face
`tokenizers`, special tokens, save/load and bad input."""
import json
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from utils import bpe, bpe_benchmark, bpe_fast, data

PATTERNS = {"gpt4": bpe.GPT4_SPLIT_PATTERN, "gpt2": bpe.GPT2_SPLIT_PATTERN, "none": None}
QUICK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Any text but lone surrogates (not encodable as UTF-8), plus the hard cases drawn on purpose.
EDGE = ["", " ", "\n\n", "🙂", "👍🏽", "👨\u200d👩\u200d👧", "e\u0301", "\u0301", "ñ", "日本語", "한국어",
        "\u200b", "\x00", "'s", "  x"]
ANY_TEXT = st.one_of(st.text(st.characters(exclude_categories=("Cs",)), max_size=60),
                     st.lists(st.sampled_from(EDGE), max_size=8).map("".join))
# Characters assigned in Unicode 14 (Python's table): on newer letters the `regex` package (newer Unicode) and the
# Oniguruma engine inside `tokenizers` disagree on \p{L}, so the pre-splits, not the BPEs, would differ there.
ASSIGNED = st.characters(exclude_categories=("Cs",)).filter(lambda ch: unicodedata.category(ch) != "Cn")


@pytest.fixture(scope="module")
def corpus() -> str:
    sample = data.data_path("tokenization_sample.txt").read_text(encoding="utf-8")
    return data.corpus_text("train")[:15000] + sample * 3


@pytest.fixture(scope="module")
def trained(corpus):
    """The simple and the fast tokenizer trained on the same text, per pattern."""
    return {name: (bpe.Tokenizer(p).train(corpus, 400), bpe_fast.FastTokenizer(p).train(corpus, 400))
            for name, p in PATTERNS.items() if p}


# --- the algorithm -------------------------------------------------------------------------------------------

def test_the_classic_example_gives_the_textbook_replacement_table():
    tok = bpe.Tokenizer(pattern=None).train("aaabdaaabac", 259)
    a, b = ord("a"), ord("b")
    assert tok.merges == {(a, a): 256, (a, b): 257, (256, 257): 258}  # Z=aa, Y=ab, X=ZY
    names = {256: "Z", 257: "Y", 258: "X"}
    steps, ids = [], list(b"aaabdaaabac")
    for pair, idx in tok.merges.items():
        ids = bpe.merge(ids, pair, idx)
        steps.append("".join(names.get(i) or chr(i) for i in ids))
    assert steps == ["ZabdZabac", "ZYdZYac", "XdXac"]
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, a, ord("c")]


def test_get_stats_counts_overlapping_pairs_and_merge_does_not_overlap():
    assert bpe.get_stats([1, 1, 1, 2]) == {(1, 1): 2, (1, 2): 1}
    assert bpe.get_stats([1, 2], {(1, 2): 3}, weight=2) == {(1, 2): 5}
    assert bpe.merge([1, 1, 1, 2], (1, 1), 9) == [9, 1, 2]
    assert bpe.merge([], (1, 1), 9) == []


def test_ties_go_to_the_smallest_pair():
    assert bpe.best_pair({(5, 1): 3, (2, 9): 3, (2, 3): 3, (0, 0): 1}) == (2, 3)


def test_training_stops_when_no_pair_is_left_and_reuses_ids_of_existing_bytes():
    tok = bpe.Tokenizer(pattern=None).train("abab", 1000)
    assert len(tok.vocab) == 258 and tok.encode("abab") == [257]
    # "abc" can be built as (ab, c) in one chunk and (a, bc) in another: one id for the same bytes
    tok = bpe_fast.FastTokenizer(pattern=r"\S+|\s+").train("abc abc bcx bcx bcx abx abx", 280)
    tokens = [tok.vocab[i] for i in tok.vocab]
    assert len(tokens) == len(set(tokens))


def test_every_prefix_of_the_merges_is_a_tokenizer(trained, corpus):
    simple, _ = trained["gpt4"]
    lengths = [len(simple.first_merges(n).encode(corpus[:3000])) for n in (0, 10, 50, len(simple.merges))]
    assert lengths[0] == len(corpus[:3000].encode("utf-8")) and lengths == sorted(lengths, reverse=True)
    assert simple.first_merges(len(simple.merges)).encode(corpus) == simple.encode(corpus)


def test_pre_split_keeps_merges_inside_categories(corpus):
    def crossing(tok):
        return [t for t in tok.vocab.values() if bpe.crosses_categories(t)]

    assert [bpe.crosses_categories(t.encode()) for t in ("e ", "s,", "a1", " the", "'s", "(x", ".\n\n")] == \
        [True, True, True, False, False, False, False]
    assert bpe.crosses_categories(b"\xc3") is False
    assert crossing(bpe_fast.FastTokenizer(bpe.GPT2_SPLIT_PATTERN).train(corpus, 500)) == []
    assert crossing(bpe_fast.FastTokenizer(bpe.GPT4_SPLIT_PATTERN).train(corpus, 500)) == []
    assert len(crossing(bpe_fast.FastTokenizer(None).train(corpus[:5000], 400))) > 20
    assert bpe.Tokenizer(bpe.GPT4_SPLIT_PATTERN).split_text("Hello world's 12345!!\n") == \
        ["Hello", " world", "'s", " ", "123", "45", "!!\n"]


# --- properties: round trip, simple == fast, and == Hugging Face -------------------------------------------

@QUICK
@given(text=ANY_TEXT)
def test_decode_inverts_encode_for_any_text(trained, text):
    for simple, fast in trained.values():
        ids = fast.encode(text)
        assert simple.encode(text) == ids
        assert fast.decode(ids) == text == simple.decode(ids)


@settings(max_examples=40, deadline=None)
@given(corpus=st.text(st.sampled_from("ab c\nd1é🙂'"), max_size=120), extra=st.integers(0, 40),
       pattern=st.sampled_from(sorted(PATTERNS)), probe=st.text(st.sampled_from("abc d1é🙂'x"), max_size=30))
def test_fast_and_simple_learn_the_same_merges_and_ids(corpus, extra, pattern, probe):
    simple = bpe.Tokenizer(PATTERNS[pattern]).train(corpus, 256 + extra)
    fast = bpe_fast.FastTokenizer(PATTERNS[pattern]).train(corpus, 256 + extra)
    assert list(fast.merges.items()) == list(simple.merges.items())
    assert fast.encode(corpus + probe) == simple.encode(corpus + probe)


def test_fast_and_simple_agree_on_real_text_with_another_byte_order(corpus):
    order = list(reversed(range(256)))
    simple = bpe.Tokenizer(byte_ids=order).train(corpus[:6000], 330)
    fast = bpe_fast.FastTokenizer(byte_ids=order).train(corpus[:6000], 330)
    assert list(fast.merges.items()) == list(simple.merges.items())
    assert fast.encode(corpus) == simple.encode(corpus) and fast.decode(fast.encode(corpus)) == corpus


@settings(max_examples=40, deadline=None)
@given(text=st.one_of(st.text(ASSIGNED, max_size=60), st.lists(st.sampled_from(EDGE), max_size=8).map("".join)))
def test_the_exported_huggingface_tokenizer_gives_the_same_ids(trained, text):
    for name, (_, fast) in trained.items():
        hf = _exported(name, fast)
        assert hf.encode(text).ids == fast.encode(text)
        assert hf.decode(fast.encode(text)) == text


_EXPORTS: dict = {}


def _exported(name, tok):
    if name not in _EXPORTS:
        _EXPORTS[name] = bpe.to_huggingface(tok)
    return _EXPORTS[name]


def test_huggingface_trainer_learns_our_merges_when_bytes_are_numbered_like_it(corpus):
    """Same pre-split, same counts: the only difference is the tie-break on byte ids (HF numbers bytes by their
    printable character); numbering ours the same way gives exactly Hugging Face's merges."""
    b2u = bpe.bytes_to_unicode()
    hf_order = {b: i for i, b in enumerate(sorted(range(256), key=lambda b: b2u[b]))}
    ours = bpe_fast.FastTokenizer(byte_ids=[hf_order[b] for b in range(256)]).train(corpus, 600)
    theirs = bpe.hf_train(corpus, 600, ours.pattern)
    hf_merges = [tuple(m) for m in json.loads(theirs.to_str())["model"]["merges"]]
    as_text = [("".join(b2u[x] for x in ours.vocab[a]), "".join(b2u[x] for x in ours.vocab[b])) for a, b in ours.merges]
    assert as_text == hf_merges


def test_a_huggingface_byte_level_bpe_loads_and_encodes_id_for_id(corpus):
    """GPT-2's layout: <|endoftext|> at some id, bytes numbered by HF, the GPT-2 pre-split inside ByteLevel."""
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator(corpus.splitlines(), trainers.BpeTrainer(
        vocab_size=700, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    for cls in (bpe.Tokenizer, bpe_fast.FastTokenizer):
        tok = bpe.from_huggingface(hf, cls=cls)
        assert tok.special_tokens == {"<|endoftext|>": 0} and len(tok) == hf.get_vocab_size()
        sample = data.data_path("tokenization_sample.txt").read_text(encoding="utf-8")
        text = data.corpus_text("valid")[:4000] + "<|endoftext|>" + sample
        assert tok.encode(text, allowed_special="all") == hf.encode(text).ids
    exported = bpe.from_huggingface(bpe.to_huggingface(tok), pattern=bpe.GPT4_SPLIT_PATTERN)
    assert exported.merges == tok.merges


# --- special tokens, save/load, bad input ----------------------------------------------------------------

def test_special_tokens_allowed_disallowed_and_unknown(trained):
    tok = bpe_fast.FastTokenizer().train("hello world " * 20, 270)
    tok.register_special_tokens({"<|endoftext|>": 1000, "<|pad|>": 1001})
    text = "hi<|endoftext|>there<|pad|>"
    ids = tok.encode(text, allowed_special="all")
    assert 1000 in ids and 1001 in ids and tok.decode(ids) == text
    assert tok.encode(text, allowed_special={"<|endoftext|>"}, disallowed_special=()).count(1001) == 0
    assert tok.encode(text, disallowed_special=()) == tok.encode_ordinary(text)
    with pytest.raises(ValueError, match=r"contains the special token.*allowed_special="):
        tok.encode(text)
    with pytest.raises(ValueError, match="unknown special token.*<\\|bos\\|>"):
        tok.encode(text, allowed_special={"<|bos|>"})
    with pytest.raises(TypeError, match="allowed_special must be"):
        tok.encode(text, allowed_special="<|pad|>")
    with pytest.raises(ValueError, match="already used"):
        tok.register_special_tokens({"<|x|>": 65})
    # in training, special tokens are cut out: no merge spans them
    tok.train("ab<|endoftext|>ab<|endoftext|>" * 30, 300)
    assert all(b"<|" not in token for token in tok.vocab.values())


def test_save_and_load_round_trip_with_a_readable_vocabulary(trained, tmp_path, corpus):
    for simple, fast in trained.values():
        fast.register_special_tokens({"<|endoftext|>": 5000})
        model, readable = fast.save(tmp_path / "tok")
        for cls in (bpe.Tokenizer, bpe_fast.FastTokenizer):
            back = cls.load(model)
            assert back.merges == fast.merges and back.special_tokens == fast.special_tokens
            assert back.encode(corpus[:2000]) == simple.encode(corpus[:2000])
        lines = readable.read_text(encoding="utf-8").splitlines()
        assert len(lines) == len(fast.merges) + 1 and lines[-1] == "5000\t<|endoftext|>\t(special)"
        assert lines[0].startswith("256\t[") and "\t<- [" in lines[0]
        del fast.special_tokens["<|endoftext|>"]
    assert bpe.render_token(b"a\nb") == "a\\u000ab" and bpe.render_token(b"\xe2\x82") == "\ufffd"


def test_bad_input_gives_clear_errors(tmp_path):
    tok = bpe.Tokenizer()
    with pytest.raises(ValueError, match="at least 256"):
        tok.train("some text", 255)
    with pytest.raises(ValueError, match="at least 256"):
        bpe_fast.FastTokenizer().train("some text", 10)
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        tok.train("some text", 300.0)
    with pytest.raises(TypeError, match="must be a str, got bytes — decode it first"):
        tok.encode(b"bytes")
    with pytest.raises(TypeError, match="must be a str, got int"):
        bpe_fast.FastTokenizer().train(42, 300)
    with pytest.raises(TypeError, match="must be a str, got NoneType"):
        bpe_fast.FastTokenizer().encode_ordinary(None)
    with pytest.raises(ValueError, match="unknown token id 99999"):
        tok.decode([104, 99999])
    with pytest.raises(ValueError, match="256 distinct ids"):
        bpe.Tokenizer(byte_ids=[0] * 256)
    (tmp_path / "x.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a tokenizer saved by utils.bpe"):
        bpe.Tokenizer.load(tmp_path / "x.json")
    with pytest.raises(ValueError, match="cannot read a tokenizer"):
        bpe.Tokenizer.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="expected a BPE model"):
        bpe.from_huggingface(HFTokenizer(models.WordLevel({"a": 0}, unk_token="a")))


@settings(max_examples=40, deadline=None)
@given(text=st.text(st.sampled_from("aab c\nd1é🙂'"), min_size=50, max_size=300))
def test_long_chunks_take_the_heap_path_with_the_same_ids(trained, text):
    for simple, fast in trained.values():
        for t in (simple, fast):
            t.compiled = None  # no pre-split: the whole text is one long chunk
        assert fast.encode_ordinary(text) == simple.encode_ordinary(text)
        for t in (simple, fast):
            t.compiled = bpe.regex.compile(t.pattern)


def test_the_fast_encoder_cache_never_changes_the_ids(corpus):
    tok = bpe_fast.FastTokenizer().train(corpus, 350)
    first, again = tok.encode(corpus), tok.encode(corpus)
    tok.cache_size = 0
    tok._rebuild()
    assert first == again == tok.encode(corpus)


def test_the_benchmark_runs_and_reports_ratios(capsys):
    result = bpe_benchmark.bpe_benchmark(bpe_benchmark.course_text(40_000), vocab_size=400, simple_merges=4,
                                     simple_encode_bytes=4000)
    assert result["text_bytes"] <= 40_000 and result["hf_vocab"] == 400 and len(result["rows"]) == 4
    assert all(v > 0 for v in result["ratios"].values())
    assert "times are CPU seconds" in bpe_benchmark.format_bpe_table(result)
    assert bpe_benchmark.main(["--size", "20000", "--vocab", "300", "--simple-merges", "2",
                          "--simple-encode-bytes", "2000"]) == 0
    assert "training: fast is" in capsys.readouterr().out
