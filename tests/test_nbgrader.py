"""The README's nbgrader route, run with nbgrader itself: `python -m tools.instructor nbgrader` writes the source
folder, `nbgrader generate_assignment` releases every course notebook with one graded test cell per exercise, the
released copies run to the end with every check 'not done yet', and `nbgrader autograde` scores a solved and an
untouched submission."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from tools import instructor, notebooks
from utils import checks
from utils.paths import ROOT

ASSIGNMENT = "course"
TOP_LEVEL = ["01_tokenization", "04_lora_qlora", "05_llama2_squad", "06_dpo"]  # stubs outside functions


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the nbgrader command line in `course` (its alembic migrations need the venv's bin on PATH)."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "COURSE_PROFILE": "smoke",
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(bin_dir / "nbgrader"), *args, "--log-level=WARN"], cwd=course, env=env,
                          capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """The course folder after `generate_assignment` on every course notebook."""
    course = tmp_path_factory.mktemp("nbgrader")
    points = instructor.write_nbgrader_source(course, ASSIGNMENT)
    done = nbgrader(course, "generate_assignment", ASSIGNMENT)
    assert done.returncode == 0, done.stdout + done.stderr
    return course, points


def test_nbgrader_copy_marks_answers_and_tests():
    path = ROOT / "02_bpe_from_scratch.ipynb"
    nb = instructor.nbgrader_copy(nbformat.read(path, as_version=4), path.name)
    marked = [c.metadata["nbgrader"] for c in nb.cells if "nbgrader" in c.metadata]
    tests = [m for m in marked if m["grade"]]
    assert [m["grade_id"] for m in tests] == ["ex02_1-check", "ex02_2-check", "ex02_3-check", "ex02_4-check"]
    assert all(m["points"] == 1 and m["locked"] and not m["solution"] for m in tests)
    assert sum(m["solution"] for m in marked) == 4 and len(marked) == 8
    assert len({m["grade_id"] for m in marked}) == 8


def test_generate_assignment_records_one_graded_test_per_exercise(released):
    course, points = released
    assert points == {p.name: len(instructor.exercise_ids(nbformat.read(p, as_version=4)))
                      for p in notebooks.course_notebooks()}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assignment = gb.find_assignment(ASSIGNMENT)
        cells = [c for nb in assignment.notebooks for c in nb.grade_cells]
        assert len(cells) == sum(points.values()) >= 7 * 3 and all(c.max_score == 1 for c in cells)
        assert assignment.max_score == sum(points.values())
    for name in points:
        text = (course / "release" / ASSIGNMENT / name).read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in text and "if locals() is not globals():" in text, name
    assert (course / "release" / ASSIGNMENT / "utils" / "__init__.py").exists()


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_released_copy_runs_to_the_end_with_every_check_not_done(released, name, tmp_path):
    course, _ = released
    (tmp_path / "subs" / "released").mkdir(parents=True)
    shutil.copy(course / "release" / ASSIGNMENT / f"{name}.ipynb", tmp_path / "subs" / "released")
    rows = instructor.grade(tmp_path / "subs", notebooks=[ROOT / f"{name}.ipynb"], out_dir=tmp_path / "out",
                            progress=False)
    assert [g.exercise for g in rows] == instructor.exercise_ids(nbformat.read(ROOT / f"{name}.ipynb", as_version=4))
    for g in rows:
        assert not g.passed and g.message.startswith(checks.NOT_DONE), f"{name} {g.exercise}: {g.message}"


def test_autograde_scores_the_solution_fully_and_the_untouched_copy_zero(tmp_path):
    name = "02_bpe_from_scratch"
    points = instructor.write_nbgrader_source(tmp_path, ASSIGNMENT, [ROOT / f"{name}.ipynb"])[f"{name}.ipynb"]
    done = nbgrader(tmp_path, "generate_assignment", ASSIGNMENT)
    assert done.returncode == 0, done.stdout + done.stderr
    for student, folder in (("alice", "source"), ("bob", "release")):  # the solution, and the untouched copy
        (tmp_path / "submitted" / student / ASSIGNMENT).mkdir(parents=True)
        shutil.copy(tmp_path / folder / ASSIGNMENT / f"{name}.ipynb", tmp_path / "submitted" / student / ASSIGNMENT)
    done = nbgrader(tmp_path, "autograde", ASSIGNMENT, "--Autograde.create_student=True")
    assert done.returncode == 0, done.stdout + done.stderr
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gb:
        scores = {s: gb.find_submission_notebook(name, ASSIGNMENT, s).score for s in ("alice", "bob")}
        max_score = gb.find_notebook(name, ASSIGNMENT).max_score
    assert max_score == points == 4 and scores == {"alice": 4, "bob": 0}
    graded = nbformat.read(tmp_path / "autograded" / "bob" / ASSIGNMENT / f"{name}.ipynb", as_version=4)
    failures = [o for c in graded.cells for o in c.get("outputs", []) if o.get("ename") == "AssertionError"]
    assert len(failures) == points and all(checks.NOT_DONE in o["evalue"] for o in failures)
