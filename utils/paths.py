"""Where the course is and the profiles it knows: the ground floor, which imports no other course module."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("smoke", "cpu", "gpu")


def runs_dir() -> Path:
    """Folder for executed notebooks and results (COURSE_RUNS_DIR, default runs/ in the repository)."""
    return Path(os.environ.get("COURSE_RUNS_DIR", ROOT / "runs"))
