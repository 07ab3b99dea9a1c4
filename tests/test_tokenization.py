import pytest

from utils import data, models
from utils import tokenization as tk

SAMPLE = "Dr. O'Neill paid €12,99 in Zürich.  Then:\n오늘 🚀 launch!"


@pytest.fixture(scope="module")
def lines():
    return data.corpus_text("train").splitlines()[:400]


# --- bad input ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [b"bytes", None, 42, ["a list"]])
def test_non_str_input_is_a_type_error_naming_the_type(bad):
    tok = tk.whitespace()
    with pytest.raises(TypeError, match=f"text must be a str, got {type(bad).__name__}"):
        tok.encode(bad)
    with pytest.raises(TypeError, match="must be a str"):
        tk.measure(tok, bad)


def test_bytes_input_says_how_to_fix_it():
    with pytest.raises(TypeError, match=r"decode it first: data.decode\('utf-8'\)"):
        tk.characters().encode("café".encode())


@pytest.mark.parametrize("blank", ["", " ", "\n\t  \n"])
def test_empty_or_whitespace_only_text_cannot_be_measured(blank):
    with pytest.raises(ValueError, match="empty or only whitespace"):
        tk.measure(tk.characters(), blank)
    with pytest.raises(ValueError, match="empty or only whitespace"):
        tk.compare([tk.characters()], blank)


def test_empty_string_encodes_to_no_tokens_and_round_trips():
    for tok in (tk.whitespace(), tk.gpt2_regex(), tk.characters(), tk.utf8_bytes()):
        assert tok.encode("") == [] and tok.round_trip("")


def test_whitespace_only_text_is_lost_by_str_split_but_kept_by_the_regex():
    assert tk.whitespace().encode(" \n ") == [] and not tk.whitespace().round_trip(" \n ")
    assert tk.gpt2_regex().round_trip(" \n ")


def test_a_tokenizer_that_gives_no_tokens_cannot_be_measured():
    with pytest.raises(ValueError, match="produced no tokens"):
        tk.measure(tk.gensim_tokenize(), "123 !!! 456")  # gensim keeps letters only


def test_batch_input_must_be_a_list_of_str():
    tok = tk.characters()
    with pytest.raises(TypeError, match="list of str, got str"):
        tok.encode_batch("not a list")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got int"):
        tok.encode_batch(["ok", 3])
    with pytest.raises(ValueError, match="texts is empty"):
        tk.throughput(tok, [])


def test_other_bad_arguments_are_clear_value_errors(lines):
    with pytest.raises(ValueError, match="unknown family 'words'"):
        tk.Wrapped("x", "y", "words", list, "".join, "join")
    with pytest.raises(ValueError, match="no tokenizers to compare"):
        tk.compare([], "text")
    with pytest.raises(ValueError, match="model_type must be"):
        tk.train_sentencepiece(lines, 200, "wordpiece")
    with pytest.raises(ValueError, match="no non-empty lines"):
        tk.train_sentencepiece(["", "  "], 200)
    with pytest.raises(ValueError, match="kind must be 'wordpiece', 'bpe' or 'unigram'"):
        tk.train_hf_tokenizer("char", lines, 200)
    with pytest.raises(ValueError, match="no non-empty lines"):
        tk.train_hf_tokenizer("bpe", [" "], 200)
    with pytest.raises(ValueError, match="positive n_bytes"):
        tk.bench_texts(lines, 0)
    with pytest.raises(ValueError, match="no vocabulary"):
        tk.with_corpus_vocabulary(tk.gensim_tokenize(), ["123 456"])
    with pytest.raises(ValueError, match="exactly one character"):
        tk.utf8_bits("ab")


# --- measured, not assumed -----------------------------------------------------------------------------------

def test_round_trip_is_computed_from_decode():
    assert tk.measure(tk.whitespace(), "one two")["round_trip"]
    assert not tk.measure(tk.whitespace(), "one  two\n")["round_trip"]  # the spacing is lost
    assert tk.measure(tk.gpt2_regex(), SAMPLE)["round_trip"]
    assert not tk.measure(tk.gensim_simple_preprocess(), SAMPLE)["round_trip"]  # lowercased, punctuation dropped


def test_characters_and_bytes_count_what_they_should():
    chars, raw = tk.measure(tk.characters(), SAMPLE), tk.measure(tk.utf8_bytes(), SAMPLE)
    assert chars["n_tokens"] == len(SAMPLE) and chars["chars_per_token"] == 1.0
    assert raw["n_tokens"] == len(SAMPLE.encode()) > len(SAMPLE) and raw["chars_per_token"] < 1
    assert raw["round_trip"] and raw["unk"] == 0 and raw["vocab_size"] == 256
    assert tk.utf8_bytes().tokens("é") == ["C3", "A9"]


def test_corpus_vocabulary_makes_unseen_tokens_unknown():
    tok = tk.with_corpus_vocabulary(tk.whitespace(), ["the cat sat", "the mat"])
    assert tok.vocab_size == 4
    row = tk.measure(tok, "the dog sat")
    assert row["unk"] == 1 and row["n_tokens"] == 3
    assert tk.measure(tk.whitespace(), "the dog")["unk"] is None  # no vocabulary: unknowns are undefined


def test_offsets_are_checked_not_declared():
    assert tk.measure(tk.gpt2_regex(), SAMPLE)["offsets"]
    assert not tk.measure(tk.whitespace(), SAMPLE)["offsets"]
    assert not tk.valid_spans([(0, 3), (1, 99)], 2, "abc")  # past the end
    assert not tk.valid_spans([(2, 3), (0, 1)], 2, "abc")  # out of order
    assert not tk.valid_spans([(0, 1)], 2, "abc")  # one span missing


