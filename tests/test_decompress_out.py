"""``decompress(payload, out=...)`` / ``decompress_batch(batch, out=...)`` for every compressor.

Properties: the values equal a fresh decode, ``out`` itself is returned, a reused ``out`` keeps
no stale values, bad ``out`` arrays are refused with an error naming ``out``, and QSGD decodes
straight into ``out`` (no output-sized allocation).
"""

import tracemalloc
from dataclasses import dataclass

import numpy as np
import pytest

from simdist import DecodeError, compressors
from simdist.compressors.identity import Identity
from simdist.compressors.payload import Payload

#: One or two configurations per registered compressor (odd d below: partial buckets).
CONFIGS = {
    "identity": [{}],
    "fp16": [{}],
    "qsgd": [{"s": 4}, {"s": 16, "bucket": 64}, {"s": 3, "norm": "max", "bucket": 50, "encoding": "fixed"}],
    "nuqsgd": [{"s": 4, "bucket": 64}],
    "terngrad": [{"bucket": 64}],
    "onebit": [{"bucket": 64}],
    "sign": [{}, {"scaled": False, "bucket": 100}],
    "topk": [{"k": 10}],
    "randk": [{"k": 10}, {"ratio": 0.3, "scaled": True}],
    "threshold": [{"tau": 0.5}],
    "chain": [{"stages": [{"name": "topk", "ratio": 0.1}, {"name": "qsgd", "s": 4}]}, {"stages": ["fp16", "identity"]}],
}
CASES = [(name, cfg) for name, cfgs in CONFIGS.items() for cfg in cfgs]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(CASES)]
D = 301


def test_every_registered_compressor_is_covered():
    assert set(compressors.available()) <= set(CONFIGS)


def _data(dtype, n=3, seed=0):
    X = np.random.default_rng(seed).standard_normal((n, D)).astype(dtype)
    X[1, ::3] = 0.0  # sparse-ish row: a stale value in a zero slot would show
    return X


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,cfg", CASES, ids=IDS)
def test_out_matches_fresh_decode_and_is_returned(name, cfg, dtype):
    c = compressors.make(name, **cfg)
    X = _data(dtype)
    batch = c.compress_batch(X, np.random.default_rng(1))
    Y = c.decompress_batch(batch)
    out = np.full(X.shape, np.nan, dtype)  # stale NaN everywhere: every entry must be overwritten
    r = c.decompress_batch(batch, out=out)
    assert r is out
    np.testing.assert_array_equal(out, Y)
    p = c.compress(X[0], np.random.default_rng(2))
    y = c.decompress(p)
    o = np.full(D, 7.0, dtype)
    assert c.decompress(p, out=o) is o
    np.testing.assert_array_equal(o, y)


@pytest.mark.parametrize("name,cfg", CASES, ids=IDS)
def test_reused_out_gets_no_stale_values(name, cfg):
    """Decode a dense message, then a sparser one, into the same buffer: equal to a fresh decode."""
    c = compressors.make(name, **cfg)
    dense = np.random.default_rng(3).standard_normal(D).astype(np.float32) + 5.0
    sparse = np.zeros(D, np.float32)
    sparse[[0, 17, 200]] = [1.0, -2.0, 0.5]
    out = np.empty(D, np.float32)
    c.decompress(c.compress(dense, np.random.default_rng(4)), out=out)
    p = c.compress(sparse, np.random.default_rng(5))
    c.decompress(p, out=out)
    np.testing.assert_array_equal(out, c.decompress(p))
    out2 = np.empty((2, D), np.float32)
    c.decompress_batch(c.compress_batch(np.stack([dense, dense]), np.random.default_rng(6)), out=out2)
    b = c.compress_batch(np.stack([sparse, dense]), np.random.default_rng(7))
    c.decompress_batch(b, out=out2)
    np.testing.assert_array_equal(out2, c.decompress_batch(b))


