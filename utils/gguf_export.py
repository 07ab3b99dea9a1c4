"""GGUF files with llama.cpp's own tools: find its converter, export a Hugging Face model to f16, quantize it to
q8_0 / q4_0 with llama.cpp's quantizer, and read a file back with the `gguf` package.

Usage: python -m utils.gguf_export fetch-converter   (what `scripts/setup.sh` runs; needs PyPI once)
"""
from __future__ import annotations

import ctypes
import importlib
import importlib.util
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .models import ModelUnavailableError, resolve
from .paths import ROOT

CONVERTER_VAR = "LLAMA_CPP_CONVERTER"  # a path to convert_hf_to_gguf.py, to use another llama.cpp checkout
SETUP_HINT = "run `bash scripts/setup.sh` (or `python -m utils.gguf_export fetch-converter`) from the repository root"
LLAMA_REQUIREMENTS = ROOT / "requirements" / "llama.txt"  # the one pin of llama-cpp-python
CPU_WHEELS = "https://abetlen.github.io/llama-cpp-python/whl/cpu"  # llama-cpp-python's own prebuilt CPU wheels
INSTALL_HINT = ("run `gguf_export.ensure_llama_cpp()` (notebook 07 does), or `bash scripts/setup.sh`, or "
                f"`pip install -r requirements/llama.txt --extra-index-url {CPU_WHEELS}`")
QUANT_TYPES = ("q8_0", "q4_0")  # what llama.cpp's quantizer makes here from the f16 file
# What the converter reads from a Hub model: config, weights, tokenizer (chat_template.jinja holds the chat template)
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]
_CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion", "gguf-py", "LICENSE")  # all the converter imports


class GGUFToolError(RuntimeError):
    """llama.cpp, its converter or one of its steps is missing or failed; the message says what to do."""


def llama_cpp_version() -> str:
    """The installed llama-cpp-python version; GGUFToolError naming the install command when it is missing."""
    try:
        import llama_cpp
    except ImportError:
        raise GGUFToolError(f"llama-cpp-python (llama.cpp's bindings) is not installed: {INSTALL_HINT}") from None
    return llama_cpp.__version__


# What requirements/llama.txt brings: the bindings, their OpenAI-compatible server and the OpenAI client (07, section 9)
LLAMA_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings", "openai")


def ensure_llama_cpp(heartbeat_s: float = 30.0) -> str:
    """The installed llama-cpp-python version, installing requirements/llama.txt first where it (or its server, or
    the OpenAI client) is missing: a prebuilt CPU wheel when one fits (seconds), else pip compiles llama.cpp (about
    5 minutes on 2 cores)."""
    try:
        version = llama_cpp_version()
        if all(importlib.util.find_spec(name) for name in LLAMA_MODULES):
            return version
    except GGUFToolError:
        pass
    print(f"installing llama-cpp-python ({LLAMA_REQUIREMENTS.name}): a prebuilt CPU wheel takes seconds; where none "
          "fits this machine, pip compiles llama.cpp, which may take about 5 minutes on 2 cores", flush=True)
    cmd = [sys.executable, "-m", "pip", "install", "--prefer-binary", "--extra-index-url", CPU_WHEELS,
           "-r", str(LLAMA_REQUIREMENTS)]
    start, stop = time.perf_counter(), threading.Event()

    def beat() -> None:  # pip is silent while it compiles: show that it is still working
        while not stop.wait(heartbeat_s):
            print(f"  ... still installing ({time.perf_counter() - start:.0f} s)", flush=True)

    threading.Thread(target=beat, daemon=True).start()
    lines: list[str] = []
    try:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as pip:
            for line in pip.stdout:  # pip's own lines: collecting, building the wheel, installed
                lines.append(line)
                print(" ", line.rstrip(), flush=True)
    finally:
        stop.set()
    if pip.returncode != 0:
        raise GGUFToolError(f"installing llama-cpp-python failed (exit {pip.returncode}): {''.join(lines[-5:])}")
    importlib.invalidate_caches()
    print(f"llama-cpp-python installed in {time.perf_counter() - start:.0f} s", flush=True)
    return llama_cpp_version()


