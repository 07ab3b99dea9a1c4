"""No alarming noise in the executed smoke notebooks: library messages a learner cannot act on are silenced at their
source (utils/__init__.py, tools/runner.py, lora.trainable_4bit) or never produced."""
import json
from pathlib import Path

import pytest

from tools.notebooks import course_notebooks

NOISE = {
    "pip install kernels": "bitsandbytes' optional Hub kernel (silenced in utils/__init__.py)",
    "silently incorrect behavior": "4-bit weights repacked for inference before training (lora.trainable_4bit)",
    "Paged optimizers are not supported on CPU": "a paged optimizer (04 uses the plain 8-bit one)",
    "Kernel is running over TCP without encryption": "kernels run on IPC sockets (tools.runner)",
    "Unable to parse line": "a parameters line papermill cannot read",
    "VBox(children=": "a widget saved without a text fallback",
    "np.float64(": "a NumPy scalar's repr in a printed result (report.save_results makes the headline plain numbers)",
    "are deprecated. Use `cache` instead": "a model output's old cache name (lora.measured_kv_cache_bytes_per_token)",
    "was set in the config but it is unrecognized": "GPT-2's loss chosen on loading (models.load_causal_lm)",
    "will result in indexing errors": "whole articles tokenized before they are cut into blocks (03, verbose=False)",
    "mtime may not be reliable": "Trainer's checkpoint ordering (filtered in utils/__init__.py)",
    "friendly reminder": "05's few-shot prompts past the smoke model's positions (filtered in utils/__init__.py)",
    "Training Loss</th>": "a Trainer progress table in a headless run (tools.runner: one printed line per run)",
}
WIDGET = "application/vnd.jupyter.widget-view+json"


def outputs(path: Path) -> list[dict]:
    return [o for cell in json.loads(path.read_text())["cells"] for o in cell.get("outputs", [])]


@pytest.mark.parametrize("path", course_notebooks(), ids=lambda p: p.stem)
def test_executed_smoke_notebook_has_no_alarming_noise(notebook, path):
    res = notebook(path.stem)
    executed = Path(res["_out_dir"]).with_suffix(".ipynb")
    found = []
    for out in outputs(executed):
        text = "".join(out.get("text", "")) + json.dumps(out.get("data", {}))
        found += [f"{s!r}: {why}" for s, why in NOISE.items() if s in text]
        if WIDGET in out.get("data", {}) and "%|" in "".join(out["data"].get("text/plain", "")):
            found.append(f"a progress-bar widget, frozen in the saved copy: {out['data']['text/plain']!r}")
    assert not found, "\n".join(found)
