import json

import pytest

from utils import checks


def test_pass_fail_not_done_and_crash_are_reported_and_recorded(tmp_path, monkeypatch, capsys):
    log = tmp_path / "checks.jsonl"
    monkeypatch.setenv(checks.CHECKS_FILE_VAR, str(log))
    assert checks.check("9.1", lambda: 1 + 1 == 2, hint="add")
    assert not checks.check("9.2", lambda: False, hint="look at the merge order", expected="ids should be [256]")

    def todo():
        raise NotImplementedError

    assert not checks.check("9.3", todo, hint="h")
    assert not checks.check("9.4", lambda: 1 / 0, hint="h")
    out = capsys.readouterr().out
    assert "✅ Exercise 9.1 passed" in out
    assert "❌ Exercise 9.2: ids should be [256]\n   Hint: look at the merge order" in out
    assert "Exercise 9.3: not done yet" in out and "raised ZeroDivisionError" in out
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["exercise"], r["passed"]) for r in rows] == [("9.1", True), ("9.2", False), ("9.3", False),
                                                             ("9.4", False)]


answer = None  # a top-level answer the learner has not written yet (a module global, as in a notebook)
words = ["a", "b"]


def test_a_failed_check_reading_an_answer_still_none_says_not_done(capsys):
    assert not checks.check("9.5", lambda: answer == 42, hint="h")
    assert not checks.check("9.6", lambda: len(answer) == 2, hint="h")  # TypeError on None: still not done
    assert not checks.check("9.7", lambda: all(w in answer for w in words), hint="h")  # inside a generator
    assert checks.check("9.8", lambda: answer is None, hint="h")  # a passing check is never turned into a failure

    def enclosed():
        result = None
        return checks.check("9.9", lambda: result == [1], hint="h")

    assert not enclosed()
    assert not checks.check("9.10", lambda: words == [], hint="h")  # no None in sight: the ordinary message
    out = capsys.readouterr().out
    for exercise in ("9.5", "9.6", "9.7"):
        assert f"❌ Exercise {exercise}: not done yet: `answer` is still None" in out
    assert "❌ Exercise 9.9: not done yet: `result` is still None" in out
    assert "✅ Exercise 9.8 passed" in out
    assert "❌ Exercise 9.10: the result is not what the exercise asks for" in out


def test_a_mismatch_is_the_message_and_nbgrader_gets_an_error_for_a_failed_check(monkeypatch, capsys):
    def wrong():
        raise checks.Mismatch("f('a') gave 'b', expected 'a'")

    assert not checks.check("9.11", wrong, hint="h")
    assert "❌ Exercise 9.11: f('a') gave 'b', expected 'a'\n   Hint: h" in capsys.readouterr().out
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")  # nbgrader scores a test cell 0 only when it raises
    assert checks.check("9.12", lambda: True, hint="h")
    with pytest.raises(AssertionError, match="Exercise 9.13: not done yet"):
        checks.check("9.13", lambda: answer == 1, hint="h")
    assert "❌ Exercise 9.13: not done yet" in capsys.readouterr().out  # the learner still sees the message


def test_checks_are_registered_and_saved_with_the_results(tmp_path, monkeypatch):
    from utils import report
    from utils.env import RunContext

    monkeypatch.setattr(checks, "PASSED", {})
    checks.check("09.2", lambda: False, hint="h")
    checks.check("09.1", lambda: True, hint="h")
    checks.check("08.1", lambda: True, hint="h")  # another notebook's, run in the same kernel
    assert checks.passed("09_demo") == {"09.1": True, "09.2": False}
    ctx = RunContext("09_demo", "smoke", "asked", "local", "cpu", {}, tmp_path)
    saved = report.load_results(report.save_results(ctx, {"x": 1}, {"x": 1}))
    assert saved["results"] == {"x": 1, "exercises": {"09.1": True, "09.2": False}}
