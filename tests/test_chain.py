"""Chain (composition): semantics, wire format, randomness streams, theory flags, errors, fuzzing."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simdist import DecodeError, compressors
from simdist.compressors import Compressor, make
from simdist.compressors.chain import Chain
from simdist.compressors.error_feedback import ErrorFeedback
from simdist.rng import batch_uniform_bits

# Two-sided normal quantile with P(|Z| > Z_CRIT) = 1e-7; with Bonferroni over at most 100
# coordinates (plus one aggregate test) the false-alarm probability of each z-test below is
# <= 101 * 1e-7 ~ 1e-5.
Z_CRIT = 5.327


def _have(*names):
    return all(n in compressors.available() for n in names)


@dataclass(frozen=True)
class StochRound(Compressor):
    """Test-only (unregistered) unbiased stochastic rounding to multiples of ``step``.

    Message: d little-endian int32 levels L_i, y_i = L_i * step; P(round up) = frac uses the
    raw-word rule w * 2**-32 < frac, whose bias is below 2**-32 * step per entry.
    """

    step: float = 0.25
    name = "test-stochround"
    unbiased = True
    needs_rng = True

    def _encode_batch(self, X, rng):
        n, d = X.shape
        t = X.astype(np.float64) / self.step
        lo = np.floor(t)
        up = batch_uniform_bits(rng, n, d) * 2.0**-32 < t - lo
        buffer = (lo + up).astype("<i4").reshape(-1).view(np.uint8).copy()
        return buffer, np.arange(n + 1, dtype=np.int64) * 4 * d, np.full(n, 32 * d, np.int64), None

    def _decode_batch(self, buffer, offsets, d, dtype, keys):
        n = offsets.shape[0] - 1
        if np.any(np.diff(offsets) != 4 * d):
            raise DecodeError("test-stochround: wrong row length")
        L = np.frombuffer(buffer[offsets[0] : offsets[-1]].tobytes(), "<i4").reshape(n, d)
        return (L * self.step).astype(dtype), np.full(n, 32 * d, np.int64)


def test_golden_bytes():
    x = np.array([1.0, 0.1, -2.5], np.float32)
    # fp16 then identity: the fp32 bytes of the fp16-rounded vector (0.1 -> 0x3dccc000).
    p = Chain([make("fp16"), make("identity")]).compress(x)
    assert p.codec == "chain" and p.nbits == 96
    assert p.to_bytes().hex() == "0000803f00c0cc3d000020c0"
    # identity then fp16: the fp16 bytes (1.0 -> 0x3c00, 0.1 -> 0x2e66, -2.5 -> 0xc100).
    p = Chain([make("identity"), make("fp16")]).compress(x)
    assert p.nbits == 48 and p.to_bytes().hex() == "003c662e00c1"


def _random_chains():
    out = [
        Chain([StochRound(0.25), StochRound(0.5)]),
        Chain([make("fp16"), StochRound(0.125), make("identity")]),
        Chain([StochRound(0.25), StochRound(0.5), make("identity")]),  # order of stages matters
    ]
    if _have("qsgd"):
        out.append(Chain([StochRound(0.25), make("qsgd", s=4)]))
        out.append(Chain([make("qsgd", s=8, bucket=16), make("qsgd", s=2)]))
    if _have("topk", "qsgd"):
        out.append(make("chain", stages=[{"name": "topk", "k": 5}, {"name": "qsgd", "s": 4}]))
    if _have("terngrad", "sign"):
        out.append(make("chain", stages=[{"name": "terngrad"}, {"name": "sign"}]))
    return out


@pytest.mark.parametrize("chain", _random_chains(), ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_semantics_and_stream_order(chain, dtype):
    """compress = last.compress(... decompress(first.compress(x, g)) ..., g), stages in order."""
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((4, 23)) * 3).astype(dtype)
    X[1] = 0.0
    # Single vector, one generator consumed stage after stage.
    for x in X:
        got = chain.compress(x, np.random.default_rng(5))
        g = np.random.default_rng(5)
        y = x
        for s in chain.stages[:-1]:
            y = s.decompress(s.compress(y, g if s.needs_rng else None))
        want = chain.stages[-1].compress(y, g if chain.stages[-1].needs_rng else None)
        assert got.to_bytes() == want.to_bytes() and got.nbits == want.nbits
        out = chain.decompress(got)
        assert out.dtype == dtype and np.array_equal(out, chain.stages[-1].decompress(want))
        # The receiver's side: from_bytes with only the dimension.
        back = chain.from_bytes(got.to_bytes(), x.size, dtype=dtype, key=got.key)
        assert np.array_equal(chain.decompress(back), out)
    # Batch with one generator: stage j's batch draw for all rows, then stage j+1's.
    got = chain.compress_batch(X, np.random.default_rng(8))
    g = np.random.default_rng(8)
    Y = X
    for s in chain.stages[:-1]:
        Y = s.decompress_batch(s.compress_batch(Y, g if s.needs_rng else None))
    want = chain.stages[-1].compress_batch(Y, g if chain.stages[-1].needs_rng else None)
    assert got.buffer.tobytes() == want.buffer.tobytes() and np.array_equal(got.nbits, want.nbits)
    # Batch with per-row generators == per-row compress, bit for bit.
    got = chain.compress_batch(X, [np.random.default_rng(100 + i) for i in range(4)])
    for i in range(4):
        assert got[i].to_bytes() == chain.compress(X[i], np.random.default_rng(100 + i)).to_bytes()
    assert np.array_equal(chain.decompress_batch(got), np.stack([chain.decompress(p) for p in got]))


@pytest.mark.skipif(not _have("topk", "qsgd"), reason="topk/qsgd not registered yet")
def test_topk_then_qsgd_sends_fewer_bits_on_the_topk_support():
    d, k = 1000, 50
    rng = np.random.default_rng(4)
    x = rng.standard_normal(d).astype(np.float32)
    chain = make("chain", stages=[{"name": "topk", "k": k}, {"name": "qsgd", "s": 4}])
    q = make("qsgd", s=4)
    top = set(np.argsort(-np.abs(x))[:k].tolist())
    for seed in range(5):
        pc = chain.compress(x, np.random.default_rng(seed))
        pq = q.compress(x, np.random.default_rng(seed))
        assert pc.nbits < pq.nbits
        y = chain.decompress(pc)
        assert set(np.flatnonzero(y).tolist()) <= top
        assert np.all(np.sign(y[y != 0]) == np.sign(x[y != 0]))


def _z_test_unbiased(chain, x, trials, seed):
    """Per-coordinate and aggregate z-tests of E[chain(x)] = x (CLT, sample variance)."""
    gens = [np.random.default_rng([seed, t]) for t in range(trials)]
    Y = chain.decompress_batch(chain.compress_batch(np.tile(x, (trials, 1)), gens)).astype(np.float64)
    mean, sd = Y.mean(axis=0), Y.std(axis=0, ddof=1)
    fixed = sd == 0
    assert np.array_equal(mean[fixed], x[fixed].astype(np.float64))  # deterministic coordinates
    z = (mean[~fixed] - x[~fixed]) / (sd[~fixed] / np.sqrt(trials))
    assert np.all(np.abs(z) < Z_CRIT), f"max |z| = {np.abs(z).max():.2f}"
    s = Y.sum(axis=1)
    z_sum = (s.mean() - float(x.astype(np.float64).sum())) / (s.std(ddof=1) / np.sqrt(trials))
    assert abs(z_sum) < Z_CRIT, f"aggregate z = {z_sum:.2f}"


def test_chain_of_unbiased_stages_is_unbiased_local():
    x = np.random.default_rng(1).uniform(-1, 1, 40)
    chain = Chain([StochRound(0.25), StochRound(0.5)])
    assert chain.unbiased and chain.needs_rng
    _z_test_unbiased(chain, x, 4000, seed=21)
    # Power check: the same test rejects a chain with a biased stage (floor to the 0.5 grid,
    # bias up to 0.5 per entry, far beyond Z_CRIT * sd / sqrt(4000) < 0.03).
    biased = Chain([StochRound(0.25), _Floor()])
    assert not biased.unbiased
    with pytest.raises(AssertionError):
        _z_test_unbiased(biased, x, 4000, seed=21)


@dataclass(frozen=True)
class _Floor(StochRound):
    """Test-only biased map: floor to multiples of ``step`` (same message as StochRound)."""

    step: float = 0.5
    name = "test-floor"
    unbiased = False

    def _encode_batch(self, X, rng):
        return super()._encode_batch(np.floor(X / self.step) * self.step, rng)


@pytest.mark.skipif(not _have("qsgd", "terngrad"), reason="qsgd/terngrad not registered yet")
def test_chain_of_unbiased_registered_stages_is_unbiased():
    x = np.random.default_rng(2).standard_normal(60).astype(np.float32)
    x[:3] = 0.0
    chain = make("chain", stages=[{"name": "terngrad"}, {"name": "qsgd", "s": 2}])
    assert chain.unbiased
    _z_test_unbiased(chain, x, 4000, seed=22)


def test_theory_flags():
    assert Chain([make("identity"), make("identity")]).unbiased
    assert not Chain([make("identity"), make("fp16")]).unbiased
    assert not Chain([make("identity"), make("fp16")]).needs_rng
    assert Chain([make("fp16"), StochRound()]).needs_rng
    c = Chain([StochRound(), StochRound()])
    x = np.ones(5)
    assert c.variance_bound(x) is None and c.exact_variance(x) is None
    if _have("qsgd", "topk"):
        assert make("chain", stages=["qsgd", "qsgd"]).unbiased
        assert not make("chain", stages=[{"name": "topk", "k": 2}, "qsgd"]).unbiased
    if _have("randk"):
        c = make("chain", stages=["fp16", {"name": "randk", "k": 2}])
        assert c.needs_key == make("randk", k=2).needs_key


def test_config_round_trip_nested():
    inner = Chain([make("fp16"), make("identity")])
    chains = [inner, Chain([inner, make("fp16")]), Chain(({"name": "identity"}, "fp16"))]
    if _have("topk", "qsgd"):
        chains.append(make("chain", stages=[{"name": "topk", "ratio": 0.1}, {"name": "qsgd", "s": 4, "bucket": 64}]))
    for c in chains:
        cfg = c.get_config()
        assert cfg["name"] == "chain" and isinstance(cfg["stages"], list) and len(cfg["stages"]) >= 2
        text = json.dumps(cfg)
        back = Chain.from_config(text)
        assert back == c and hash(back) == hash(c) and make(json.loads(text)) == c
        assert isinstance(back.stages, tuple)
    assert Chain([inner, make("fp16")]).get_config()["stages"][0] == inner.get_config()


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="stages must hold at least 2"):
        Chain([make("fp16")])
    with pytest.raises(ValueError, match="stages must hold at least 2"):
        make("chain", stages=[])
    with pytest.raises(TypeError, match=r"stages\[1\] must be a simdist Compressor"):
        Chain([make("fp16"), 3])
    with pytest.raises(TypeError, match=r"stages\[0\]"):
        Chain([ErrorFeedback(make("fp16")), make("fp16")])
    with pytest.raises(ValueError, match=r"stages\[1\]: unknown compressor 'nope'"):
        Chain(["fp16", {"name": "nope"}])
    with pytest.raises(ValueError, match=r"stages\[0\]: unknown parameter"):
        Chain([{"name": "fp16", "s": 3}, "fp16"])
    with pytest.raises(TypeError, match="stages must be a list"):
        Chain("fp16")
    with pytest.raises(TypeError, match="stages must be a list"):
        Chain({"name": "fp16"})
    with pytest.raises(ValueError, match="config is for"):
        Chain.from_config({"name": "fp16"})
    c = Chain([StochRound(), StochRound()])
    with pytest.raises(TypeError, match="rng"):
        c.compress(np.ones(3))
    with pytest.raises(ValueError, match="written by 'fp16'"):
        Chain([make("identity"), make("fp16")]).decompress(make("fp16").compress(np.ones(3, np.float32)))
    if _have("topk"):
        with pytest.raises(ValueError, match="k"):
            make("chain", stages=[{"name": "topk", "k": 10}, "fp16"]).compress(np.ones(5, np.float32))


def _fuzz_chains():
    out = [Chain([make("fp16"), make("identity")]), Chain([make("identity"), make("fp16")])]
    if _have("topk", "qsgd"):
        out.append(make("chain", stages=[{"name": "topk", "k": 1}, {"name": "qsgd", "s": 4}]))
    if _have("sign"):
        out.append(make("chain", stages=["fp16", "sign"]))
    return out


FUZZ = _fuzz_chains()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(FUZZ) - 1),
    d=st.integers(1, 24),
    seed=st.integers(0, 2**32 - 1),
    mode=st.sampled_from(["random", "truncate", "flip", "append"]),
    junk=st.binary(min_size=0, max_size=64),
    pos=st.integers(0, 10**6),
)
def test_decoder_fuzz(which, d, seed, mode, junk, pos):
    chain = FUZZ[which]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(d).astype(np.float32)
    good = chain.compress(x, rng if chain.needs_rng else None).to_bytes()
    if mode == "random":
        data = junk
    elif mode == "truncate":
        data = good[: pos % (len(good) + 1)]
    elif mode == "flip":
        b = bytearray(good)
        if b:
            b[pos % len(b)] ^= 1 << (pos % 8)
        data = bytes(b)
    else:
        data = good + (junk or b"\x00")
    try:
        p = chain.from_bytes(data, d, dtype=np.float32)
    except DecodeError:
        return
    y = chain.decompress(p)
    assert y.shape == (d,) and y.dtype == np.float32 and np.all(np.isfinite(y))
