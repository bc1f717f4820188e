"""Rand-k: shared-key sampler, bit-exact bytes, unbiasedness (scaled), contraction, fuzz."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simdist import DecodeError, compressors
from simdist.compressors.randk import RandK
from simdist.kernels.sparse import randk_indices, splitmix64
from simdist.reference.sparse import ref_randk_decode, ref_randk_encode, ref_randk_indices
from simdist.rng import shared_rng

GOLDEN_X = np.array([0.5, -2.0, 0.0, 3.0, -2.0, 1.0, 0.25, -0.125], np.float32)


def _kernel_indices(key, d, k):
    out = np.empty(k, np.int64)
    mask = np.zeros(d, np.uint8)
    randk_indices(key, d, k, mask, out)
    assert not mask.any()  # the scratch mask is left zeroed
    return out.tolist()


# --- the sampler ------------------------------------------------------------------------------


def test_splitmix64_test_vector():
    # first output of splitmix64 from state 0 (Steele, Lea, Flood 2014; Vigna's reference code)
    state, z = splitmix64(np.uint64(0))
    assert int(z) == 0xE220A8397B1DCDAF and int(state) == 0x9E3779B97F4A7C15


def test_sampler_golden_and_reference():
    assert ref_randk_indices(12345, 100, 5) == [0, 16, 42, 81, 86]
    assert ref_randk_indices(2**63 - 1, 1000, 3) == [149, 840, 994]
    assert ref_randk_indices(0, 10, 10) == list(range(10))
    rng = np.random.default_rng(0)
    for _ in range(300):
        d = int(rng.integers(1, 2000))
        k = int(rng.integers(1, d + 1))  # both branches: sort (64 k < d) and mask scan
        key = int(rng.integers(-(2**63), 2**63))  # any int64 key (taken mod 2**64)
        assert _kernel_indices(key, d, k) == ref_randk_indices(key, d, k)


def test_sampler_inclusion_is_uniform():
    """Each index is kept with probability k/d (z-test per index).

    With 20000 keys, d = 50, k = 7: a count is Binomial(20000, 0.14); |z| < 5 for all 50
    indices fails with probability < 50 * 5.7e-7 = 3e-5 for a correct sampler.
    """
    d, k, n = 50, 7, 20000
    counts = np.zeros(d)
    for key in range(n):
        counts[_kernel_indices(key * 0x9E3779B9 + 1, d, k)] += 1
    p = k / d
    z = (counts - n * p) / np.sqrt(n * p * (1 - p))
    assert np.max(np.abs(z)) < 5, z


def test_same_key_same_indices_on_every_node():
    """Nodes derive the key from the shared seed: identical supports, and a node can decode
    another node's message with its own copy of the key."""
    d, k, seed, step = 1000, 10, 11, 3
    c = RandK(k=k)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(d).astype(np.float32) for _ in range(4)]
    payloads = [c.compress(x, shared_rng(seed, step)) for x in xs]
    keys = {p.key for p in payloads}
    assert len(keys) == 1
    supports = [np.flatnonzero(c.decompress(p)).tolist() for p in payloads]
    assert all(s == supports[0] for s in supports) and len(supports[0]) == k
    # the receiver rebuilds the message from bytes with its own key
    own_key = int(shared_rng(seed, step).integers(2**63, dtype=np.int64))
    assert own_key == payloads[0].key
    y = c.decompress(c.from_bytes(payloads[2].to_bytes(), d, key=own_key))
    assert np.array_equal(y[supports[0]], xs[2][supports[0]])
    # a different step gives a different support (with overwhelming probability)
    other = c.compress(xs[0], shared_rng(seed, step + 1))
    assert np.flatnonzero(c.decompress(other)).tolist() != supports[0]


