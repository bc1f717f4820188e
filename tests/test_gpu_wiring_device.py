"""The compressor API and the engine on a real CUDA GPU: CuPy and torch CUDA inputs stay on the device.

Skipped (reason "no CUDA GPU") where there is no GPU, CuPy is missing, or the CUDA simulator is
active; the same logic is tested under the simulator by tests/test_gpu_dispatch.py and
tests/test_engine_device.py. Checked here: payload buffers and decoded values are arrays of the
input's kind (CuPy in, CuPy out; torch CUDA in, torch CUDA out), their bytes and values are the CPU
path's, and ``train(..., device="cuda")`` follows the CPU run (exactly where no reduction of
another order is involved: mean estimation with batch size 1).
"""

import numpy as np
import pytest
from numba import config

from simdist.engine.device import gpu_missing

if config.ENABLE_CUDASIM or gpu_missing() is not None:  # the simulator is on, or no CuPy / no device
    pytest.skip("no CUDA GPU", allow_module_level=True)

import cupy  # noqa: E402

from simdist.compressors import make  # noqa: E402
from simdist.engine.loop import train  # noqa: E402

pytestmark = pytest.mark.gpu

CONFIGS = [{"name": "sign", "bucket": 512}, {"name": "qsgd", "s": 4, "bucket": 512, "encoding": "fixed"}]


def _gens(n):
    return [np.random.default_rng(40 + i) for i in range(n)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c["name"])
def test_cupy_in_cupy_out(cfg, dtype):
    c = make(dict(cfg))
    X = np.random.default_rng(1).standard_normal((4, 100_003)).astype(dtype)
    ref = c.compress_batch(X, _gens(4))
    batch = c.compress_batch(cupy.asarray(X), _gens(4))
    assert isinstance(batch.buffer, cupy.ndarray)
    np.testing.assert_array_equal(batch.buffer.get(), ref.buffer)
    np.testing.assert_array_equal(batch.nbits, ref.nbits)
    Y = c.decompress_batch(batch)
    assert isinstance(Y, cupy.ndarray) and Y.dtype == dtype
    np.testing.assert_array_equal(Y.get(), c.decompress_batch(ref))
    out = cupy.empty((4, 100_003), dtype)
    assert c.decompress_batch(batch, out=out) is out
    np.testing.assert_array_equal(out.get(), Y.get())
    p = c.compress(cupy.asarray(X[2]), np.random.default_rng(9))
    assert p.to_bytes() == c.compress(X[2], np.random.default_rng(9)).to_bytes()
    y = c.decompress(p)
    assert isinstance(y, cupy.ndarray) and y.shape == (100_003,)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c["name"])
def test_torch_cuda_in_torch_cuda_out(cfg):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU for torch (a CPU build of torch)")
    c = make(dict(cfg))
    X = np.random.default_rng(2).standard_normal((3, 5000)).astype(np.float32)
    ref = c.compress_batch(X, _gens(3))
    batch = c.compress_batch(torch.as_tensor(X, device="cuda"), _gens(3))
    assert isinstance(batch.buffer, torch.Tensor) and batch.buffer.is_cuda
    np.testing.assert_array_equal(batch.buffer.cpu().numpy(), ref.buffer)
    Y = c.decompress_batch(batch)
    assert isinstance(Y, torch.Tensor) and Y.is_cuda and Y.dtype == torch.float32
    np.testing.assert_array_equal(Y.cpu().numpy(), c.decompress_batch(ref))


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c["name"])
def test_engine_on_the_gpu_follows_the_cpu_run(cfg):
    prob = {"name": "mean_estimation", "d": 64, "n": 200}
    kw = dict(nodes=4, steps=30, lr=0.2, batch_size=1, seed=2, error_feedback=True, momentum=0.5)
    a = train(prob, dict(cfg), **kw)
    b = train(prob, dict(cfg), device="cuda", **kw)
    # g = x - e (one sample) and the update are elementwise: the iterates and payloads are exact
    assert a.extra["x_final"] == b.extra["x_final"]
    for key in ("bits", "wire_bits", "sim_time"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    # the loss and the gradient norm are reductions (another summation order on the GPU)
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-12)
    np.testing.assert_allclose(b.grad_norm, a.grad_norm, rtol=1e-12)


@pytest.mark.parametrize("prob", [{"name": "least_squares", "d": 20, "n": 400},
                                  {"name": "logistic", "d": 10, "n": 400}], ids=lambda p: p["name"])
def test_engine_on_the_gpu_full_precision_close_to_cpu(prob):
    kw = dict(nodes=4, steps=40, lr=0.05, batch_size=8, seed=1)
    a = train(prob, None, **kw)
    b = train(prob, None, device="cuda", **kw)
    assert b.steps_run == 40 and b.loss[-1] < b.loss[0]
    # cuBLAS sums in another order (float64 rounding ~1e-16), then the wire rounds to float32:
    # the runs agree to a few float32 ulps, contracted by the step
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-5)
