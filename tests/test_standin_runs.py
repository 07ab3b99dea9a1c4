"""The cpu profile the way a learner gets it: the stand-in served as a Hub, `make prefetch`'s command downloading it
into a fresh cache with the libraries' own code, then the notebooks offline from that cache (`make verify` does the
same and prints the costs). CI runs 01, 02 and 07 this way (07's llama.cpp export of a SmolLM2-family tokenizer is
a path smoke never reaches), and loads 03-06's data and 05's metric offline from the same cache. The training
notebooks take minutes each on 2 cores, which the CI budget cannot hold: they are opt-in (pytest -m standin, or
make verify)."""
import json
import os
import subprocess
import sys

import pytest

from tools.hub import manifest, standin, verify
from utils import report
from utils.paths import ROOT

IN_CI = ["01_tokenization", "02_bpe_from_scratch", "07_gguf_inference"]
TRAINS = {"03_full_finetune_gpt2", "04_lora_qlora", "05_llama2_squad", "06_dpo"}


@pytest.fixture(scope="module")
def served_cache(tmp_path_factory):
    """A fresh HF_HOME filled by prefetch from the served stand-in: everything 01, 02 and 07 need, and the datasets
    and metric of the whole cpu profile; prefetch's own check has then said 'complete' offline."""
    home = tmp_path_factory.mktemp("hf_home")
    verify.prefetched("cpu", IN_CI, home)
    verify.prefetched("cpu", None, home, kinds=["dataset", "metric"])
    return home


def _run_offline(home, code: str) -> dict:
    env = {**os.environ, **standin.offline_env(home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("nb", [pytest.param(p.stem, marks=() if p.stem in IN_CI else pytest.mark.standin)
                                for p in manifest.notebooks()])
def test_cpu_profile_runs_offline_after_prefetch_from_the_served_standin(nb, tmp_path, served_cache):
    home = served_cache if nb in IN_CI else verify.prefetched("cpu", [nb], served_cache)
    row = verify.verify_one(manifest.notebook_path(nb), "cpu", tmp_path, home)
    assert row["error"] == "", row["error"][-3000:]
    results = report.load_results(tmp_path / nb / "results.json")
    assert results["profile"] == "cpu" and results["reason"].endswith("offline, from the local cache")
    # 02 loads only GPT-2's tokenizer, which is OpenAI's own: nothing in it is a stand-in
    assert results["models"] == ("as named" if nb == "02_bpe_from_scratch" else standin.MARKER)
    assert row["peak_rss_mb"] > 0
    if nb in TRAINS:
        assert row["train_steps"] > 0 and row["step_s_mean"] > 0 and row["loads"] > 0


DATA = """
import json
from utils import dpo, formats, lm, squad
texts = lm.load_texts("Salesforce/wikitext:wikitext-2-raw-v1")
alpaca, dropped = formats.load_alpaca("yahma/alpaca-cleaned", 800)
train, valid = squad.load_splits("rajpurkar/squad")
pairs, heldout, skipped = dpo.load_pairs("Anthropic/hh-rlhf", 12, 6)
official, why = squad.official_metric("squad")
answers = ["the Eiffel Tower", "Paris, France", "", "1889"]
rows = valid[:4]
theirs = official.compute(predictions=[{"id": r["id"], "prediction_text": a} for r, a in zip(rows, answers)],
                          references=[{"id": r["id"], "answers": r["answers"]} for r in rows])
ours = squad.score_all(answers, [r["answers"]["text"] for r in rows])
print(json.dumps({"train_lines": len(texts["train"]), "alpaca": len(alpaca), "dropped": dict(dropped),
                  "longest_input": max(len(r["input"]) for r in alpaca), "squad": [len(train), len(valid)],
                  "multi_gold": sum(len(r["answers"]["text"]) > 1 for r in valid),
                  "pairs": [len(pairs), len(heldout)], "skipped": dict(skipped),
                  "criteria": sorted({p["criterion"] for p in pairs}), "theirs": theirs, "ours": ours}))
"""


def test_the_cpu_profiles_data_and_metric_load_offline_from_the_prefetched_cache(served_cache):
    got = _run_offline(served_cache, DATA)
    assert got["train_lines"] > 1000
    assert got["alpaca"] == 140 and got["longest_input"] > 4000
    assert sum(got["dropped"].values()) == 2  # the stand-in's rows with an empty output or instruction
    assert got["squad"] == [80, 60] and got["multi_gold"] > 5
    assert got["pairs"] == [12, 6] and got["criteria"] == ["harmless", "helpful"] and got["skipped"]
    # evaluate's metric, downloaded from the served Space by prefetch, scores as the course's own
    assert got["theirs"] == pytest.approx({k: got["ours"][k] for k in ("exact_match", "f1")})


LLAMA2 = "NousResearch/Llama-2-7b-chat-hf"
LLAMA2_PATH = """
import json
from utils import data, squad
tok = squad.load_tokenizer("NousResearch/Llama-2-7b-chat-hf")
rows = data.load_squad_sample()[:6]
prompts = [squad.build_prompt(tok, rows[0], style, rows[1:3] if style == "demonstration" else ())
           for style in squad.STYLES]
kept, _ = squad.fitting(tok, rows, 4, 640)
ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
texts = [squad.messages(r, r["answers"]["text"][0]) for r in kept]
ids += [tok.apply_chat_template(t, tokenize=True, return_dict=True)["input_ids"] for t in texts]
padded = tok.pad({"input_ids": ids[:2]}, padding=True)["input_ids"]
print(json.dumps({"template": tok.chat_template is not None, "pad": [tok.pad_token, tok.pad_token_id],
                  "max_id": max(max(i) for i in ids + padded), "pad_id": tok.convert_tokens_to_ids("<pad>"),
                  "inst": "[INST]" in prompts[0], "padding": sorted({t for row in padded for t in row} & {0})}))
"""


def test_the_published_llama2_tokenizer_goes_through_05s_path_offline(tmp_path):
    """Downloaded from the served stand-in as published (no template, pad <unk>, <pad> added at 32000), then 05's
    tokenizer, prompts, training texts and padding offline: the template falls back, id 32000 never appears."""
    root, home = tmp_path / "hub", tmp_path / "home"
    standin.build_model(root, LLAMA2, weights=False)
    with verify.served_hub(root) as endpoint:
        env = {**os.environ, "HF_HOME": str(home), "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0",
               "PYTHONPATH": str(ROOT)}
        code = (f"from huggingface_hub import snapshot_download; from tools.hub.prefetch import TOKENIZER_FILES; "
                f"snapshot_download({LLAMA2!r}, allow_patterns=TOKENIZER_FILES)")
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
    got = _run_offline(home, LLAMA2_PATH)
    assert got["template"] and got["inst"] and got["pad"] == ["<unk>", 0]
    assert got["pad_id"] == 32000 and got["max_id"] < 32000 and got["padding"] == [0]
