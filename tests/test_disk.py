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


def test_on_kaggle_the_working_folders_20_gb_limit_counts_not_the_disk(monkeypatch, tmp_path):
    """Kaggle's /kaggle/working (a tmp folder here) keeps at most 20 GB, though the disk under it has 70 GB free."""
    monkeypatch.setattr(disk, "KAGGLE_WORKING", tmp_path)
    monkeypatch.setattr(disk, "KAGGLE_LIMIT", 3000)  # bytes, to keep the test small
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(100e9, 30e9, 70e9))
    (tmp_path / "03_full_finetune_gpt2").mkdir()
    (tmp_path / "03_full_finetune_gpt2" / "checkpoint.bin").write_bytes(b"x" * 2000)  # an earlier notebook's
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    assert disk.free_bytes(tmp_path / "runs") == (1000, f"Kaggle's 0 GB limit of {tmp_path}")
    with pytest.raises(disk.DiskSpaceError, match="within Kaggle's .* limit of"):
        disk.require_free(tmp_path / "runs" / "04_lora_qlora", 1500, "training run 'full'")
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE")  # elsewhere the disk's free space counts
    disk.require_free(tmp_path / "runs" / "04_lora_qlora", 1500, "training run 'full'")


def test_checkpoints_are_kept_when_the_learner_asks(monkeypatch, tmp_path):
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "optimizer.pt").write_bytes(b"y" * 10)
    monkeypatch.setenv(disk.KEEP_VAR, "1")
    assert disk.remove_checkpoints(tmp_path) == 0 and (tmp_path / "checkpoint-2").is_dir()
    monkeypatch.setenv(disk.KEEP_VAR, "0")
    assert disk.remove_checkpoints(tmp_path) == 10 and not tmp_path.exists()
