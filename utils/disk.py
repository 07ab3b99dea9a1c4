"""Disk space on small hosted disks (Kaggle: 20 GB): what a run's folders take, and a clear stop before a step
that would fill the disk."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

GB = 1e9
KAGGLE_WORKING = Path("/kaggle/working")  # Kaggle keeps at most 20 GB here, whatever the disk under it has free
KAGGLE_LIMIT = 20 * GB
KEEP_VAR = "COURSE_KEEP_CHECKPOINTS"  # set to 1: notebooks keep their checkpoints after their results are saved


class DiskSpaceError(OSError):
    """Too little free disk for the next step; the message says how much it needs and what to delete."""


def folder_bytes(path: str | Path) -> int:
    """Bytes of the files under `path` (0 when it does not exist)."""
    path = Path(path)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def training_bytes(trainable: int) -> int:
    """Disk a Trainer run may need at its peak, for `trainable` fp32 parameters and 8-bit Adam: two checkpoints
    (the old one is deleted only after the new one is written) of 4 + 2 bytes each, plus the saved weights (4)."""
    return trainable * (2 * (4 + 2) + 4)


def free_bytes(path: str | Path) -> tuple[int, str]:
    """Bytes that may still be written under `path`, and where the limit comes from: the disk's free space, or on
    Kaggle, inside /kaggle/working, its 20 GB less what the folder already holds (when that is less)."""
    path = Path(path).resolve()
    free, where = shutil.disk_usage(path).free, f"the disk of {path}"
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ and path.is_relative_to(KAGGLE_WORKING.resolve()):
        left = int(KAGGLE_LIMIT - folder_bytes(KAGGLE_WORKING))
        if left < free:
            return max(left, 0), f"Kaggle's {KAGGLE_LIMIT / GB:.0f} GB limit of {KAGGLE_WORKING}"
    return free, where


def require_free(path: str | Path, needed: int, step: str) -> None:
    """Raise DiskSpaceError before `step` when less than `needed` bytes may be written under `path` (free_bytes)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    free, where = free_bytes(path)
    if free < needed:
        raise DiskSpaceError(f"{step} needs about {needed / GB:.1f} GB of free disk, only {free / GB:.1f} GB are "
                             f"left within {where}: delete older runs (e.g. other notebooks' folders under "
                             "runs/) or choose a smaller profile, then run this cell again")


def remove_checkpoints(folder: str | Path) -> int:
    """Delete a finished run's checkpoint folder (only resuming an interrupted run needs it) unless the learner set
    COURSE_KEEP_CHECKPOINTS=1; the bytes freed."""
    if os.environ.get(KEEP_VAR, "").strip() not in ("", "0"):
        return 0
    freed = folder_bytes(folder)
    shutil.rmtree(folder, ignore_errors=True)
    return freed
