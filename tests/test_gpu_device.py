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

from simdist.compressors.onebit import OneBit  # noqa: E402
from simdist.compressors.qsgd import QSGD  # noqa: E402
from simdist.compressors.sign import Sign  # noqa: E402
from simdist.compressors.terngrad import TernGrad  # noqa: E402
from simdist.compressors.topk import TopK  # noqa: E402
from simdist.gpu import backend, codecs  # noqa: E402
from simdist.gpu.codecs_onebit import compress_onebit, decompress_onebit  # noqa: E402
from simdist.gpu.codecs_qsgd_elias import compress_qsgd_elias, decompress_qsgd_elias  # noqa: E402
from simdist.gpu.codecs_terngrad import compress_terngrad, decompress_terngrad  # noqa: E402
from simdist.gpu.codecs_topk import compress_topk, decompress_topk  # noqa: E402
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d,bucket,s,norm", [(1, None, 1, "l2"), (1000, 128, 4, "l2"), (100_003, 512, 16, "max"),
                                             (1 << 20, None, 255, "l2"), (70_000, 4096, 2**20, "l2")])
def test_qsgd_elias_cupy_matches_cpu(d, bucket, s, norm, dtype):
    n = 3
    X = np.random.default_rng(d).standard_normal((n, d)).astype(dtype)
    X[1, : d // 2] = 0.0  # long zero runs
    gens = lambda: [np.random.default_rng(70 + i) for i in range(n)]  # noqa: E731
    c = QSGD(s=s, norm=norm, bucket=bucket)
    ref = c.compress_batch(X, gens())
    buf, offsets, nbits = compress_qsgd_elias(cupy.asarray(X), draw_keys(gens(), n), s=s, bucket=bucket, norm=norm)
    assert isinstance(buf, cupy.ndarray)
    np.testing.assert_array_equal(offsets, ref.offsets)
    np.testing.assert_array_equal(nbits, ref.nbits)
    np.testing.assert_array_equal(buf.get(), ref.buffer)
    Y, got_bits = decompress_qsgd_elias(buf, offsets, d, dtype, s=s, bucket=bucket, return_nbits=True)
    assert isinstance(Y, cupy.ndarray)
    np.testing.assert_array_equal(Y.get(), c.decompress_batch(ref))
    np.testing.assert_array_equal(got_bits, ref.nbits)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d,k,ratio,ties", [(1, 1, None, False), (1000, 10, None, True), (100_003, None, 0.01, False),
                                            (1 << 20, None, 0.001, True), (50_000, None, 0.5, False)])
def test_topk_cupy_matches_cpu(d, k, ratio, ties, dtype):
    rng = np.random.default_rng(d)
    X = rng.standard_normal((3, d))
    if ties:  # few distinct magnitudes: the k-th is shared by many entries
        X = rng.integers(-20, 21, size=(3, d)).astype(np.float64)
    X = X.astype(dtype)
    c = TopK(k=k, ratio=ratio)
    ref = c.compress_batch(X)
    buf, offsets, nbits = compress_topk(cupy.asarray(X), k=k, ratio=ratio)
    assert isinstance(buf, cupy.ndarray)
    np.testing.assert_array_equal(offsets, ref.offsets)
    np.testing.assert_array_equal(buf.get(), ref.buffer)
    Y = decompress_topk(buf, offsets, d, dtype, k=k, ratio=ratio)
    assert isinstance(Y, cupy.ndarray)
    np.testing.assert_array_equal(Y.get(), c.decompress_batch(ref))


def _outliers(d, dtype):
    """3 rows: Gaussian with outliers (clipping bites), a zero row, a constant negative row."""
    X = np.random.default_rng(d).standard_normal((3, d))
    X[0, ::97] *= 40.0
    X[1] = 0.0
    X[2] = -0.75
    return X.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d,bucket,clip", [(1, None, None), (1000, 128, 2.5), (100_003, 512, None),
                                           (1 << 20, None, 2.5), (70_001, 4096, 1.0)])
def test_terngrad_cupy_matches_cpu(d, bucket, clip, dtype):
    n = 3
    X = _outliers(d, dtype)
    gens = lambda: [np.random.default_rng(90 + i) for i in range(n)]  # noqa: E731
    c = TernGrad(clip=clip, bucket=bucket)
    ref = c.compress_batch(X, gens())
    keys = cupy.asarray(draw_keys(gens(), n))  # device keys are accepted too
    buf, offsets, nbits = compress_terngrad(cupy.asarray(X), keys, clip=clip, bucket=bucket)
    assert isinstance(buf, cupy.ndarray)
    np.testing.assert_array_equal(offsets, ref.offsets)
    np.testing.assert_array_equal(nbits, ref.nbits)
    np.testing.assert_array_equal(buf.get(), ref.buffer)
    Y = decompress_terngrad(buf, offsets, d, dtype, bucket=bucket)
    assert isinstance(Y, cupy.ndarray)
    np.testing.assert_array_equal(Y.get(), c.decompress_batch(ref))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d,bucket", [(1, None), (1000, 128), (100_003, 512), (1 << 20, None), (70_001, 4096)])
def test_onebit_cupy_matches_cpu(d, bucket, dtype):
    X = _outliers(d, dtype)
    c = OneBit(bucket=bucket)
    ref = c.compress_batch(X)
    buf, offsets, nbits = compress_onebit(cupy.asarray(X), bucket=bucket)
    assert isinstance(buf, cupy.ndarray)
    np.testing.assert_array_equal(offsets, ref.offsets)
    np.testing.assert_array_equal(buf.get(), ref.buffer)
    Y, got_bits = decompress_onebit(buf, offsets, d, dtype, bucket=bucket, return_nbits=True)
    assert isinstance(Y, cupy.ndarray)
    np.testing.assert_array_equal(Y.get(), c.decompress_batch(ref))
    np.testing.assert_array_equal(got_bits, ref.nbits)