def converter_dir(version: str | None = None) -> Path:
    """Where setup puts the converter matching the installed llama.cpp: .cache/llama.cpp/<version>/ (git-ignored)."""
    return ROOT / ".cache" / "llama.cpp" / (version or llama_cpp_version())


def find_converter(fetch: bool = False) -> Path:
    """Path of llama.cpp's `convert_hf_to_gguf.py` for the installed llama-cpp-python ($LLAMA_CPP_CONVERTER first).
    With fetch=True a missing converter is downloaded from PyPI; otherwise GGUFToolError says how to get it."""
    if os.environ.get(CONVERTER_VAR):
        path = Path(os.environ[CONVERTER_VAR])
        if not path.is_file():
            raise GGUFToolError(f"{CONVERTER_VAR}={path} is not a file: point it at llama.cpp's convert_hf_to_gguf.py")
        return path
    path = converter_dir() / "convert_hf_to_gguf.py"
    if not path.is_file():
        if not fetch:
            raise GGUFToolError(f"llama.cpp's converter is missing (looked for {path}): {SETUP_HINT}")
        fetch_converter()
    return path


def source_archive(version: str | None = None) -> Path:
    """The llama-cpp-python source archive of `version` (default: the installed one), downloaded from PyPI once into
    .cache/llama.cpp/: llama.cpp's sources are vendored in it (the converter, and what `make llama-server` builds)."""
    version = version or llama_cpp_version()
    folder = ROOT / ".cache" / "llama.cpp"
    archive = folder / f"llama_cpp_python-{version}.tar.gz"
    if archive.is_file():
        return archive
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
               f"llama-cpp-python=={version}", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise GGUFToolError(f"could not download the llama-cpp-python {version} source archive from PyPI "
                                f"({done.stderr.strip()[-300:]}); check the connection and run it again")
        archives[0].replace(archive)
    return archive


def extract_vendored(archive: Path, dest: Path, parts: tuple[str, ...] | None = None) -> Path:
    """Unpack the archive's vendor/llama.cpp (only its top-level `parts`, when given) into a new folder under `dest`;
    returns the unpacked llama.cpp folder."""
    with tarfile.open(archive) as tar:
        root = tar.getnames()[0].split("/")[0]
        prefix = f"{root}/vendor/llama.cpp/"
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)
                   and (parts is None or m.name[len(prefix):].split("/")[0] in parts)]
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(dest, members=members, **extra)
    return dest / prefix


def fetch_converter(version: str | None = None) -> Path:
    """Download the llama-cpp-python source archive of `version` (default: the installed one) from PyPI and keep
    only llama.cpp's converter: convert_hf_to_gguf.py, its `conversion` package and gguf-py. Idempotent."""
    version = version or llama_cpp_version()
    target = converter_dir(version)
    if (target / "convert_hf_to_gguf.py").is_file():
        return target / "convert_hf_to_gguf.py"
    archive = source_archive(version)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        source = extract_vendored(archive, Path(tmp), _CONVERTER_PARTS)
        if not (source / "convert_hf_to_gguf.py").is_file():
            raise GGUFToolError(f"the llama-cpp-python {version} archive has no vendor/llama.cpp/convert_hf_to_gguf.py")
        try:
            source.rename(target)
        except OSError:  # another process finished first
            if not (target / "convert_hf_to_gguf.py").is_file():
                raise
    return target / "convert_hf_to_gguf.py"


def parameters_in_files(model_dir: str | Path) -> int:
    """Parameters stored in a model folder's safetensors files, read from their headers (nothing is loaded)."""
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise ValueError(f"{model_dir} has no .safetensors weights")
    total = 0
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():
                total += math.prod(st.get_slice(name).get_shape())
    return total


