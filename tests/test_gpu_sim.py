"""The CUDA kernels of simdist.gpu, checked byte for byte against the CPU compressors.

Runs under Numba's CUDA simulator (tests/conftest.py turns it on where no GPU is present), so the
kernels' logic is tested on every machine; on a GPU machine the same tests run on the device with
NumPy inputs. The simulator runs each CUDA thread as a Python thread: sizes stay tiny (d <= 300).
What the simulator cannot check (fused multiply-add contraction, CuPy inputs) is covered by
tests/test_gpu_device.py on a real GPU.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numba import cuda

from simdist import DecodeError
from simdist._validate import NonFiniteInput
from simdist.compressors.qsgd import QSGD
from simdist.compressors.sign import Sign
from simdist.gpu import backend
from simdist.gpu import codecs
from simdist.rng import draw_keys

if not cuda.is_available():
    pytest.skip("no CUDA GPU and the CUDA simulator is off (NUMBA_ENABLE_CUDASIM=0)", allow_module_level=True)

# SplitMix64 wraps uint64 products on purpose; under the simulator NumPy may warn about it.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

host = backend.to_host


def _matrix(n, d, dtype, seed, kind="normal"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * np.exp(rng.uniform(-3, 3, size=(n, 1)))
    if kind == "zeros":
        X[:] = 0.0
        X[0, ::2] = -0.0
    elif kind == "single":
        X[:] = 0.0
        X[:, d // 2] = -1.5
    elif kind == "ties":  # many equal magnitudes: levels exactly on the grid, p = 0 and 1 edges
        X = np.round(X * 2) / 2
    return np.ascontiguousarray(X.astype(dtype))


# --- golden bytes (the CPU compressors' messages, written out) ---------------------------------------

X5 = np.array([[0.5, -0.25, 0.0, 1.0, -2.0]], np.float32)


def test_golden_sign():
    buf, offsets, nbits = codecs.compress_sign(X5, bucket=2)
    assert host(buf).tobytes().hex() == "3ec000003f0000004000000048"
    assert offsets.tolist() == [0, 13] and nbits.tolist() == [101]


def test_golden_qsgd_fixed():
    keys = draw_keys([np.random.default_rng(7)], 1)
    buf, offsets, nbits = codecs.compress_qsgd_fixed(X5, keys, s=2, bucket=3)
    assert host(buf).tobytes().hex() == "3f0f1bbd6920078ddeb0"
    assert nbits.tolist() == [32 * 2 + 5 * 3]


# --- the summation order is part of the format ------------------------------------------------------
# Found by search: buckets whose float32 scale changes when the 8 float64 lanes are combined in
# another order (reversed for sign, sequentially for QSGD). Random Gaussian inputs almost never
# tell the orders apart (a float64 ulp rarely moves a float32 rounding), so these pin it.

SIGN_ORDER = np.array([2**-24, -2**-53, 2**-24, 0.5, -2**-25, 2**-53, 3.0, -3.0,
                       2**-25, 2**-25, 2**-53, -2**-53, 2**-53, 2**-25, 1.0, 2**-53])
QSGD_ORDER = np.array([2**-24, -2**-12, 1.0, 2**-12, -2**-12, 2**-24, -2**-12, -2**-26,
                       2**-24, 2**-26, 2**-12, -2**-27, 2**-12, -1.0, -2**-24, 0.5])


def test_sign_lane_order_is_reproduced():
    from simdist.reference.sign import lane_sum

    a = np.abs(SIGN_ORDER)
    lanes = a.reshape(2, 8).sum(axis=0)
    assert np.float32(lane_sum(a) / 16) != np.float32(sum(lanes[::-1].tolist()) / 16)  # order-sensitive
    X = SIGN_ORDER[None, :]
    buf, _, _ = codecs.compress_sign(X)
    np.testing.assert_array_equal(host(buf), Sign().compress_batch(X).buffer)


def test_qsgd_lane_order_is_reproduced():
    from simdist.reference.qsgd import scale32

    sq = (QSGD_ORDER.reshape(2, 8) ** 2).sum(axis=0)
    sc = max(float(np.sqrt(sum(sq.tolist()))), 1.0)  # lanes combined sequentially, not pairwise
    alt = np.float32(sc) if float(np.float32(sc)) >= sc else np.nextafter(np.float32(sc), np.float32(np.inf))
    assert scale32(QSGD_ORDER) != float(alt)  # order-sensitive
    X = QSGD_ORDER[None, :]
    keys = draw_keys([np.random.default_rng(3)], 1)
    buf, _, _ = codecs.compress_qsgd_fixed(X, keys, s=4)
    np.testing.assert_array_equal(host(buf), QSGD(s=4, encoding="fixed").compress_batch(X, [np.random.default_rng(3)]).buffer)


# --- sign: bytes identical to Sign.compress_batch ----------------------------------------------------

SIGN_CASES = [  # (d, bucket, scaled, dtype, kind)
    (1, None, True, np.float32, "normal"),
    (7, None, False, np.float64, "normal"),
    (37, 10, True, np.float32, "normal"),   # partial last bucket
    (37, 10, True, np.float64, "zeros"),    # -0.0 gives sign bit 0, scale 0
    (64, 8, True, np.float64, "single"),
    (300, 64, True, np.float32, "normal"),
    (300, None, True, np.float64, "ties"),
    (129, 500, True, np.float32, "normal"),  # bucket > d: one bucket
]


@pytest.mark.parametrize("d,bucket,scaled,dtype,kind", SIGN_CASES)
def test_sign_bytes_match_cpu(d, bucket, scaled, dtype, kind):
    X = _matrix(3, d, dtype, seed=d, kind=kind)
    c = Sign(scaled=scaled, bucket=bucket)
    ref = c.compress_batch(X)
    buf, offsets, nbits = codecs.compress_sign(X, scaled=scaled, bucket=bucket)
    np.testing.assert_array_equal(host(buf), ref.buffer)
    np.testing.assert_array_equal(offsets, ref.offsets)
    np.testing.assert_array_equal(nbits, ref.nbits)
    Y = host(codecs.decompress_sign(buf, offsets, d, dtype, scaled=scaled, bucket=bucket))
    assert Y.dtype == dtype
    np.testing.assert_array_equal(Y, c.decompress_batch(ref))


def test_sign_one_vector_is_one_row():
    x = _matrix(1, 20, np.float32, seed=3)[0]
    buf, _, _ = codecs.compress_sign(x, bucket=6)
    assert host(buf).tobytes() == Sign(bucket=6).compress(x).to_bytes()


def test_sign_rejects_nonfinite_and_overflow():
    X = _matrix(2, 20, np.float32, seed=4)
    X[1, 13] = np.nan
    with pytest.raises(NonFiniteInput):
        codecs.compress_sign(X, bucket=8)
    big = np.full((1, 4), 1e300)  # finite float64, mean |x| beyond float32
    with pytest.raises(ValueError, match="float32 range"):
        codecs.compress_sign(big)
    with pytest.raises(TypeError, match="float32 or float64"):
        codecs.compress_sign(np.ones((1, 3), np.int64))


# --- QSGD fixed: bytes identical to QSGD(encoding="fixed").compress_batch ------------------------------

QSGD_CASES = [  # (d, bucket, s, norm, dtype, kind)
    (1, None, 1, "l2", np.float32, "normal"),
    (37, 10, 4, "l2", np.float32, "normal"),
    (37, 10, 3, "max", np.float64, "normal"),
    (50, 16, 2, "l2", np.float64, "zeros"),
    (64, None, 7, "l2", np.float32, "single"),
    (300, 64, 16, "l2", np.float64, "ties"),
    (300, 100, 2**20, "l2", np.float32, "normal"),  # widest codes (22 bits)
    (129, 1000, 255, "max", np.float32, "normal"),
]


@pytest.mark.parametrize("d,bucket,s,norm,dtype,kind", QSGD_CASES)
def test_qsgd_fixed_bytes_match_cpu(d, bucket, s, norm, dtype, kind):
    n = 3
    X = _matrix(n, d, dtype, seed=100 + d, kind=kind)
    c = QSGD(s=s, norm=norm, bucket=bucket, encoding="fixed")
    ref = c.compress_batch(X, [np.random.default_rng(1000 + i) for i in range(n)])
    keys = draw_keys([np.random.default_rng(1000 + i) for i in range(n)], n)  # the same keys
    buf, offsets, nbits = codecs.compress_qsgd_fixed(X, keys, s=s, bucket=bucket, norm=norm)
    np.testing.assert_array_equal(host(buf), ref.buffer)
    np.testing.assert_array_equal(offsets, ref.offsets)
    np.testing.assert_array_equal(nbits, ref.nbits)
    Y = host(codecs.decompress_qsgd_fixed(buf, offsets, d, dtype, s=s, bucket=bucket))
    assert Y.dtype == dtype
    np.testing.assert_array_equal(Y, c.decompress_batch(ref))


def test_qsgd_keys_matter_and_are_checked():
    X = _matrix(2, 40, np.float32, seed=9)
    a = host(codecs.compress_qsgd_fixed(X, np.array([1, 2], np.uint64), s=2)[0])
    b = host(codecs.compress_qsgd_fixed(X, np.array([1, 3], np.uint64), s=2)[0])
    half = a.size // 2
    assert np.array_equal(a[:half], b[:half]) and not np.array_equal(a[half:], b[half:])
    with pytest.raises(ValueError, match="keys"):
        codecs.compress_qsgd_fixed(X, np.array([1], np.uint64), s=2)


def test_qsgd_rejects_nonfinite_and_overflow():
    X = _matrix(2, 20, np.float64, seed=5)
    X[0, 3] = -np.inf
    with pytest.raises(NonFiniteInput):
        codecs.compress_qsgd_fixed(X, np.array([1, 2], np.uint64), s=4, bucket=8)
    big = np.array([[1e200, 1e200, 1.0]])  # finite, but the sum of squares overflows float64
    with pytest.raises(ValueError, match="float32 range") as info:
        codecs.compress_qsgd_fixed(big, np.array([1], np.uint64), s=4)
    assert not isinstance(info.value, NonFiniteInput)
    with pytest.raises(ValueError, match="norm"):
        codecs.compress_qsgd_fixed(X, np.array([1, 2], np.uint64), s=4, norm="l1")


# --- decoders: malformed messages ----------------------------------------------------------------------


def _one_row(buf):
    data = np.array(host(buf), np.uint8)
    return data, np.array([0, data.size], np.int64)


def test_sign_decoder_rejects_bad_scales_and_lengths():
    data, off = _one_row(codecs.compress_sign(X5, bucket=2)[0])
    bad = data.copy(); bad[4] |= 0x80  # noqa: E702  (second scale negative)
    with pytest.raises(DecodeError, match="out of range"):
        codecs.decompress_sign(bad, off, 5, bucket=2)
    bad = data.copy(); bad[8:10] = [0x7F, 0xC0]  # noqa: E702  (third scale NaN)
    with pytest.raises(DecodeError, match="non-finite"):
        codecs.decompress_sign(bad, off, 5, bucket=2)
    with pytest.raises(DecodeError, match="truncated"):
        codecs.decompress_sign(data[:-1], np.array([0, data.size - 1]), 5, bucket=2)
    with pytest.raises(DecodeError, match="trailing"):
        codecs.decompress_sign(np.append(data, 0), np.array([0, data.size + 1]), 5, bucket=2)
    with pytest.raises(DecodeError, match="inconsistent"):
        codecs.decompress_sign(data, np.array([0, data.size + 13]), 5, bucket=2)


def test_qsgd_decoder_rejects_bad_codes():
    keys = draw_keys([np.random.default_rng(7)], 1)
    data, off = _one_row(codecs.compress_qsgd_fixed(X5, keys, s=2, bucket=3)[0])
    bad = data.copy(); bad[4] |= 0xE0  # noqa: E702  (first code 0b111 = 7 > 2s = 4)
    with pytest.raises(DecodeError, match="out of range"):
        codecs.decompress_qsgd_fixed(bad, off, 5, s=2, bucket=3)
    bad = data.copy(); bad[:4] = 0  # noqa: E702  (zero scale, nonzero levels)
    with pytest.raises(DecodeError, match="out of range"):
        codecs.decompress_qsgd_fixed(bad, off, 5, s=2, bucket=3)
    bad = data.copy(); bad[:4] = [0x7F, 0x80, 0, 0]  # noqa: E702  (infinite scale)
    with pytest.raises(DecodeError, match="non-finite"):
        codecs.decompress_qsgd_fixed(bad, off, 5, s=2, bucket=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draw=st.data(), d=st.integers(1, 9), s=st.integers(1, 5), bucket=st.sampled_from([None, 2, 4]),
       extra=st.one_of(st.just(0), st.integers(-2, 2)))
def test_qsgd_decoder_fuzz_agrees_with_cpu(draw, d, s, bucket, extra):
    """Random bytes (mostly of the format's exact length, sometimes truncated or with appended
    bytes): the device decoder raises DecodeError exactly when the CPU decoder does, and otherwise
    returns the CPU decoder's values (so they are finite and of the right shape)."""
    c = QSGD(s=s, bucket=bucket, encoding="fixed")
    rowbytes = (32 * -(-d // c._b(d)) + d * c._width + 7) >> 3
    size = max(0, rowbytes + extra)
    buf = np.frombuffer(draw.draw(st.binary(min_size=size, max_size=size)), np.uint8).copy()
    off = np.array([0, buf.size], np.int64)
    try:
        want = c._decode_batch(buf, off, d, np.float64, None)[0]
    except DecodeError:
        want = None
    if want is None or size != rowbytes:  # a wrong length is refused up front by the device decoder
        with pytest.raises(DecodeError):
            codecs.decompress_qsgd_fixed(buf, off, d, np.float64, s=s, bucket=bucket)
        return
    got = host(codecs.decompress_qsgd_fixed(buf, off, d, np.float64, s=s, bucket=bucket))
    assert got.shape == (1, d) and np.all(np.isfinite(got))
    np.testing.assert_array_equal(got, want)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 20), bucket=st.sampled_from([None, 3, 8]),
       flips=st.lists(st.integers(0, 10**6), max_size=3))
