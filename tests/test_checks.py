import json

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
