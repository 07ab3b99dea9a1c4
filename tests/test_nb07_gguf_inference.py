from pathlib import Path

import pytest

from utils import verdicts


@pytest.fixture(scope="module")
def res(notebook):
    return notebook("07_gguf_inference")


def test_07_exports_three_real_gguf_files_ordered_by_size(res):
    r = res["results"]
    assert res["profile"] == "smoke" and r["source_reason"] == "the profile's model"
    assert r["parameters"] > 10_000_000  # big enough that timed runs last seconds
    files = r["files"]
    assert {n: f["file_type"] for n, f in files.items()} == {"f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0",
                                                               "q4_0": "MOSTLY_Q4_0"}
    assert all(Path(f["path"]).is_file() for f in files.values())
    assert files["f16"]["size_mb"] > files["q8_0"]["size_mb"] > files["q4_0"]["size_mb"]
    assert r["q4_f16_size_ratio"] <= 0.30  # the target: 4.5 bits per weight plus what stays wider
    assert r["tokenizer_same_ids"] is True


def test_07_streaming_equals_completion_and_stops_cut_the_answer(res):
    r = res["results"]
    assert r["stream_equals_complete"] is True
    stop = r["stop"]
    assert stop["no_stop_finish"] == "length" and stop["stop_finish"] == "stop"
    assert stop["stop_tokens"] < stop["no_stop_tokens"] and stop["clean"] is True
    assert not any(s in stop["stop_text"] for s in stop["stops"])


def test_07_chat_history_is_trimmed_to_the_context(res):
    chat = res["results"]["chat"]
    assert chat["dropped"] > 0
    assert all(t["prompt_tokens"] <= chat["budget"] for t in chat["turns"])
    assert [t["dropped_so_far"] for t in chat["turns"]] == sorted(t["dropped_so_far"] for t in chat["turns"])
    assert res["results"]["chat_box"]["history"] == 2 and res["results"]["chat_box"]["reply"]


def test_07_benchmark_table_has_every_row_and_meets_the_deterministic_targets(res):
    r = res["results"]
    rows = {row["variant"]: row for row in r["benchmark"]}
    expected = {"transformers fp32", "llama.cpp f16", "llama.cpp q8_0", "llama.cpp q4_0"}
    if r["bf16_row"]:
        expected.add("transformers bf16")
    assert set(rows) == expected
    for row in rows.values():
        assert row["gen_tok_s"] > 0 and row["prompt_tok_s"] > 0 and row["load_s"] > 0 and row["size_mb"] > 0
        assert 0 <= row["top1_agreement"] <= 1 and row["perplexity"] > 1
    assert rows["transformers fp32"]["top1_agreement"] == 1.0
    assert rows["llama.cpp f16"]["top1_agreement"] >= 0.99
    assert rows["llama.cpp q8_0"]["top1_agreement"] >= 0.95  # the target
    assert rows["llama.cpp q4_0"]["top1_agreement"] < rows["llama.cpp q8_0"]["top1_agreement"]
    assert rows["transformers fp32"]["timed_s"] > 1  # runs last seconds, not milliseconds


def test_07_retrieval_cache_and_exercises(res):
    r = res["results"]
    assert r["retrieval"]["hit_rate"] >= 0.8 and r["retrieval"]["k"] == 3
    assert r["retrieval"]["backend"] in ("numpy", "faiss")
    cache = r["cache"]
    assert cache["exact"] == 2 and cache["similar"] >= 2 and cache["miss"] >= 3
    kinds = {row["prompt"]: row["cache"] for row in cache["log"]}
    assert kinds["How far is Mars from the Earth?"] == "miss"  # related is not the same question
    assert r["exercises"] == {"07.1": True, "07.2": True, "07.3": True, "07.4": True}
    assert set(res["headline"]) >= {"q4_0/f16 size", "q8_0 top-1 agreement"}


def test_07_llama_cpp_decodes_faster_than_transformers_on_the_speed_model(res):
    s = res["results"]["speed"]
    assert s["parameters"] >= 100_000_000 and s["model"] == "local:speed-llama"
    rows = {row["variant"]: row for row in s["table"]}
    assert {"transformers fp32", "llama.cpp f16", "llama.cpp q8_0", "llama.cpp q4_0"} <= set(rows)
    assert "top1_agreement" not in rows["llama.cpp f16"]  # random weights: speed only
    gen = {name: row["gen_tok_s"] for name, row in rows.items()}
    assert gen["llama.cpp q4_0"] > gen["transformers fp32"], gen  # whether q4_0 beats f16 is the verdict's to say
    assert all(row["timed_s"] > 0.5 for row in rows.values())  # runs last long enough to time
    cmp = res["results"]["generation_comparison"]
    assert cmp["faster"] == "llama.cpp q4_0" and res["headline"][cmp["key"]] == round(cmp["ratio"], 2)
    assert cmp["ratio"] == pytest.approx(gen["llama.cpp q4_0"] / gen["transformers fp32"])


def test_07_the_bound_is_bandwidth_over_the_weight_bytes_read_per_token(res):
    s = res["results"]["speed"]
    assert 0.5 < s["bandwidth_gb_s"] < 2000
    table = {row["variant"]: row for row in s["table"]}
    bound = {row["variant"]: row for row in s["bound"]}
    assert set(bound) == set(table)
    for name, row in bound.items():
        assert row["weights read per token (MB)"] == pytest.approx(table[name]["size_mb"])
        assert row["bound (tok/s)"] == pytest.approx(s["bandwidth_gb_s"] * 1e3 / table[name]["size_mb"])
        assert row["measured (tok/s)"] == pytest.approx(table[name]["gen_tok_s"])
    ceilings = [bound[f"llama.cpp {q}"]["bound (tok/s)"] for q in ("f16", "q8_0", "q4_0")]
    assert ceilings == sorted(ceilings)  # fewer bytes, a higher ceiling