@pytest.mark.parametrize("name,cfg", CASES[::2], ids=IDS[::2])
def test_bad_out_is_refused(name, cfg):
    c = compressors.make(name, **cfg)
    x = _data(np.float32)[0]
    p = c.compress(x, np.random.default_rng(1))
    batch = c.compress_batch(x[None, :], np.random.default_rng(1))
    bad = [
        (TypeError, [0.0] * D),  # not an ndarray
        (TypeError, np.zeros(D, np.float64)),  # wrong dtype
        (ValueError, np.zeros(D + 1, np.float32)),  # wrong shape
        (ValueError, np.zeros((1, D), np.float32)),  # 2-D for a vector
        (ValueError, np.zeros(2 * D, np.float32)[::2]),  # not contiguous
    ]
    ro = np.zeros(D, np.float32)
    ro.setflags(write=False)
    bad.append((ValueError, ro))
    for exc, out in bad:
        with pytest.raises(exc, match="out"):
            c.decompress(p, out=out)
    for exc, out in [(ValueError, np.zeros(D, np.float32)), (ValueError, np.zeros((2, D), np.float32)),
                     (TypeError, np.zeros((1, D), np.float64)), (ValueError, np.zeros((1, 2 * D), np.float32)[:, ::2])]:
        with pytest.raises(exc, match="out"):
            c.decompress_batch(batch, out=out)


def test_out_overlapping_the_message_is_refused():
    c = Identity()
    x = np.arange(1.0, 9.0, dtype=np.float32)
    raw = np.zeros(64, np.uint8)
    raw[:32] = np.frombuffer(c.compress(x).to_bytes(), np.uint8)
    p = Payload(raw[:32], 256, 8, np.dtype(np.float32), "identity")
    with pytest.raises(ValueError, match="out must not share memory"):
        c.decompress(p, out=raw.view(np.float32)[:8])
    out = raw.view(np.float32)[8:]  # the other half of the same buffer: no overlap, accepted
    assert c.decompress(p, out=out) is out
    np.testing.assert_array_equal(out, x)


def test_decoder_without_out_parameter_still_works():
    """A subclass written against the old hook (no ``out``) is decoded, then copied into out."""

    @dataclass(frozen=True)
    class OldStyle(Identity):
        name = "old-style-test"

        def _decode_batch(self, buffer, offsets, d, dtype, keys):
            return super()._decode_batch(buffer, offsets, d, dtype, keys)

    c = OldStyle()
    x = np.array([1.5, -2.0, 3.0], np.float32)
    out = np.full(3, np.nan, np.float32)
    assert c.decompress(c.compress(x), out=out) is out
    np.testing.assert_array_equal(out, x)


def test_malformed_message_with_out_raises():
    c = compressors.make("qsgd", s=4, bucket=16)
    x = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    data = bytearray(c.compress(x, np.random.default_rng(1)).to_bytes())
    data[0] |= 0x80  # negative scale
    p = c.compress(x, np.random.default_rng(1))
    bad = Payload(np.frombuffer(bytes(data), np.uint8), p.nbits, p.dim, p.dtype, p.codec, p.key)
    with pytest.raises(DecodeError):
        c.decompress(bad, out=np.empty(64, np.float32))


@pytest.mark.parametrize("cfg", [{"s": 16, "bucket": 512}, {"s": 5, "encoding": "fixed", "bucket": 100}])
def test_qsgd_decodes_into_out_without_an_output_allocation(cfg):
    """QSGD writes into ``out`` itself: decoding allocates far less than the 4 MB output."""
    c = compressors.make("qsgd", **cfg)
    d = 1 << 20
    x = np.random.default_rng(0).standard_normal(d).astype(np.float32)
    p = c.compress(x, np.random.default_rng(1))
    out = np.empty(d, np.float32)
    c.decompress(p, out=out)  # warm-up (compilation, tables)
    tracemalloc.start()
    try:
        c.decompress(p, out=out)
        _, peak_out = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        c.decompress(p)
        _, peak_fresh = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_fresh >= 4 * d  # the check can see the output allocation ...
    assert peak_out < d // 4  # ... and with out there is none
