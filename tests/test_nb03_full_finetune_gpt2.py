def test_03_runs_in_smoke_and_reports(notebook):
    res = notebook("03_full_finetune_gpt2")
    assert res["profile"] == "smoke" and res["headline"]["parameters"] > 0
