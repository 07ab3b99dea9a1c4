"""Links from the notebooks to the lines of course code on GitHub stay right: each one still spans its function's
current lines, and every `report.show_source` cell has a link to each function it shows in the markdown above it."""
import inspect

import nbformat
import pytest

from tools import notebooks
from utils import bpe, serving
from utils.paths import ROOT

NAMES = [p.name for p in notebooks.course_notebooks()]


def test_a_link_spans_the_function_s_lines_from_its_first_decorator_to_its_last_line():
    lines, start = inspect.getsourcelines(bpe.merge)
    assert notebooks.source_link("bpe.merge") == (
        f"[`bpe.merge`](https://github.com/{notebooks.REPO}/blob/{notebooks.BRANCH}/utils/bpe.py"
        f"#L{start}-L{start + len(lines) - 1})")
    assert lines[0].startswith("def merge(") and lines[-1].strip() == "return out"
    decorated = notebooks.source_link("serving.serve")  # a context manager: its own lines, decorator included
    first = int(decorated.split("#L")[1].split("-")[0])
    assert (ROOT / "utils" / "serving.py").read_text().splitlines()[first - 1] == "@contextmanager"
    assert inspect.getsourcefile(inspect.unwrap(serving.serve)).endswith("serving.py")


def test_a_stale_link_is_rewritten_to_the_current_lines():
    stale = notebooks.source_link("bpe.merge").replace("#L", "#L1").replace("-L", "-L1")
    assert notebooks.current_source_links(f"See {stale}.") == f"See {notebooks.source_link('bpe.merge')}."
    assert notebooks.shown_names("report.show_source(bpe.get_stats, bpe.merge)  # x") == ["bpe.get_stats", "bpe.merge"]


@pytest.mark.parametrize("name", NAMES)
def test_links_to_course_code_match_its_current_lines(name):
    nb = nbformat.read(ROOT / name, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            assert notebooks.current_source_links(cell.source) == cell.source, \
                f"{name} cell {i}: a link to course code is stale (python -m tools.notebooks links rewrites it)"
        for shown in notebooks.shown_names(cell.source) if cell.cell_type == "code" else []:
            above = nb.cells[i - 1]
            assert above.cell_type == "markdown" and notebooks.source_link(shown) in above.source, \
                f"{name} cell {i}: the markdown above show_source needs a link to {shown}'s lines on GitHub"


def test_every_notebook_that_shows_code_links_it():
    links = {name: notebooks.SOURCE_LINK.findall((ROOT / name).read_text(encoding="utf-8")) for name in NAMES}
    assert all(links[n] for n in NAMES if "show_source(" in (ROOT / n).read_text(encoding="utf-8"))
