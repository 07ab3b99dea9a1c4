"""One source for the cells every notebook shares (Colab/Kaggle setup, badges) and the notebook hygiene rules.

Usage: python -m tools.notebooks sync    (rewrite the shared cells, strip outputs and metadata)
       python -m tools.notebooks links   (point every link to a course function's lines at its current lines)
       python -m tools.notebooks check   (list problems; exit 1 if any)
       python -m tools.notebooks publish OWNER/NAME   (point badges, links and the setup cell at a fork)
"""
from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

import nbformat

from utils.paths import ROOT

REPO = "llm-course/llm-finetuning-course"  # GitHub owner/name: the one place the repository address is written
BRANCH = "main"
SETUP_TAG = "course-setup"

SETUP_CELL = f'''#@title Course setup: run this cell first {{ display-mode: "form" }}
# Colab/Kaggle: fetch the course, then install what the platform lacks (scripts/hosted_setup.py; never torch).
import os
import sys

REPO_URL = os.environ.get("COURSE_REPO_URL", "https://github.com/{REPO}")
HOSTED = "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ or "COURSE_HOSTED" in os.environ
if HOSTED and not os.path.isdir("utils"):
    folder = os.path.basename(REPO_URL.rstrip("/"))
    if not os.path.isdir(folder) and os.system(f"git clone -q --depth 1 {{REPO_URL}} {{folder}}"):
        raise RuntimeError("could not fetch the course: on Kaggle turn on Internet (Settings > Internet), then rerun")
    os.chdir(folder)
if HOSTED:
    sys.path.insert(0, os.path.abspath("scripts"))
    import hosted_setup

    hosted_setup.install()  # says what changed, and whether the runtime must be restarted
if not os.path.isdir("utils"):
    raise RuntimeError("Open this notebook from the course repository's root folder (`make lab` starts there).")
import utils  # noqa: F401 -- first, before the libraries: it silences their notes a learner cannot act on
'''


def badges(name: str) -> str:
    """The 'Open in Colab' and 'Open in Kaggle' badges for notebook file `name`."""
    path = f"{REPO}/blob/{BRANCH}/{name}"
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{path}) "
            f"[![Open In Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)]"
            f"(https://kaggle.com/kernels/welcome?src=https://github.com/{path})")


RELATIVE_LINK = re.compile(r"\]\((?!https?://|#|mailto:)([^)\s]+)\)")  # a Markdown link to a file of the repository


def absolute_links(markdown: str) -> str:
    """Repository-relative links made absolute (GitHub, from REPO): relative ones break on Colab and Kaggle."""
    return RELATIVE_LINK.sub(lambda m: f"](https://github.com/{REPO}/blob/{BRANCH}/{m.group(1)})", markdown)


SOURCE_LINK = re.compile(r"\[`(?P<name>[\w.]+)`\]\(https://github\.com/[^)\s]+?/utils/[\w/]+\.py#L\d+-L\d+\)")
SHOW_SOURCE = re.compile(r"show_source\(([^)]*)\)")  # ui.show_source(bpe.get_stats, bpe.merge): the names shown


def source_link(name: str) -> str:
    """A Markdown link to the lines of course function or class `name` ('bpe.Tokenizer.train', as the notebooks
    call it) on GitHub, so its code can be read before the cell runs, and on GitHub where outputs are stripped."""
    module, *attributes = name.split(".")
    obj = importlib.import_module(f"utils.{module}")
    for attribute in attributes:
        obj = getattr(obj, attribute)
    obj = inspect.unwrap(obj)  # a decorated function (e.g. a context manager): its own lines
    lines, start = inspect.getsourcelines(obj)
    path = Path(inspect.getsourcefile(obj)).resolve().relative_to(ROOT).as_posix()
    return absolute_links(f"[`{name}`]({path}#L{start}-L{start + len(lines) - 1})")


def current_source_links(markdown: str) -> str:
    """`markdown` with every link to a course function's lines pointing at that function's current lines."""
    return SOURCE_LINK.sub(lambda m: source_link(m.group("name")), markdown)


