#!/usr/bin/env bash
# The accelerator check of the TTFT claim, as one command for a session that is lent a GPU (device tool):
# every part under its own timeout, every result and log under $OUT. The H200 image already holds
# jax, flax, torch, transformers, safetensors, tokenizers and jinja2; nothing needs carrying.
#
#   run(command="bash benchmarks/device_check.sh", timeout_s=560)
#
# Then commit $OUT/gpu_ttft_8b.{json,md} into benchmarks/results/, add a section for it to
# benchmarks/report.py and rerun `python -m benchmarks.report` (docs/performance.md).
set -u
OUT=${OUT:-/tmp/device_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import jax, torch; print(jax.__version__, jax.devices(), torch.__version__)" >> "$OUT/gpu.txt" 2>&1

# cuDNN kernels against the blocked ones, and the engine's invariants, on the GPU (skipped on CPU).
JAX_DEFAULT_MATMUL_PRECISION=highest timeout 120 python3 -m pytest -q -x -p no:cacheprovider tests/prophetkv/test_attention.py \
  tests/prophetkv/test_engine.py > "$OUT/gpu_tests.log" 2>&1
echo "tests exit $?" >> "$OUT/gpu_tests.log"

# The claim: transformers vs project full prefill vs ProphetKV@0.2 (device and host tiers), 8K-32K.
timeout 400 python3 -m benchmarks.gpu_ttft_8b --budget-s 330 --out "$OUT/gpu_ttft_8b.json" \
  > "$OUT/gpu_ttft_8b.log" 2>&1
echo "benchmark exit $?" >> "$OUT/gpu_ttft_8b.log"
tail -n 20 "$OUT/gpu_ttft_8b.log" "$OUT/gpu_tests.log"
