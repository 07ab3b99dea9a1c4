def test_06_runs_in_smoke_and_reports(notebook):
    res = notebook("06_dpo")
    assert res["profile"] == "smoke" and res["headline"]["pairs"] > 0
