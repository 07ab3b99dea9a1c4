import pytest

from utils import data, verdicts

LIBRARIES = {"Python", "regex", "NLTK", "spaCy", "gensim", "sentencepiece", "tokenizers", "transformers"}
FAMILIES = {"whitespace", "regex", "word", "sentence", "character", "byte", "subword"}


@pytest.fixture(scope="module")
def res(notebook):
    out = notebook("01_tokenization")
    assert out["profile"] == "smoke"
    return out["results"]


@pytest.fixture(scope="module")
def rows(res):
    return {r["tokenizer"]: r for r in res["table"]}


def test_the_table_has_a_row_per_library_and_family(res, rows):
    assert {r["library"] for r in res["table"]} == LIBRARIES
    assert {r["family"] for r in res["table"]} == FAMILIES
    by_library = {lib: [n for n, r in rows.items() if r["library"] == lib] for lib in LIBRARIES}
    assert len(by_library["NLTK"]) == 2 and len(by_library["spaCy"]) == 2 and len(by_library["gensim"]) == 2
    assert len(by_library["sentencepiece"]) == 2 and len(by_library["tokenizers"]) == 3
    assert set(by_library["transformers"]) == {"BERT WordPiece", "GPT-2 byte-level BPE"}


def test_counts_are_the_texts_own(res, rows):
    text = data.data_path("tokenization_sample.txt").read_text(encoding="utf-8")
    assert res["characters"] == len(text) and res["bytes"] == len(text.encode()) > len(text)
    assert rows["characters"]["n_tokens"] == len(text) and rows["UTF-8 bytes"]["n_tokens"] == len(text.encode())
    assert rows["str.split"]["n_tokens"] == len(text.split())
    for r in rows.values():
        assert r["n_tokens"] > 0 and r["chars_per_token"] == pytest.approx(len(text) / r["n_tokens"])


def test_round_trips_are_the_true_facts(rows):
    assert rows["BERT WordPiece"]["round_trip"] is False  # uncased: lowercased, accents stripped, [UNK]
    assert rows["GPT-2 byte-level BPE"]["round_trip"] is True  # byte-level BPE gives every byte back
    assert rows["UTF-8 bytes"]["round_trip"] is True and rows["spaCy tokenizer"]["round_trip"] is True
    assert rows["str.split"]["round_trip"] is False and rows["gensim simple_preprocess"]["round_trip"] is False
    assert rows["SentencePiece BPE"]["round_trip"] is False  # default options: NFKC, unseen characters, spaces


def test_unknown_tokens_bytes_never_words_often(rows):
    assert rows["GPT-2 byte-level BPE"]["unk"] == 0 and rows["UTF-8 bytes"]["unk"] == 0
    assert rows["BERT WordPiece"]["unk"] > 0  # the Korean/Hindi/emoji words it cannot spell
    assert rows["str.split"]["unk"] / rows["str.split"]["n_tokens"] > 0.2  # a corpus word vocabulary misses a lot
    assert rows["NLTK Punkt"]["unk"] is None and rows["NLTK Punkt"]["vocab_size"] is None
    assert rows["UTF-8 bytes"]["vocab_size"] == 256 and rows["BERT WordPiece"]["vocab_size"] == 30522


def test_characters_per_token_are_positive_and_ordered_as_measured(rows):
    cpt = {}
    for r in rows.values():
        cpt.setdefault(r["family"], []).append(r["chars_per_token"])
    assert all(v > 0 for values in cpt.values() for v in values)
    assert max(cpt["byte"]) < 1 == min(cpt["character"]) == max(cpt["character"])
    assert max(cpt["character"]) < min(cpt["subword"])
    assert max(cpt["subword"]) < min(cpt["word"] + cpt["regex"] + cpt["whitespace"])
    assert max(cpt["word"] + cpt["regex"] + cpt["whitespace"]) < min(cpt["sentence"])
    assert rows["BERT WordPiece"]["chars_per_token"] > rows["GPT-2 byte-level BPE"]["chars_per_token"]


