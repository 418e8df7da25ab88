#!/usr/bin/env bash
# The GPU suite of issue 15 in one device call: builds the package with the
# CUDA library on the device machine (it has no internet, hence
# --no-build-isolation --no-deps), shows what the engine makes of the GPU,
# runs the cuda-marked tests (every CUDA kernel against the CPU backend), and
# runs the op tests once more under compute-sanitizer's memcheck. Everything it
# prints also lands in $OUT (the device tool's folder) or /tmp/quanta-gpu.
#
#     bash bench/gpu/run.sh
#
# Benchmarks (pp512/tg128 against llama.cpp's CUDA build, bytes per second
# over the measured copy bandwidth) belong here too, once the kernels are
# fast: today's (kernels/) are a first correct set, one block per weight row
# or per head (a warp per row with 8-bit activations and dp4a for quantized
# weights), with no tensor cores or CUDA graphs. The
# model tests (tests/test_cuda_models.py) need the two real models in
# quanta's cache, which tests/conftest.py fetches with pip: they run where
# the cache has them or the index can be reached, and are left out (said
# so in the log) on a device machine without either.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/quanta-gpu}
mkdir -p "$out"
step() { echo "== $*" | tee -a "$out/log.txt"; }

step "device"
nvidia-smi 2>&1 | tee -a "$out/log.txt"
step "build (QUANTA_CUDA=ON)"
QUANTA_CUDA=ON python -m pip install -q --no-build-isolation --no-deps . 2>&1 | tail -20 | tee -a "$out/log.txt"
step "engine status"
python -c "import quanta; print(quanta._core.cuda_status())" 2>&1 | tee -a "$out/log.txt"
step "pytest -m cuda"
tests="tests/test_cuda_ops.py tests/test_cuda_wiring.py tests/test_device_fallback.py"
if ls ~/.cache/quanta/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf ~/.cache/quanta/models/gemma-3-270m-q4_k_m.gguf \
        > /dev/null 2>&1; then
    tests="$tests tests/test_cuda_models.py"
else
    echo "the real models are not in ~/.cache/quanta/models: tests/test_cuda_models.py left out" | tee -a "$out/log.txt"
fi
python -m pytest -q -m cuda $tests 2>&1 | tail -30 | tee -a "$out/log.txt"
rc=${PIPESTATUS[0]}
step "compute-sanitizer memcheck on the op tests"
if command -v compute-sanitizer > /dev/null; then
    compute-sanitizer --tool memcheck --target-processes all python -m pytest -q -m cuda tests/test_cuda_ops.py \
        > "$out/memcheck.txt" 2>&1
    grep -E "ERROR SUMMARY|passed|failed" "$out/memcheck.txt" | tail -5 | tee -a "$out/log.txt"
else
    echo "compute-sanitizer not found" | tee -a "$out/log.txt"
fi
exit "$rc"
