"""The Elias-coded QSGD CUDA kernels (and the scan they use), byte for byte against the CPU path.

Runs under Numba's CUDA simulator where no GPU is present (tests/conftest.py), so sizes stay small
(n d <= ~1000: the simulator runs each CUDA thread as a Python thread). tests/test_gpu_device.py
repeats the comparison at large d on a real GPU.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numba import cuda

from simdist import DecodeError
from simdist._validate import NonFiniteInput
from simdist.coding.elias import delta_str, omega_str
from simdist.compressors.qsgd import QSGD
from simdist.gpu import backend
from simdist.gpu import bitstream as BS
from simdist.gpu.codecs_qsgd_elias import compress_qsgd_elias, decompress_qsgd_elias
from simdist.gpu.scan import inclusive_scan
from simdist.rng import draw_keys

if not cuda.is_available():
    pytest.skip("no CUDA GPU and the CUDA simulator is off (NUMBA_ENABLE_CUDASIM=0)", allow_module_level=True)

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # SplitMix64 wraps

host = backend.to_host


def _matrix(n, d, dtype, seed, kind="normal"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * np.exp(rng.uniform(-3, 3, size=(n, 1)))
    if kind == "zeros":  # a zero row (scale 0: no nonzeros), -0.0 included, next to normal rows
        X[0] = 0.0
        X[0, ::2] = -0.0
    elif kind == "sparse":  # long zero runs: distances >= 64 (the CPU's general path)
        X[:, rng.random(d) < 0.97] = 0.0
    elif kind == "ties":
        X = np.round(X * 2) / 2
    return np.ascontiguousarray(X.astype(dtype))


def _gens(n, seed):
    return [np.random.default_rng(seed + i) for i in range(n)]


# --- the building blocks -----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 7, 1024, 1025, 2500])
def test_scan_matches_numpy(count):
    a = np.random.default_rng(count).integers(0, 2**40, count).astype(np.int64)
    s = a.copy()
    inclusive_scan(s)
    np.testing.assert_array_equal(s, np.cumsum(a))
    m = a.copy()
    inclusive_scan(m, use_max=True)
    np.testing.assert_array_equal(m, np.maximum.accumulate(a))


def test_code_lengths_match_the_string_codes():
    ks = np.array([1, 2, 3, 4, 7, 8, 15, 16, 100, 1000, 4095, 4096, 2**20, 2**31 - 1], np.int64)
    for which, ref in ((0, omega_str), (1, delta_str)):
        lens = cuda.to_device(np.zeros(ks.size, np.int64))
        BS.code_probe[1, ks.size](ks, np.full(ks.size, which, np.int64), lens)
        assert host(lens).tolist() == [len(ref(int(k))) for k in ks]


# --- bytes identical to QSGD(encoding="elias").compress_batch ----------------------------------------------

X5 = np.array([[0.5, -0.25, 0.0, 1.0, -2.0]], np.float32)


def test_golden_bytes():
    ref = QSGD(s=2, bucket=3).compress_batch(X5, _gens(1, 7))
    buf, offsets, nbits = compress_qsgd_elias(X5, draw_keys(_gens(1, 7), 1), s=2, bucket=3)
    assert host(buf).tobytes() == ref.buffer.tobytes()
    assert offsets.tolist() == ref.offsets.tolist() and nbits.tolist() == ref.nbits.tolist()


CASES = [  # (n, d, bucket, s, norm, dtype, kind)
    (1, 1, None, 1, "l2", np.float32, "normal"),
    (3, 37, 10, 4, "l2", np.float32, "normal"),     # partial last bucket
    (2, 37, 10, 3, "max", np.float64, "normal"),
    (3, 50, 16, 2, "l2", np.float64, "zeros"),     # a zero row between normal ones
    (2, 300, None, 1, "l2", np.float32, "sparse"),  # distances >= 64
    (3, 200, 64, 16, "l2", np.float64, "ties"),
    (2, 150, 50, 2**20, "l2", np.float32, "normal"),  # levels > 32 and 42-bit omega codes
    (2, 129, 1000, 255, "max", np.float32, "normal"),  # bucket > d
]


@pytest.mark.parametrize("n,d,bucket,s,norm,dtype,kind", CASES)
def test_bytes_and_values_match_cpu(n, d, bucket, s, norm, dtype, kind):
    X = _matrix(n, d, dtype, seed=10 * d + n, kind=kind)
    c = QSGD(s=s, norm=norm, bucket=bucket)
    ref = c.compress_batch(X, _gens(n, 500))
    buf, offsets, nbits = compress_qsgd_elias(X, draw_keys(_gens(n, 500), n), s=s, bucket=bucket, norm=norm)
    np.testing.assert_array_equal(host(buf), ref.buffer)
    np.testing.assert_array_equal(offsets, ref.offsets)
    np.testing.assert_array_equal(nbits, ref.nbits)
    Y, got_bits = decompress_qsgd_elias(buf, offsets, d, dtype, s=s, bucket=bucket, return_nbits=True)
    Y = host(Y)
    assert Y.dtype == dtype
    np.testing.assert_array_equal(Y, c.decompress_batch(ref))
    np.testing.assert_array_equal(got_bits, ref.nbits)


def test_one_vector_is_one_row():
    x = _matrix(1, 40, np.float64, seed=3)[0]
    buf, _, _ = compress_qsgd_elias(x, draw_keys(_gens(1, 9), 1), s=8, bucket=16)
    assert host(buf).tobytes() == QSGD(s=8, bucket=16).compress(x, _gens(1, 9)[0]).to_bytes()


def test_rejects_nonfinite_overflow_and_bad_parameters():
    keys = np.array([1, 2], np.uint64)
    X = _matrix(2, 20, np.float32, seed=4)
    X[1, 13] = np.nan
    with pytest.raises(NonFiniteInput):
        compress_qsgd_elias(X, keys, s=4, bucket=8)
    with pytest.raises(ValueError, match="float32 range"):
        compress_qsgd_elias(np.array([[1e200, 1e200, 1.0]]), keys[:1], s=4)
    with pytest.raises(ValueError, match="s must"):
        compress_qsgd_elias(X, keys, s=0)
    with pytest.raises(ValueError, match="keys"):
        compress_qsgd_elias(np.ones((2, 3)), keys[:1], s=4)


# --- the decoder: malformed messages -------------------------------------------------------------------


def _message(s=2, bucket=3):
    ref = QSGD(s=s, bucket=bucket).compress_batch(X5, _gens(1, 7))
    return np.array(ref.buffer), int(ref.nbits[0])


def _decode(data, d=5, s=2, bucket=3):
    return decompress_qsgd_elias(data, np.array([0, data.size], np.int64), d, np.float64, s=s, bucket=bucket)


@pytest.mark.parametrize("edit,match", [
    (lambda a: a[:-1], "truncated"),
    (lambda a: np.append(a, 0), "trailing"),
    (lambda a: np.concatenate([a[:4] | np.uint8(0x80), a[4:]]), "out of range"),  # negative scale
    (lambda a: np.concatenate([[0x7F, 0xC0, 0, 0], a[4:]]).astype(np.uint8), "non-finite"),
    (lambda a: np.concatenate([[0, 0, 0, 0], a[4:]]).astype(np.uint8), "inconsistent"),  # zero scale, nonzeros
    (lambda a: np.concatenate([a[:4], [0xF0], a[5:]]).astype(np.uint8), "out of range"),  # first position > b+1
])
def test_decoder_rejects(edit, match):
    data, _ = _message()
    _decode(data)  # the unedited message decodes
    with pytest.raises(DecodeError, match=match):
        _decode(edit(data))


def test_decoder_rejects_nonzero_padding_and_names_the_row():
    data, nbits = _message()
    assert nbits % 8 != 0
    bad = data.copy()
    bad[-1] |= np.uint8(1)  # a padding bit
    with pytest.raises(DecodeError, match="trailing"):
        _decode(bad)
    two = np.concatenate([data, bad])
    with pytest.raises(DecodeError, match=r"row 1"):
        decompress_qsgd_elias(two, np.array([0, data.size, two.size]), 5, s=2, bucket=3)
    with pytest.raises(DecodeError, match="inconsistent"):  # offsets past the buffer
        decompress_qsgd_elias(data, np.array([0, data.size + 1]), 5, s=2, bucket=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draw=st.data(), d=st.integers(1, 9), s=st.integers(1, 5), bucket=st.sampled_from([None, 2, 4]),
       size=st.integers(4, 12))
def test_decoder_fuzz_agrees_with_cpu(draw, d, s, bucket, size):
    """Random bytes: the device decoder raises DecodeError exactly when the CPU decoder (with the base
    class's trailing-data check) does, and otherwise returns the same values and length."""
    c = QSGD(s=s, bucket=bucket)
    buf = np.frombuffer(draw.draw(st.binary(min_size=size, max_size=size)), np.uint8).copy()
    off = np.array([0, buf.size], np.int64)
    try:
        want, want_bits = c._decode_checked(buf, off, d, np.float64, None)
    except DecodeError:
        with pytest.raises(DecodeError):
            _decode(buf, d, s, bucket)
        return
    got, bits = decompress_qsgd_elias(buf, off, d, np.float64, s=s, bucket=bucket, return_nbits=True)
    np.testing.assert_array_equal(host(got), want)
    np.testing.assert_array_equal(bits, want_bits)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 999), flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=3))
def test_decoder_bitflips_agree_with_cpu(seed, flips):
    """Bit flips in a valid message (which mostly stay well-formed, unlike random bytes)."""
    c = QSGD(s=3, bucket=4)
    X = _matrix(1, 11, np.float32, seed=seed)
    buf = np.array(c.compress_batch(X, _gens(1, seed)).buffer)
    for f in flips:
        buf[(f >> 3) % buf.size] ^= np.uint8(1 << (f & 7))
    off = np.array([0, buf.size], np.int64)
    try:
        want = c._decode_checked(buf, off, 11, np.float32, None)[0]
    except DecodeError:
        with pytest.raises(DecodeError):
            decompress_qsgd_elias(buf, off, 11, np.float32, s=3, bucket=4)
        return
    np.testing.assert_array_equal(host(decompress_qsgd_elias(buf, off, 11, np.float32, s=3, bucket=4)), want)
