def test_07_runs_in_smoke_and_reports(notebook):
    res = notebook("07_gguf_inference")
    assert res["profile"] == "smoke" and res["headline"]["articles"] > 0
