#!/usr/bin/env bash
# The gpu profile on a CUDA machine with no internet, in one call of at most 300 s: install the pruned wheels carried
# along ($WHEELS, default .whl/, at most 40 MiB: `bash scripts/gpu_check.sh wheels` fetches and prunes them where PyPI
# answers), print the machine's versions and stop if something is missing, then run notebooks cut down (default 04
# and 06) as a T4 (one GPU, fp16 without bf16, 14.2 GiB, no flash attention, a bf16 guard), cells in-process (the
# machine has no papermill or Jupyter). Runs go to $COURSE_RUNS_DIR (default /tmp/course-runs, outside the
# repository); the summary, probe logs and cell logs are copied to $OUT (what the GPU machine sends back).
# Usage: bash scripts/gpu_check.sh [04 06 ...]   |   bash scripts/gpu_check.sh wheels
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
PY=${PYTHON:-python3}
LIMIT_S=${GPU_CHECK_SECONDS:-280}  # the whole run; the device's command limit is 600 s and a rerun must fit

if [[ "${1:-}" == wheels ]]; then  # here, online: Linux x86-64 CPython 3.12 wheels at the pins, bitsandbytes pruned
  mkdir -p "$WHEELS"
  "$PY" -m tools.gpu_check pins | xargs "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d "$WHEELS"
  exec "$PY" -m tools.gpu_check pack "$WHEELS"
fi

OUT_DIR=${OUT:-runs/gpu-check}
export COURSE_RUNS_DIR=${COURSE_RUNS_DIR:-/tmp/course-runs}
mkdir -p "$OUT_DIR" "$COURSE_RUNS_DIR"
exec > >(tee "$OUT_DIR/gpu_check.log") 2>&1
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/course-site \
    "$WHEELS"/*.whl
  export PYTHONPATH="/tmp/course-site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -m tools.gpu_check gate  # first line: the machine's versions; exits here, saying what is missing
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
[[ $# -gt 0 ]] || set -- 04 06
status=0  # each notebook gets its share of the time left after building the stand-ins; `timeout` is the backstop
timeout "$LIMIT_S" "$PY" -m tools.hub.verify --profile gpu --t4 --in-process --timeout "$(((LIMIT_S - 60) / $#))" "$@" \
  || status=$?
RUNS="$COURSE_RUNS_DIR/verify-gpu-t4"  # at most 8 files come back: 2 notebooks' 3 files, the summary, this log
for f in "$RUNS"/summary.json "$RUNS"/*.verify.json "$RUNS"/*.probe.jsonl "$RUNS"/*.log; do
  if [[ -f "$f" ]]; then cp "$f" "$OUT_DIR"/; fi
done
echo "[gpu-check] exit $status; summary and logs in $OUT_DIR"
exit "$status"
