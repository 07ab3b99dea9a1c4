from tools import runner


def test_summary_lists_headlines_and_failures():
    rows = [("03_full_finetune_gpt2", 41.2, {"profile": "smoke", "headline": {"ppl_after": 12.3456, "steps": 30}}, ""),
            ("07_gguf_inference", 3.0, None, "llama_cpp is not installed")]
    text = runner.summary(rows)
    assert "ppl_after=12.35, steps=30" in text
    assert "FAILED: llama_cpp is not installed" in text


def test_notebook_selection_by_number():
    assert [p.stem for p in runner.notebooks(["03"])] == ["03_full_finetune_gpt2"]
