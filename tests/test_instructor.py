"""Student copies and grading: stubs on a synthetic notebook, the grades CSV of solved, unsolved and broken copies,
and every course notebook with exercises: its student copy runs in smoke with all checks 'not done yet' while the
solution passes them all. The glossary and the README's front page are checked here too."""
import csv
import re
import time

import nbformat
import pytest

from tools import instructor, notebooks
from utils import checks
from utils.paths import ROOT

SYNTHETIC = "99_synthetic"
EXERCISE_NOTEBOOKS = [p.stem for p in notebooks.course_notebooks() if instructor.has_exercises(p)]
NOT_DONE_1 = f"{checks.NOT_DONE}: replace `raise NotImplementedError` / `pass` with your code"
NOT_DONE_2 = f"{checks.NOT_DONE}: `total` is still None (write the code that sets it where it says YOUR CODE HERE)"

FUNCTION_SOLUTION = '''def squares(n: int) -> list[int]:
    """The first n square numbers, from 0."""
    ### BEGIN SOLUTION
    return [i * i for i in range(n)]
    ### END SOLUTION'''
TOP_LEVEL_SOLUTION = '''total = None
### BEGIN SOLUTION
total = sum(range(ctx["n"] + 1))
### END SOLUTION'''
CHECK_1 = ('ok1 = checks.check("99.1", lambda: squares(ctx["n"]) == [0, 1, 4],\n'
           '                   hint="a list comprehension over range(n)", expected="squares(3) should be [0, 1, 4]")')
CHECK_2 = 'ok2 = checks.check("99.2", lambda: total == 6, hint="sum() of a range")'


def synthetic_notebook(solution_1: str = FUNCTION_SOLUTION, check_1: str = CHECK_1,
                       solution_2: str = TOP_LEVEL_SOLUTION) -> nbformat.NotebookNode:
    """A tiny course notebook with the real structure: badges, setup cell, parameters, env.start, two exercises."""
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    cells = [
        md(f"# 99 · Synthetic\n\n{notebooks.badges(SYNTHETIC + '.ipynb')}\n\nA notebook for the instructor tests."),
        code(notebooks.SETUP_CELL.strip(), metadata={"tags": [notebooks.SETUP_TAG]}),
        md("## What you will learn\n- nothing new\n\n**Builds on:** nothing.\n\n**Run time:** smoke a few seconds."),
        code('PROFILE = "auto"\nN = None', metadata={"tags": ["parameters"]}),
        code('from utils import checks, env, report\n\n'
             'SETTINGS = {"smoke": {"n": 3}, "cpu": {"n": 3}, "gpu": {"n": 3}}\n'
             f'ctx = env.start("{SYNTHETIC}", PROFILE, SETTINGS, n=N)\nctx.table()'),
        md("### Exercise 99.1 — squares\nWrite `squares(n)`."),
        code(solution_1, metadata={"tags": ["solution"]}),
        code(check_1, metadata={"tags": ["check"]}),
        md("### Exercise 99.2 — a total\nSet `total` to 0 + 1 + ... + n."),
        code(solution_2, metadata={"tags": ["solution"]}),
        code(CHECK_2, metadata={"tags": ["check"]}),
        code('report.save_results(ctx, {"exercises": {"99.1": ok1, "99.2": ok2}}, headline={"n": ctx["n"]})'),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}
    return nb


def code_of(nb: nbformat.NotebookNode) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


# --- student copies -------------------------------------------------------------------------------------------

def test_student_copy_stubs_the_solutions_keeps_the_checks_and_clears_outputs():
    nb = synthetic_notebook()
    nb.cells[6].outputs = [nbformat.v4.new_output("stream", text="secret answer")]
    nb.cells[6].execution_count = 3
    copy = instructor.student_copy(nb, SYNTHETIC + ".ipynb")
    src = code_of(copy)
    assert src[3] == ('def squares(n: int) -> list[int]:\n    """The first n square numbers, from 0."""\n'
                      '    # YOUR CODE HERE\n    raise NotImplementedError("Exercise 99.1: write your code")')
    assert src[5] == "total = None\npass  # YOUR CODE HERE"
    assert src[4] == CHECK_1 and src[6] == CHECK_2
    assert all("SOLUTION" not in s and "i * i" not in s and "sum(range" not in s for s in src)
    assert all(c.outputs == [] and c.execution_count is None for c in copy.cells if c.cell_type == "code")
    assert [c.metadata.get("tags") for c in copy.cells] == [c.metadata.get("tags") for c in nb.cells]
    assert instructor.STUDENT_NOTE in copy.cells[0].source and "Open In Colab" not in copy.cells[0].source
    assert "i * i" in nb.cells[6].source and nb.cells[6].outputs  # the course notebook itself is untouched
    assert instructor.exercise_ids(copy) == ["99.1", "99.2"]


