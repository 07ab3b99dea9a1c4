"""Exercise checks: a clear pass/fail message with a hint, recorded for grading (never a bare assert).

The exercise format of the course (the nbgrader marker convention):
- a markdown cell `### Exercise <nb>.<n> — <title>` with the task;
- a code cell tagged `solution` whose answer sits between `### BEGIN SOLUTION` and `### END SOLUTION`; the student
  copy replaces that region by `raise NotImplementedError(...)` inside a function, or by `pass` at top level (so
  the cell must set the answer's name, e.g. `answer = None`, before the markers);
- a code cell tagged `check` that calls `check(...)` below.
`python -m tools.instructor` makes the student copies and grades completed ones.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from types import CodeType
from typing import Any

CHECKS_FILE_VAR = "COURSE_CHECKS_FILE"  # set by the grader: every check appends its result there
PASSED: dict[str, bool] = {}  # exercise -> passed, for every check run in this kernel (the last run of each counts)
NOT_DONE = "not done yet"  # how every message about an exercise still to do starts


class Mismatch(Exception):
    """Raised by an exercise's check (utils.exercises) with what differs, on which input; shown as the problem."""


def check(exercise: str, condition: Callable[[], Any], hint: str, expected: str = "") -> bool:
    """Run `condition()`; print '✅ passed' or '❌ …' with the hint and record the result. Returns passed.

    A failed condition that reads a name still set to None (a top-level answer not written yet) is reported as
    not done, like a `raise NotImplementedError` stub."""
    try:
        ok, problem = bool(condition()), expected or "the result is not what the exercise asks for"
    except NotImplementedError:
        ok, problem = False, f"{NOT_DONE}: replace `raise NotImplementedError` / `pass` with your code"
    except Mismatch as err:  # the check tried the answer on its own inputs and says which one it got wrong
        ok, problem = False, str(err)
    except Exception as err:  # a learner's bug: report it as a failed check, do not crash the notebook
        ok, problem = False, f"your code raised {type(err).__name__}: {err}"
    if not ok and (unset := _names_still_none(condition)):
        names = ", ".join(f"`{name}`" for name in unset)
        problem = f"{NOT_DONE}: {names} is still None (write the code that sets it where it says YOUR CODE HERE)"
    if ok:
        print(f"✅ Exercise {exercise} passed")
    else:
        print(f"❌ Exercise {exercise}: {problem}\n   Hint: {hint}")
    PASSED[exercise] = ok
    _record(exercise, ok, "" if ok else problem)
    if not ok and os.environ.get("NBGRADER_EXECUTION"):  # nbgrader gives a test cell its points unless it raises
        raise AssertionError(f"Exercise {exercise}: {problem}")
    return ok


def passed(notebook: str) -> dict[str, bool]:
    """The exercises of `notebook` ('03_...' or '03') checked in this kernel, in order: what report.save_results
    records under 'exercises'."""
    return {ex: ok for ex, ok in sorted(PASSED.items()) if ex.split(".")[0] == notebook[:2]}


def _names_still_none(condition: Callable[[], Any]) -> list[str]:
    """The global or enclosing names the condition reads (nested code included) whose value is None."""
    code, scope = getattr(condition, "__code__", None), getattr(condition, "__globals__", {})
    if code is None:
        return []
    closure = {}
    for name, cell in zip(code.co_freevars, condition.__closure__ or ()):
        try:
            closure[name] = cell.cell_contents
        except ValueError:  # a variable of the enclosing function not assigned yet
            continue
    missing = object()
    return [name for name in _names(code) if closure.get(name, scope.get(name, missing)) is None]


def _names(code: CodeType) -> list[str]:
    names = list(dict.fromkeys([*code.co_names, *code.co_freevars]))
    for const in code.co_consts:
        if isinstance(const, CodeType):  # generator expressions and comprehensions inside the lambda
            names += [n for n in _names(const) if n not in names]
    return names


def _record(exercise: str, passed: bool, message: str) -> None:
    path = os.environ.get(CHECKS_FILE_VAR)
    if not path:
        return
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps({"exercise": exercise, "passed": passed, "message": message}, ensure_ascii=False) + "\n")
