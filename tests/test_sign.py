"""Scaled sign / signSGD: kernel == reference bytes, golden bytes, exact error [D], delta, fuzz."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _mutations import check_agrees_with_reference, check_mutation_outcome, mutate

from simdist import DecodeError, compressors
from simdist.compressors.sign import Sign
from simdist.reference import sign as ref


def _vectors(rng, d, dtype):
    g = rng.standard_normal(d)
    one = np.zeros(d)
    one[rng.integers(d)] = -2.5
    vecs = [g, g * 10.0 ** rng.integers(-6, 6, d), np.zeros(d), -np.abs(g) - 0.01, np.abs(g), one,
            np.where(rng.random(d) < 0.8, 0.0, g), np.full(d, 0.3), np.where(rng.random(d) < 0.5, -0.0, 0.0)]
    return [v.astype(dtype) for v in vecs]


CONFIGS = [dict(), dict(bucket=1), dict(bucket=3), dict(bucket=64), dict(scaled=False), dict(scaled=False, bucket=5)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_kernel_matches_reference(cfg, dtype):
    rng = np.random.default_rng(41)
    c = Sign(**cfg)
    for d in (1, 2, 7, 8, 9, 70, 257):
        for x in _vectors(rng, d, dtype):
            p = c.compress(x)
            msg, nbits = ref.encode(x, **cfg)
            assert p.to_bytes() == msg and p.nbits == nbits, (cfg, d, x)
            y = c.decompress(p)
            assert y.dtype == dtype
            np.testing.assert_array_equal(y, ref.decode(msg, d, **cfg).astype(dtype))
            np.testing.assert_array_equal(np.frombuffer(msg, np.uint8)[-((d + 7) // 8):], np.packbits(x < 0))


def test_golden_bytes():
    x = np.array([0.5, -1.0, 0.25, 0.0, -0.75, 1.0, 0.1], np.float32)
    cases = [
        (dict(), 39, "3f03a83b48"),  # ||x||_1 / 7 = 3.6 / 7 = 0.5142857, signs 0100100
        (dict(bucket=3), 103, "3f1555553f1555553dcccccd48"),  # 1.75/3, 1.75/3, 0.1
        (dict(scaled=False), 7, "48"),
    ]
    for cfg, nbits, hexstr in cases:
        p = Sign(**cfg).compress(x)
        assert (p.nbits, p.to_bytes().hex()) == (nbits, hexstr), cfg
    assert Sign(scaled=False).decompress(Sign(scaled=False).compress(x)).tolist() == [1, -1, 1, 1, -1, 1, 1]


def test_values_scale_and_sign_of_zero():
    x = np.array([2.0, -4.0, 0.0, -0.0, 6.0])
    y = Sign().decompress(Sign().compress(x))
    np.testing.assert_array_equal(y, np.float64(np.float32(2.4)) * np.array([1, -1, 1, 1, 1]))  # 12 / 5
    assert np.all(y[[2, 3]] > 0)  # sign(0) = +1, also for -0.0
    assert Sign().decompress(Sign().compress(np.zeros(4))).tolist() == [0.0] * 4


@pytest.mark.parametrize("bucket", [None, 7])
def test_exact_error_identity_and_delta(bucket):
    rng = np.random.default_rng(3)
    for _ in range(50):
        d = int(rng.integers(1, 60))
        x = rng.standard_normal(d) * 10.0 ** rng.integers(-2, 3, d)
        x[rng.random(d) < 0.2] = 0.0
        c = Sign(bucket=bucket)
        b = min(bucket or d, d)
        blocks = [x[i : i + b] for i in range(0, d, b)]
        identity = sum(float(v @ v) - float(np.abs(v).sum()) ** 2 / v.size for v in blocks)
        # direct computation with the exact scales: ||C(x) - x||^2
        direct = sum(float(np.sum((np.abs(v).mean() * np.where(v < 0, -1, 1) - v) ** 2)) for v in blocks)
        assert c.exact_variance(x) == pytest.approx(identity, rel=1e-9, abs=1e-12 * float(x @ x))
        assert direct == pytest.approx(identity, rel=1e-9, abs=1e-12 * float(x @ x))
        # measured through the wire (float32 scales): the error can only grow, by a rounding amount
        y = c.decompress(c.compress(x))
        measured = float(np.sum((y - x) ** 2))
        assert identity * (1 - 1e-9) - 1e-300 <= measured <= identity + 1e-6 * float(x @ x)
        assert c.variance_bound(x) == c.exact_variance(x)
    x = rng.standard_normal(40)
    delta = float(np.abs(x).sum()) ** 2 / (40 * float(x @ x))
    assert Sign().delta(x) == pytest.approx(delta, rel=1e-12)
    assert Sign().exact_variance(x) == pytest.approx((1 - delta) * float(x @ x), rel=1e-9)
    assert Sign().delta(np.zeros(3)) == 1.0


def test_unscaled_error_and_hooks():
    x = np.array([0.5, -2.0, 0.0])
    c = Sign(scaled=False)
    assert c.exact_variance(x) == pytest.approx(0.25 + 1.0 + 1.0)
    assert c.variance_bound(x) is None
    assert c.compress(np.ones(20)).nbits == 20
    assert Sign(scaled=False, bucket=4).compress(np.ones(20)).nbits == 20  # bucket has no effect
    assert Sign(bucket=4).compress(np.ones(20)).nbits == 5 * 32 + 20


def _decode(c, data, d):
    return c.decompress(c.from_bytes(data, d, dtype=np.float64))


def test_decoder_rejects_malformed():
    c = Sign()
    assert _decode(c, bytes.fromhex("40000000") + bytes([0b01000000]), 3).tolist() == [2.0, -2.0, 2.0]
    with pytest.raises(DecodeError, match="out of range"):
        _decode(c, bytes.fromhex("c0000000") + bytes([0]), 3)  # negative scale
    with pytest.raises(DecodeError, match="out of range"):
        _decode(c, bytes.fromhex("80000000") + bytes([0]), 3)  # -0.0 scale (never written)
    with pytest.raises(DecodeError, match="non-finite"):
        _decode(c, bytes.fromhex("ffc00000") + bytes([0]), 3)
    with pytest.raises(DecodeError, match="truncated"):
        _decode(c, bytes.fromhex("40000000"), 3)
    with pytest.raises(DecodeError, match="trailing"):
        _decode(c, bytes.fromhex("40000000") + bytes([0b00010000]), 3)  # non-zero padding bit
    with pytest.raises(DecodeError, match="trailing"):
        _decode(Sign(scaled=False), bytes([0, 0]), 8)


FUZZ = [(Sign(), 10), (Sign(bucket=3), 7), (Sign(scaled=False), 11)]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(range(len(FUZZ))), st.binary(max_size=24))
def test_fuzz_random_bytes_agree_with_reference(which, data):
    c, d = FUZZ[which]
    check_agrees_with_reference(c, data, d, lambda b: ref.decode(b, d, scaled=c.scaled, bucket=c.bucket))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(range(len(FUZZ))), st.integers(0, 2**32 - 1), st.data())
def test_fuzz_mutations(which, seed, data):
    c, d = FUZZ[which]
    msg = bytearray(c.compress(np.random.default_rng(seed).standard_normal(d)).to_bytes())
    kind, msg = mutate(data, msg)
    check_mutation_outcome(c, kind, msg, d)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(scaled=1), TypeError, "scaled must be a bool"),
        (dict(scaled="yes"), TypeError, "scaled must be a bool"),
        (dict(bucket=0), ValueError, r"bucket must be in \[1, inf\]"),
        (dict(bucket=2.5), TypeError, "bucket must be an integer"),
    ],
)
def test_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        compressors.make("sign", **kwargs)


def test_overflow_is_an_error():
    with pytest.raises(ValueError, match="x is too large"):
        Sign().compress(np.array([1e300, 1e300]))
    Sign(scaled=False).compress(np.array([1e300, -1e300]))  # no scale, nothing to overflow
