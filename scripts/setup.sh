#!/usr/bin/env bash
# Set up the course environment in .venv (idempotent): torch first, never reinstalled, then requirements.
# Usage: bash scripts/setup.sh [--dev]   (--dev adds the test tools)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${COURSE_VENV:-.venv}"
PY="$VENV/bin/python"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if [ ! -x "$PY" ]; then
  say "creating virtual environment $VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
fi

if "$PY" -c "import torch" 2>/dev/null; then
  say "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed: kept as it is"
else
  say "installing torch==2.13.0 (CPU wheel where one is on disk; a bare 'torch' would pull CUDA builds of several GB)"
  "$PY" -m pip install -q torch==2.13.0
fi

stamp="$VENV/.course-setup"
want="$(cat requirements.txt requirements/*.txt requirements-dev.txt | sha256sum | cut -c1-16)${1:-}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "requirements already installed (delete $stamp to force)"
else
  # llama-cpp-python compiles llama.cpp where no wheel fits: a portable build (no -march=native) of the
  # library alone, on every core. pip caches the built wheel, so a second setup on this machine skips it.
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}"
  export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
  say "installing requirements.txt (where no llama-cpp-python wheel fits and none is cached, llama.cpp compiles: about 6 minutes on 2 cores)"
  start=$(date +%s)
  reqs=(-r requirements.txt)
  [ "${1:-}" = "--dev" ] && reqs+=(-r requirements-dev.txt)
  "$PY" -m pip install -q "${reqs[@]}"
  say "requirements installed in $(( $(date +%s) - start )) s"
  "$PY" -m ipykernel install --user --name llm-course --display-name "LLM course (.venv)" >/dev/null
  echo "$want" > "$stamp"
fi
# llama.cpp's converter (convert_hf_to_gguf.py) is not in the llama-cpp-python wheel: take it from the source
# archive of the installed version on PyPI, so that it matches the llama.cpp that quantizes and runs the files.
# Kept in .cache/llama.cpp/<version>/ (git-ignored); notebook 07 needs it. Skipped when already there.
if "$PY" -m utils.gguf_export fetch-converter; then :; else
  say "WARNING: llama.cpp's converter could not be fetched; notebook 07 will say how to get it"
fi
say "ready: $("$PY" -c 'import utils, torch, transformers, peft, trl; print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, trl {trl.__version__}")')"