def test_sign_decoder_bitflips_agree_with_cpu(seed, d, bucket, flips):
    """Bit flips in a valid message: device and CPU decoders agree (both raise, or equal arrays)."""
    X = _matrix(1, d, np.float32, seed=seed % 1000)
    c = Sign(bucket=bucket)
    buf = np.array(c.compress_batch(X).buffer)
    for f in flips:
        buf[(f >> 3) % buf.size] ^= np.uint8(1 << (f & 7))
    off = np.array([0, buf.size], np.int64)
    try:
        want = c._decode_batch(buf, off, d, np.float32, None)[0]
    except DecodeError:
        with pytest.raises(DecodeError):
            codecs.decompress_sign(buf, off, d, np.float32, bucket=bucket)
        return
    np.testing.assert_array_equal(host(codecs.decompress_sign(buf, off, d, np.float32, bucket=bucket)), want)


# --- backend dispatch -----------------------------------------------------------------------------------


def test_backend_dispatch_by_array_type():
    x = np.arange(4.0)
    assert not backend.is_device_array(x) and backend.array_namespace(x) is np
    dev = cuda.to_device(x)
    assert backend.is_device_array(dev)
    np.testing.assert_array_equal(backend.to_host(dev), x)
    assert not backend.is_device_array([1.0, 2.0])

    class CAI:  # any producer of the CUDA array interface counts as a device array
        __cuda_array_interface__ = {"shape": (1,), "typestr": "<f4", "data": (0, False), "version": 3}

    assert backend.is_device_array(CAI())
