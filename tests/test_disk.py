import shutil

import pytest

from utils import disk


def test_folder_bytes_and_removing_a_finished_runs_checkpoints(tmp_path):
    ckpt = tmp_path / "checkpoints" / "checkpoint-8"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"x" * 1000)
    (ckpt / "optimizer.pt").write_bytes(b"y" * 500)
    assert disk.folder_bytes(tmp_path) == 1500 and disk.folder_bytes(tmp_path / "missing") == 0
    assert disk.remove_checkpoints(tmp_path / "checkpoints") == 1500
    assert not (tmp_path / "checkpoints").exists()


def test_a_step_that_would_fill_the_disk_stops_first_with_what_to_do(monkeypatch, tmp_path):
    nearly_full = shutil._ntuple_diskusage(20e9, 18e9, 2e9)  # Kaggle's 20 GB disk, 2 GB left
    monkeypatch.setattr(shutil, "disk_usage", lambda p: nearly_full)
    needed = disk.training_bytes(1_100_000_000)  # full fine-tuning of TinyLlama-1.1B
    assert needed == pytest.approx(17.6e9)
    with pytest.raises(disk.DiskSpaceError, match=r"full fine-tuning needs about 17.6 GB .* only 2.0 GB .* delete"):
        disk.require_free(tmp_path, needed, "full fine-tuning")
    disk.require_free(tmp_path, disk.training_bytes(1_000_000), "LoRA")  # 16 MB fits
