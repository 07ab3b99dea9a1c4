"""Exercise checks: a clear pass/fail message with a hint, recorded for grading (never a bare assert).

The exercise format of the course (the nbgrader marker convention):
- a markdown cell `### Exercise <nb>.<n> — <title>` with the task;
- a code cell tagged `solution` whose answer sits between `### BEGIN SOLUTION` and `### END SOLUTION`; the student
  copy replaces that region by `raise NotImplementedError(...)` inside a function, or by `pass` at top level (so
  the cell must set the answer's name, e.g. `answer = None`, before the markers);
- a code cell tagged `check` that calls `check(...)` below.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHECKS_FILE_VAR = "COURSE_CHECKS_FILE"  # set by the grader: every check appends its result there


def check(exercise: str, condition: Callable[[], Any], hint: str, expected: str = "") -> bool:
    """Run `condition()`; print '✅ passed' or '❌ …' with the hint and record the result. Returns passed."""
    try:
        ok, problem = bool(condition()), expected or "the result is not what the exercise asks for"
    except NotImplementedError:
        ok, problem = False, "not done yet: replace `raise NotImplementedError` / `pass` with your code"
    except Exception as err:  # a learner's bug: report it as a failed check, do not crash the notebook
        ok, problem = False, f"your code raised {type(err).__name__}: {err}"
    if ok:
        print(f"✅ Exercise {exercise} passed")
    else:
        print(f"❌ Exercise {exercise}: {problem}\n   Hint: {hint}")
    _record(exercise, ok, "" if ok else problem)
    return ok


def _record(exercise: str, passed: bool, message: str) -> None:
    path = os.environ.get(CHECKS_FILE_VAR)
    if not path:
        return
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps({"exercise": exercise, "passed": passed, "message": message}, ensure_ascii=False) + "\n")
