"""GGUF files of the local tiny Llama for the unit tests, exported once per test session (imported by tests)."""
from __future__ import annotations

from pathlib import Path

from utils import assets, gguf_export


def tiny_gguf_files(root: Path) -> dict[str, Path]:
    """f16, q8_0 and q4_0 files of local:tiny-llama under `root`, made by llama.cpp's converter and quantizer."""
    files = {"f16": root / "tiny-f16.gguf", **{q: root / f"tiny-{q}.gguf" for q in gguf_export.QUANT_TYPES}}
    if not all(f.exists() for f in files.values()):
        gguf_export.export_f16(assets.local_model("tiny-llama"), files["f16"])
        for q in gguf_export.QUANT_TYPES:
            gguf_export.quantize(files["f16"], files[q], q)
    return files
