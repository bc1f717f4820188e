"""NUQSGD: kernel == reference bytes, golden bytes, unbiasedness, exact variance [D], the bound, fuzz."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _mutations import check_agrees_with_reference, check_mutation_outcome, mutate
from scipy.stats import norm as normal

from simdist import DecodeError, compressors
from simdist.compressors.nuqsgd import NUQSGD
from simdist.reference import nuqsgd as ref
from simdist.rng import batch_uniform_bits


def _vectors(rng, d, dtype):
    """Edge cases: gaussian, wide dynamic range, zero, all-negative, all-positive, one nonzero,
    sparse, constant, tiny float64 (underflow of squares)."""
    g = rng.standard_normal(d)
    one = np.zeros(d)
    one[rng.integers(d)] = -2.5
    vecs = [g, g * 10.0 ** rng.integers(-6, 6, d), np.zeros(d), -np.abs(g), np.abs(g) + 1e-3, one,
            np.where(rng.random(d) < 0.8, 0.0, g), np.full(d, 0.3),
            np.where(rng.random(d) < 0.5, -0.0, 0.0)]
    if dtype == np.float64:
        vecs.append(g * 1e-200)
    return [v.astype(dtype) for v in vecs]


CONFIGS = [dict(s=1), dict(s=4), dict(s=2, bucket=1), dict(s=3, bucket=5), dict(s=8, bucket=64), dict(s=30)]


def _sv(cfg):
    return dict(s=cfg["s"], bucket=cfg.get("bucket"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_kernel_matches_reference(cfg, dtype):
    rng = np.random.default_rng(21)
    c = NUQSGD(**cfg)
    for d in (1, 2, 3, 8, 70, 133):
        for x in _vectors(rng, d, dtype):
            seed = int(rng.integers(2**32))
            p = c.compress(x, np.random.default_rng(seed))
            words = batch_uniform_bits(np.random.default_rng(seed), 1, d)[0]
            msg, nbits = ref.encode(x, words, **_sv(cfg))
            assert p.to_bytes() == msg and p.nbits == nbits, (cfg, d, x)
            y = c.decompress(p)
            assert y.dtype == dtype and np.all(np.isfinite(y))
            np.testing.assert_array_equal(y, ref.decode(msg, d, **_sv(cfg)).astype(dtype))


def test_golden_bytes():
    x = np.array([0.5, -1.0, 0.25, 0.0, -0.75, 1.0, 0.1], np.float32)
    p = NUQSGD(s=2).compress(x, np.random.default_rng(0))
    assert (p.nbits, p.to_bytes().hex()) == (53, "3fd9696585b358")  # 32 + 7 * 3 bits
    p = NUQSGD(s=3, bucket=4).compress(x, np.random.default_rng(0))
    assert (p.nbits, p.to_bytes().hex()) == (92, "3f92a4763fa082dd60641840")  # 2 * 32 + 7 * 4 bits


def test_code_width_and_length():
    for s, w in [(1, 3), (2, 3), (3, 4), (6, 4), (7, 5), (14, 5), (15, 6), (30, 6)]:
        assert NUQSGD(s=s).compress(np.ones(10), np.random.default_rng(0)).nbits == 32 + 10 * w
    assert NUQSGD(s=4, bucket=4).compress(np.ones(10), np.random.default_rng(0)).nbits == 3 * 32 + 40


def test_values_are_neighbouring_levels():
    rng = np.random.default_rng(1)
    s = 3
    x = rng.standard_normal(200) * 10.0 ** rng.integers(-3, 3, 200)
    p = NUQSGD(s=s).compress(x, rng)
    nrm = float(np.frombuffer(p.to_bytes()[:4], ">f4")[0])
    assert np.linalg.norm(x) <= nrm <= np.linalg.norm(x) * (1 + 2**-23)
    q = np.abs(NUQSGD(s=s).decompress(p)) / nrm
    lev = ref.levels(s)
    r = np.abs(x) / nrm
    j = np.searchsorted(lev, r, side="right") - 1
    assert np.all((q == lev[j]) | (q == lev[np.minimum(j + 1, s + 1)]))
    assert np.all(np.sign(NUQSGD(s=s).decompress(p)) * np.sign(x) >= 0)


def _mc(c, x, n, seed):
    return c.decompress_batch(c.compress_batch(np.tile(x, (n, 1)), np.random.default_rng(seed)))


def _wire_norms(c, x):
    p = c.compress(x, np.random.default_rng(0))
    nb = -(-x.size // (c.bucket or x.size))
    return np.frombuffer(p.to_bytes()[: 4 * nb], ">f4").astype(np.float64)


def _exact_per_entry(x, s, b, norms):
    """Per-entry variance nrm^2 (u - r)(r - l) with the wire norms (direct, from the definition)."""
    lev = ref.levels(s)
    nrm = np.repeat(norms, b)[: x.size]
    r = np.minimum(np.abs(x) / np.where(nrm > 0, nrm, 1.0), 1.0)
    j = np.minimum(np.searchsorted(lev, r, side="right") - 1, s)
    return nrm**2 * (lev[j + 1] - r) * (r - lev[j])


def test_unbiased_z_test():
    x = np.random.default_rng(3).standard_normal(48)
    x[[4, 9]] = 0.0
    c = NUQSGD(s=2, bucket=16)
    n = 20000
    Y = _mc(c, x, n, seed=4)
    var = _exact_per_entry(x, 2, 16, _wire_norms(c, x))
    det = var == 0
    assert np.all(Y[:, det] == x[det])
    z = (Y[:, ~det].mean(axis=0) - x[~det]) / np.sqrt(var[~det] / n)
    # Bonferroni over the coordinates: false-alarm probability <= 1e-6 for the whole test.
    assert np.max(np.abs(z)) < normal.isf(1e-6 / (2 * z.size))


@pytest.mark.parametrize("s,bucket", [(1, None), (3, 10)])
def test_exact_variance_identity(s, bucket):
    x = np.random.default_rng(7).standard_normal(40)
    c = NUQSGD(s=s, bucket=bucket)
    b = bucket or 40
    direct = _exact_per_entry(x, s, b, [np.linalg.norm(x[i : i + b]) for i in range(0, 40, b)]).sum()
    assert c.exact_variance(x) == pytest.approx(direct, rel=1e-12)
    n = 20000
    err = np.sum((_mc(c, x, n, seed=8) - x) ** 2, axis=1)
    z = (err.mean() - c.exact_variance(x)) / (err.std(ddof=1) / np.sqrt(n))
    assert abs(z) < normal.isf(1e-6 / 2)  # CLT, false-alarm probability ~1e-6


def test_variance_bound_holds():
    rng = np.random.default_rng(9)
    for trial in range(200):
        d = int(rng.integers(1, 300))
        s = int(rng.integers(1, 12))
        bucket = [None, int(rng.integers(1, 50))][trial % 2]
        x = rng.standard_normal(d) * 10.0 ** rng.integers(-3, 3, d)
        if trial % 5 == 0:
            x[rng.random(d) < 0.9] = 0.0
        c = NUQSGD(s=s, bucket=bucket)
        b = min(bucket or d, d)
        bound = sum(
            float(v @ v) * (1 / 8 + min(v.size * 2.0 ** (-2 * s) / 4, np.sqrt(v.size) * 2.0**-s))
            for v in (x[i : i + b] for i in range(0, d, b))
        )
        assert c.variance_bound(x) == pytest.approx(bound, rel=1e-12)
        assert c.exact_variance(x) <= bound * (1 + 1e-12)


def _decode(c, data, d):
    return c.decompress(c.from_bytes(data, d, dtype=np.float64))


def test_decoder_rejects_malformed():
    c = NUQSGD(s=1)  # codes 0..4 in 3 bits: 0 = -1, 1 = -1/2, 2 = 0, 3 = 1/2, 4 = 1 (times the norm)
    two = bytes.fromhex("40000000")
    assert _decode(c, two + bytes([0b00001000, 0b10110000]), 4).tolist() == [-2.0, 0.0, -1.0, 1.0]
    with pytest.raises(DecodeError, match="out of range"):
        _decode(c, two + bytes([0b10100000]), 1)  # code 5 > 2s + 2
    with pytest.raises(DecodeError, match="out of range"):
        _decode(c, bytes.fromhex("c0000000") + bytes([0b01000000]), 1)  # negative norm
    with pytest.raises(DecodeError, match="non-finite"):
        _decode(c, bytes.fromhex("7f800000") + bytes([0b01000000]), 1)  # infinite norm
    with pytest.raises(DecodeError, match="truncated"):
        _decode(c, two, 1)
    with pytest.raises(DecodeError, match="trailing"):
        _decode(c, two + bytes([0b01000001]), 1)  # non-zero padding


FUZZ = [(NUQSGD(s=1), 9), (NUQSGD(s=5, bucket=4), 9), (NUQSGD(s=30, bucket=3), 7)]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(range(len(FUZZ))), st.binary(max_size=24))
def test_fuzz_random_bytes_agree_with_reference(which, data):
    c, d = FUZZ[which]
    check_agrees_with_reference(c, data, d, lambda b: ref.decode(b, d, s=c.s, bucket=c.bucket))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(range(len(FUZZ))), st.integers(0, 2**32 - 1), st.data())
def test_fuzz_mutations(which, seed, data):
    c, d = FUZZ[which]
    x = np.random.default_rng(seed).standard_normal(d)
    msg = bytearray(c.compress(x, np.random.default_rng(seed)).to_bytes())
    kind, msg = mutate(data, msg)
    check_mutation_outcome(c, kind, msg, d)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(s=0), ValueError, r"s must be in \[1, 30\]"),
        (dict(s=31), ValueError, r"s must be in \[1, 30\]"),
        (dict(s=2.0), TypeError, "s must be an integer"),
        (dict(bucket=0), ValueError, r"bucket must be in \[1, inf\]"),
        (dict(bucket="8"), TypeError, "bucket must be an integer"),
    ],
)
def test_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        compressors.make("nuqsgd", **kwargs)


def test_overflow_and_rng_errors():
    with pytest.raises(ValueError, match="x is too large"):
        NUQSGD().compress(np.array([3e38, 3e38]), np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        NUQSGD().compress(np.ones(3))
