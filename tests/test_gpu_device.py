"""simdist.gpu on a real CUDA GPU: CuPy inputs stay on the device, bytes equal the CPU path's.

Skipped (reason "no CUDA GPU") where there is no GPU, CuPy is missing, or the CUDA simulator is
active. These tests also cover what the simulator cannot: fused multiply-add contraction
(the products that feed sums use ``dmul_rn``) and the CuPy / CUDA-array-interface plumbing.
"""

import numpy as np
import pytest

from numba import config


def _gpu_ready():
    if config.ENABLE_CUDASIM:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 (no CuPy, no driver, no device: all mean no GPU here)
        return False


if not _gpu_ready():
    pytest.skip("no CUDA GPU", allow_module_level=True)

import cupy  # noqa: E402

from simdist.compressors.qsgd import QSGD  # noqa: E402
from simdist.compressors.sign import Sign  # noqa: E402
from simdist.gpu import backend, codecs  # noqa: E402
from simdist.rng import draw_keys  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d,bucket", [(1, None), (1000, 128), (100_003, 512), (1 << 20, None)])
def test_sign_cupy_matches_cpu(d, bucket, dtype):
    X = np.random.default_rng(d).standard_normal((3, d)).astype(dtype)
    Xd = cupy.asarray(X)
    buf, offsets, nbits = codecs.compress_sign(Xd, bucket=bucket)
    assert isinstance(buf, cupy.ndarray) and backend.is_device_array(buf)
    ref = Sign(bucket=bucket).compress_batch(X)
    np.testing.assert_array_equal(buf.get(), ref.buffer)
    Y = codecs.decompress_sign(buf, offsets, d, dtype, bucket=bucket)
    assert isinstance(Y, cupy.ndarray)
    np.testing.assert_array_equal(Y.get(), Sign(bucket=bucket).decompress_batch(ref))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d,bucket,s", [(1, None, 1), (1000, 128, 4), (100_003, 512, 16), (1 << 20, None, 255)])
def test_qsgd_fixed_cupy_matches_cpu(d, bucket, s, dtype):
    n = 3
    X = np.random.default_rng(d).standard_normal((n, d)).astype(dtype)
    gens = lambda: [np.random.default_rng(50 + i) for i in range(n)]  # noqa: E731
    c = QSGD(s=s, bucket=bucket, encoding="fixed")
    ref = c.compress_batch(X, gens())
    buf, offsets, nbits = codecs.compress_qsgd_fixed(cupy.asarray(X), draw_keys(gens(), n), s=s, bucket=bucket)
    assert isinstance(buf, cupy.ndarray)
    np.testing.assert_array_equal(buf.get(), ref.buffer)
    Y = codecs.decompress_qsgd_fixed(buf, offsets, d, dtype, s=s, bucket=bucket)
    np.testing.assert_array_equal(Y.get(), c.decompress_batch(ref))
