"""Disk space on small hosted disks (Kaggle: 20 GB): what a run's folders take, and a clear stop before a step
that would fill the disk."""
from __future__ import annotations

import shutil
from pathlib import Path

GB = 1e9


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


def require_free(path: str | Path, needed: int, step: str) -> None:
    """Raise DiskSpaceError before `step` when the disk holding `path` has less than `needed` bytes free."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path).free
    if free < needed:
        raise DiskSpaceError(f"{step} needs about {needed / GB:.1f} GB of free disk, only {free / GB:.1f} GB are "
                             f"left on the disk of {path}: delete older runs (e.g. other notebooks' folders under "
                             "runs/) or choose a smaller profile, then run this cell again")


def remove_checkpoints(folder: str | Path) -> int:
    """Delete a finished run's checkpoint folder (only resuming an interrupted run needs it); the bytes freed."""
    freed = folder_bytes(folder)
    shutil.rmtree(folder, ignore_errors=True)
    return freed
