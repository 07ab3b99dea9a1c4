"""Each notebook's cpu profile, run offline against the Hub stand-in with cut-down steps (`make verify` does the same
and prints the costs). CI runs the notebooks in IN_CI: 01 and 02 (about 3 minutes together on 2 cores) and 07, whose
llama.cpp export of a SmolLM2-family tokenizer smoke never reaches (about 5 minutes). The training notebooks take 10-20
minutes each on 2 cores, which the CI budget cannot hold: they are opt-in (pytest -m standin, or make verify)."""
import pytest

from tools import verify
from utils import manifest, report, standin

IN_CI = {"01_tokenization", "02_bpe_from_scratch", "07_gguf_inference"}
TRAINS = {"03_full_finetune_gpt2", "04_lora_qlora", "05_llama2_squad", "06_dpo"}


@pytest.mark.parametrize("nb", [pytest.param(p.stem, marks=() if p.stem in IN_CI else pytest.mark.standin)
                                for p in manifest.notebooks()])
def test_cpu_profile_runs_offline_against_the_standin(nb, tmp_path):
    hf_home = standin.build("cpu", [nb])
    row = verify.verify_one(manifest.notebook_path(nb), "cpu", tmp_path, hf_home)
    assert row["error"] == "", row["error"][-3000:]
    results = report.load_results(tmp_path / nb / "results.json")
    assert results["profile"] == "cpu" and results["reason"].endswith("offline, from the local cache")
    # 02 loads only GPT-2's tokenizer, which is OpenAI's own: nothing in it is a stand-in
    assert results["models"] == ("as named" if nb == "02_bpe_from_scratch" else standin.MARKER)
    assert row["peak_rss_mb"] > 0
    if nb in TRAINS:
        assert row["train_steps"] > 0 and row["step_s_mean"] > 0 and row["loads"] > 0
