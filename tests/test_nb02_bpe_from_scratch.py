def test_02_runs_in_smoke_and_reports(notebook):
    res = notebook("02_bpe_from_scratch")
    assert res["profile"] == "smoke" and res["headline"]["corpus_bytes"] > 0
