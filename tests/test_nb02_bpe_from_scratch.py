"""Notebook 02 in smoke: BPE by hand, on bytes, pre-split, specials, checked against Hugging Face, made fast."""
import pytest

from utils import verdicts


@pytest.fixture(scope="module")
def res(notebook):
    return notebook("02_bpe_from_scratch")


def test_02_reproduces_the_classic_replacement_table(res):
    classic = res["results"]["classic"]
    assert classic["table"] == {"Z": "aa", "Y": "ab", "X": "ZY"}
    assert classic["sequences"] == ["ZabdZabac", "ZYdZYac", "XdXac"] and classic["encoded"] == "XdXac"


def test_02_trains_on_bytes_and_compresses_more_with_more_merges(res):
    r = res["results"]
    assert res["profile"] == "smoke" and r["corpus"]["bytes"] > 200_000 and r["corpus"]["distinct_bytes"] > 60
    assert r["train"]["simple_equals_fast"] and r["train"]["vocab"] == res["settings"]["vocab_size"]
    assert r["roundtrip_held_out"]
    curve = [p["bytes/token (held out)"] for p in r["compression_curve"]]
    assert curve[0] == 1.0 and curve == sorted(curve) and len(set(curve)) == len(curve) and curve[-1] > 1.8


def test_02_pre_split_stops_merges_across_categories(res):
    rows = {row["pre-split"]: row for row in res["results"]["presplit"]}
    assert rows["no pre-split"]["crossing tokens"] > 20
    assert rows["GPT-2 pattern"]["crossing tokens"] == 0 == rows["GPT-4 pattern"]["crossing tokens"]


def test_02_special_tokens_and_save_load(res):
    special, saved = res["results"]["special"], res["results"]["save_load"]
    assert special["allowed_has_id"] and not special["as_text_has_id"] and special["roundtrip"]
    assert "not allowed" in special["error"] and "allowed_special=" in special["error"]
    assert saved["identical"] and saved["vocab_lines"] == res["results"]["train"]["merges"] + 1


def test_02_agrees_with_hugging_face_and_gpt2_tokenizers(res):
    r = res["results"]
    assert all(v["identical"] for v in r["hf_export"].values()) and r["hf_export"]["held out"]["tokens"] > 10_000
    hf = r["hf_train"]
    assert hf["overlap"] > 0.9 and hf["identical_with_hf_byte_order"]
    assert abs(hf["bytes_per_token_ours"] / hf["bytes_per_token_hf"] - 1) < 0.02
    assert r["gpt2"]["tokenizer"] == "local:gpt2" and r["gpt2"]["identical"] and r["gpt2"]["tokens"] > 100_000
    assert r["gpt2"]["merges"] == 50_000  # OpenAI's real GPT-2 merges, on every file the course ships


def test_02_benchmark_and_exercises(res):
    bench = res["results"]["benchmark"]
    assert bench["text_bytes"] == res["settings"]["bench_bytes"] and bench["hf_vocab"] == bench["vocab_size"]
    assert len(bench["rows"]) == 4 and all(v > 0 for v in bench["ratios"].values())
    assert res["results"]["exercises"] == {"02.1": True, "02.2": True, "02.3": True, "02.4": True}
    assert res["headline"]["gpt2_identical"] is True and res["headline"]["bytes_per_token"] > 1.8


# Every headline figure and outcome-stating sentence of 02, and the test that computes or checks it.
CLAIMS = {
    "headline 'corpus_bytes', 'bytes_per_token', 'gpt2_identical'": "test_02_headline_and_speed_verdict",
    "headline 'training: … ×faster' and the printed comparison (verdicts.faster)": "test_02_headline_and_speed_verdict",
    "summary: identical ids to the Hugging Face export and GPT-2":
        "test_02_agrees_with_hugging_face_and_gpt2_tokenizers",
    "summary: the classic table reproduced": "test_02_reproduces_the_classic_replacement_table",
}


def test_02_headline_and_speed_verdict(res):
    r, headline = res["results"], res["headline"]
    rows = {row["implementation"]: row for row in r["benchmark"]["rows"] if row["train job"].startswith("vocab")}
    cmp = verdicts.faster("HF tokenizers (1 thread)", rows["HF tokenizers, 1 thread"]["train s"],
                          "our fast BPE", rows["fast (utils.bpe_fast)"]["train s"], "training")
    assert r["train_comparison"] == cmp and headline[cmp["key"]] == round(cmp["ratio"], 2)
    assert cmp["text"].startswith(cmp["faster"]) and cmp["ratio"] >= 1  # the headline names who is faster
    assert set(headline) == {"corpus_bytes", "bytes_per_token", "gpt2_identical", cmp["key"]}
    assert headline["corpus_bytes"] == r["corpus"]["bytes"]
    assert all(globals()[name] for name in CLAIMS.values())
