#!/usr/bin/env bash
# Everything the GPU issue needs from a machine with a CUDA GPU, in one call (a session lent the
# `device` tool runs this from the repository root; it takes about 3-6 minutes, most of it Numba's
# CUDA compilation):
#
#   bash benchmarks/gpu_session.sh            # logs and results go to $OUT (or /tmp/simdist_gpu)
#
# 1. what the machine has (GPU, driver, numba / numba-cuda / cupy / torch versions);
# 2. the GPU tests: the codecs on CuPy / torch CUDA / Numba device arrays, byte for byte against the
#    CPU path, the engine with device="cuda", and the NCCL transport (its 2-rank NCCL run needs two
#    GPUs and says so when it skips);
# 3. benchmarks/bench_gpu.py: QSGD and top-k round trips at d = 2^26 as a ratio to a
#    device-to-device copy (target 4x), with a check that every payload equals the CPU's bytes.
#
# simdist is imported from this checkout (PYTHONPATH), so no install step and no network is needed:
# the packages it uses (numpy, numba, numba-cuda, cupy, torch, scipy, matplotlib, pytest, hypothesis)
# are on the device image.
set -u -o pipefail
OUT=${OUT:-/tmp/simdist_gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 NUMBA_CACHE_DIR=/tmp/simdist_numba_cache
{
  nvidia-smi -L
  python3 -c "import sys, numpy, numba, cupy, torch; print(sys.version.split()[0], 'numpy', numpy.__version__, \
'numba', numba.__version__, 'cupy', cupy.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$OUT/machine.txt"
python3 -m pytest -q -rs -p no:cacheprovider tests/test_gpu_device.py tests/test_gpu_wiring_device.py \
  tests/test_nccl.py tests/test_gpu_dispatch.py tests/test_engine_device.py 2>&1 | tee "$OUT/pytest.log"
tests=$?
python3 benchmarks/bench_gpu.py --out "$OUT/gpu.json" 2>&1 | tee "$OUT/bench.log"
bench=$?
echo "pytest exit $tests, bench exit $bench" | tee -a "$OUT/machine.txt"
exit $(( tests != 0 || bench != 0 ))
