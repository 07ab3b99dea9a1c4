def test_05_runs_in_smoke_and_reports(notebook):
    res = notebook("05_llama2_squad")
    assert res["profile"] == "smoke" and res["headline"]["questions"] > 0
