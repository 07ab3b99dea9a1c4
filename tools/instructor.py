"""Instructor tools: student copies of the notebooks (solutions stubbed out) and grading of completed ones.

Usage: python -m tools.instructor student [--out student] [01 03 ...]   (student copies; default: all notebooks)
       python -m tools.instructor grade DIR [--csv DIR/grades.csv] [--out runs/grading]
       python -m tools.instructor nbgrader [--out nbgrader] [--assignment course] [01 03 ...]  (nbgrader's source)
       python -m tools.instructor check                                  (exercise format of every notebook)
A folder to grade holds one subfolder per student with their notebooks (alice/03_full_finetune_gpt2.ipynb), or
files named <student>__<notebook>.ipynb; each notebook runs in the smoke profile and every check lands in the CSV.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import tempfile
from dataclasses import astuple, dataclass
from pathlib import Path

import nbformat

from tools.notebooks import badges, course_notebooks
from tools.runner import run_notebook
from utils import ui
from utils.checks import CHECKS_FILE_VAR
from utils.paths import ROOT, runs_dir

SOLUTION_TAG, CHECK_TAG = "solution", "check"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_MARKER = re.compile(r"^(\s*)#+\s*(BEGIN|END)\s+SOLUTION\b(.*)$", re.IGNORECASE)
_CHECK_CALL = re.compile(r"""\bcheck\(\s*["']([^"']+)["']""")
_HEADING = re.compile(r"^#{1,6}\s*Exercise\s+([0-9]+\.[0-9]+)", re.MULTILINE)
_NUMBER = re.compile(r"(?:^|[^0-9])([0-9]{2})_")
STUDENT_NOTE = ("**Student copy.** Your exercises are the cells that say `YOUR CODE HERE` (or raise "
                "`NotImplementedError`); run the check cell below each one. Open this file from the course folder's "
                "root in Jupyter, or upload it to Colab (File > Upload notebook) or Kaggle (File > Import notebook): "
                "there the first code cell fetches the course.")
CSV_COLUMNS = ("student", "notebook", "exercise", "passed", "message")


class ExerciseFormatError(ValueError):
    """A notebook whose exercises do not follow the course's format (markers, tags, exercise ids)."""


@dataclass(frozen=True)
class Grade:
    """One row of the grades CSV: did `student` pass `exercise` of `notebook`, and if not, why."""

    student: str
    notebook: str
    exercise: str
    passed: bool
    message: str


# --- student copies -------------------------------------------------------------------------------------------

def exercise_ids(nb: nbformat.NotebookNode) -> list[str]:
    """The exercise ids its check cells grade, in notebook order, e.g. ['03.1', '03.2']."""
    return [i for cell in _tagged(nb, CHECK_TAG) for i in _CHECK_CALL.findall(cell.source)]


def has_exercises(path: Path) -> bool:
    """True when the notebook has at least one cell tagged 'solution'."""
    return bool(_tagged(nbformat.read(path, as_version=4), SOLUTION_TAG))


def student_copy(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """A copy of notebook `name` with every solution region stubbed, checks kept, outputs and metadata cleared.

    Raises ExerciseFormatError for a solution cell without markers, unbalanced markers, or markers outside one."""
    nb = nbformat.from_dict(nb)  # a deep copy: the course notebook is not touched
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")}
    for i, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        cell.metadata = {"tags": tags} if tags else {}
        cell.pop("id", None)
        if cell.cell_type != "code":
            if SOLUTION_TAG in tags:
                raise ExerciseFormatError(f"{name} cell {i}: only code cells can be tagged '{SOLUTION_TAG}'")
            continue
        cell.outputs, cell.execution_count = [], None
        lines = cell.source.splitlines()
        has_markers = any(_MARKER.match(line) for line in lines)
        if SOLUTION_TAG in tags:
            if not has_markers:
                raise ExerciseFormatError(f"{name} cell {i} is tagged '{SOLUTION_TAG}' but has no {BEGIN} / {END} "
                                          "lines: put the answer between them")
            cell.source = _stub(lines, _exercise_near(nb, i), f"{name} cell {i}")
        elif has_markers:
            raise ExerciseFormatError(f"{name} cell {i} has solution markers but is not tagged '{SOLUTION_TAG}': "
                                      "tag it, or its solution would reach the students")
    if nb.cells and nb.cells[0].cell_type == "markdown":
        nb.cells[0].source = nb.cells[0].source.replace(badges(name), STUDENT_NOTE)
    nb.nbformat_minor = 4  # no cell ids, like the course notebooks
    return nb


def _stub(lines: list[str], exercise: str, where: str) -> str:
    """Replace each BEGIN/END region: `raise NotImplementedError` inside a function, `pass` elsewhere."""
    out: list[str] = []
    begin: int | None = None
    for n, line in enumerate(lines, 1):
        match = _MARKER.match(line)
        if match and (match.group(3).strip() or line.strip() not in (BEGIN, END)):
            raise ExerciseFormatError(f"{where} line {n}: write the marker exactly as '{BEGIN}' or '{END}', "
                                      f"alone on its line (found {line.strip()!r})")
        if match and match.group(2).upper() == "BEGIN":
            if begin is not None:
                raise ExerciseFormatError(f"{where} line {n}: {BEGIN} again before the {END} of line {begin}")
            begin, indent = n, match.group(1)
            if _inside_function(lines[: n - 1], len(indent)):
                label = f"Exercise {exercise}" if exercise else "Exercise"
                out += [f"{indent}# YOUR CODE HERE", f'{indent}raise NotImplementedError("{label}: write your code")']
            else:
                out.append(f"{indent}pass  # YOUR CODE HERE")
        elif match:
            if begin is None:
                raise ExerciseFormatError(f"{where} line {n}: {END} without a {BEGIN} before it")
            begin = None
        elif begin is None:
            out.append(line)
    if begin is not None:
        raise ExerciseFormatError(f"{where} line {begin}: {BEGIN} without an {END} after it")
    return "\n".join(out)


def _inside_function(before: list[str], indent: int) -> bool:
    """True when a line indented by `indent` after the lines `before` sits in a `def` body (any enclosing level)."""
    for line in reversed(before):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#") or len(line) - len(stripped) >= indent:
            continue
        if stripped.startswith(("def ", "async def ")):
            return True
        indent = len(line) - len(stripped)
        if indent == 0:
            return False
    return False


def _exercise_near(nb: nbformat.NotebookNode, index: int) -> str:
    """The id of the exercise a solution cell belongs to: the next check cell's, else the heading above it."""
    for cell in nb.cells[index + 1:]:
        if CHECK_TAG in cell.metadata.get("tags", []) and (ids := _CHECK_CALL.findall(cell.source)):
            return ids[0]
    for cell in reversed(nb.cells[:index]):
        if cell.cell_type == "markdown" and (ids := _HEADING.findall(cell.source)):
            return ids[-1]
    return ""


def format_problems(nb: nbformat.NotebookNode, name: str) -> list[str]:
    """What breaks the exercise format: bad markers, ids not '<nb>.<k>', duplicates, no heading, no check."""
    try:
        student_copy(nb, name)
    except ExerciseFormatError as err:
        return [str(err)]
    found, number = [], name[:2]
    ids = exercise_ids(nb)
    headings = {i for c in nb.cells if c.cell_type == "markdown" for i in _HEADING.findall(c.source)}
    for ex in ids:
        if not re.fullmatch(rf"{number}\.[0-9]+", ex):
            found.append(f"{name}: exercise id {ex!r} should look like '{number}.1'")
        if ex not in headings:
            found.append(f"{name}: exercise {ex} has no markdown heading '### Exercise {ex} — <title>'")
    found += [f"{name}: exercise {ex} is checked twice" for ex in sorted({x for x in ids if ids.count(x) > 1})]
    cells = nb.cells
    for i, cell in enumerate(cells):
        if SOLUTION_TAG in cell.metadata.get("tags", []) and not any(
                CHECK_TAG in c.metadata.get("tags", []) for c in cells[i + 1:]):
            found.append(f"{name} cell {i}: a solution cell with no check cell after it")
    if any(CHECK_TAG in c.metadata.get("tags", []) and not _CHECK_CALL.search(c.source) for c in cells):
        found.append(f"{name}: a cell tagged '{CHECK_TAG}' does not call checks.check(\"<id>\", ...)")
    return found


def write_student_copies(out_dir: Path, notebooks: list[Path] | None = None) -> dict[str, int]:
    """Write the student copy of each notebook (default: all course notebooks) into out_dir.

    All are checked first, so a format error leaves nothing half-written. Returns {file name: exercises}."""
    sources = {p.name: nbformat.read(p, as_version=4) for p in (notebooks or course_notebooks())}
    copies = {name: student_copy(nb, name) for name, nb in sources.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, nb in copies.items():
        (out_dir / name).write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return {name: len(exercise_ids(nb)) for name, nb in sources.items()}


# --- nbgrader --------------------------------------------------------------------------------------------------

# nbgrader's default stub raises even at top level, which stops a student's Run all at the first exercise. This one
# raises only inside a function (the check then says "not done yet"); at top level the cell's `answer = None` stays.
NBGRADER_STUB = ("# YOUR CODE HERE\n"
                 "if locals() is not globals():  # inside a function: replace these two lines with your code\n"
                 "    raise NotImplementedError()")
NBGRADER_CONFIG = f"""# nbgrader settings for the course notebooks, written by `python -m tools.instructor nbgrader`.
c = get_config()  # noqa: F821
c.ClearSolutions.code_stub = {{"python": {NBGRADER_STUB!r}}}
c.Execute.timeout = 600  # seconds a cell may run: training cells take longer than nbgrader's default 30
"""
NBGRADER_SHIM = '''"""The course's utils package, for notebooks that nbgrader runs in this folder. Written by
`python -m tools.instructor nbgrader`; students work in the course's root folder, where the package itself is."""
__path__ = [{utils!r}]
'''


def nbgrader_copy(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The course notebook with nbgrader's cell metadata: each solution cell an answer to autograde, each check
    cell a locked autograder test worth one point per exercise. Raises ExerciseFormatError like student_copy."""
    student_copy(nb, name)  # the same format checks
    nb = nbformat.from_dict(nb)
    for i, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        base = {"schema_version": 3, "grade": False, "solution": False, "locked": False, "task": False}
        if SOLUTION_TAG in tags:
            exercise = _exercise_near(nb, i).replace(".", "_") or f"cell{i}"
            cell.metadata["nbgrader"] = {**base, "solution": True, "grade_id": f"ex{exercise}-answer-{i}"}
        elif CHECK_TAG in tags:
            ids = _CHECK_CALL.findall(cell.source)
            cell.metadata["nbgrader"] = {**base, "grade": True, "locked": True, "points": len(ids),
                                         "grade_id": f"ex{ids[0].replace('.', '_')}-check"}
    return nb


def write_nbgrader_source(course_dir: Path, assignment: str, notebooks: list[Path] | None = None) -> dict[str, int]:
    """An nbgrader course folder: nbgrader_config.py and source/<assignment>/ with the notebooks (nbgrader_copy)
    and a utils/ package that loads the course's: nbgrader runs a notebook in its own folder and copies files, not
    links. Returns {notebook: points}."""
    if not re.fullmatch(r"[\w-]+", assignment):
        raise ValueError(f"assignment name {assignment!r}: use letters, digits, '_' or '-' (nbgrader's rule)")
    sources = {p.name: nbformat.read(p, as_version=4) for p in (notebooks or course_notebooks())}
    copies = {name: nbgrader_copy(nb, name) for name, nb in sources.items()}
    folder = Path(course_dir) / "source" / assignment
    folder.mkdir(parents=True, exist_ok=True)
    (Path(course_dir) / "nbgrader_config.py").write_text(NBGRADER_CONFIG, encoding="utf-8")
    (folder / "utils").mkdir(exist_ok=True)
    (folder / "utils" / "__init__.py").write_text(NBGRADER_SHIM.format(utils=str(ROOT / "utils")), encoding="utf-8")
    for name, nb in copies.items():
        nbformat.write(nb, folder / name)
    return {name: len(exercise_ids(nb)) for name, nb in sources.items()}


# --- grading --------------------------------------------------------------------------------------------------

def find_submissions(folder: Path) -> list[tuple[str, Path]]:
    """(student, notebook file) pairs: files in one subfolder per student, or top-level <student>__<name>.ipynb."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}: give the folder of completed notebooks (make grade DIR=...)")
    found: list[tuple[str, Path]] = []
    unnamed = []
    for path in sorted(folder.iterdir()):
        if path.is_dir() and not path.name.startswith("."):
            found += [(path.name, p) for p in sorted(path.glob("*.ipynb"))]
        elif path.suffix == ".ipynb":
            student, sep, _ = path.name.partition("__")
            if sep and student:
                found.append((student, path))
            else:
                unnamed.append(path.name)
    if unnamed:
        raise ValueError(f"cannot tell whose notebook {', '.join(unnamed)} is: put each student's notebooks in a "
                         "folder named after the student, or name the file <student>__<notebook>.ipynb")
    if not found:
        raise ValueError(f"no notebooks in {folder}: expected <student>/<notebook>.ipynb or "
                         "<student>__<notebook>.ipynb")
    return found


def grade(folder: Path, notebooks: list[Path] | None = None, out_dir: Path | None = None,
          timeout: int = 600, progress: bool = True) -> list[Grade]:
    """Execute every submission in `folder` in the smoke profile and return one Grade per exercise.

    Check cells are restored from the course notebook before running, so an edited check cannot pass; a notebook
    that stops with an error fails the exercises whose checks did not run, with that error as the message.
    Executed copies go to out_dir/<student>/ (default runs/grading/). Student code runs with your rights:
    grade untrusted submissions inside a container or a throwaway machine."""

    course = {p.name[:2]: p for p in (notebooks or course_notebooks())}
    submissions = find_submissions(folder)
    work: list[tuple[str, str, Path]] = []
    seen: dict[tuple[str, str], Path] = {}
    for student, path in submissions:
        number = _number(path.name.partition("__")[2] if path.parent == Path(folder) else path.name)
        if number in course and (student, number) in seen:
            raise ValueError(f"{student} has two submissions for {course[number].stem}: {seen[student, number].name} "
                             f"and {path.name} — keep one")
        seen[student, number] = path
        work.append((student, number, path))
    out_dir = Path(out_dir or runs_dir() / "grading")
    rows: list[Grade] = []
    for student, number, path in ui.progress(work, show=progress, desc="grading"):
        if number not in course:
            rows.append(Grade(student, path.stem, "", False, "not a course notebook: name it like "
                              f"{next(iter(course.values())).name}"))
            continue
        rows += _grade_one(student, path, course[number], out_dir / student, timeout)
    order = {p.stem: i for i, p in enumerate(course.values())}
    return sorted(rows, key=lambda g: (g.student, order.get(g.notebook, len(order)), g.notebook))


def _number(file_name: str) -> str:
    match = _NUMBER.search(file_name)
    return match.group(1) if match else ""


def _grade_one(student: str, submission: Path, source: Path, out_dir: Path, timeout: int) -> list[Grade]:
    """Run one submission with its check cells restored and turn the recorded checks into Grades."""
    course_nb = nbformat.read(source, as_version=4)
    expected = exercise_ids(course_nb)
    if not expected:  # nothing to grade: do not spend a run on it
        return []
    checks = {i: cell.source for cell in _tagged(course_nb, CHECK_TAG) for i in _CHECK_CALL.findall(cell.source)}
    try:
        nb = nbformat.read(submission, as_version=4)
    except Exception as err:  # not a notebook at all: every exercise fails with the reason
        return [Grade(student, source.stem, ex, False, f"cannot read {submission.name}: {err}") for ex in expected]
    for cell in nb.cells:
        ids = _CHECK_CALL.findall(cell.source) if cell.cell_type == "code" else []
        if ids and ids[0] in checks:
            cell.source = checks[ids[0]]
    recorded: dict[str, dict] = {}
    error = ""
    with tempfile.TemporaryDirectory() as tmp:
        path, log = Path(tmp) / source.name, Path(tmp) / "checks.jsonl"
        nbformat.write(nb, path)
        saved = {var: os.environ.get(var) for var in (CHECKS_FILE_VAR, "COURSE_PROFILE")}
        os.environ.update({CHECKS_FILE_VAR: str(log), "COURSE_PROFILE": "smoke"})
        try:
            run_notebook(path, "smoke", out_dir, timeout=timeout)
        except Exception as err:  # the student's notebook stopped: record why, keep the checks that did run
            error = _describe(err)
        finally:
            for var, value in saved.items():
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value
        if log.exists():
            for line in log.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                recorded[record["exercise"]] = record  # a check run twice counts with its last result
    rows = []
    for ex in expected:
        if ex in recorded:
            rows.append(Grade(student, source.stem, ex, bool(recorded[ex]["passed"]), recorded[ex]["message"]))
        else:
            why = f"the notebook stopped before it: {error}" if error else "its check cell is missing"
            rows.append(Grade(student, source.stem, ex, False, f"check did not run: {why}"))
    return rows


def _describe(err: Exception) -> str:
    """A one-line reason for a failed run: the notebook's own error where papermill reports one."""
    if hasattr(err, "ename"):
        return f"{err.ename}: {err.evalue} (In [{err.exec_count}] of the executed copy)"
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"[:300]


def write_csv(rows: list[Grade], path: Path) -> Path:
    """Write the grades as CSV (student, notebook, exercise, passed as 1/0, message)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        writer.writerows((*astuple(g)[:3], int(g.passed), g.message) for g in rows)
    return path


def summary(rows: list[Grade]) -> str:
    """One line per student and notebook: exercises passed out of those graded."""
    totals: dict[tuple[str, str], list[int]] = {}
    for g in rows:
        t = totals.setdefault((g.student, g.notebook), [0, 0])
        t[0] += g.passed
        t[1] += 1
    return "\n".join(f"{s:<20} {n:<28} {p}/{t} passed" for (s, n), (p, t) in totals.items())


def _tagged(nb: nbformat.NotebookNode, tag: str) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if tag in c.metadata.get("tags", [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_student = sub.add_parser("student", help="write student copies (solutions stubbed, checks kept, no outputs)")
    p_student.add_argument("select", nargs="*", help="notebook numbers or names (default: all)")
    p_student.add_argument("--out", type=Path, default=ROOT / "student", help="output folder (default: student/)")
    p_grade = sub.add_parser("grade", help="execute completed notebooks in smoke and write a CSV of the checks")
    p_grade.add_argument("folder", type=Path, help="one subfolder per student, or <student>__<notebook>.ipynb files")
    p_grade.add_argument("--csv", type=Path, help="grades file (default: FOLDER/grades.csv)")
    p_grade.add_argument("--out", type=Path, help="executed copies (default: runs/grading/<student>/)")
    p_grade.add_argument("--timeout", type=int, default=600, help="seconds a single cell may run (default 600)")
    p_nbg = sub.add_parser("nbgrader", help="an nbgrader course folder: config and source/<assignment>/ notebooks")
    p_nbg.add_argument("select", nargs="*", help="notebook numbers or names (default: all)")
    p_nbg.add_argument("--out", type=Path, default=ROOT / "nbgrader", help="course folder (default: nbgrader/)")
    p_nbg.add_argument("--assignment", default="course", help="assignment name (default: course)")
    sub.add_parser("check", help="list exercise-format problems of the course notebooks (exit 1 if any)")
    args = parser.parse_args(argv)
    try:
        if args.command == "student":
            from .runner import notebooks as select

            counts = write_student_copies(args.out, select(args.select))
            for name, n in counts.items():
                print(f"{args.out / name}: {n} exercise(s) stubbed")
        elif args.command == "nbgrader":
            from .runner import notebooks as select

            points = write_nbgrader_source(args.out, args.assignment, select(args.select))
            for name, n in points.items():
                print(f"{args.out / 'source' / args.assignment / name}: {n} point(s)")
            print(f"then: cd {args.out} && COURSE_PROFILE=smoke nbgrader generate_assignment {args.assignment}")
        elif args.command == "grade":
            rows = grade(args.folder, out_dir=args.out, timeout=args.timeout)
            path = write_csv(rows, args.csv or args.folder / "grades.csv")
            print(summary(rows) + f"\n\ngrades: {path}  ({sum(g.passed for g in rows)}/{len(rows)} checks passed)")
        else:
            found = [p for nb in course_notebooks() for p in format_problems(nbformat.read(nb, as_version=4),
                                                                               nb.name)]
            print("\n".join(found) or "all exercises follow the format")
            return 1 if found else 0
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
