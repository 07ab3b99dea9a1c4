"""The house of `utils/`: the lessons stand on floors, and nothing imports upward.

The graph is read with `ast` from every module of utils/ (tools.imports), imports inside functions included, in any
form: `from . import x`, `from .x import y`, `from utils.x import y`, `import utils.x`. Its rules:

- no import cycle;
- floors are the graph's longest-path layering (a module that imports no other utils module is on floor 0, any
  other one floor above the highest module it imports); no import is upward, that is: no utils module imports
  `tools`, `scripts` or `tests` (the lessons stand below the tooling), and no import, at module level or inside a
  function, reaches a module on the importer's own floor or above, floors counted from the module-level imports
  alone (a deferred import may not hide a dependency that the layering contradicts);
- the ground floor: `paths` (ROOT, the profiles, runs/) and `ui` (progress bars, show_source) import no other
  utils module, and `bpe` (02's lesson) stands on `ui` alone;
- the Hub machinery (stand-in, prefetch, verify, probes) is not in utils/ but in tools/hub/.

`python -m tools.imports` prints the floors, the arrows (--arrows), the upward imports and the cycles.
"""
from tools import imports

GROUND = ("paths", "ui")


def _report_text(graph) -> str:
    r = imports.report(graph)
    lines = [f"{r['modules']} modules, {r['floors']} floors, {r['arrows']} arrows"]
    lines += [f"floor {n}: " + ", ".join(m for m in graph.modules if r["level"][m] == n) for n in range(r["floors"])]
    return "\n".join(lines + [f"upward: {u}" for u in r["upward"]] + [f"cycle: {c}" for c in r["cycles"]])


def test_utils_has_no_import_cycle_and_no_upward_import():
    graph = imports.read_graph()
    r = imports.report(graph)
    assert r["modules"] >= 20, "the graph found too few modules: is utils/ read?"
    assert not r["cycles"], _report_text(graph)
    assert not r["upward"], _report_text(graph)


def test_the_ground_floor_imports_no_course_module():
    graph = imports.read_graph()
    level = imports.report(graph)["level"]
    for module in GROUND:
        assert level[module] == 0, f"{module} must import no other utils module: {graph.targets(module)}"
    assert graph.targets("bpe") == {"ui"}, "bpe stands on the ground floor alone"
    assert not {m for m in graph.modules if m.startswith(("standin", "cache", "verify", "probe"))}, \
        "the Hub machinery lives in tools/hub/, not in utils/"


def _package(tmp_path, files: dict[str, str]):
    folder = tmp_path / "utils"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for name, source in files.items():
        (folder / f"{name}.py").write_text(source)
    return imports.read_graph(folder)


def test_the_reader_sees_every_import_form_and_a_cycle_closed_inside_a_function(tmp_path):
    graph = _package(tmp_path, {
        "a": "from . import b\nfrom .c import x\n",
        "b": "import utils.c\n",
        "c": "x = 1\ndef f():\n    from utils.a import y\n",
        "d": "import json\nfrom utils import a, c\n",
    })
    assert set(graph.arrows) == {("a", "b"), ("a", "c"), ("b", "c"), ("c", "a"), ("d", "a"), ("d", "c")}
    r = imports.report(graph)
    assert r["cycles"] == [["a", "b", "c"]]
    assert any(u.startswith("c:3 -> a") for u in r["upward"])


def test_an_upward_import_is_caught_even_without_a_cycle(tmp_path):
    graph = _package(tmp_path, {
        "low": "def f():\n    from .high import g\n",  # floor 0 by its module-level imports, reaches floor 2
        "base": "",
        "mid": "from . import base\n",
        "high": "from . import mid\ng = 1\n",
        "tooling": "def h():\n    from tools.hub import standin\n",
    })
    r = imports.report(graph)
    assert not r["cycles"]
    assert r["upward"] == ["tooling:2 -> tools.hub (tooling)", "low:2 -> high (floor 0 imports floor 2)"]
    assert r["floors"] == 4 and r["level"]["low"] == 3  # counted with every import, `low` stands above `high`
