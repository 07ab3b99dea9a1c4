from utils import data


def test_01_counts_the_shared_text(notebook):
    res = notebook("01_tokenization")
    text = data.data_path("tokenization_sample.txt").read_text(encoding="utf-8")
    assert res["profile"] == "smoke"
    assert res["results"]["bytes"] == len(text.encode()) > res["results"]["characters"]  # non-ASCII costs bytes