def check_source(model_dir: str | Path, min_params: int) -> int:
    """A model folder the benchmark can use: a Llama with at least `min_params` parameters (below that every timed
    run lasts milliseconds and the benchmark measures noise). Returns its parameter count; ValueError if not."""
    config = Path(model_dir) / "config.json"
    archs = json.loads(config.read_text(encoding="utf-8")).get("architectures") or [] if config.is_file() else []
    if "LlamaForCausalLM" not in archs:
        raise ValueError(f"{model_dir} holds a {archs or 'model of unknown type'}, not a Llama: export a Llama-"
                         "architecture model, or leave MODEL_NAME=None for the profile's model")
    n = parameters_in_files(model_dir)
    if n < min_params:
        raise ValueError(f"{model_dir} has {n / 1e6:.1f} M parameters, fewer than {min_params / 1e6:.0f} M: its "
                         "timed runs would last milliseconds — leave MODEL_NAME=None for the profile's model")
    return n


def local_folder(name: str) -> Path:
    """A folder holding the model `name` for the converter: 'local:<preset>' and folders as they are, a Hub id
    downloaded (HUB_FILES: weights, config, tokenizer and chat template) into the Hugging Face cache."""
    path = Path(resolve(name))
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(path), allow_patterns=HUB_FILES))
    except Exception as err:  # offline, gated or misspelled: say which and what to do
        raise ModelUnavailableError(f"could not get '{name}' from the Hugging Face Hub ({type(err).__name__}): "
                                    "check the name and the connection, or use PROFILE='smoke'") from err


def save_tokenizer(tok, folder: str | Path) -> list[str]:
    """Save `tok` into a model folder for the converter, with the SentencePiece model (`tokenizer.model`) when the
    folder it was loaded from holds one — transformers 5 saves only tokenizer.json, which the converter reads for
    BPE tokenizers (GPT-2 class) but not for SentencePiece ones (Llama-2 class). Returns the files saved."""
    folder = Path(folder)
    saved = [Path(f).name for f in tok.save_pretrained(folder)]
    vocab_file = getattr(tok, "vocab_file", None)
    sources = [Path(vocab_file).parent] if vocab_file else []
    sources += [Path(tok.name_or_path)] if tok.name_or_path else []
    spm = next((d / "tokenizer.model" for d in sources if (d / "tokenizer.model").is_file()), None)
    if spm and not (folder / "tokenizer.model").is_file():
        shutil.copy(spm, folder / "tokenizer.model")
        saved.append("tokenizer.model")
    return saved


def export_f16(model_dir: str | Path, out_file: str | Path, converter: str | Path | None = None,
               timeout: float = 1800) -> Path:
    """Convert a Hugging Face model folder (config.json + safetensors + tokenizer) to an f16 GGUF with llama.cpp's
    converter, run as a subprocess of this Python. Returns the file; GGUFToolError with the converter's message."""
    model_dir, out_file = Path(model_dir), Path(out_file)
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"{model_dir} is not a Hugging Face model folder (no config.json): save the model with "
                         "save_pretrained() and its tokenizer beside it first")
    converter = Path(converter) if converter else find_converter()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(converter), str(model_dir), "--outtype", "f16", "--outfile", str(out_file)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not out_file.is_file():
        tail = "\n".join(done.stderr.strip().splitlines()[-6:])
        raise GGUFToolError(f"llama.cpp's converter failed on {model_dir}:\n{tail}")
    return out_file