def test_07_speed_sentence_follows_the_measured_order(res):
    r = res["results"]
    rows = {row["variant"]: row for row in r["speed"]["table"]}
    speeds = {q: rows[f"llama.cpp {q}"]["gen_tok_s"] for q in ("f16", "q8_0", "q4_0")}
    sizes = {q: rows[f"llama.cpp {q}"]["size_mb"] for q in ("f16", "q8_0", "q4_0")}
    assert r["speed_order"] == " > ".join(sorted(speeds, key=speeds.get, reverse=True))
    assert r["speed_follows_bytes"] == (r["speed_order"] == "q4_0 > q8_0 > f16")
    assert r["speed_verdict"] == verdicts.speed_verdict(sizes, speeds, r["speed"]["bandwidth_gb_s"])
    limits = {row["variant"]: row["limited by"] for row in r["speed"]["bound"]}
    assert limits == {name: row["limited by"] for name, row in r["speed"]["limits"].items()}
    assert {row["ratio"] for row in r["ratios"]} >= {"q4_0 file / f16 file", "q8_0 top-1 agreement with fp32"}


# Every headline figure and outcome-stating sentence of 07, and the test that computes or checks it.
CLAIMS = {
    "headline 'q4_0/f16 size'": "test_07_headline_figures_are_the_run_s_numbers",
    "headline 'generation (speed model): … ×faster'":
        "test_07_llama_cpp_decodes_faster_than_transformers_on_the_speed_model",
    "headline 'q8_0 top-1 agreement'": "test_07_headline_figures_are_the_run_s_numbers",
    "headline 'retrieval hit@3'": "test_07_headline_figures_are_the_run_s_numbers",
    "section 5: which files memory or arithmetic limited (verdicts.speed_verdict)":
        "test_07_speed_sentence_follows_the_measured_order",
    "section 5: q4_0 against transformers fp32 (verdicts.faster)":
        "test_07_llama_cpp_decodes_faster_than_transformers_on_the_speed_model",
    "section 9: how many users per core, whether batching helped (serving.batching_verdict)":
        "test_07_serves_many_users_and_the_verdict_follows_its_tables",
    "07.4: the budget includes a file exactly at it (verdicts.fits)": "tests/test_verdicts.py",
}


def test_07_headline_figures_are_the_run_s_numbers(res):
    r, headline = res["results"], res["headline"]
    assert len(headline) == 4 and all(k.startswith("headline") for k in CLAIMS if "headline" in k)
    files, rows = r["files"], {row["variant"]: row for row in r["benchmark"]}
    assert headline["q4_0/f16 size"] == round(files["q4_0"]["size_mb"] / files["f16"]["size_mb"], 3)
    assert headline["q8_0 top-1 agreement"] == round(rows["llama.cpp q8_0"]["top1_agreement"], 3)
    assert headline["retrieval hit@3"] == r["retrieval"]["hit_rate"]
    assert set(headline) == {"q4_0/f16 size", "q8_0 top-1 agreement", "retrieval hit@3",
                             r["generation_comparison"]["key"]}
    assert all(globals()[name] for name in CLAIMS.values() if name.startswith("test_"))


def test_07_serves_many_users_and_the_verdict_follows_its_tables(res):
    s = res["results"]["serving"]
    demo = s["demo"]
    assert demo["server_stopped"] is True and demo["free"]["error"] is None and demo["free"]["tokens"] > 0
    assert demo["cut"]["tokens"] <= demo["free"]["tokens"]
    tables = {"queued": s["queued"]} | ({"batched": s["batched"]} if s["llama_server"] else {})
    for rows in tables.values():
        assert [row["users"] for row in rows] == s["levels"] == [1, 4, 8]
        for row in rows:
            assert row["failed"] == 0 and row["requests"] == s["per_user"] * row["users"] and row["tok_s"] > 0
            assert 0 < row["tokens"] <= row["requests"] * s["answer_tokens"]
            assert row["median_first_token_s"] <= row["p95_latency_s"]
    queued = {row["users"]: row for row in s["queued"]}
    assert queued[8]["median_first_token_s"] > queued[1]["median_first_token_s"]  # one at a time: the others wait
    assert s["cached"]["cache_hits"] > 0 and s["cache_hit_rate"] > 0 and s["cached"]["failed"] == 0
    verdict = s["verdict"]
    if s["llama_server"] is None:  # not silently skipped: the verdict says that table was not run
        assert s["batched"] is None and verdict["batching_helped"] is None and "was not run" in verdict["text"]
    else:
        batched = {row["users"]: row for row in s["batched"]}
        assert verdict["gain"] == pytest.approx(batched[8]["tok_s"] / queued[8]["tok_s"])
        assert verdict["batching_helped"] == (verdict["gain"] > 1.1
                                              and batched[8]["p95_latency_s"] <= queued[8]["p95_latency_s"])
        assert ("Batching helped" in verdict["text"]) == verdict["batching_helped"]


def test_07_leaves_no_server_running(res):
    import psutil

    models = str(Path(res["results"]["files"]["q4_0"]["path"]).parent)  # every GGUF file the notebook served
    servers = [p.info for p in psutil.process_iter(["pid", "cmdline"]) if models in " ".join(p.info["cmdline"] or [])]
    assert servers == []
