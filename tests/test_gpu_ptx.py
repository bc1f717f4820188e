"""Every CUDA kernel of simdist.gpu compiles for a real GPU (PTX for sm_90, Hopper), without one.

Numba's CUDA simulator (which CI runs the GPU tests under) executes the kernels as Python: it
checks their logic but never types or compiles them, so a kernel that cannot compile for the
device would only fail on the first real GPU. Here:

1. every device codec (:func:`simdist.gpu.dispatch.available`) compresses and decodes float32 and
   float64 batches under the simulator, with a hook that records each kernel launch's argument
   types (the types Numba gives the same arguments on a GPU: arrays by dtype, rank and layout,
   Python ints as int64, bools as boolean);
2. a fresh process without the simulator compiles each recorded (kernel, signature) to PTX for
   compute capability 9.0 with NVVM (``cuda.compile_ptx``: no GPU or driver needed; NVVM from a
   CUDA toolkit, as CI's machines have in /usr/local/cuda, or the ``nvidia-nvvm`` wheel). Where no
   NVVM is found the test skips saying so, except in CI (``SIMDIST_REQUIRE_NVVM=1``, set by
   ``.ci/run``), where that is a failure;
3. every ``@cuda.jit`` kernel of the package must have been launched in step 1 (a new kernel
   without a codec path here is reported by name);
4. no kernel's PTX holds a floating-point fused multiply-add (``fma.rn.f64``, ``mad.rn.f32``, ...):
   NVVM contracts ``a * b + c`` unless the code prevents it, and a fused result rounds once where
   the CPU rounds twice, so the GPU's scales and values would not be the CPU's bit for bit.

What still needs a GPU (tests/test_gpu_device.py): running the compiled code, CuPy/torch inputs,
speed.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import cuda, typeof

import simdist.gpu
from simdist.compressors import make
from simdist.gpu import dispatch

if not cuda.is_available():
    pytest.skip("the CUDA simulator is off and no GPU is present", allow_module_level=True)
if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("a real GPU is present: tests/test_gpu_device.py runs the kernels there", allow_module_level=True)

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

# one compressor config per device codec of dispatch.available()
CONFIGS = [{"name": "sign", "bucket": 64}, {"name": "sign"}, {"name": "qsgd", "s": 4, "encoding": "fixed", "bucket": 64},
           {"name": "qsgd", "s": 16, "bucket": 64}, {"name": "qsgd", "s": 3}, {"name": "topk", "k": 5},
           {"name": "terngrad", "bucket": 32}, {"name": "terngrad", "bucket": 32, "clip": 2.5},
           {"name": "onebit", "bucket": 32}]


def _arg_type(a):
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    if isinstance(a, FakeCUDAArray):
        a = a._ary
    return typeof(a)


def _describe(t) -> list:
    """A JSON form of a Numba type that the compiling process can rebuild."""
    from numba import types

    if isinstance(t, types.Array):
        return ["array", str(t.dtype), t.ndim, t.layout]
    return ["scalar", str(t)]


@pytest.fixture(scope="module")
def launches():
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    seen = {}
    real_call = FakeCUDAKernel.__call__

    def recording_call(self, *args):
        if not self._device:
            key = (self.fn.__module__, self.fn.__name__, json.dumps([_describe(_arg_type(a)) for a in args]))
            seen[key] = True
        return real_call(self, *args)

    FakeCUDAKernel.__call__ = recording_call
    try:
        rng = np.random.default_rng(0)
        for spec in CONFIGS:
            c = make(spec)
            for dtype in (np.float32, np.float64):
                X = rng.standard_normal((3, 150)).astype(dtype)
                batch = dispatch.compress(c, cuda.to_device(X), np.random.default_rng(1), "X")
                dispatch.decompress(c, batch)
        from simdist.gpu import bitstream, scan

        a = cuda.to_device(np.arange(3 * scan._BLOCK + 5, dtype=np.int64))  # several blocks: step 3 of the scan
        for use_max in (False, True):
            scan.inclusive_scan(a, use_max)
        lens = cuda.to_device(np.zeros(2, np.int64))  # the code-length test hook
        bitstream.code_probe[1, 2](cuda.to_device(np.array([16, 16], np.int64)),
                                   cuda.to_device(np.array([0, 1], np.int64)), lens)
    finally:
        FakeCUDAKernel.__call__ = real_call
    return sorted(seen)


def _all_kernels() -> set:
    """(module, name) of every non-device ``@cuda.jit`` function in simdist.gpu."""
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    found = set()
    for info in pkgutil.iter_modules(simdist.gpu.__path__, "simdist.gpu."):
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if isinstance(obj, FakeCUDAKernel) and not obj._device and obj.fn.__module__ == info.name:
                found.add((info.name, name))
    return found


def test_every_device_codec_is_exercised():
    assert len(dispatch.available()) == 6, dispatch.available()  # add a CONFIGS entry for a new codec


def test_every_kernel_is_launched(launches):
    launched = {(m, n) for m, n, _ in launches}
    missing = _all_kernels() - launched
    assert not missing, f"kernels no codec path launched here (add them to CONFIGS): {sorted(missing)}"


COMPILE = textwrap.dedent('''
    import importlib, json, re, sys
    from numba import cuda, types
    import numba.cuda.dispatcher as disp

    class _Hopper:  # device functions are compiled for the current device's capability: say sm_90
        compute_capability = (9, 0)

    disp.get_current_device = lambda: _Hopper()

    def build(d):
        if d[0] == "array":
            return types.Array(getattr(types, d[1]), d[2], d[3])
        return getattr(types, d[1])

    def probe(a):  # can this process compile for a GPU at all (NVVM and libdevice)?
        a[0] = 1.0

    try:
        cuda.compile_ptx(probe, (types.float32[:],), cc=(9, 0))
    except Exception as exc:  # noqa: BLE001
        print(json.dumps({"no_nvvm": f"{type(exc).__name__}: {exc}"}))
        sys.exit(0)
    bad = []
    jobs = json.load(open(sys.argv[1]))
    for mod, name, sig in jobs:
        fn = getattr(importlib.import_module(mod), name).py_func
        args = tuple(build(d) for d in json.loads(sig))
        try:
            ptx, _ = cuda.compile_ptx(fn, args, cc=(9, 0))
            assert ".target sm_90" in ptx
            fused = sorted(set(re.findall(r"\\b(?:fma|mad)\\.rn[.a-z0-9]*\\.f(?:32|64)\\b", ptx)))
            if fused:  # a contracted a * b + c rounds once, the CPU's twice: the bytes would differ
                bad.append(f"{mod}.{name}{args}: floating multiply-add in the PTX: {fused}")
        except Exception as exc:  # noqa: BLE001 (report every failure, then fail)
            bad.append(f"{mod}.{name}{args}: {type(exc).__name__}: {str(exc)[:1500]}")
    print(json.dumps({"compiled": len(jobs) - len(bad), "failed": bad}))
''')


def test_every_launched_kernel_compiles_to_ptx_for_sm90(launches, tmp_path):
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([list(k) for k in launches]))
    script = tmp_path / "compile.py"
    script.write_text(COMPILE)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["NUMBA_ENABLE_CUDASIM"] = "0"
    r = subprocess.run([sys.executable, str(script), str(jobs)], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    if "no_nvvm" in res:
        if os.environ.get("SIMDIST_REQUIRE_NVVM") == "1":  # CI (.ci/run): the CUDA toolkit is there
            pytest.fail(f"NVVM not found: {res['no_nvvm']}")
        pytest.skip(f"no NVVM to compile with (a CUDA toolkit, or pip install nvidia-nvvm): {res['no_nvvm'][:200]}")
    assert not res["failed"], "\n\n".join(res["failed"])
    assert res["compiled"] == len(launches) >= 20