def shown_names(code: str) -> list[str]:
    """The names a code cell passes to `ui.show_source`."""
    return [n.strip() for args in SHOW_SOURCE.findall(code) for n in args.split(",") if n.strip()]


def course_notebooks() -> list[Path]:
    """The numbered course notebooks at the repository root."""
    return sorted(ROOT.glob("[0-9][0-9]_*.ipynb"))


def problems(nb: nbformat.NotebookNode, name: str) -> list[str]:
    """What breaks the rules: outputs, execution counts, extra metadata, stale shared cells, parameters cell."""
    found = []
    extra = set(nb.metadata) - {"kernelspec", "language_info"}
    if extra:
        found.append(f"{name}: notebook metadata has {sorted(extra)}")
    if not nb.cells or nb.cells[0].cell_type != "markdown" or badges(name) not in nb.cells[0].source:
        found.append(f"{name}: the first cell must be markdown with the current badges")
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code or code[0].source != SETUP_CELL.strip():
        found.append(f"{name}: the first code cell is not the current setup cell (run python -m tools.notebooks sync)")
    if sum("parameters" in c.metadata.get("tags", []) for c in code) != 1:
        found.append(f"{name}: needs exactly one code cell tagged 'parameters'")
    for i, cell in enumerate(nb.cells):
        link = RELATIVE_LINK.search(cell.source) if cell.cell_type == "markdown" else None
        if link:
            found.append(f"{name} cell {i}: relative link {link.group(1)} (sync makes it absolute)")
        if set(cell.metadata) - {"tags"}:
            found.append(f"{name} cell {i}: metadata has {sorted(set(cell.metadata) - {'tags'})}")
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            found.append(f"{name} cell {i}: has outputs or an execution count")
    return found + template_problems(nb, name)


MAX_CODE_LINES = 30  # a code cell a learner can follow at a glance (the setup cell excepted)
MAX_MARKDOWN_WORDS = 150  # an explanation short enough to sit next to the code it explains
OPENING = ("## What you will learn", "## Parameters")
CLOSING = ("## Exercises", "## Results", "## Summary")  # the last three sections, in this order
CONTINUED = re.compile(r"(?:[-*] |\d+\. |\|)")  # a list item or a table row: it belongs with what is above it


def template_problems(nb: nbformat.NotebookNode, name: str) -> list[str]:
    """Where a notebook leaves the course template: '# NN · Title', then What you will learn and Parameters,
    sections '## 1. ...' numbered in order, then Exercises (every exercise), Results and Summary; short code
    and markdown cells; no list, table or '...:' sentence cut across two markdown cells."""
    found = []
    if not re.match(rf"# {name[:2]} · \S", nb.cells[1 if nb.cells[0].source.startswith("[![") else 0].source):
        found.append(f"{name}: the title must read '# {name[:2]} · <title>'")
    heads = [(i, line) for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
             for line in c.source.splitlines() if re.match(r"#{2,3} ", line)]
    sections = [line for _, line in heads if line.startswith("## ")]
    lessons = [s for s in sections if s not in OPENING + CLOSING]
    if sections[:2] != list(OPENING) or sections[-3:] != list(CLOSING):
        found.append(f"{name}: sections must open with {OPENING} and close with {CLOSING}")
    for n, section in enumerate(lessons, 1):
        if not section.startswith(f"## {n}. "):
            found.append(f"{name}: section '{section}' must be numbered '## {n}. ...'")
    first_exercise = next((i for i, line in heads if line.startswith("### Exercise")), None)
    exercises_at = next((i for i, line in heads if line == "## Exercises"), None)
    if first_exercise is not None and (exercises_at is None or first_exercise < exercises_at):
        found.append(f"{name}: every exercise belongs in the '## Exercises' section")
    for i, cell in enumerate(nb.cells):
        lines = len(cell.source.splitlines())
        if cell.cell_type == "code" and lines > MAX_CODE_LINES and SETUP_CELL.strip() != cell.source:
            found.append(f"{name} cell {i}: {lines} lines of code (at most {MAX_CODE_LINES}: split it)")
        words = len(cell.source.split())
        if cell.cell_type == "markdown" and words > MAX_MARKDOWN_WORDS:
            found.append(f"{name} cell {i}: {words} words of markdown (at most {MAX_MARKDOWN_WORDS}: "
                         "split it next to the code it explains)")
        after = nb.cells[i - 1] if i else None
        if cell.cell_type == "markdown" and after is not None and after.cell_type == "markdown":
            if CONTINUED.match(cell.source.lstrip()):
                found.append(f"{name} cell {i}: continues the list or table of markdown cell {i - 1} (join them, "
                             "or put the code it explains between the parts)")
            elif after.source.rstrip().endswith(":"):
                found.append(f"{name} cell {i}: continues the '...:' sentence of markdown cell {i - 1} (join them)")
    return found