def test_sentencepiece_round_trip_depends_on_its_options(lines):
    plain = tk.measure(tk.from_sentencepiece("bpe", tk.train_sentencepiece(lines, 300)), SAMPLE)
    assert not plain["round_trip"] and plain["unk"] > 0  # Korean and emoji were never seen: <unk>
    lossless = tk.train_sentencepiece(lines, 600, byte_fallback=True, normalization_rule_name="identity",
                                      remove_extra_whitespaces=False)
    row = tk.measure(tk.from_sentencepiece("bpe+bytes", lossless), SAMPLE)
    assert row["round_trip"] and row["unk"] == 0 and row["offsets"] and row["vocab_size"] == 600


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_hf_tokenizers_train_and_report_unknowns_and_offsets(lines, kind):
    tok = tk.from_hf_tokenizer(kind, tk.train_hf_tokenizer(kind, lines, 400))
    row = tk.measure(tok, SAMPLE)
    assert row["vocab_size"] == 400 and row["offsets"] and row["unk"] > 0  # the Korean syllables are unknown
    assert not row["round_trip"]


def test_transformers_bert_does_not_round_trip_and_byte_level_bpe_does():
    bert = tk.measure(tk.from_transformers("bert", models.load_tokenizer("local:minilm")), SAMPLE)
    gpt2 = tk.measure(tk.from_transformers("gpt2", models.load_tokenizer("local:tiny-gpt2")), SAMPLE)
    assert not bert["round_trip"] and bert["vocab_size"] == 30522 and bert["offsets"]
    assert gpt2["round_trip"] and gpt2["unk"] == 0 and gpt2["offsets"]


def test_nltk_and_spacy_word_and_sentence_tokenizers():
    punkt, note = tk.nltk_sentence_tokenizer(data.corpus_text("train"))
    assert "punkt" in note.lower()
    assert tk.nltk_sentences(punkt).tokens("It rained. We stayed in.") == ["It rained.", "We stayed in."]
    assert tk.measure(tk.nltk_words(punkt), SAMPLE)["offsets"]
    nlp, note = tk.load_spacy()
    words = tk.measure(tk.spacy_words(nlp), SAMPLE)
    assert words["round_trip"] and words["offsets"]  # spaCy keeps each token's trailing whitespace
    assert len(tk.spacy_sentences(nlp).tokens("It rained. We stayed in.")) == 2
    blank, note = tk.load_spacy("no_such_model")
    assert "spacy.blank('en')" in note and len(list(blank("It rained. We stayed in.").sents)) == 2


def test_compare_and_throughput(lines):
    bench = tk.bench_texts(lines, 20_000)
    assert sum(len(t.encode()) + 1 for t in bench) >= 20_000
    table = tk.compare([tk.characters(), tk.utf8_bytes()], SAMPLE, bench)
    assert list(table["tokenizer"]) == ["characters", "UTF-8 bytes"]
    assert (table["tokens_per_s"] > 0).all() and (table["mb_per_s"] > 0).all()
    assert table["n_tokens"][1] > table["n_tokens"][0]  # the sample has multi-byte characters


def test_tokens_table_shows_spaces_and_newlines():
    table = tk.tokens_table([tk.gpt2_regex()], "a b\nc", max_tokens=2)
    assert table.loc["GPT-2 regex", "tokens"] == "a │ ␣b │ …" and table.loc["GPT-2 regex", "n_tokens"] == 4


# --- Unicode and display -------------------------------------------------------------------------------------

@pytest.mark.parametrize("ch,lead", [("A", "0"), ("é", "110"), ("€", "1110"), ("🚀", "11110")])
def test_utf8_bits_follow_the_encoding_patterns(ch, lead):
    bits = tk.utf8_bits(ch)
    assert len(bits) == max(lead.count("1"), 1)  # the leading 1s of the first byte count the bytes
    assert bits[0].startswith(lead) and all(b.startswith("10") for b in bits[1:])
    payload = (bits[0][len(lead):] + "".join(b[2:] for b in bits[1:]))
    assert int(payload, 2) == ord(ch)  # the x bits spell the code point


def test_cut_characters_finds_split_multibyte_characters():
    assert tk.cut_characters("aé", [b"a\xc3", b"\xa9"]) == {"é"}
    assert tk.cut_characters("aé", [b"a", b"\xc3\xa9"]) == set()
    with pytest.raises(ValueError, match="do not spell the text"):
        tk.cut_characters("ab", [b"a"])


def test_byte_level_token_bytes_undo_the_gpt2_alphabet():
    gpt2 = models.load_tokenizer("local:tiny-gpt2")
    ids = gpt2(SAMPLE, add_special_tokens=False)["input_ids"]
    assert b"".join(tk.byte_level_token_bytes(gpt2, ids)) == SAMPLE.encode()
    assert "🚀" in tk.cut_characters(SAMPLE, tk.byte_level_token_bytes(gpt2, ids))

    class NotByteLevel:
        def convert_ids_to_tokens(self, ids):
            return ["오늘"]

    with pytest.raises(ValueError, match="not a byte-level BPE tokenizer"):
        tk.byte_level_token_bytes(NotByteLevel(), [0])


def test_highlight_escapes_html_and_marks_characters_shared_by_tokens():
    out = tk.highlight("<b>é!", [(0, 3), (3, 4), (3, 4), (4, 5)])  # é cut into two byte tokens
    assert "&lt;b&gt;" in out and out.count("<span") == 3 and out.count("é") == 1
    assert '<u style="text-decoration-color:#d00">é</u>' in out and "<u" not in out.split("é")[1]
    overlapping = tk.highlight("aüb", [(0, 2), (1, 3)])  # the second token starts inside the first one's span
    assert overlapping.count("<span") == 2 and ">b</span>" in overlapping and overlapping.count("<u") == 1
