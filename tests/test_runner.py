from tools import runner


def test_summary_lists_headlines_and_failures():
    rows = [("03_full_finetune_gpt2", 41.2, {"profile": "smoke", "headline": {"ppl_after": 12.3456, "steps": 30}}, ""),
            ("07_gguf_inference", 3.0, None, "llama_cpp is not installed")]
    text = runner.summary(rows)
    assert "ppl_after=12.35, steps=30" in text
    assert "FAILED: llama_cpp is not installed" in text


def test_notebook_selection_by_number():
    assert [p.stem for p in runner.notebooks(["03"])] == ["03_full_finetune_gpt2"]


def test_cells_run_in_process_with_the_parameters_set_after_their_cell(tmp_path, capsys):
    """The GPU machine has no papermill or Jupyter: run_cells executes the code cells here, in one namespace."""
    import json

    import pytest

    cell = lambda source, tags=(): {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": source}  # noqa: E731
    write = ("import json, os, pathlib\nout = pathlib.Path(os.environ['COURSE_RUNS_DIR']) / '99_demo'\n"
             "out.mkdir()\n(out / 'results.json').write_text(json.dumps({'steps': STEPS, 'profile': PROFILE}))\n"
             "display(STEPS)")
    nb = {"cells": [cell("STEPS = 5", ["parameters"]), {"cell_type": "markdown", "metadata": {}, "source": "# x"},
                    cell(write)]}
    path = tmp_path / "99_demo.ipynb"
    path.write_text(json.dumps(nb))
    results, seconds = runner.run_cells(path, "smoke", tmp_path / "runs", {"STEPS": 2})
    assert results == {"steps": 2, "profile": "smoke"} and seconds > 0 and "2\n" in capsys.readouterr().out
    nb["cells"].append(cell("1 / 0"))
    path.write_text(json.dumps(nb))
    with pytest.raises(ZeroDivisionError) as err:
        runner.run_cells(path, "smoke", tmp_path / "again")
    tb = err.value.__traceback__
    while tb.tb_next:
        tb = tb.tb_next
    assert tb.tb_frame.f_code.co_filename == "99_demo.ipynb cell 3"  # the error names the cell
