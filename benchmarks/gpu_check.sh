#!/usr/bin/env bash
# The GPU path on a CUDA machine, in under 8 minutes (docs/benchmarks.md, README):
#   1. the tests marked gpu (a tiny fine-tune and distillation on CUDA whose results
#      reload on the CPU and match), then
#   2. benchmarks/gpu_check.py: a short SST-2 fine-tune + distillation, printing
#      examples/s for each and the dev accuracy (needs ../shared/data/sst2).
# On a machine without CUDA it says so, shows the gpu tests skipping with their reason,
# and exits 0.
#
#   benchmarks/gpu_check.sh                 # from the checkout, with .venv made by make install
#   PYTHON=/path/to/python benchmarks/gpu_check.sh
#   GPU_CHECK_ROWS=5000 benchmarks/gpu_check.sh   # a shorter SST-2 run
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if [ ! -x "$PY" ]; then PY=python3; fi
# Which tests to collect for -m gpu (the whole suite by default).
TESTS=${GPU_CHECK_TESTS:-tests}
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "No CUDA GPU on this machine: torch.cuda.is_available() is False" \
       "(torch $("$PY" -c 'import torch; print(torch.__version__)')). The tests marked gpu skip:"
  set +e
  "$PY" -m pytest -p no:cacheprovider -q -rs -m gpu "$TESTS"
  rc=$?
  set -e
  # 0: everything skipped; 5: no gpu test collected (a subset given in GPU_CHECK_TESTS).
  if [ $rc -ne 0 ] && [ $rc -ne 5 ]; then exit $rc; fi
  echo "Nothing to time without a GPU; run this on a CUDA machine."
  exit 0
fi

start=$(date +%s)
"$PY" - <<'PY'
import torch
p = torch.cuda.get_device_properties(0)
print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB; bf16: {torch.cuda.is_bf16_supported()}; torch {torch.__version__}")
PY
echo "== the tests marked gpu"
"$PY" -m pytest -p no:cacheprovider -q -rs -m gpu "$TESTS"
echo "== a short SST-2 fine-tune and distillation"
"$PY" benchmarks/gpu_check.py --rows "${GPU_CHECK_ROWS:-20000}"
echo "gpu_check took $(( $(date +%s) - start )) s in all ($(date -u +%Y-%m-%d))."
