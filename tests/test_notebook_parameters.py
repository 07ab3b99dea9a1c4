"""papermill reads every name a notebook's parameters cell assigns, with a type and a help comment."""
import ast

import nbformat
import papermill
import pytest

from tools.notebooks import course_notebooks


@pytest.mark.parametrize("path", course_notebooks(), ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_with_its_help(path):
    nb = nbformat.read(path, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assigned = [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign) for t in node.targets]
    found = papermill.inspect_notebook(str(path))
    assert list(found) == assigned, f"papermill cannot parse {sorted(set(assigned) - set(found))}"
    for name, info in found.items():
        assert info["help"].strip(), f"{name} has no help comment"
        assert info["inferred_type_name"] != "None", f"{name} has no type annotation papermill can read"
