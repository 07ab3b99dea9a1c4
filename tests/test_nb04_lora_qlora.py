def test_04_runs_in_smoke_and_reports(notebook):
    res = notebook("04_lora_qlora")
    assert res["profile"] == "smoke" and res["headline"]["records"] > 0
