"""The engine's error-feedback step at the compressor layer.

``compress_batch_ef(X, E, rng)``: the sender encodes p = X + E and keeps E = p - c, with c exactly
what the receivers decode. QSGD does both inside its encoder; the others through the base class (add,
encode, decode, subtract). Either way: messages bit-identical to ``compress_batch(X + E)`` and E equal
to ``(X + E) - decompress_batch(...)`` bit for bit. ``decompress_batch_residual``: the receivers'
side of the unfused path (P - C and the float64 mean of C).
"""

import numpy as np
import pytest

from simdist import compressors

CASES = [
    {"name": "qsgd", "s": 16, "bucket": 512},
    {"name": "qsgd", "s": 3, "bucket": 7, "norm": "max"},
    {"name": "qsgd", "s": 4, "encoding": "fixed", "bucket": 64},
    {"name": "qsgd", "s": 40},  # levels >= 32: the decoder's general path
    {"name": "topk", "ratio": 0.1},
    {"name": "sign"},
    {"name": "terngrad"},
    {"name": "randk", "ratio": 0.5},
]


def _ids(c):
    return "-".join(f"{v}" for v in c.values())


@pytest.mark.parametrize("config", CASES, ids=_ids)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (3, 1000), (5, 4097)])
def test_messages_and_new_memory_equal_the_plain_computation(config, dtype, shape):
    c = compressors.make(config)
    rng = np.random.default_rng(sum(shape))
    X = rng.standard_normal(shape).astype(dtype)
    E = (0.3 * rng.standard_normal(shape)).astype(dtype)
    E[0, 0] = -0.0
    p = X + E
    ref = c.compress_batch(p.copy(), np.random.default_rng(7))
    got = c.compress_batch_ef(X, E, np.random.default_rng(7))
    np.testing.assert_array_equal(got.buffer, ref.buffer)
    np.testing.assert_array_equal(got.offsets, ref.offsets)
    np.testing.assert_array_equal(got.nbits, ref.nbits)
    want = p - c.decompress_batch(ref)  # the sender's memory from what the receivers decode
    assert np.array_equal(E.view(f"u{E.itemsize}"), want.view(f"u{want.itemsize}"))  # bitwise, signed zeros
    assert c.fuses_error_feedback == (config["name"] == "qsgd")


def test_fused_memory_with_tiny_scales_and_signed_zeros():
    # levels times a subnormal unit round to (signed) zero: the sender's c must be the decoder's c
    c = compressors.make("qsgd", s=16, bucket=8)
    X = np.array([[1e-45, -1e-45, 0.0, -0.0, 3e-45, -2e-45, 1e-45, 0.0]] * 3, np.float32)
    E = np.zeros_like(X)
    E[:, 2] = -0.0
    p = X + E
    batch = c.compress_batch_ef(X, E, np.random.default_rng(0))
    want = p - c.decompress_batch(batch)
    assert np.array_equal(E.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("name", ["qsgd", "topk"])
def test_non_finite_sum_is_a_value_error(name):
    c = compressors.make(name, **({"k": 2} if name == "topk" else {}))
    X = np.ones((2, 50), np.float32)
    E = np.zeros((2, 50), np.float32)
    E[1, 7] = np.inf
    with pytest.raises(ValueError, match=r"X \+ E must be finite"):
        c.compress_batch_ef(X, E, np.random.default_rng(0))
    X = np.full((2, 50), 3e38, np.float32)
    E = np.full((2, 50), 3e38, np.float32)  # finite terms, overflowing float32 sum
    with np.errstate(over="ignore"), pytest.raises(ValueError, match=r"X \+ E must be finite"):
        c.compress_batch_ef(X, E, np.random.default_rng(0))


def test_bad_arguments():
    c = compressors.make("qsgd")
    X = np.ones((2, 8), np.float32)
    with pytest.raises(ValueError, match="E must be a C-contiguous float32"):
        c.compress_batch_ef(X, np.ones((2, 8), np.float64))
    with pytest.raises(ValueError, match="E must be a C-contiguous"):
        c.compress_batch_ef(X, np.ones((2, 7), np.float32))
    with pytest.raises(ValueError, match="share memory"):
        c.compress_batch_ef(X, X)
    ro = np.ones_like(X)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="must be writable"):
        c.compress_batch_ef(X, ro)
    with pytest.raises(TypeError, match="rng"):
        c.compress_batch_ef(X.copy(), np.ones_like(X))


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


# -- decompress_batch_mean: the receivers' mean, a few rows at a time ---------------------------------


@pytest.mark.parametrize("config", CASES, ids=_ids)
@pytest.mark.parametrize("chunk_bytes", [1, 3 * 8 * 1000, 1 << 30])  # one row, 3 rows (float64), all
def test_mean_of_decoded_rows_is_numpy_mean_bitwise(config, chunk_bytes):
    c = compressors.make(config)
    X = np.random.default_rng(5).standard_normal((7, 1000))
    X[:, 0] = -0.0  # columns of -0.0 average to +0.0, as numpy's
    batch = c.compress_batch(X, np.random.default_rng(2))
    out = np.full(1000, np.nan)
    assert c.decompress_batch_mean(batch, out, chunk_bytes=chunk_bytes) is out
    want = c.decompress_batch(batch).astype(np.float64).mean(axis=0)
    assert out.tobytes() == want.tobytes()


def test_mean_rejects_bad_arguments():
    c = compressors.make("sign")
    batch = c.compress_batch(np.ones((2, 8), np.float32))
    with pytest.raises(TypeError, match="float64"):
        c.decompress_batch_mean(batch, np.empty(8, np.float32))
    with pytest.raises(ValueError, match="shape"):
        c.decompress_batch_mean(batch, np.empty(9))
    with pytest.raises(TypeError, match="PayloadBatch"):
        c.decompress_batch_mean(batch[0], np.empty(8))
    with pytest.raises(IndexError):
        batch.rows(1, 3)
    assert batch.rows(1, 2).offsets.tolist() == [0, int(batch.offsets[2] - batch.offsets[1])]
