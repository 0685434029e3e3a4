#!/usr/bin/env bash
# The whole GPU check in one go, for a machine with one CUDA GPU and only torch + torchvision installed:
#   bash scripts/gpu_check.sh [OUTDIR]
# 1. scripts/benchmark_gpu.py (S vs torchvision eager/compiled, B and L presets, inference, a kernel profile);
# 2. the CUDA tests (`pytest -m cuda tests/cuda`).
# GPU_CHECK_PARTS=bench or =tests runs one part only.
# Wheels of missing packages (hydra-core, omegaconf, antlr4, fvcore, iopath, av, decord, ...) placed in .whl/ are
# installed first into /tmp/site. Everything is written to OUTDIR (default $OUT, else gpu_check_out).
set -u
out=${1:-${OUT:-gpu_check_out}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" \
    | tee -a "$out/gpu.txt"

parts=${GPU_CHECK_PARTS:-bench,tests}
if [[ $parts == *bench* ]]; then
echo "== benchmark"
timeout "${BENCH_TIMEOUT:-390}" python3 scripts/benchmark_gpu.py --budget-s "${BENCH_BUDGET:-300}" \
    --out "$out/bench.jsonl" > "$out/bench.txt" 2> "$out/bench.err"
echo "benchmark exit $?"
cat "$out/bench.txt"
fi
if [[ $parts == *tests* ]]; then

echo "== CUDA tests"
timeout "${TEST_TIMEOUT:-170}" python3 -m pytest -q -m cuda tests/cuda -p no:cacheprovider 2>&1 \
    | tee "$out/cuda_tests.txt" | tail -25
echo "tests exit ${PIPESTATUS[0]}"
fi
