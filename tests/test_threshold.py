"""Threshold sparsification: bit-exact bytes, golden bytes, exact error, empty messages, fuzz."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simdist import DecodeError, compressors
from simdist.compressors.threshold import Threshold
from simdist.reference.sparse import ref_sparse_decode, ref_sparse_encode, ref_threshold_indices

GOLDEN_X = np.array([0.5, -2.0, 0.0, 3.0, -2.0, 1.0, 0.25, -0.125], np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 2, 33, 1000])
def test_kernel_equals_reference(dtype, d):
    rng = np.random.default_rng(d)
    vecs = [
        rng.standard_normal(d),
        np.zeros(d),
        -np.abs(rng.standard_normal(d)),
        rng.integers(-2, 3, d) * 0.5,  # entries exactly at tau = 0.5 and 1.0
    ]
    for v in vecs:
        x = v.astype(dtype)
        for tau in (1e-9, 0.5, 1.0, 2.5, 100.0):
            c = Threshold(tau)
            p = c.compress(x)
            data, nbits = ref_sparse_encode(x, ref_threshold_indices(x, tau))
            assert p.to_bytes() == data and p.nbits == nbits
            y = c.decompress(p)
            assert y.dtype == x.dtype
            assert np.array_equal(y, ref_sparse_decode(data, d, dtype)[0])


def test_golden_bytes_and_keep_rule():
    c = Threshold(1.0)
    p = c.compress(GOLDEN_X)
    # omega(5) = 101010, mode 0, gaps delta(2) delta(2) delta(1) delta(1) (10 bits < 4 x 3 fixed),
    # end gap delta(8 - 5) = 0101, then the four kept values as binary32
    assert (p.to_bytes().hex(), p.nbits) == ("a889ae000000020200000600000001fc000000", 149)
    assert c.decompress(p).tolist() == [0.0, -2.0, 0.0, 3.0, -2.0, 1.0, 0.0, 0.0]  # |x| >= tau kept


def test_nothing_kept_is_the_count_and_end_gap():
    c = Threshold(5.0)
    p = c.compress(GOLDEN_X)
    # omega(1) = 0, end gap delta(8 + 1) = 00100001
    assert (p.to_bytes(), p.nbits) == (b"\x10\x80", 9)
    assert c.decompress(p).tolist() == [0.0] * 8
    assert c.decompress(c.from_bytes(b"\x10\x80", 8)).tolist() == [0.0] * 8
    with pytest.raises(DecodeError, match="dim=9"):  # even an empty message names its dimension
        c.from_bytes(b"\x10\x80", 9)


def test_batch_rows_with_different_counts():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((7, 200)) * np.array([0.0, 0.1, 1, 2, 3, 10, 0.5])[:, None]
    c = Threshold(1.5)
    b = c.compress_batch(X)
    Y = c.decompress_batch(b)
    for i in range(7):
        kept = np.abs(X[i]) >= 1.5
        assert np.array_equal(Y[i], np.where(kept, X[i].astype(np.float32), 0.0))
        assert b[i].to_bytes() == c.compress(X[i]).to_bytes()
    assert b.nbits[0] == 1 + 14  # omega(1) + delta(201) = 00010001001001


@pytest.mark.parametrize("seed", range(4))
def test_exact_error_identity(seed):
    """||x - C(x)||^2 = sum of x_i^2 over |x_i| < tau, exactly (float32 input)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(3000).astype(np.float32)
    tau = 0.3 + seed * 0.5
    c = Threshold(tau)
    y = c.decompress(c.compress(x)).astype(np.float64)
    x64 = x.astype(np.float64)
    dropped = x64[np.abs(x64) < tau]
    assert math.fsum((x64 - y) ** 2) == math.fsum(dropped**2)
    assert c.exact_variance(x) == pytest.approx(math.fsum(dropped**2), rel=1e-12)
    assert c.unbiased is False and c.needs_rng is False


def test_decoder_rejects_bad_data():
    c = Threshold(0.5)
    p = c.compress(GOLDEN_X)
    data = p.to_bytes()
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            c.from_bytes(data[:cut], 8)
    with pytest.raises(DecodeError, match="trailing"):
        c.from_bytes(data + b"\x00", 8)
    with pytest.raises(DecodeError):  # the message claims more indices than d = 3 allows
        c.from_bytes(data, 3)


def _fuzz_one(data: bytes, d: int):
    c = Threshold(1.0)
    try:
        p = c.from_bytes(data, d)
    except DecodeError:
        with pytest.raises(DecodeError):
            ref_sparse_decode(data, d, np.float32)
        return
    y = c.decompress(p)
    assert y.shape == (d,) and np.all(np.isfinite(y))
    assert np.array_equal(y, ref_sparse_decode(data, d, np.float32)[0])


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=50), st.integers(1, 100))
def test_fuzz_random_bytes(data, d):
    _fuzz_one(data, d)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300), st.integers(0, 2**32 - 1), st.sampled_from(["cut", "flip", "append"]))
def test_fuzz_mutations(d, seed, kind):
    rng = np.random.default_rng(seed)
    x = (2 * rng.standard_normal(d)).astype(np.float32)
    data = bytearray(Threshold(1.0).compress(x).to_bytes())
    if kind == "cut":
        data = data[: int(rng.integers(0, len(data)))]
    elif kind == "flip":
        i = int(rng.integers(0, 8 * len(data)))
        data[i // 8] ^= 1 << (7 - i % 8)
    else:
        data += bytes(rng.integers(0, 256, int(rng.integers(1, 4)), dtype=np.uint8))
    _fuzz_one(bytes(data), d)


def test_bad_parameters():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"tau must be in \(0.0, inf\]"):
            Threshold(bad)
    with pytest.raises(TypeError, match="tau must be a real number"):
        Threshold("1")
    with pytest.raises(TypeError):
        Threshold()
    with pytest.raises(ValueError, match="float32"):
        Threshold(1.0).compress(np.array([1e300, 0.0]))
    c = compressors.make("threshold", tau=0.25)
    assert c.get_config() == {"name": "threshold", "tau": 0.25}
    assert compressors.make(c.get_config()) == c
