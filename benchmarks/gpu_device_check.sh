#!/usr/bin/env bash
# The device check for a lent NVIDIA GPU, as one script (docs/gpu.md, "What has been run"):
#   1. the GPU tests on CuPy arrays (the simulator's tests, now on the device),
#   2. the tests marked `gpu`, one at a time (two of them take ~55 and ~100 GB of device memory),
#   3. benchmarks/bench_gpu.py with --crossover (the table and the AUTO_MIN_ROWS measurement).
# Each step has its own time limit and its own log in OUTDIR, so a step that hangs or fails
# leaves the others' results.
#
# usage: bash benchmarks/gpu_device_check.sh [OUTDIR [bench_gpu.py options]]
# Python packages the machine lacks can lie in .whl/ as wheels (see docs/gpu.md); they are
# installed into /tmp/site and put on PYTHONPATH with this checkout.
set -u
out=${1:-${OUT:-/tmp/gpu-check}}
shift || true  # the rest goes to bench_gpu.py
mkdir -p "$out"
export PYTHONPATH="$PWD"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONUNBUFFERED=1 NUMBA_CACHE_DIR=/tmp/numba-cache

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    nproc
    python3 - <<'EOF'
import importlib.metadata as md
for name in ("numpy", "pandas", "pyarrow", "dask", "numba", "numba-cuda", "cupy-cuda13x",
             "cupy-cuda12x", "hypothesis", "pytest"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "not installed")
from numba import cuda
print("numba.cuda.is_available():", cuda.is_available())
EOF
} 2>&1 | tee "$out/env.log"

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s)"
    local t0=$SECONDS
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$out/$name.log"
    tail -n 25 "$out/$name.log"
}

tests="tests/engine/test_gpu_kernels.py tests/engine/test_gpu_through_the_api.py tests/engine/test_gpu_placement.py"
# shellcheck disable=SC2086
step tests 100 python3 -m pytest -p no:cacheprovider -n 8 -rs -q --durations=5 -m "not gpu" $tests
# shellcheck disable=SC2086
step gpu-marked 60 python3 -m pytest -p no:cacheprovider -n 0 -rs -q -m gpu $tests
step bench 150 python3 benchmarks/bench_gpu.py --stages --crossover "$@"
