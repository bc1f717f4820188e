"""The top-k CUDA kernels (radix select, compaction, index coding), byte for byte against the CPU path.

Runs under Numba's CUDA simulator where no GPU is present (tests/conftest.py); sizes stay small.
tests/test_gpu_device.py repeats the comparison at large d on a real GPU.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numba import cuda

from simdist import DecodeError
from simdist._validate import NonFiniteInput
from simdist.compressors.topk import TopK
from simdist.gpu import backend
from simdist.gpu.codecs_topk import compress_topk, decompress_topk

if not cuda.is_available():
    pytest.skip("no CUDA GPU and the CUDA simulator is off (NUMBA_ENABLE_CUDASIM=0)", allow_module_level=True)

host = backend.to_host
# the simulator's float32 cast of a float64 beyond the range warns (the kernel flags it)
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")


def _matrix(n, d, dtype, seed, kind="normal"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * np.exp(rng.uniform(-3, 3, size=(n, 1)))
    if kind == "ties":  # few distinct magnitudes: the k-th one is shared by many entries
        X = rng.integers(-3, 4, size=(n, d)).astype(np.float64)
    elif kind == "zeros":  # a zero row (+0.0 and -0.0 tie), next to normal rows
        X[0] = 0.0
        X[0, ::3] = -0.0
    elif kind == "tiny":  # subnormal float32 magnitudes: the keys' low digits decide
        X = X * 1e-41
    return np.ascontiguousarray(X.astype(dtype))


def _check(X, k=None, ratio=None):
    n, d = X.shape
    c = TopK(k=k, ratio=ratio)
    ref = c.compress_batch(X)
    buf, offsets, nbits = compress_topk(X, k=k, ratio=ratio)
    np.testing.assert_array_equal(host(buf), ref.buffer)
    np.testing.assert_array_equal(offsets, ref.offsets)
    np.testing.assert_array_equal(nbits, ref.nbits)
    Y, got_bits = decompress_topk(buf, offsets, d, X.dtype, k=k, ratio=ratio, return_nbits=True)
    Y = host(Y)
    assert Y.dtype == X.dtype
    np.testing.assert_array_equal(Y, c.decompress_batch(ref))
    np.testing.assert_array_equal(got_bits, ref.nbits)
    return Y


def test_golden_bytes_and_doc_example():
    x = np.array([[0.5, -3.0, 1.0, 2.0]], np.float32)
    buf, offsets, nbits = compress_topk(x, k=2)
    assert host(buf).tobytes() == TopK(k=2).compress_batch(x).buffer.tobytes()
    assert nbits.tolist() == [73]


CASES = [  # (n, d, k, ratio, dtype, kind)
    (1, 1, 1, None, np.float32, "normal"),      # d = 1: zero-width fixed indices
    (3, 37, 5, None, np.float32, "normal"),
    (2, 100, None, 0.1, np.float64, "ties"),    # ties at the k-th magnitude: lowest indices win
    (3, 60, 20, None, np.float32, "ties"),
    (2, 120, 120, None, np.float32, "normal"),  # k = d
    (3, 64, 7, None, np.float64, "zeros"),      # a zero row: the first k indices, -0.0 kept as such
    (2, 200, 3, None, np.float32, "tiny"),      # subnormals; large gaps (gap mode)
    (2, 150, None, 0.5, np.float64, "normal"),  # dense: fixed-width mode
]


@pytest.mark.parametrize("n,d,k,ratio,dtype,kind", CASES)
def test_bytes_and_values_match_cpu(n, d, k, ratio, dtype, kind):
    _check(_matrix(n, d, dtype, seed=7 * d + n, kind=kind), k=k, ratio=ratio)


def test_ties_go_to_the_lowest_index():
    x = np.array([[1.0, -2.0, 2.0, -1.0, 2.0, 0.5, -2.0]], np.float32)
    Y = _check(x, k=2)
    assert np.flatnonzero(Y[0]).tolist() == [1, 2]  # three entries of magnitude 2: the first two
    Y = _check(x, k=5)
    assert np.flatnonzero(Y[0]).tolist() == [0, 1, 2, 4, 6]


def test_one_vector_is_one_row():
    x = _matrix(1, 50, np.float64, seed=2)[0]
    buf, _, _ = compress_topk(x, ratio=0.2)
    assert host(buf).tobytes() == TopK(ratio=0.2).compress(x).to_bytes()


def test_rejects_nonfinite_overflow_and_bad_parameters():
    X = _matrix(2, 30, np.float32, seed=4)
    X[1, 7] = np.nan
    with pytest.raises(NonFiniteInput):
        compress_topk(X, k=3)
    X[1, 7] = -np.inf
    with pytest.raises(NonFiniteInput):
        compress_topk(X, k=3)
    big = np.array([[1.0, 1e300, 2.0]])  # a kept float64 value beyond float32
    with pytest.raises(ValueError, match="float32 range"):
        compress_topk(big, k=1)
    with pytest.raises(ValueError, match="k must be in"):
        compress_topk(np.ones((1, 3), np.float32), k=4)
    with pytest.raises(ValueError, match="exactly one"):
        compress_topk(np.ones((1, 3), np.float32), k=1, ratio=0.5)


# --- the decoder: malformed messages -------------------------------------------------------------------


def _message(k=2):
    x = np.array([[0.5, -3.0, 1.0, 2.0, 0.0, 0.25]], np.float32)
    return np.array(TopK(k=k).compress_batch(x).buffer)


def _decode(data, d=6, k=2):
    return decompress_topk(data, np.array([0, data.size], np.int64), d, np.float32, k=k)


@pytest.mark.parametrize("edit,match", [
    (lambda a: a[:-1], "truncated"),
    (lambda a: np.append(a, 0), "trailing"),
    (lambda a: np.concatenate([a[:-1], a[-1:] | np.uint8(1)]), "trailing"),  # a padding bit
])
def test_decoder_rejects(edit, match):
    data = _message()
    _decode(data)
    with pytest.raises(DecodeError, match=match):
        _decode(edit(data))


def test_decoder_rejects_wrong_count_dimension_and_nan():
    data = _message()
    with pytest.raises(DecodeError, match="inconsistent"):
        _decode(data, k=3)  # the message holds 2
    with pytest.raises(DecodeError):
        _decode(data, d=7)  # the end gap does not reach d
    ref = TopK(k=1).compress_batch(np.array([[3.0, 0, 0]], np.float32))
    nb = int(ref.nbits[0])
    bits = np.unpackbits(np.array(ref.buffer))
    bits[nb - 32 : nb] = np.unpackbits(np.array([0x7F, 0xC0, 0, 0], np.uint8))  # the value: a NaN
    bad = np.packbits(bits)
    with pytest.raises(DecodeError, match="non-finite"):
        decompress_topk(bad, np.array([0, bad.size]), 3, k=1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draw=st.data(), d=st.integers(1, 12), k=st.integers(1, 3), size=st.integers(1, 20))
def test_decoder_fuzz_agrees_with_cpu(draw, d, k, size):
    """Random bytes: DecodeError exactly when the CPU decoder (with the trailing check) raises,
    otherwise the same values and length."""
    k = min(k, d)
    c = TopK(k=k)
    buf = np.frombuffer(draw.draw(st.binary(min_size=size, max_size=size)), np.uint8).copy()
    off = np.array([0, buf.size], np.int64)
    try:
        want, want_bits = c._decode_checked(buf, off, d, np.float32, None)
    except DecodeError:
        with pytest.raises(DecodeError):
            decompress_topk(buf, off, d, np.float32, k=k)
        return
    got, bits = decompress_topk(buf, off, d, np.float32, k=k, return_nbits=True)
    np.testing.assert_array_equal(host(got), want)
    np.testing.assert_array_equal(bits, want_bits)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 999), flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=2))
def test_decoder_bitflips_agree_with_cpu(seed, flips):
    c = TopK(k=3)
    buf = np.array(c.compress_batch(_matrix(1, 40, np.float32, seed=seed)).buffer)
    for f in flips:
        buf[(f >> 3) % buf.size] ^= np.uint8(1 << (f & 7))
    off = np.array([0, buf.size], np.int64)
    try:
        want = c._decode_checked(buf, off, 40, np.float32, None)[0]
    except DecodeError:
        with pytest.raises(DecodeError):
            decompress_topk(buf, off, 40, np.float32, k=3)
        return
    np.testing.assert_array_equal(host(decompress_topk(buf, off, 40, np.float32, k=3)), want)