def test_stub_is_pass_in_indented_top_level_code_and_raise_in_methods():
    source = ("counts = {}\nfor word in ['a', 'b']:\n    ### BEGIN SOLUTION\n    counts[word] = 1\n"
              "    ### END SOLUTION\nclass Merger:\n    def merge(self, pair):\n        if pair:\n"
              "            ### BEGIN SOLUTION\n"
              "            return pair\n            ### END SOLUTION\n        return None")
    nb = synthetic_notebook(solution_1=source)
    stub = code_of(instructor.student_copy(nb, "x.ipynb"))[3]
    assert "for word in ['a', 'b']:\n    pass  # YOUR CODE HERE\nclass Merger:" in stub
    assert '    if pair:\n            # YOUR CODE HERE\n            raise NotImplementedError("Exercise 99.1' in stub
    compile(stub, "stub", "exec")  # still valid Python


BAD = {
    "no markers": ("def f():\n    return 1", "has no ### BEGIN SOLUTION / ### END SOLUTION lines"),
    "end first": ("x = None\n### END SOLUTION\nx = 1", "line 2: ### END SOLUTION without a ### BEGIN SOLUTION"),
    "no end": ("x = None\n### BEGIN SOLUTION\nx = 1", "line 2: ### BEGIN SOLUTION without an ### END SOLUTION"),
    "nested": ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "line 2: ### BEGIN SOLUTION again"),
    "misspelled": ("x = None\n# BEGIN SOLUTION\nx = 1\n# END SOLUTION", "write the marker exactly as"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_markers_are_a_clear_error(case):
    source, message = BAD[case]
    with pytest.raises(instructor.ExerciseFormatError, match=re.escape(message)) as err:
        instructor.student_copy(synthetic_notebook(solution_2=source), "99_synthetic.ipynb")
    assert "99_synthetic.ipynb cell 9" in str(err.value)


def test_markers_outside_a_solution_cell_are_refused():
    nb = synthetic_notebook()
    nb.cells[6].metadata = {}
    with pytest.raises(instructor.ExerciseFormatError, match="cell 6 has solution markers but is not tagged"):
        instructor.student_copy(nb, "x.ipynb")


def test_format_problems_name_bad_ids_missing_headings_and_checks():
    assert instructor.format_problems(synthetic_notebook(), SYNTHETIC + ".ipynb") == []
    nb = synthetic_notebook(check_1=CHECK_1.replace('"99.1"', '"9.1"'))
    nb.cells.pop(10)  # the check of 99.2
    found = "\n".join(instructor.format_problems(nb, SYNTHETIC + ".ipynb"))
    assert "exercise id '9.1' should look like '99.1'" in found
    assert "exercise 9.1 has no markdown heading" in found
    assert "cell 9: a solution cell with no check cell after it" in found


def test_every_course_notebook_follows_the_format_and_gets_a_student_copy(tmp_path, capsys):
    problems = [p for path in notebooks.course_notebooks()
                for p in instructor.format_problems(nbformat.read(path, as_version=4), path.name)]
    assert problems == []
    assert instructor.main(["student", "--out", str(tmp_path)]) == 0
    assert "exercise(s) stubbed" in capsys.readouterr().out
    for path in notebooks.course_notebooks():
        course, copy = nbformat.read(path, as_version=4), nbformat.read(tmp_path / path.name, as_version=4)
        assert len(copy.cells) == len(course.cells)
        assert instructor.exercise_ids(copy) == instructor.exercise_ids(course)
        assert not any(re.search("BEGIN SOLUTION|END SOLUTION", s) for s in code_of(copy)), path.name
        assert not any(c.outputs for c in copy.cells if c.cell_type == "code")


# --- grading --------------------------------------------------------------------------------------------------

def test_submissions_are_found_in_student_folders_and_by_file_name(tmp_path):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "03_full_finetune_gpt2.ipynb").write_text("{}")
    (tmp_path / "bob__Copy of 03_full_finetune_gpt2.ipynb").write_text("{}")
    (tmp_path / "grades.csv").write_text("")
    found = [(s, p.name) for s, p in instructor.find_submissions(tmp_path)]
    assert found == [("alice", "03_full_finetune_gpt2.ipynb"), ("bob", "bob__Copy of 03_full_finetune_gpt2.ipynb")]
    (tmp_path / "03_full_finetune_gpt2.ipynb").write_text("{}")
    with pytest.raises(ValueError, match="cannot tell whose notebook 03_full_finetune_gpt2.ipynb is"):
        instructor.find_submissions(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no notebooks in"):
        instructor.find_submissions(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no folder"):
        instructor.find_submissions(tmp_path / "missing")


def test_two_submissions_of_one_notebook_are_refused_before_running(tmp_path):
    (tmp_path / "alice").mkdir()
    for name in ("03_full_finetune_gpt2.ipynb", "Copy of 03_full_finetune_gpt2.ipynb"):
        (tmp_path / "alice" / name).write_text("{}")
    with pytest.raises(ValueError, match="alice has two submissions for 03_full_finetune_gpt2"):
        instructor.grade(tmp_path, out_dir=tmp_path / "out", progress=False)


@pytest.fixture(scope="module")
def synthetic_grades(tmp_path_factory):
    """Grade three students on the synthetic notebook once: solved (alice), the student copy (bob, plus a stray
    file), and a wrong answer with a tampered check and a crash (carol, file-name layout)."""
    root = tmp_path_factory.mktemp("grading")
    course = root / "course" / f"{SYNTHETIC}.ipynb"
    course.parent.mkdir()
    nbformat.write(synthetic_notebook(), course)
    subs = root / "submissions"
    for student in ("alice", "bob"):
        (subs / student).mkdir(parents=True)
    nbformat.write(synthetic_notebook(), subs / "alice" / course.name)
    nbformat.write(instructor.student_copy(synthetic_notebook(), course.name), subs / "bob" / course.name)
    nbformat.write(nbformat.v4.new_notebook(), subs / "bob" / "notes.ipynb")
    carol = synthetic_notebook(solution_1=FUNCTION_SOLUTION.replace("i * i for i in range(n)", "1, 2, 3"),
                               check_1='ok1 = checks.check("99.1", lambda: True, hint="")',
                               solution_2="total = None\ntotal = 1 / 0")
    nbformat.write(carol, subs / f"carol__{course.name}")
    start = time.perf_counter()
    rows = instructor.grade(subs, notebooks=[course], out_dir=root / "executed", progress=False)
    seconds = time.perf_counter() - start
    return rows, instructor.write_csv(rows, subs / "grades.csv"), root, seconds


def test_grading_writes_the_expected_csv(synthetic_grades):
    rows, csv_path, root, seconds = synthetic_grades
    with csv_path.open(newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table == [
        ["student", "notebook", "exercise", "passed", "message"],
        ["alice", SYNTHETIC, "99.1", "1", ""],
        ["alice", SYNTHETIC, "99.2", "1", ""],
        ["bob", SYNTHETIC, "99.1", "0", NOT_DONE_1],
        ["bob", SYNTHETIC, "99.2", "0", NOT_DONE_2],
        ["bob", "notes", "", "0", f"not a course notebook: name it like {SYNTHETIC}.ipynb"],
        ["carol", SYNTHETIC, "99.1", "0", "squares(3) should be [0, 1, 4]"],  # the edited check was restored
        ["carol", SYNTHETIC, "99.2", "0",
         "check did not run: the notebook stopped before it: ZeroDivisionError: division by zero "
         "(In [7] of the executed copy)"],
    ]
    assert (root / "executed" / "alice" / f"{SYNTHETIC}.ipynb").exists()  # executed copies for the instructor
    assert (root / "executed" / "alice" / SYNTHETIC / "results.json").exists()
    assert "bob                  99_synthetic                 0/2 passed" in instructor.summary(rows)
    print(f"grading 3 synthetic submissions: {seconds:.1f} s")


@pytest.mark.parametrize("name", [*EXERCISE_NOTEBOOKS, SYNTHETIC])
def test_student_copy_runs_with_every_check_not_done_and_the_solution_passes_them(name, notebook, synthetic_grades,
                                                                                 tmp_path):
    if name == SYNTHETIC:  # stands in for the course notebooks until they have exercises
        rows = synthetic_grades[0]
        expected = instructor.exercise_ids(synthetic_notebook())
        solution = {g.exercise: g.passed for g in rows if g.student == "alice"}
        student = [g for g in rows if g.student == "bob" and g.notebook == name]
    else:
        path = ROOT / f"{name}.ipynb"
        expected = instructor.exercise_ids(nbformat.read(path, as_version=4))
        solution = notebook(name)["results"].get("exercises")  # the notebook's own smoke run, shared with its test
        (tmp_path / "subs" / "student-copy").mkdir(parents=True)
        instructor.write_student_copies(tmp_path / "subs" / "student-copy", [path])
        student = instructor.grade(tmp_path / "subs", notebooks=[path], out_dir=tmp_path / "out", progress=False)
    assert len(expected) >= 2, f"{name} should have at least two exercises"
    assert solution == dict.fromkeys(expected, True), f"{name}: results['exercises'] should hold every check, passed"
    assert [g.exercise for g in student] == expected
    for g in student:
        assert not g.passed and g.message.startswith(checks.NOT_DONE), f"{name} {g.exercise}: {g.message}"


def test_grade_command_line_writes_the_csv_and_reports_bad_folders(tmp_path, capsys):
    (tmp_path / "dana").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "dana" / "homework.ipynb")
    assert instructor.main(["grade", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    assert "dana                 homework                     0/1 passed" in capsys.readouterr().out
    with (tmp_path / "grades.csv").open(newline="") as f:
        assert list(csv.reader(f))[1][:4] == ["dana", "homework", "", "0"]
    assert instructor.main(["grade", str(tmp_path / "nothing")]) == 2
    assert "error: no folder" in capsys.readouterr().err


# --- glossary and front page ----------------------------------------------------------------------------------

GLOSSARY_TERMS = ["tokenizer", "token", "vocabulary", "byte-level-bpe", "bpe", "wordpiece", "unigram", "sentencepiece",
                  "utf-8", "perplexity", "cross-entropy", "full-fine-tuning", "partial-fine-tuning", "tied-embeddings",
                  "lora", "rank", "alpha", "qlora", "nf4", "double-quantization", "paged-optimizer", "bf16", "fp16",
                  "sft", "alpaca-format", "chatml", "chat-template", "label-masking", "exact-match", "f1", "bertscore",
                  "dpo", "beta", "implicit-reward", "reference-model", "gguf", "q8-0", "q4-0", "quantization",
                  "llama-cpp", "kv-cache", "rope", "gqa", "mqa", "rag", "embedding", "cosine-similarity", "top-k",
                  "top-p", "temperature"]


def glossary() -> list[tuple[str, str, list[str]]]:
    """(anchor, term, definition lines) for each entry of GLOSSARY.md."""
    text = (ROOT / "GLOSSARY.md").read_text(encoding="utf-8")
    entries = re.findall(r'^### <a id="([^"]+)"></a>(.+)\n((?:(?!###).*\n?)*)', text, re.MULTILINE)
    return [(a, t.strip(), [ln for ln in body.strip().splitlines() if ln.strip()]) for a, t, body in entries]


def test_glossary_has_the_course_terms_alphabetically_in_one_to_three_lines():
    entries = glossary()
    anchors = [a for a, _, _ in entries]
    assert len(anchors) == len(set(anchors))
    assert [a for a in GLOSSARY_TERMS if a not in anchors] == []
    terms = [t.lower() for _, t, _ in entries]
    assert terms == sorted(terms)
    assert [t for _, t, lines in entries if not 1 <= len(lines) <= 3] == []


def test_glossary_links_in_notebooks_and_readme_point_to_existing_entries():
    anchors = {a for a, _, _ in glossary()}
    texts = [(p.name, p.read_text(encoding="utf-8")) for p in [*notebooks.course_notebooks(), ROOT / "README.md"]]
    broken = [(name, a) for name, text in texts for a in re.findall(r"GLOSSARY\.md#([\w-]+)", text) if a not in anchors]
    assert broken == []


def test_readme_front_page_lists_every_notebook_with_badges_and_the_instructor_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in notebooks.course_notebooks():
        assert notebooks.badges(path.name) in readme, path.name
    for needle in ("make student", "make grade DIR=", "## For instructors", "## Prerequisites", "GLOSSARY.md",
                   "### BEGIN SOLUTION"):
        assert needle in readme
    makefile = (ROOT / "Makefile").read_text()
    assert "\nstudent: setup" in makefile and "\ngrade: setup" in makefile
