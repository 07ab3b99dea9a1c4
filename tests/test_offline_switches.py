"""Each notebook sets the Hugging Face libraries' offline switches before any of them is imported: the libraries
read HF_HUB_OFFLINE / HF_DATASETS_OFFLINE when first imported, so a later switch leaves them reaching for the Hub."""
import json
import os
import subprocess
import sys

import pytest

from tools.hub import manifest
from utils.paths import ROOT

HF_LIBRARIES = ("huggingface_hub", "transformers", "datasets", "evaluate", "peft", "trl", "accelerate", "bert_score",
                "sentence_transformers")
# Runs a notebook's code cells in order, the parameters cell set to smoke, up to the cell that calls env.start, and
# reports which Hugging Face libraries were already imported when env.start set the switches.
CELLS_IN_ORDER = """
import json, sys
from pathlib import Path
import utils.env
libraries, seen = json.loads(sys.argv[2]), {}
real_start = utils.env.start
def start(*args, **kwargs):
    seen["imported"] = sorted(m for m in libraries if m in sys.modules)
    return real_start(*args, **kwargs)
utils.env.start = start
namespace = {}
for cell in json.loads(Path(sys.argv[1]).read_text())["cells"]:
    if cell["cell_type"] != "code":
        continue
    source = "".join(cell["source"])
    if "parameters" in cell["metadata"].get("tags", []):
        source += "\\nPROFILE = 'smoke'"
    exec(compile(source, "cell", "exec"), namespace)
    if "imported" in seen:
        break
print(json.dumps(seen))
"""


def imported_before_start(nb_path, runs) -> list[str]:
    env = {**os.environ, "COURSE_RUNS_DIR": str(runs)}
    done = subprocess.run([sys.executable, "-c", CELLS_IN_ORDER, str(nb_path), json.dumps(HF_LIBRARIES)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert "imported" in seen, f"{nb_path.name}: no cell calls env.start"
    return seen["imported"]


@pytest.mark.parametrize("nb", [p.stem for p in manifest.notebooks()])
def test_no_hugging_face_library_is_imported_before_env_start(nb, tmp_path):
    assert imported_before_start(manifest.notebook_path(nb), tmp_path) == []


def test_the_check_catches_an_import_before_env_start(tmp_path):
    source = json.loads(manifest.notebook_path("02").read_text(encoding="utf-8"))
    first_code = next(c for c in source["cells"] if c["cell_type"] == "code")
    first_code["source"] = ["import transformers\n", *first_code["source"]]
    bad = tmp_path / "02_bad.ipynb"
    bad.write_text(json.dumps(source), encoding="utf-8")
    assert imported_before_start(bad, tmp_path) == ["huggingface_hub", "transformers"]
