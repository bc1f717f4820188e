"""1BitSGD: the slide example, kernel == reference bytes, golden bytes, reconstruction, exact error, fuzz."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _mutations import check_agrees_with_reference, check_mutation_outcome, mutate

from simdist import DecodeError, compressors
from simdist.compressors.onebit import OneBit
from simdist.reference import onebit as ref


def test_slide_example():
    """Seide et al.: [0.1, -0.3, 0.5, -0.1, 0] -> + - + - +, avg+ = 0.2, avg- = -0.2, 64 + 5 bits."""
    x = np.array([0.1, -0.3, 0.5, -0.1, 0.0], np.float32)
    c = OneBit()
    p = c.compress(x)
    assert p.nbits == 64 + 5 and len(p.to_bytes()) == 9
    data = p.to_bytes()
    avg_pos, avg_neg = np.frombuffer(data[:8], ">f4")
    assert avg_pos == np.float32(0.2) and avg_neg == np.float32(-0.2)
    assert data[8] == 0b01010000  # sign bits (1 = negative): + - + - +
    np.testing.assert_array_equal(c.decompress(p), np.float32([0.2, -0.2, 0.2, -0.2, 0.2]))


def _vectors(rng, d, dtype):
    g = rng.standard_normal(d)
    one = np.zeros(d)
    one[rng.integers(d)] = -2.5
    vecs = [g, g * 10.0 ** rng.integers(-6, 6, d), np.zeros(d), -np.abs(g) - 0.01, np.abs(g), one,
            np.where(rng.random(d) < 0.8, 0.0, g), np.full(d, -0.3)]
    out = [v.astype(dtype) for v in vecs]
    out.append(np.where(rng.random(d) < 0.5, -0.0, 0.0).astype(dtype))  # signed zeros: all "+"
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bucket", [None, 1, 3, 8, 64])
def test_kernel_matches_reference(bucket, dtype):
    rng = np.random.default_rng(31)
    c = OneBit(bucket=bucket)
    for d in (1, 2, 7, 8, 9, 70, 257):
        for x in _vectors(rng, d, dtype):
            p = c.compress(x)
            msg, nbits = ref.encode(x, bucket=bucket)
            assert p.to_bytes() == msg and p.nbits == nbits, (bucket, d, x)
            y = c.decompress(p)
            assert y.dtype == dtype
            np.testing.assert_array_equal(y, ref.decode(msg, d, bucket=bucket).astype(dtype))
            np.testing.assert_array_equal(np.frombuffer(msg, np.uint8)[-((d + 7) // 8):], np.packbits(x < 0))


def test_golden_bytes():
    x = np.array([0.5, -1.0, 0.25, 0.0, -0.75, 1.0, 0.1], np.float32)
    p = OneBit().compress(x)
    assert (p.nbits, p.to_bytes().hex()) == (71, "3ebd70a4bf60000048")  # avg+ 0.37, avg- -0.875
    p = OneBit(bucket=3).compress(x)
    assert (p.nbits, p.to_bytes().hex()) == (199, "3ec00000bf8000003f000000bf4000003dcccccd0000000048")


def test_reconstruction_and_exact_error():
    rng = np.random.default_rng(2)
    for bucket in (None, 10):
        x = rng.standard_normal(95)
        c = OneBit(bucket=bucket)
        y = c.decompress(c.compress(x))
        b = bucket or 95
        expect = np.empty_like(x)
        for i in range(0, 95, b):
            v = x[i : i + b]
            expect[i : i + b] = np.where(v >= 0, v[v >= 0].mean(), v[v < 0].mean())
        np.testing.assert_allclose(y, expect, rtol=2**-23)  # float32 averages on the wire
        direct = float(np.sum((expect - x) ** 2))
        assert c.exact_variance(x) == pytest.approx(direct, rel=1e-12)
        assert float(np.sum((y - x) ** 2)) == pytest.approx(direct, rel=1e-5)
    assert not OneBit.unbiased and not OneBit.needs_rng


def test_batch_rows_are_independent():
    X = np.random.default_rng(5).standard_normal((6, 33)).astype(np.float32)
    c = OneBit(bucket=8)
    Y = c.decompress_batch(c.compress_batch(X))
    for i in range(6):
        np.testing.assert_array_equal(Y[i], c.decompress(c.compress(X[i])))


def _decode(c, data, d):
    return c.decompress(c.from_bytes(data, d, dtype=np.float64))


def test_decoder_rejects_malformed():
    c = OneBit()
    good = bytes.fromhex("3f800000bf800000") + bytes([0b01000000])
    assert _decode(c, good, 2).tolist() == [1.0, -1.0]
    bad = {
        "non-finite": bytes.fromhex("7f800000bf800000") + bytes([0b01000000]),  # avg+ = inf
        "out of range": bytes.fromhex("bf800000bf800000") + bytes([0b01000000]),  # avg+ < 0
    }
    for match, msg in bad.items():
        with pytest.raises(DecodeError, match=match):
            _decode(c, msg, 2)
    with pytest.raises(DecodeError, match="out of range"):
        _decode(c, bytes.fromhex("3f8000003f800000") + bytes([0b01000000]), 2)  # avg- > 0
    with pytest.raises(DecodeError, match="out of range"):
        _decode(c, bytes.fromhex("3f800000bf800000") + bytes([0]), 2)  # avg- != 0 but no negative entry
    with pytest.raises(DecodeError, match="out of range"):
        _decode(c, bytes.fromhex("3f800000bf800000") + bytes([0b11000000]), 2)  # avg+ != 0, no "+" entry
    with pytest.raises(DecodeError, match="truncated"):
        _decode(c, good[:8], 2)
    with pytest.raises(DecodeError, match="trailing"):
        _decode(c, good + b"\x00", 2)


FUZZ = [(OneBit(), 10), (OneBit(bucket=3), 7)]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(range(len(FUZZ))), st.binary(max_size=30))
def test_fuzz_random_bytes_agree_with_reference(which, data):
    c, d = FUZZ[which]
    check_agrees_with_reference(c, data, d, lambda b: ref.decode(b, d, bucket=c.bucket))


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
        (dict(bucket=0), ValueError, r"bucket must be in \[1, inf\]"),
        (dict(bucket=-3), ValueError, r"bucket must be in \[1, inf\]"),
        (dict(bucket=1.5), TypeError, "bucket must be an integer"),
        (dict(k=3), ValueError, "unknown parameter"),
    ],
)
def test_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        compressors.make("onebit", **kwargs)


def test_overflow_is_an_error():
    with pytest.raises(ValueError, match="x is too large"):
        OneBit().compress(np.array([1e300, -1.0]))