def sync(path: Path) -> bool:
    """Rewrite the badges and setup cell from their one source, strip outputs and metadata; True if changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")}
    nb.metadata.setdefault("kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"})
    nb.metadata.setdefault("language_info", {"name": "python"})
    first = nb.cells[0]
    lines = [ln for ln in first.source.splitlines() if not ln.startswith("[![Open In Colab]")]
    title = lines.pop(0) if lines and lines[0].startswith("#") else ""
    first.source = "\n\n".join(part for part in (title, badges(path.name), "\n".join(lines).strip()) if part)
    code = [c for c in nb.cells if c.cell_type == "code"]
    code[0].source = SETUP_CELL.strip()
    code[0].metadata["tags"] = [SETUP_TAG]
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = absolute_links(cell.source)
        cell.metadata = {k: v for k, v in cell.metadata.items() if k == "tags"}
        cell.pop("id", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.nbformat_minor = 4  # no cell ids: stable diffs
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after + "\n", encoding="utf-8")
    return after != before


def publish(repo: str, root: Path = ROOT) -> list[Path]:
    """Point every badge, link and setup cell at GitHub repository `repo` ('owner/name'); return the files changed.
    The address is written in REPO above and, generated from it, in the notebooks and the Markdown files."""
    if not re.fullmatch(r"[A-Za-z0-9-]+/[A-Za-z0-9._-]+", repo or ""):
        raise ValueError(f"REPO={repo!r} is not a GitHub 'owner/name' (e.g. REPO=my-school/llm-course)")
    old = re.search(r'^REPO = "([^"]+)"', (root / "tools" / "notebooks.py").read_text(), re.M).group(1)
    changed = []
    for path in [root / "tools" / "notebooks.py", *sorted(root.glob("*.md")), *sorted(root.glob("*.ipynb"))]:
        text = path.read_text(encoding="utf-8")
        if old in text and old != repo:
            path.write_text(text.replace(old, repo), encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    argv = argv or sys.argv[1:] or ["check"]
    cmd = argv[0]
    if cmd == "publish":
        changed = publish(argv[1] if len(argv) > 1 else "")
        print(f"{len(changed)} files now point at github.com/{argv[1]}: " + ", ".join(p.name for p in changed))
        print("commit and push them; the Colab and Kaggle badges work once that repository is public on GitHub")
        return 0
    if cmd == "links":
        for path in course_notebooks():
            nb = nbformat.read(path, as_version=4)
            before = nbformat.writes(nb)
            for cell in nb.cells:
                if cell.cell_type == "markdown":
                    cell.source = current_source_links(cell.source)
            changed = nbformat.writes(nb) != before
            if changed:
                path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
            print(f"{path.name}: {'updated' if changed else 'unchanged'}")
        return 0
    if cmd == "sync":
        for path in course_notebooks():
            print(f"{path.name}: {'updated' if sync(path) else 'unchanged'}")
        return 0
    found = [p for path in course_notebooks() for p in problems(nbformat.read(path, as_version=4), path.name)]
    print("\n".join(found) or "all notebooks clean")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
