"""QSGD: kernels vs the plain-Python reference (bit for bit), golden bytes, Lemma 3.1 and
Theorem 3.2 checks, the [D] identities against Monte Carlo, decoder fuzzing, parameter errors.

Statistical tests use fixed seeds; every tolerance is a z-score bound whose false-alarm
probability (if the code is right) is stated next to it.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simdist import DecodeError
from simdist.coding.bitio import BitWriter
from simdist.coding.elias import omega_str
from simdist.compressors import make
from simdist.compressors.qsgd import QSGD
from simdist.reference import qsgd as ref
from simdist.rng import batch_uniform_bits

# --- kernels == reference, bit for bit --------------------------------------------------------


def _vectors(d, seed):
    rng = np.random.default_rng(seed)
    one = np.zeros(d)
    one[d // 2] = -2.5
    sparse = np.zeros(d)
    idx = rng.choice(d, size=max(1, d // 40), replace=False)
    sparse[idx] = rng.standard_normal(idx.size) * 10.0 ** rng.integers(-3, 3, idx.size)
    return {
        "gauss": rng.standard_normal(d),
        "heavy": rng.standard_cauchy(d),
        "zero": np.zeros(d),
        "one": one,
        "sparse": sparse,  # long distances: the decoder's slow (non-table) path
        "const": np.full(d, -0.3),
    }


def _check_against_reference(c: QSGD, x: np.ndarray, seed: int):
    p = c.compress(x, np.random.default_rng(seed))
    words = batch_uniform_bits([np.random.default_rng(seed)], 1, x.size)[0]
    data, nbits = ref.encode(x, words, c.s, c.norm, c.bucket, c.encoding)
    assert p.to_bytes() == data, f"{c} bytes differ from the reference"
    assert p.nbits == nbits
    y = c.decompress(p)
    y_ref, nb = ref.decode(data, x.size, c.s, c.bucket, c.encoding, x.dtype)
    assert nb == nbits and y.dtype == x.dtype
    np.testing.assert_array_equal(y, y_ref)
    assert np.all(np.isfinite(y))


@pytest.mark.parametrize("encoding", ["elias", "fixed"])
@pytest.mark.parametrize("norm", ["l2", "max"])
@pytest.mark.parametrize("bucket", [None, 1, 7, 64, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_equals_reference(encoding, norm, bucket, dtype):
    for s in (1, 2, 16, 2**10):
        c = QSGD(s=s, norm=norm, bucket=bucket, encoding=encoding)
        for d in (1, 2, 9, 150):
            for name, x in _vectors(d, seed=d + s).items():
                _check_against_reference(c, x.astype(dtype), seed=s * 1000 + d)


@pytest.mark.parametrize("encoding", ["elias", "fixed"])
def test_kernel_equals_reference_large_s_and_long_gaps(encoding):
    # s = 2**20: level codes longer than 31 bits (split writes); d = 3000 sparse: long distances
    x = _vectors(3000, 5)["sparse"]
    for c in (QSGD(s=2**20, encoding=encoding), QSGD(s=3, bucket=1024, encoding=encoding)):
        _check_against_reference(c, x, seed=9)
        _check_against_reference(c, x.astype(np.float32), seed=10)


def test_batch_with_one_generator_matches_reference_rows():
    X = np.stack(list(_vectors(40, 3).values())).astype(np.float32)
    c = QSGD(s=5, bucket=16)
    batch = c.compress_batch(X, np.random.default_rng(11))
    W = batch_uniform_bits(np.random.default_rng(11), X.shape[0], X.shape[1])
    for i in range(X.shape[0]):
        data, nbits = ref.encode(X[i], W[i], 5, "l2", 16, "elias")
        assert batch[i].to_bytes() == data and batch[i].nbits == nbits


def test_worst_case_messages_fit_the_encoder_scratch_capacity():
    from simdist.coding.elias import code_lengths
    from simdist.kernels.qsgd import _row_capacity

    g = np.arange(1, 1 << 16)
    assert np.all(code_lengths("omega", g) <= 2 * g)  # the lemma behind the capacity bound
    rng = np.random.default_rng(0)
    for s, b, x in (
        (2**20, None, np.full(300, 1.0)),  # every level = s: the longest level codes
        (2**20, 1, rng.standard_normal(300)),  # one-entry buckets
        (1, 7, np.full(300, -2.0)),
        (3, 64, rng.standard_normal(300)),
    ):
        c = QSGD(s=s, bucket=b)
        nbits = c.compress(x, rng).nbits
        assert nbits <= _row_capacity(x.size, c._b(x.size), s, True, c._width)


def test_tiny_and_huge_values():
    tiny = np.array([1e-300, -3e-310, 0.0, 2e-305])  # the float64 sum of squares underflows to 0
    c = QSGD(s=4)
    _check_against_reference(c, tiny, seed=1)
    y = c.decompress(c.compress(tiny, np.random.default_rng(1)))
    assert np.all(np.isfinite(y))
    with pytest.raises(ValueError, match="x: .*float32"):
        c.compress(np.array([3e38, 3e38], np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="x: .*float32"):
        QSGD(norm="max").compress(np.array([1e300]), np.random.default_rng(0))


def test_single_nonzero_is_exact():
    x = np.zeros(100, np.float32)
    x[37] = -1.7
    for s in (1, 3, 2**20):
        for norm in ("l2", "max"):
            c = QSGD(s=s, norm=norm)
            np.testing.assert_array_equal(c.decompress(c.compress(x, np.random.default_rng(0))), x)


# --- golden bytes -----------------------------------------------------------------------------


def test_golden_bytes_hand_derived():
    # x = [3, -4, 0, 0], s = 5: ||x|| = 5, s r = [3, 4, 0, 0] exactly, so no randomness is used.
    # elias: 40a00000 (5.0f) | omega(1)=0 | 0 omega(3)=110 | omega(1)=0 | 1 omega(4)=101000 |
    #        omega(5 - 2 = 3)=110  ->  "0 0110 0 1101000 110" + padding = 0x33 0x46   (48 bits)
    # fixed: 40a00000 | 3+5=1000 | -4+5=0001 | 0101 | 0101 = 0x81 0x55                  (48 bits)
    x = np.array([3, -4, 0, 0], np.float32)
    for encoding, hexstr in (("elias", "40a000003346"), ("fixed", "40a000008155")):
        c = QSGD(s=5, encoding=encoding)
        p = c.compress(x, np.random.default_rng(0))
        assert p.to_bytes().hex() == hexstr and p.nbits == 48
        np.testing.assert_array_equal(c.decompress(p), x)


def test_golden_bytes_seeded():
    x = np.array([0.5, -1.25, 0.0, 2.0, 0.75, -0.1, 3.0], np.float32)
    expected = {"elias": ("401a4c650c8c404603351140", 94), "fixed": ("401a4c655247404603355480", 92)}
    for encoding, (hexstr, nbits) in expected.items():
        p = QSGD(s=4, bucket=4, encoding=encoding).compress(x, np.random.default_rng(42))
        assert (p.to_bytes().hex(), p.nbits) == (hexstr, nbits)


# --- statistics: unbiasedness and the [D] identities -------------------------------------------


def _samples(c, x, n, seed):
    X = np.broadcast_to(x, (n, x.size)).copy()
    return c.decompress_batch(c.compress_batch(X, np.random.default_rng(seed)))


def _per_entry_variance(c, x):
    """Exact Var[Q(x)_i] = (scale/s)^2 p_i (1 - p_i), from the reference scales."""
    b = x.size if c.bucket is None else c.bucket
    out = np.zeros(x.size)
    for lo in range(0, x.size, b):
        v = x[lo : lo + b]
        sc = ref.scale32(v, c.norm)
        if sc:
            t = c.s * np.abs(v) / sc
            p = t - np.floor(t)
            out[lo : lo + b] = (sc / c.s) ** 2 * p * (1 - p)
    return out


@pytest.mark.parametrize("cfg", [dict(s=2, bucket=16), dict(s=1), dict(s=3, norm="max", bucket=20)])
def test_unbiased(cfg):
    c = QSGD(**cfg)
    x = np.random.default_rng(7).standard_normal(64)
    n = 20000
    Y = _samples(c, x, n, seed=8)
    var = _per_entry_variance(c, x)
    mean = Y.mean(axis=0)
    det = var == 0
    np.testing.assert_allclose(mean[det], x[det], rtol=1e-12, atol=0)  # deterministic entries are exact
    z = (mean[~det] - x[~det]) / np.sqrt(var[~det] / n)
    # two-sided, Bonferroni over 64 entries: P(max |z| > 5.6) <= 64 * 2.1e-8 ~ 1.4e-6 if unbiased
    assert np.max(np.abs(z)) < 5.6, np.max(np.abs(z))


@pytest.mark.parametrize(
    "cfg", [dict(s=2), dict(s=4, bucket=32), dict(s=16, bucket=512), dict(s=3, norm="max", bucket=50)]
)
def test_exact_variance_and_expected_nnz_against_monte_carlo(cfg):
    c = QSGD(**cfg)
    x = np.random.default_rng(3).standard_normal(1000)
    n = 4000
    Y = _samples(c, x, n, seed=4)
    err = np.sum((Y - x) ** 2, axis=1)
    nnz = np.count_nonzero(Y, axis=1).astype(float)
    for sample, exact in ((err, c.exact_variance(x)), (nnz, c.expected_nnz(x))):
        se = sample.std(ddof=1) / math.sqrt(n)
        # two-sided z < 5: false alarm ~ 5.7e-7 per check (CLT on n = 4000 iid samples)
        assert abs(sample.mean() - exact) < 5 * se, (sample.mean(), exact, se)


def test_exact_variance_known_value():
    # x = [3, 4], s = 2: scale 5, s r = [1.2, 1.6], p = [0.2, 0.6]: 25/4 (0.16 + 0.24) = 2.5
    c = QSGD(s=2)
    x = np.array([3.0, 4.0])
    assert c.exact_variance(x) == pytest.approx(2.5, rel=1e-12)
    assert c.expected_nnz(x) == pytest.approx(2.0)  # both l_i = 1
    assert c.variance_bound(x) == pytest.approx(min(2 / 4, math.sqrt(2) / 2) * 25, rel=1e-12)
    assert c.nnz_bound(x) == pytest.approx(2 * (2 + math.sqrt(2)))
    assert QSGD(s=1).expected_nnz(x) == pytest.approx(0.6 + 0.8)


# --- Lemma 3.1 and Theorem 3.2 ------------------------------------------------------------------


@pytest.mark.parametrize("s", [1, 2, 4, 16, 64])
@pytest.mark.parametrize("bucket", [None, 64, 512])
def test_lemma_3_1_bounds_hold(s, bucket):
    c = QSGD(s=s, bucket=bucket)
    for name, x in _vectors(1000, s).items():
        assert c.exact_variance(x) <= c.variance_bound(x), name
        assert c.expected_nnz(x) <= c.nnz_bound(x), name
    assert QSGD(s=s, norm="max").variance_bound(x) is None and QSGD(s=s, norm="max").nnz_bound(x) is None


def test_bucketed_variance_factor_b512_s16():
    c = QSGD(s=16, bucket=512)
    factor = math.sqrt(512) / 16  # 1.414
    for name, x in _vectors(4096, 1).items():
        nsq = float(np.sum(x * x))
        if nsq == 0:
            continue
        assert c.exact_variance(x) <= factor * nsq * (1 + 1e-6), name  # 1e-6: float32 scale rounding
        assert c.variance_bound(x) == pytest.approx(factor * nsq, rel=1e-6)


@pytest.mark.parametrize("d,s,bucket", [(1024, 2, None), (1024, 4, None), (1024, 32, None), (4096, 16, 512)])
def test_theorem_3_2_code_length(d, s, bucket):
    c = QSGD(s=s, bucket=bucket)
    x = np.random.default_rng(d + s).standard_normal(d)
    n = 300
    X = np.broadcast_to(x, (n, d)).copy()
    bits = c.compress_batch(X, np.random.default_rng(1)).nbits.astype(float)
    se = bits.std(ddof=1) / math.sqrt(n)
    # one-sided test of E[bits] <= bound: if the theorem holds, P(mean - 5 se > bound) < 3e-7
    assert bits.mean() - 5 * se <= c.bits_bound(x), (bits.mean(), c.bits_bound(x))
    assert QSGD(s=1).bits_bound(x) is None and QSGD(s=s, encoding="fixed").bits_bound(x) is None


def test_s_sqrt_d_is_much_shorter_than_fp32():
    d = 4096
    x = np.random.default_rng(0).standard_normal(d)
    p = QSGD(s=64).compress(x, np.random.default_rng(1))
    ratio = 32 * d / p.nbits
    # measured 11.6x (2.77 bits per entry); the paper's headline is "about 11x fewer bits"
    assert ratio > 10, ratio
    assert p.nbits <= QSGD(s=64).bits_bound(x)


def test_fixed_width():
    x = np.random.default_rng(0).standard_normal(100)
    for s, width in ((1, 2), (2, 3), (16, 6), (2**20, 22)):
        p = QSGD(s=s, encoding="fixed", bucket=30).compress(x, np.random.default_rng(0))
        assert p.nbits == 4 * 32 + 100 * width


# --- decoders: crafted malformed messages and fuzzing -------------------------------------------


def _f32bits(v):
    return struct.unpack(">I", struct.pack(">f", v))[0]


def _message(scale_bits, *codes):
    w = BitWriter()
    w.write(scale_bits, 32)
    for c in codes:
        w.write_str(c)
    return w.to_bytes()


GOOD = ["0", "0", omega_str(2), omega_str(2)]  # d = 2: first at 1, +level 2, distance 2 -> b + 1 = 3


@pytest.mark.parametrize(
    "data",
    [
        _message(_f32bits(1.0), omega_str(4)),  # first position 4 > b + 1 = 3
        _message(_f32bits(1.0), "0", "0", omega_str(3), omega_str(2)),  # level 3 > s = 2
        _message(_f32bits(1.0), "0", "0", "0", omega_str(3)),  # distance past b + 1
        _message(_f32bits(float("nan")), *GOOD),
        _message(_f32bits(float("inf")), *GOOD),
        _message(_f32bits(-1.0), *GOOD),
        _message(_f32bits(-0.0), omega_str(3)),  # sign bit set: refused even for zero
        _message(0, *GOOD),  # zero scale with a nonzero
        _message(_f32bits(1.0), "0", "0", omega_str(2)),  # truncated
        _message(_f32bits(1.0), *GOOD) + b"\x00",  # trailing byte
        _message(_f32bits(1.0), *GOOD, "1"),  # nonzero padding bit
        _message(_f32bits(1.0), "1" * 40),  # malformed omega prefix
    ],
)
def test_elias_decoder_rejects(data):
    c = QSGD(s=2)
    assert c.from_bytes(_message(_f32bits(1.0), *GOOD), 2).nbits > 0
    with pytest.raises(DecodeError):
        c.from_bytes(data, 2, dtype=np.float64)
    with pytest.raises(DecodeError):
        ref.decode(data, 2, 2, None, "elias", np.float64)


@pytest.mark.parametrize(
    "data",
    [
        _message(_f32bits(1.0), "101", "010"),  # code 5 > 2s = 4
        _message(0, "010", "011"),  # zero scale with a nonzero level
        _message(_f32bits(1.0)),  # truncated after the scale
        _message(_f32bits(1.0), "000", "100") + b"\x00",  # trailing byte
    ],
)
def test_fixed_decoder_rejects(data):
    c = QSGD(s=2, encoding="fixed")
    assert c.decompress(c.from_bytes(_message(_f32bits(1.0), "000", "100"), 2)).tolist() == [-1.0, 1.0]
    with pytest.raises(DecodeError):
        c.from_bytes(data, 2)
    with pytest.raises(DecodeError):
        ref.decode(data, 2, 2, None, "fixed")


def _decode_both(c, data, d):
    """Kernel and reference agree: both raise DecodeError, or both return the same array."""
    try:
        y = c.decompress(c.from_bytes(data, d, dtype=np.float64))
    except DecodeError:
        y = None
    try:
        y_ref, _ = ref.decode(data, d, c.s, c.bucket, c.encoding, np.float64)
    except DecodeError:
        y_ref = None
    assert (y is None) == (y_ref is None), (data.hex(), y, y_ref)
    if y is not None:
        assert y.shape == (d,) and np.all(np.isfinite(y))
        np.testing.assert_array_equal(y, y_ref)


FUZZ = [QSGD(s=3, bucket=5), QSGD(s=200, encoding="elias"), QSGD(s=3, bucket=5, encoding="fixed")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=40), d=st.integers(1, 20), which=st.integers(0, len(FUZZ) - 1))
def test_fuzz_random_bytes(data, d, which):
    _decode_both(FUZZ[which], data, d)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.integers(1, 40),
    which=st.integers(0, len(FUZZ) - 1),
    cut=st.integers(0, 400),
    flips=st.lists(st.integers(0, 10**6), max_size=3),
    extra=st.binary(max_size=3),
)
def test_fuzz_mutated_messages(seed, d, which, cut, flips, extra):
    c = FUZZ[which]
    x = np.random.default_rng(seed).standard_normal(d) * np.random.default_rng(seed + 1).integers(0, 2, d)
    msg = bytearray(c.compress(x, np.random.default_rng(seed)).to_bytes())
    for f in flips:
        if msg:
            msg[(f // 8) % len(msg)] ^= 1 << (f % 8)
    msg = msg[: max(0, len(msg) - cut % (len(msg) + 1))] if cut % 3 == 0 else msg
    _decode_both(c, bytes(msg) + extra, d)


# --- parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,exc,param",
    [
        (dict(s=0), ValueError, "s"),
        (dict(s=2**20 + 1), ValueError, "s"),
        (dict(s=2.5), TypeError, "s"),
        (dict(s="4"), TypeError, "s"),
        (dict(bucket=0), ValueError, "bucket"),
        (dict(bucket=1.5), TypeError, "bucket"),
        (dict(norm="l1"), ValueError, "norm"),
        (dict(encoding="huffman"), ValueError, "encoding"),
    ],
)
def test_bad_parameters(kwargs, exc, param):
    with pytest.raises(exc, match=rf"^{param} must"):
        QSGD(**kwargs)


def test_registry_and_config():
    c = make("qsgd", s=16, bucket=512, norm="max", encoding="fixed")
    assert isinstance(c, QSGD) and c.unbiased and c.needs_rng
    assert c.get_config() == {"name": "qsgd", "s": 16, "norm": "max", "bucket": 512, "encoding": "fixed"}
    assert make(c.get_config()) == c
    with pytest.raises(ValueError, match="dimension"):
        QSGD()._check_dim(2**31 - 1)