@contextmanager
def _quiet_llama_cpp():
    """llama.cpp logs every tensor while it quantizes; keep its log to errors for the duration."""
    log = logging.getLogger("llama-cpp-python")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def quantize(src: str | Path, dst: str | Path, qtype: str, n_threads: int | None = None) -> Path:
    """Quantize an f16/f32 GGUF to `qtype` ('q8_0' or 'q4_0') with llama.cpp's own quantizer (llama_model_quantize,
    through llama-cpp-python's bindings). q4_0 packs blocks of 32 weights: every row length must divide by 32."""
    if qtype not in QUANT_TYPES:
        raise ValueError(f"unknown quantization '{qtype}': use one of {QUANT_TYPES}")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ValueError(f"no GGUF file at {src}: export one with export_f16() first")
    llama_cpp_version()
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype.upper()}")
    params.nthread = n_threads or os.cpu_count() or 1
    dst.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_llama_cpp():
        code = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if code != 0 or not dst.is_file():
        raise GGUFToolError(f"llama.cpp could not quantize {src.name} to {qtype} (code {code}); for q4_0 every "
                            "weight row length must be a multiple of 32")
    return dst


def _value(field) -> Any:
    value = field.contents()
    return value.tolist() if hasattr(value, "tolist") else value


def file_type(path: str | Path) -> str:
    """The file's overall type as llama.cpp names it (general.file_type), e.g. 'MOSTLY_Q4_0'."""
    from gguf import GGUFReader, LlamaFileType

    field = GGUFReader(str(path)).fields.get("general.file_type")
    if field is None:
        raise GGUFToolError(f"{path} has no general.file_type: not a llama.cpp model file")
    return LlamaFileType(_value(field)).name


def summary(path: str | Path) -> dict[str, Any]:
    """What a GGUF holds, read back with the `gguf` package: size, file type, architecture and shapes, tokenizer,
    chat template and a count of tensors by type (a quantized file keeps norms in f32)."""
    from gguf import GGMLQuantizationType, GGUFReader, LlamaFileType

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no GGUF file at {path}")
    reader = GGUFReader(str(path))
    meta = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    arch = _value(meta["general.architecture"])
    tokens = meta.get("tokenizer.ggml.tokens")
    types = Counter(GGMLQuantizationType(t.tensor_type).name for t in reader.tensors)
    return {
        "file": path.name, "size_mb": path.stat().st_size / 1e6,
        "file_type": LlamaFileType(_value(meta["general.file_type"])).name if "general.file_type" in meta else "?",
        "architecture": arch,
        "parameters": int(sum(t.n_elements for t in reader.tensors)),
        "layers": _value(meta[f"{arch}.block_count"]), "hidden": _value(meta[f"{arch}.embedding_length"]),
        "context_length": _value(meta[f"{arch}.context_length"]),
        "tokenizer": _value(meta["tokenizer.ggml.model"]) if "tokenizer.ggml.model" in meta else None,
        "vocab_size": len(tokens.data) if tokens is not None else 0,
        "chat_template": "tokenizer.chat_template" in meta,
        "metadata_keys": len(meta), "tensors": len(reader.tensors),
        "tensor_types": ", ".join(f"{n} {k}" for k, n in types.most_common()),
    }


def tensor_table(path: str | Path, limit: int | None = None):
    """One row per tensor (name, shape, weights, type, bytes, bits per weight): how the quantizer treated each."""
    import pandas as pd
    from gguf import GGMLQuantizationType, GGUFReader

    rows = [{"tensor": t.name, "shape": "x".join(str(int(d)) for d in t.shape), "weights": int(t.n_elements),
             "type": GGMLQuantizationType(t.tensor_type).name, "bytes": int(t.n_bytes),
             "bits_per_weight": 8 * int(t.n_bytes) / max(int(t.n_elements), 1)}
            for t in GGUFReader(str(path)).tensors]
    return pd.DataFrame(rows[:limit] if limit else rows)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if args[:1] != ["fetch-converter"]:
        print(__doc__.strip().splitlines()[-1])
        return 2
    try:
        if os.environ.get(CONVERTER_VAR):
            print(f"llama.cpp converter: {find_converter()} (from ${CONVERTER_VAR})")
            return 0
        path = fetch_converter()
    except GGUFToolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"llama.cpp converter: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
