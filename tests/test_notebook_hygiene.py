"""Notebooks are committed clean, carry the current shared cells, and the README/CI wiring stays intact."""
import subprocess
import sys

import nbformat
import pytest

from tools import notebooks
from utils.paths import ROOT

EXPECTED = ["01_tokenization", "02_bpe_from_scratch", "03_full_finetune_gpt2", "04_lora_qlora", "05_llama2_squad",
            "06_dpo", "07_gguf_inference", "08_data_parallel"]


def test_the_course_has_its_eight_notebooks():
    assert [p.stem for p in notebooks.course_notebooks()] == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_is_clean_and_current(name):
    nb = nbformat.read(ROOT / f"{name}.ipynb", as_version=4)
    assert notebooks.problems(nb, f"{name}.ipynb") == []


def test_hygiene_check_catches_outputs_and_stale_setup_cell(tmp_path):
    nb = nbformat.read(ROOT / f"{EXPECTED[0]}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    code[0].source += "\n# edited by hand"
    code[1].outputs = [nbformat.v4.new_output("stream", text="hi")]
    nb.metadata["widgets"] = {}
    found = "\n".join(notebooks.problems(nb, "x.ipynb"))
    assert "not the current setup cell" in found and "has outputs" in found and "widgets" in found


def test_code_and_notebooks_pass_the_linter():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_test_command_written_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make course" in readme and "make lab" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_sync_is_idempotent(tmp_path):
    copy = tmp_path / f"{EXPECTED[1]}.ipynb"
    copy.write_text((ROOT / copy.name).read_text())
    notebooks.sync(copy)
    assert notebooks.sync(copy) is False


def test_template_check_catches_unnumbered_sections_stray_exercises_and_long_cells():
    nb = nbformat.read(ROOT / f"{EXPECTED[2]}.ipynb", as_version=4)
    assert notebooks.template_problems(nb, f"{EXPECTED[2]}.ipynb") == []
    heading = next(c for c in nb.cells if c.source.startswith("## 1. "))
    heading.source = heading.source.replace("## 1. ", "## ", 1)
    nb.cells.insert(8, nbformat.v4.new_markdown_cell("### Exercise 03.9 — out of place"))
    nb.cells.insert(9, nbformat.v4.new_code_cell("\n".join(f"x{i} = {i}" for i in range(31))))
    nb.cells = [c for c in nb.cells if not c.source.startswith("## Summary")]
    found = "\n".join(notebooks.template_problems(nb, f"{EXPECTED[2]}.ipynb"))
    for problem in ("must be numbered '## 1. ...'", "belongs in the '## Exercises' section", "31 lines of code",
                    "close with ('## Exercises', '## Results', '## Summary')"):
        assert problem in found, problem


def test_template_check_catches_long_markdown_cells():
    nb = nbformat.read(ROOT / f"{EXPECTED[2]}.ipynb", as_version=4)
    nb.cells.insert(8, nbformat.v4.new_markdown_cell(" ".join(["word"] * 150)))
    assert notebooks.template_problems(nb, f"{EXPECTED[2]}.ipynb") == []
    nb.cells[8].source += " word"
    found = notebooks.template_problems(nb, f"{EXPECTED[2]}.ipynb")
    assert found == [f"{EXPECTED[2]}.ipynb cell 8: 151 words of markdown (at most 150: split it next to the code it "
                     "explains)"]


def test_template_check_catches_a_list_or_sentence_split_across_markdown_cells():
    name = f"{EXPECTED[2]}.ipynb"
    nb = nbformat.read(ROOT / name, as_version=4)
    paragraphs = [nbformat.v4.new_markdown_cell("A first paragraph."), nbformat.v4.new_markdown_cell("A second one.")]
    nb.cells[8:8] = paragraphs
    assert notebooks.template_problems(nb, name) == []
    for split in (["The steps are", "- one\n- two"], ["The steps are", "1. one\n2. two"],
                  ["| a | b |\n|---|---|", "| 1 | 2 |"], ["The steps are:", "one, then two."]):
        nb.cells[8:10] = [nbformat.v4.new_markdown_cell(s) for s in split]
        found = notebooks.template_problems(nb, name)
        assert len(found) == 1 and found[0].startswith(f"{name} cell 9: continues the"), (split, found)
