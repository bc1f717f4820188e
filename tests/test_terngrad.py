"""TernGrad: kernel == reference bytes, golden bytes, unbiasedness, the [D] moment identities, clipping, fuzz."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _mutations import check_agrees_with_reference, check_mutation_outcome, mutate
from scipy.stats import norm as normal

from simdist import DecodeError, compressors
from simdist.compressors.terngrad import TernGrad
from simdist.reference import terngrad as ref
from simdist.rng import batch_uniform_bits


def _vectors(rng, d, dtype):
    """Edge-case vectors of dimension d: gaussian, wide dynamic range, zero, all-negative,
    all-positive, single nonzero, sparse, constant."""
    g = rng.standard_normal(d)
    one = np.zeros(d)
    one[rng.integers(d)] = -2.5
    sparse = np.where(rng.random(d) < 0.8, 0.0, g)
    vecs = [g, g * 10.0 ** rng.integers(-6, 6, d), np.zeros(d), -np.abs(g) - 0.01, np.abs(g), one, sparse,
            np.full(d, 0.3), np.where(rng.random(d) < 0.5, -0.0, 0.0)]
    return [v.astype(dtype) for v in vecs]


CONFIGS = [
    dict(),
    dict(bucket=1),
    dict(bucket=3),
    dict(bucket=64),
    dict(clip=2.5),
    dict(clip=0.5, bucket=7),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_kernel_matches_reference(cfg, dtype):
    rng = np.random.default_rng(11)
    c = TernGrad(**cfg)
    for d in (1, 2, 4, 5, 6, 9, 70, 201):
        for x in _vectors(rng, d, dtype):
            seed = int(rng.integers(2**32))
            p = c.compress(x, np.random.default_rng(seed))
            words = batch_uniform_bits(np.random.default_rng(seed), 1, d)[0]
            msg, nbits = ref.encode(x, words, **cfg)
            assert p.to_bytes() == msg and p.nbits == nbits, (cfg, d, x)
            y = c.decompress(p)
            assert y.dtype == dtype
            np.testing.assert_array_equal(y, ref.decode(msg, d, bucket=cfg.get("bucket")).astype(dtype))


def test_golden_bytes():
    x = np.array([0.5, -1.0, 0.25, 0.0, -0.75, 1.0, 0.1], np.float32)
    p = TernGrad().compress(x, np.random.default_rng(0))
    # scale 1.0 = 3f800000; symbols 1,0,1,1,0 -> 81+9+3 = 93 = 0x5d; then 2,1 -> 7 in 4 bits
    assert (p.nbits, p.to_bytes().hex()) == (44, "3f8000005d70")
    assert TernGrad().decompress(p).tolist() == [0.0, -1.0, 0.0, 0.0, -1.0, 1.0, 0.0]
    p = TernGrad(bucket=3).compress(x, np.random.default_rng(0))
    assert (p.nbits, p.to_bytes().hex()) == (108, "3f8000003f8000003dcccccd5d80")


def test_message_length_is_1_6_bits_per_entry():
    for d, extra in [(500, 0), (501, 2), (502, 4), (503, 5), (504, 7)]:
        p = TernGrad().compress(np.ones(d, np.float32), np.random.default_rng(0))
        assert p.nbits == 32 + 8 * (d // 5) + extra
    p = TernGrad(bucket=100).compress(np.ones(1000, np.float32), np.random.default_rng(0))
    assert p.nbits == 10 * 32 + 1600


def _mc(c, x, n, seed):
    return c.decompress_batch(c.compress_batch(np.tile(x, (n, 1)), np.random.default_rng(seed)))


def test_unbiased_z_test():
    # float32-representable values held in float64: the wire scale equals max|g| exactly.
    x = np.random.default_rng(3).standard_normal(40).astype(np.float32).astype(np.float64)
    x[5] = 0.0
    n = 20000
    Y = _mc(TernGrad(bucket=16), x, n, seed=4)
    s = np.repeat([np.abs(x[i : i + 16]).max() for i in range(0, 40, 16)], 16)[:40]
    var = s * np.abs(x) - x**2  # exact per-entry variance
    det = var <= 0  # entries at the bucket max and zeros are deterministic
    assert np.all(Y[:, det] == x[det])
    z = (Y[:, ~det].mean(axis=0) - x[~det]) / np.sqrt(var[~det] / n)
    # Bonferroni over the coordinates: false-alarm probability <= 1e-6 for the whole test.
    assert np.max(np.abs(z)) < normal.isf(1e-6 / (2 * z.size))


def test_second_moment_and_variance_identities():
    x = np.random.default_rng(5).standard_normal(30).astype(np.float32).astype(np.float64)
    c = TernGrad(bucket=8)  # buckets 8, 8, 8, 6
    n = 20000
    Y = _mc(c, x, n, seed=6)
    blocks = [x[i : i + 8] for i in range(0, 30, 8)]
    second = sum(np.abs(v).max() * np.abs(v).sum() for v in blocks)
    assert c.second_moment(x) == pytest.approx(second, rel=1e-12)
    assert c.exact_variance(x) == pytest.approx(second - x @ x, rel=1e-12)
    assert c.variance_bound(x) == c.exact_variance(x)
    # ||g_hat||^2 = sum_B s_B^2 * (number of nonzeros in B): its exact variance is sum_B s_B^4 sum p(1-p).
    var_sq = sum(np.abs(v).max() ** 4 * np.sum((p := np.abs(v) / np.abs(v).max()) * (1 - p)) for v in blocks)
    z = (np.mean(np.sum(Y**2, axis=1)) - second) / np.sqrt(var_sq / n)
    assert abs(z) < normal.isf(1e-6 / 2)  # false-alarm probability 1e-6
    err = np.sum((Y - x) ** 2, axis=1)
    z = (err.mean() - c.exact_variance(x)) / (err.std(ddof=1) / np.sqrt(n))
    assert abs(z) < normal.isf(1e-6 / 2)  # CLT, false-alarm probability ~1e-6


def test_clipping():
    x = np.ones(100)
    x[::2] = -0.5
    x[7] = 50.0  # outlier
    c = TernGrad(clip=2.5)
    assert TernGrad().unbiased and not c.unbiased
    assert c.exact_variance(x) is None and c.second_moment(x) is None
    thr = 2.5 * np.std(x)
    y = c.decompress(c.compress(x, np.random.default_rng(0)))
    scale = np.abs(y).max()
    assert scale == np.float32(thr) or scale == np.nextafter(np.float32(thr), np.float32(np.inf))
    assert scale >= thr and y[7] == scale  # the clipped outlier is at the scale: always kept
    # a constant bucket (std = 0) is not clipped
    y = c.decompress(c.compress(np.full(10, -2.0), np.random.default_rng(0)))
    assert np.all(y == -2.0)


def test_scale_rounded_up_for_float64():
    x = np.array([1e-300, -3e-300, 0.1 + 2**-40, 1e-50])
    for bucket in (None, 1):
        c = TernGrad(bucket=bucket)
        y = c.decompress(c.compress(x, np.random.default_rng(1)))
        assert np.all(np.isfinite(y))
    p = TernGrad().compress(x, np.random.default_rng(1))
    scale = np.frombuffer(p.to_bytes()[:4], ">f4")[0]
    assert float(scale) >= 0.1 + 2**-40 and float(np.nextafter(scale, np.float32(0))) < 0.1 + 2**-40
    with pytest.raises(ValueError, match="x is too large"):
        TernGrad().compress(np.array([1e39, 1.0]), np.random.default_rng(0))


def _decode(c, data, d):
    return c.decompress(c.from_bytes(data, d, dtype=np.float64))


def test_decoder_rejects_malformed():
    c = TernGrad()
    one = bytes.fromhex("3f800000")
    assert _decode(c, one + bytes([242]), 5).tolist() == [1.0, 1.0, 1.0, 1.0, 1.0]
    with pytest.raises(DecodeError, match="out of range"):
        _decode(c, one + bytes([243]), 5)  # group value >= 3^5
    with pytest.raises(DecodeError, match="out of range"):
        _decode(c, one + bytes([0b11000000]), 1)  # partial group of 1: value 3 >= 3^1
    with pytest.raises(DecodeError, match="out of range"):
        _decode(c, bytes.fromhex("bf800000") + bytes([121]), 5)  # negative scale
    with pytest.raises(DecodeError, match="non-finite"):
        _decode(c, bytes.fromhex("7fc00000") + bytes([121]), 5)  # NaN scale
    with pytest.raises(DecodeError, match="truncated"):
        _decode(c, one, 5)
    with pytest.raises(DecodeError, match="trailing"):
        _decode(c, one + bytes([121, 0]), 5)


FUZZ = [(TernGrad(), 13), (TernGrad(bucket=4), 13), (TernGrad(clip=2.5, bucket=5), 11)]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(range(len(FUZZ))), st.binary(max_size=40))
def test_fuzz_random_bytes_agree_with_reference(which, data):
    c, d = FUZZ[which]
    check_agrees_with_reference(c, data, d, lambda b: ref.decode(b, d, bucket=c.bucket))


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
        (dict(clip=0.0), ValueError, r"clip must be in \(0"),
        (dict(clip=-1.0), ValueError, r"clip must be in \(0"),
        (dict(clip=float("inf")), ValueError, "clip"),
        (dict(clip=float("nan")), ValueError, "clip"),
        (dict(clip="2.5"), TypeError, "clip must be a real number"),
        (dict(bucket=0), ValueError, r"bucket must be in \[1, inf\]"),
        (dict(bucket=2.0), TypeError, "bucket must be an integer"),
        (dict(bucket=True), TypeError, "bucket must be an integer"),
    ],
)
def test_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        compressors.make("terngrad", **kwargs)


def test_needs_rng_and_config():
    c = compressors.make("terngrad", clip=2, bucket=np.int64(512))
    assert c.get_config() == {"name": "terngrad", "clip": 2.0, "bucket": 512}
    with pytest.raises(TypeError, match="rng"):
        c.compress(np.ones(3))