# --- bytes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("d", [1, 2, 17, 300])
def test_kernel_equals_reference(dtype, scaled, d):
    rng = np.random.default_rng(d)
    vecs = [rng.standard_normal(d), np.zeros(d), -np.abs(rng.standard_normal(d)), rng.integers(-2, 3, d)]
    for v in vecs:
        x = v.astype(dtype)
        for k in sorted({1, max(1, d // 3), d}):
            c = RandK(k=k, scaled=scaled)
            p = c.compress(x, np.random.default_rng(k))
            scale = d / k if scaled else 1.0
            data, nbits = ref_randk_encode(x, p.key, k, scale)
            assert p.to_bytes() == data and p.nbits == nbits == 32 * k
            y = c.decompress(p)
            assert y.dtype == x.dtype
            assert np.array_equal(y, ref_randk_decode(data, d, k, p.key, dtype, scale))


def test_golden_bytes():
    c = RandK(k=3)
    p = c.compress(GOLDEN_X, np.random.default_rng(42))
    assert p.key == 7138484576005690180
    # indices [1, 5, 6]: -2.0, 1.0, 0.25 as big-endian binary32
    assert (p.to_bytes().hex(), p.nbits) == ("c00000003f8000003e800000", 96)
    assert c.decompress(p).tolist() == [0, -2.0, 0, 0, 0, 1.0, 0.25, 0]
    s = RandK(k=3, scaled=True)
    ps = s.compress(GOLDEN_X, np.random.default_rng(42))
    assert ps.to_bytes() == p.to_bytes()  # the scale d/k is applied by the decoder
    assert s.decompress(ps).tolist() == [float(np.float32(v * 8 / 3)) for v in c.decompress(p)]


def test_batch_one_generator_and_per_row_generators():
    X = np.random.default_rng(2).standard_normal((6, 100))
    c = RandK(ratio=0.1, scaled=True)
    b = c.compress_batch(X, np.random.default_rng(5))
    assert b.keys.shape == (6,) and len(set(b.keys.tolist())) == 6
    Y = c.decompress_batch(b)
    for i in range(6):
        assert np.count_nonzero(Y[i]) == 10
        assert np.array_equal(Y[i], c.decompress(b[i]))
    gens = [np.random.default_rng(i) for i in range(6)]
    b2 = c.compress_batch(X, gens)
    for i in range(6):
        assert b2[i].to_bytes() == c.compress(X[i], np.random.default_rng(i)).to_bytes()


def test_decoding_needs_the_key_and_rejects_bad_data():
    c = RandK(k=2)
    p = c.compress(GOLDEN_X, np.random.default_rng(0))
    with pytest.raises(ValueError, match="key"):
        c.from_bytes(p.to_bytes(), 8)
    with pytest.raises(DecodeError, match="truncated"):
        c.from_bytes(p.to_bytes()[:-1], 8, key=p.key)
    with pytest.raises(DecodeError, match="trailing"):
        c.from_bytes(p.to_bytes() + b"\x00", 8, key=p.key)
    nan = np.array([np.nan, 1.0], ">f4").tobytes()
    with pytest.raises(DecodeError, match="non-finite"):
        c.from_bytes(nan, 8, key=p.key)
    # a finite float32 that overflows once scaled by d/k is rejected, not returned as inf
    big = np.array([3e38, 1.0], ">f4").tobytes()
    with pytest.raises(DecodeError, match="non-finite"):
        RandK(k=2, scaled=True).from_bytes(big, 8, key=p.key)
    with pytest.raises(ValueError, match="float32"):
        RandK(k=8).compress(np.full(8, 1e300), np.random.default_rng(0))
    with pytest.raises(ValueError, match="overflows"):
        RandK(k=1, scaled=True).compress(np.full(8, 3e38, np.float32), np.random.default_rng(0))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=40), st.integers(1, 50), st.integers(1, 5), st.integers(0, 2**63 - 1), st.booleans())
def test_fuzz_random_bytes(data, d, k, key, scaled):
    c = RandK(k=min(k, d), scaled=scaled)
    try:
        p = c.from_bytes(data, d, key=key)
    except DecodeError:
        with pytest.raises(DecodeError):  # the reference rejects it too
            ref_randk_decode(data, d, c.k_for(d), key, np.float32, c._scale(d))
        return
    y = c.decompress(p)
    assert y.shape == (d,) and np.all(np.isfinite(y))
    assert np.array_equal(y, ref_randk_decode(data, d, c.k_for(d), key, np.float32, c._scale(d)))


# --- statistics -------------------------------------------------------------------------------


def _trials(c, x, n, seed):
    X = np.broadcast_to(x, (n, x.size)).copy()
    return c.decompress_batch(c.compress_batch(X, np.random.default_rng(seed))).astype(np.float64)


def test_scaled_is_unbiased():
    """z-test per coordinate: Y_i = x_i d/k with probability k/d, so Var Y_i = x_i^2 (d/k - 1).

    n = 40000 trials, d = 20: P(max_i |z_i| >= 5) < 20 * 5.7e-7 ~ 1e-5 for an unbiased compressor;
    a bias of 2% of x_i would give |z| ~ 0.02 sqrt(n / (d/k - 1)) ~ 2.3 per coordinate and shows
    in the mean relative error check below.
    """
    rng = np.random.default_rng(0)
    d, k, n = 20, 4, 40000
    x = rng.standard_normal(d).astype(np.float32)
    c = RandK(k=k, scaled=True)
    assert c.unbiased is True and RandK(k=k).unbiased is False
    Y = _trials(c, x, n, seed=1)
    x64 = x.astype(np.float64)
    se = np.abs(x64) * np.sqrt(d / k - 1) / np.sqrt(n)
    z = (Y.mean(axis=0) - x64) / se
    assert np.max(np.abs(z)) < 5, z
    # the unscaled one is biased toward 0 by the factor k/d: far outside the same band
    Yu = _trials(RandK(k=k), x, n, seed=1)
    zu = (Yu.mean(axis=0) - x64) / se
    assert np.max(np.abs(zu)) > 50


@pytest.mark.parametrize("scaled", [False, True])
def test_error_in_expectation_matches_exact_value(scaled):
    """Mean of ||C(x) - x||^2 over n trials against (1 - k/d)||x||^2 (unscaled: a k-contraction)
    or (d/k - 1)||x||^2 (scaled). z-test with the sample standard deviation, |z| < 5
    (false alarm < 6e-7 by the CLT)."""
    rng = np.random.default_rng(3)
    d, k, n = 64, 8, 20000
    x = rng.standard_normal(d).astype(np.float32)
    c = RandK(k=k, scaled=scaled)
    err = ((_trials(c, x, n, seed=4) - x.astype(np.float64)) ** 2).sum(axis=1)
    expected = c.exact_variance(x)
    n2 = float(np.dot(x.astype(np.float64), x.astype(np.float64)))
    assert expected == pytest.approx(((d / k - 1) if scaled else (1 - k / d)) * n2, rel=1e-12)
    assert c.variance_bound(x) == pytest.approx(expected, rel=1e-12)
    z = (err.mean() - expected) / (err.std(ddof=1) / np.sqrt(n))
    assert abs(z) < 5, z
    if not scaled:
        assert np.all(err <= n2 * (1 + 1e-6))  # never worse than sending nothing


# --- parameters -------------------------------------------------------------------------------


def test_bad_parameters():
    with pytest.raises(ValueError, match=r"k must be in \[1, inf\]"):
        RandK(k=0)
    with pytest.raises(ValueError, match=r"ratio must be in \(0.0, 1.0\]"):
        RandK(ratio=-0.1)
    with pytest.raises(ValueError, match="exactly one of k"):
        RandK()
    with pytest.raises(ValueError, match="exactly one of k"):
        RandK(k=1, ratio=0.1)
    with pytest.raises(TypeError, match="scaled must be a bool"):
        RandK(k=1, scaled="yes")
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\]"):
        RandK(k=4).compress(np.ones(3), np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        RandK(k=1).compress(np.ones(3))
    c = compressors.make({"name": "randk", "ratio": 0.5, "scaled": True})
    assert c.get_config() == {"name": "randk", "k": None, "ratio": 0.5, "scaled": True}
