"""The Colab/Kaggle first cell: its hosted branch runs against a local clone with pip recorded, and what it installs is
valid, lean and respects the platforms' pins (requirements/platforms/)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tools.notebooks import SETUP_CELL
from utils.paths import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import hosted_setup  # noqa: E402
import verify_hosted  # noqa: E402

RECORDER = "import json, os, sys\nopen(os.environ['PIP_LOG'], 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
PLATFORMS = sorted((ROOT / "requirements" / "platforms").glob("*.txt"))


def run_cell(tmp_path: Path, repo_url: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """Run the setup cell with HOSTED forced, in an empty folder, with pip replaced by a recorder."""
    (tmp_path / "pip.py").write_text(RECORDER)
    log = tmp_path / "pip.log"
    env = dict(os.environ, COURSE_HOSTED="1", COURSE_REPO_URL=repo_url, PIP_LOG=str(log),
               COURSE_PIP=f"{sys.executable} {tmp_path / 'pip.py'}")
    work = tmp_path / "content"
    work.mkdir()
    done = subprocess.run([sys.executable, "-c", "import numpy\n" + SETUP_CELL], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, calls


def test_hosted_cell_clones_the_course_and_passes_pip_only_valid_requirements(tmp_path):
    done, calls = run_cell(tmp_path, f"file://{ROOT}")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "content" / ROOT.name / "utils").is_dir()
    assert len(calls) == 1 and calls[0][:2] == ["install", "-q"]
    reqs = calls[0][2:]
    assert reqs == hosted_setup.read_requirements() and len(reqs) > 10
    for req in reqs:
        Requirement(req)  # raises InvalidRequirement, as pip's "Invalid requirement" did for the old cell
    assert not any(Requirement(r).name == "torch" for r in reqs)
    assert "[course setup] nothing to install" in done.stdout and "no restart needed" in done.stdout


def test_hosted_cell_without_internet_says_what_to_do(tmp_path):
    done, calls = run_cell(tmp_path, f"file://{tmp_path}/no-such-repo")
    assert done.returncode != 0 and calls == []
    assert "turn on Internet (Settings > Internet)" in done.stderr
    assert "CalledProcessError" not in done.stderr


def test_a_requirement_with_an_inline_comment_or_option_is_refused(tmp_path):
    for bad in ("protobuf>=4.25#comment", "-r other.txt", "--extra-index-url x"):
        (tmp_path / "r.txt").write_text(f"numpy>=2.0  # fine\n{bad}\n")
        with pytest.raises(ValueError, match="line 2"):
            hosted_setup.read_requirements(tmp_path / "r.txt")
    (tmp_path / "r.txt").write_text("# heading\n\nprotobuf>=4.25  # read through protobuf\n")
    assert hosted_setup.read_requirements(tmp_path / "r.txt") == ["protobuf>=4.25"]


def test_local_requirements_include_the_hosted_list():
    text = (ROOT / "requirements.txt").read_text()
    assert "-r requirements/course.txt" in text and "-r requirements/llama.txt" in text


@pytest.mark.parametrize("platform", PLATFORMS, ids=lambda p: p.stem)
def test_the_hosted_list_leaves_the_platform_s_own_packages_alone(platform):
    provides, pins = verify_hosted.platform_rules(platform)
    assert provides and pins, f"{platform.name} names no provided packages or pins"
    hosted = {hosted_setup.canonical(Requirement(r).name): Requirement(r) for r in hosted_setup.read_requirements()}
    assert not provides & set(hosted), f"the hosted list reinstalls what {platform.name} provides"
    assert not {"jupyterlab", "papermill", "llama-cpp-python", "torch"} & set(hosted)
    grid = [Version(f"{major}.{minor}") for major in range(12) for minor in range(100)]
    for pin in map(Requirement, pins):
        ours = hosted.get(hosted_setup.canonical(pin.name))
        if ours is not None:
            outside = [str(v) for v in grid if ours.specifier.contains(v) and not pin.specifier.contains(v)]
            assert not outside, f"{ours} admits {outside[:3]}, against the platform's pin {pin}"


def test_restart_is_asked_for_only_when_a_loaded_package_changed():
    changed = hosted_setup.changes({"numpy": "2.1.3", "pandas": "2.2.3"},
                                   {"numpy": "2.4.6", "pandas": "2.2.3", "trl": "1.16.0"})
    assert changed == [("numpy", "2.1.3", "2.4.6"), ("trl", "-", "1.16.0")]
    assert hosted_setup.loaded_changed(changed, {"numpy", "os"}) == ["numpy"]
    assert hosted_setup.loaded_changed(changed, {"trl", "os"}) == []  # newly installed: nothing stale in memory


def test_publish_points_badges_links_and_the_setup_cell_at_a_fork(tmp_path):
    import shutil

    import nbformat

    from tools import notebooks

    (tmp_path / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "notebooks.py", tmp_path / "tools" / "notebooks.py")
    for path in [*ROOT.glob("*.md"), *ROOT.glob("[0-9][0-9]_*.ipynb")]:
        shutil.copy(path, tmp_path / path.name)
    changed = notebooks.publish("my-school/llm-course", root=tmp_path)
    assert {p.name for p in changed} >= {"notebooks.py", "README.md", *(p.name for p in ROOT.glob("0*.ipynb"))}
    for path in tmp_path.rglob("*.*"):
        assert notebooks.REPO not in path.read_text(), path.name
    for path in tmp_path.glob("0*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[1].source == SETUP_CELL.strip().replace(notebooks.REPO, "my-school/llm-course")
        badge = f"https://colab.research.google.com/github/my-school/llm-course/blob/main/{path.name}"
        assert badge in nb.cells[0].source
    assert 'REPO = "my-school/llm-course"' in (tmp_path / "tools" / "notebooks.py").read_text()
    for bad in ("", "https://github.com/a/b", "a b/c"):
        with pytest.raises(ValueError, match="is not a GitHub 'owner/name'"):
            notebooks.publish(bad, root=tmp_path)
