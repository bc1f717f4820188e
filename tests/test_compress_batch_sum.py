"""``Compressor.compress_batch_sum``: X += E then encode, bit-identical to ``compress_batch(X + E)``.

QSGD fuses the sum into its encode kernel; the other compressors add first (the base hook). Both
must give the same bytes and leave X = X + E (numpy's rounding), and refuse bad input clearly.
"""

import numpy as np
import pytest

from simdist import compressors

CASES = [
    {"name": "qsgd", "s": 16, "bucket": 512},
    {"name": "qsgd", "s": 3, "bucket": 7, "norm": "max"},
    {"name": "qsgd", "s": 4, "encoding": "fixed", "bucket": 64},
    {"name": "qsgd", "s": 40},
    {"name": "topk", "ratio": 0.1},
    {"name": "sign"},
    {"name": "terngrad"},
]


@pytest.mark.parametrize("config", CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (3, 1000), (5, 4097)])
def test_equals_compress_of_the_sum(config, dtype, shape):
    c = compressors.make(config)
    rng = np.random.default_rng(sum(shape))
    X = rng.standard_normal(shape).astype(dtype)
    E = (0.3 * rng.standard_normal(shape)).astype(dtype)
    want_X = X + E
    ref = c.compress_batch(want_X.copy(), np.random.default_rng(7))
    got = c.compress_batch_sum(X, E, np.random.default_rng(7))
    np.testing.assert_array_equal(X, want_X)  # X holds the sum, numpy's rounding (bitwise)
    np.testing.assert_array_equal(got.buffer, ref.buffer)
    np.testing.assert_array_equal(got.offsets, ref.offsets)
    np.testing.assert_array_equal(got.nbits, ref.nbits)
    np.testing.assert_array_equal(c.decompress_batch(got), c.decompress_batch(ref))


@pytest.mark.parametrize("name", ["qsgd", "topk"])
def test_non_finite_sum_is_a_value_error(name):
    c = compressors.make(name, **({"k": 2} if name == "topk" else {}))
    X = np.ones((2, 50), np.float32)
    E = np.zeros((2, 50), np.float32)
    E[1, 7] = np.inf
    with pytest.raises(ValueError, match=r"X \+ E must be finite"):
        c.compress_batch_sum(X, E, np.random.default_rng(0))
    X = np.full((2, 50), 3e38, np.float32)
    E = np.full((2, 50), 3e38, np.float32)  # finite terms, overflowing float32 sum
    with np.errstate(over="ignore"), pytest.raises(ValueError, match=r"X \+ E must be finite"):
        c.compress_batch_sum(X, E, np.random.default_rng(0))


def test_bad_arguments():
    c = compressors.make("qsgd")
    X = np.ones((2, 8), np.float32)
    with pytest.raises(ValueError, match="E must be a C-contiguous float32"):
        c.compress_batch_sum(X, np.ones((2, 8), np.float64))
    with pytest.raises(ValueError, match="E must be a C-contiguous"):
        c.compress_batch_sum(X, np.ones((2, 7), np.float32))
    with pytest.raises(ValueError, match="share memory"):
        c.compress_batch_sum(X, X)
    ro = X.copy()
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="X must be writable"):
        c.compress_batch_sum(ro, np.ones_like(X))
    with pytest.raises(TypeError, match="rng"):
        c.compress_batch_sum(X.copy(), np.ones_like(X))


# -- decompress_batch_residual: out = P - C and the float64 mean of C (the engine's EF step) -----------


@pytest.mark.parametrize("config", CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (3, 1000), (6, 4097)])
def test_residual_and_mean_equal_the_plain_computation(config, dtype, shape):
    c = compressors.make(config)
    rng = np.random.default_rng(sum(shape) + 1)
    P = rng.standard_normal(shape).astype(dtype)
    P[0, 0] = -0.0  # a signed zero of P must survive P - 0
    batch = c.compress_batch(P, np.random.default_rng(3))
    C = c.decompress_batch(batch)
    out = np.full(shape, np.nan, dtype)  # stale contents must be overwritten
    mean = np.full(shape[1], np.nan)
    assert c.decompress_batch_residual(batch, P, out, mean) is out
    want = P - C
    np.testing.assert_array_equal(out, want)
    assert np.array_equal(np.signbit(out), np.signbit(want))
    np.testing.assert_array_equal(mean, C.astype(np.float64).mean(axis=0))
    assert np.array_equal(np.signbit(mean), np.signbit(C.astype(np.float64).mean(axis=0)))


def test_residual_tiny_scales_and_signed_zeros():
    # levels times a subnormal unit can round to (signed) zero: the result must match bit for bit
    c = compressors.make("qsgd", s=16, bucket=8)
    P = np.array([[1e-45, -1e-45, 0.0, -0.0, 3e-45, -2e-45, 1e-45, 0.0]] * 3, np.float32)
    batch = c.compress_batch(P, np.random.default_rng(0))
    C = c.decompress_batch(batch)
    out, mean = np.empty_like(P), np.empty(8)
    c.decompress_batch_residual(batch, P, out, mean)
    assert np.array_equal((P - C).view(np.uint32), out.view(np.uint32))
    assert np.array_equal(C.astype(np.float64).mean(axis=0).view(np.uint64), mean.view(np.uint64))


def test_residual_rejects_bad_arguments_and_bad_bytes():
    c = compressors.make("qsgd")
    P = np.ones((2, 16), np.float32)
    batch = c.compress_batch(P, np.random.default_rng(0))
    out, mean = np.empty_like(P), np.empty(16)
    with pytest.raises(ValueError, match="P must be a C-contiguous float32"):
        c.decompress_batch_residual(batch, P.astype(np.float64), out, mean)
    with pytest.raises(TypeError, match="mean_out must have dtype float64"):
        c.decompress_batch_residual(batch, P, out, np.empty(16, np.float32))
    with pytest.raises(ValueError, match="share memory"):
        c.decompress_batch_residual(batch, P, P, mean)
    with pytest.raises(ValueError, match="written by"):
        compressors.make("sign").decompress_batch_residual(batch, P, out, mean)
    from simdist import DecodeError
    from simdist.compressors.payload import PayloadBatch

    bad = PayloadBatch(batch.buffer[:-1], batch.offsets - np.array([0, 0, 1]), batch.nbits, 16, np.float32, "qsgd", None)
    with pytest.raises(DecodeError):
        c.decompress_batch_residual(bad, P, out, mean)
