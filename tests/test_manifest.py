"""The manifest is read from the notebooks' SETTINGS cells, not kept by hand."""
import json

import pytest

from tools.hub import manifest
from utils.manifest import Item, ManifestError


def test_settings_are_read_from_the_notebook_cell():
    s = manifest.settings("03")
    assert set(s) == {"smoke", "cpu", "gpu"}
    assert s["cpu"]["model"] == "distilgpt2"
    assert s["cpu"]["data"] == "Salesforce/wikitext:wikitext-2-raw-v1"  # WIKITEXT substituted from the same cell
    assert s["smoke"]["data"] == "lm.LOCAL_CORPUS"  # computed names stay as their source text
    assert manifest.settings("07")["cpu"]["n_threads"] == "os.cpu_count()"


def test_cpu_manifest_per_notebook():
    m = manifest.manifest("cpu")
    assert list(m) == [p.stem for p in manifest.notebooks()] and len(m) == 8
    assert Item("tokenizer", "gpt2", setting="gpt2_tokenizer") in m["02_bpe_from_scratch"]
    assert Item("dataset", "Salesforce/wikitext", "wikitext-2-raw-v1", None, ("train", "validation"), "data") \
        in m["03_full_finetune_gpt2"]
    assert {i.id for i in m["05_llama2_squad"]} == {"HuggingFaceTB/SmolLM2-135M-Instruct", "rajpurkar/squad",
                                                    "roberta-large", "evaluate-metric/squad"}
    assert Item("metric", "evaluate-metric/squad", setting="metric", required=False) in m["05_llama2_squad"]
    assert {i.setting for i in m["07_gguf_inference"]} >= {"model", "speed_model", "embedder"}
    assert {i.id for i in m["08_data_parallel"]} == {"HuggingFaceTB/SmolLM2-135M-Instruct", "yahma/alpaca-cleaned"}
    hh = [i for i in m["06_dpo"] if i.kind == "dataset"]
    assert [(i.data_dir, i.splits) for i in hh] == [("harmless-base", ("train", "test")),
                                                    ("helpful-base", ("train", "test"))]
    assert Item("model", "sentence-transformers/all-MiniLM-L6-v2", setting="embedder") in m["07_gguf_inference"]
    optional = {(i.kind, i.id) for i in m["01_tokenization"] if not i.required}
    assert optional == {("spacy", "en_core_web_sm"), ("nltk", "punkt_tab")}


def test_gpu_manifest_names_the_giants_and_smoke_needs_no_hub():
    gpu = manifest.unique(manifest.manifest("gpu"))
    assert {"NousResearch/Llama-2-7b-chat-hf", "HuggingFaceTB/SmolLM2-1.7B-Instruct",
            "TinyLlama/TinyLlama-1.1B-Chat-v1.0"} <= {i.id for i in gpu if i.kind == "model"}
    smoke = manifest.unique(manifest.manifest("smoke"))
    assert all(not i.required for i in smoke)


def test_download_sizes_come_from_the_one_table():
    gb = lambda profile, nbs=None: manifest.download_mb(  # noqa: E731
        manifest.unique(manifest.manifest(profile, nbs))) / 1000
    assert gb("gpu", ["05"]) == pytest.approx(14.9, abs=0.05)  # Llama-2 13.5 GB + roberta-large 1.42 GB + SQuAD
    assert gb("cpu") == pytest.approx(2.8, abs=0.05) and gb("gpu") == pytest.approx(22.0, abs=0.1)
    with pytest.raises(ManifestError, match="HUB_MB"):
        manifest.download_mb([Item("model", "someone/else")])


def test_a_model_also_used_as_a_tokenizer_is_listed_once():
    items = manifest.unique(manifest.manifest("cpu"))
    assert [i.kind for i in items if i.id == "gpt2"] == ["model"]
    assert len({(i.kind, i.id, i.data_dir) for i in items}) == len(items)


def test_overridden_settings_change_the_needs():
    s = dict(manifest.settings("05")["cpu"], model="HuggingFaceTB/SmolLM2-135M-Instruct")
    assert Item("model", "HuggingFaceTB/SmolLM2-135M-Instruct", setting="model") in manifest.items(s)


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ManifestError, match="no notebook '99'"):
        manifest.needs("99", "cpu")
    with pytest.raises(ManifestError, match="unknown profile"):
        manifest.needs("03", "laptop")
    with pytest.raises(ManifestError, match="DATASET_CALLS"):
        manifest.items({"dataset": "someone/unknown"})
    nb = tmp_path / "x.ipynb"
    nb.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "SETTINGS = {'cpu': {}}"}]}))
    with pytest.raises(ManifestError, match="keys"):
        manifest.settings(str(nb))