def test_offsets_and_throughput_were_measured(rows):
    assert all(rows[n]["offsets"] for n in ("BERT WordPiece", "GPT-2 byte-level BPE", "spaCy tokenizer",
                                            "SentencePiece BPE", "HF WordPiece", "GPT-2 regex"))
    assert not rows["str.split"]["offsets"] and not rows["gensim tokenize"]["offsets"]
    assert all(r["tokens_per_s"] > 0 and r["mb_per_s"] > 0 for r in rows.values())


def test_fast_tokenizer_matches_the_python_one_and_its_speed_is_measured(res):
    fs = res["fast_slow"]
    assert fs["same_ids"] is True and fs["bench_tokens"] > 10_000
    assert fs["speedup"] > 0 and fs["slow_has_offsets"] is False  # the ratio is reported, not enforced (noisy timings)


def test_unicode_and_utf8_facts(res, rows):
    u = res["unicode"]
    assert u["utf8_lengths"] == {"A": 1, "é": 2, "€": 3, "오": 3, "आ": 3, "🚀": 4}
    assert u["assigned"] > 100_000 and u["unseen_in_corpus"] > 0
    assert 0 < u["gpt2_cut_characters"] <= u["multibyte_characters"]
    assert rows["characters"]["unk"] > 0  # a character vocabulary from the corpus misses the unseen characters


def test_chat_prompt_costs_more_than_its_messages(res):
    chat = res["chat"]
    assert chat["model"] == "local:tiny-llama"
    assert chat["prompt tokens"] == chat["message tokens"] + chat["added by the template"]
    assert chat["added by the template"] > 0 and chat["same ids as tokenizing the rendered text"] is True
    window = res["context_window"]
    assert window["UTF-8 bytes"] < window["GPT-2 byte-level BPE"] < window["str.split"] == 4096


def test_exercise_solutions_pass_and_notes_are_honest(res):
    assert res["exercises"] == {"01.1": True, "01.2": True, "01.3": True, "01.4": True}
    assert "punkt_tab" in res["nltk_note"]  # offline: said so, not a silent substitute
    assert res["sentences_ending_after_abbreviation"]["spaCy sentences"] <= \
        res["sentences_ending_after_abbreviation"]["NLTK Punkt"]


def test_lossy_counts_are_flagged_from_the_round_trip_columns(res):
    scripts = {row["script"]: row for row in res["scripts"]}
    assert all(row["GPT-2 round trip"] for row in scripts.values())  # byte-level: nothing lost, in any script
    assert not scripts["Hindi"]["BERT round trip"] and scripts["emoji"]["BERT [UNK]"] > 0
    assert res["lossy_notes"] == verdicts.fewer_but_lossy(res["scripts"], "GPT-2", "BERT")
    flagged = {note.split(":")[0] for note in res["lossy_notes"]}
    assert flagged == {s for s, row in scripts.items()
                       if row["BERT tokens"] < row["GPT-2 tokens"] and not row["BERT round trip"]}
    assert {"Hindi", "emoji"} <= flagged
    assert "".join(res["spacy_emoji_pieces"]) == "👩‍💻"


# Every headline figure and outcome-stating sentence of 01, and the test that computes or checks it.
CLAIMS = {
    "headline 'gpt2_chars_per_token'": "test_characters_per_token_are_positive_and_ordered_as_measured",
    "headline 'bert_round_trip'": "test_round_trips_are_the_true_facts",
    "headline 'fast_vs_slow_speedup'": "test_fast_tokenizer_matches_the_python_one_and_its_speed_is_measured",
    "headline 'chat_prompt_tokens'": "test_chat_prompt_costs_more_than_its_messages",
    "section 6: bytes / GPT-2 / words / BERT figures (printed from the table)": "test_round_trips_are_the_true_facts",
    "section 7: lossy counts flagged (verdicts.fewer_but_lossy), spaCy's emoji split":
        "test_lossy_counts_are_flagged_from_the_round_trip_columns",
}


def test_every_claim_has_its_check():
    assert all(callable(globals()[name]) for name in CLAIMS.values())
