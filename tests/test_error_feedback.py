"""Error feedback: the invariant x + e_old == c + e_new, dynamics, batching, config, errors."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from simdist import compressors
from simdist.compressors import make
from simdist.compressors.error_feedback import ErrorFeedback

U64 = 2.0**-53  # unit roundoff of float64 (the memory's precision)

#: Configurations to try for every registered compressor (names not listed use defaults).
CONFIGS = {
    "qsgd": [{"s": 4}, {"s": 2, "bucket": 16, "norm": "max"}],
    "nuqsgd": [{"s": 3}],
    "terngrad": [{}],
    "onebit": [{}],
    "sign": [{}, {"scaled": False}],
    "topk": [{"k": 1}, {"ratio": 0.3}],
    "randk": [{"k": 1}, {"ratio": 0.3, "scaled": True}],
    "threshold": [{"tau": 0.5}],
    "chain": [
        {"stages": [{"name": "fp16"}, {"name": "identity"}]},
        {"stages": [{"name": "topk", "ratio": 0.3}, {"name": "qsgd", "s": 4}]},
        {"stages": [{"name": "topk", "ratio": 0.3}, {"name": "fp16"}]},
    ],
}


def _cases():
    cases = []
    for name in compressors.available():
        for cfg in CONFIGS.get(name, [{}]):
            try:
                c = make(name, **cfg)
            except ValueError as exc:
                if "unknown compressor" not in str(exc):
                    raise
                continue  # a stage of this config is not registered yet
            cases.append(pytest.param(c, id=f"{name}-{json.dumps(cfg, sort_keys=True)}"))
    return cases


CASES = _cases()


def _exact_class(c) -> bool:
    """Compressors the docstring claims are always bitwise exact (dropped or rounded entries)."""
    if c.name in ("identity", "fp16", "topk", "threshold"):
        return True
    if c.name == "randk":
        return not c.scaled
    if c.name == "chain":
        return all(_exact_class(s) for s in c.stages)
    return False


def _inputs(rng, d, dtype, steps):
    """A fixed-seed input sequence with zeros, tiny and large entries mixed in."""
    out = []
    for t in range(steps):
        x = rng.standard_normal(d) * np.exp(2.0 * rng.standard_normal(d))
        if t % 2 and d > 2:
            x[rng.integers(0, d, size=d // 3)] = 0.0
        if t == 3:
            x[0] = 1e-30  # far below every quantization level
        out.append(x.astype(dtype))
    return out


def _sterbenz_or_zero(r, c):
    """Entries where step 4 (r - c in float64) is exact: c = 0, or r/2 <= c <= 2r (same sign)."""
    a, b = np.abs(r), np.abs(c)
    return (c == 0) | ((np.sign(r) == np.sign(c)) & (0.5 * a <= b) & (b <= 2.0 * a))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("comp", CASES)
def test_invariant_every_compressor(comp, dtype):
    """x + e_old == c + e_new: bitwise where the docstring says so, within one rounding elsewhere."""
    ef = ErrorFeedback(comp)
    rng = np.random.default_rng(1234)
    for d in (1, 7, 64):
        state = ef.init(d, dtype=dtype)
        for t, x in enumerate(_inputs(rng, d, dtype, 6)):
            seed = 1000 * d + t
            payload, new = ef.compress(x, state, np.random.default_rng(seed))
            c = ef.decompress(payload)
            assert c.dtype == x.dtype and new.dtype == np.float64 and new.shape == x.shape
            lhs, rhs = x + state, c + new  # evaluated as NumPy does (float64)
            r = lhs
            # The wire message is the wrapped compressor's own message for q = dtype(x + e_old).
            ref = comp.compress(r.astype(dtype), np.random.default_rng(seed))
            assert ref.to_bytes() == payload.to_bytes() and ref.nbits == payload.nbits
            ok = _sterbenz_or_zero(r, c)
            assert np.array_equal(lhs[ok], rhs[ok]), f"step {t}: Sterbenz entries must be exact"
            if _exact_class(comp):
                assert ok.all() and np.array_equal(lhs, rhs), f"{comp} claimed exact at step {t}"
            # Elsewhere: one rounding of step 4, |fl(c + e_new) - r| <= u(|r| + (1+u)|r - c|).
            # The bound and the difference are themselves evaluated in float64 (relative error
            # a few u), hence the factor 1 + 8u; it is not a tuned tolerance.
            bound = U64 * (np.abs(r) + (1 + U64) * np.abs(r - c.astype(np.float64)))
            assert np.all(np.abs(rhs - lhs) <= bound * (1 + 8 * U64))
            state = new


@pytest.mark.parametrize("comp", CASES[:: max(1, len(CASES) // 6)])
def test_one_step_real_arithmetic(comp):
    """In exact arithmetic, x + e_old - c - e_new is at most the two roundings (steps 1 and 4)."""
    ef = ErrorFeedback(comp)
    rng = np.random.default_rng(5)
    state = ef.init(16)
    for t, x in enumerate(_inputs(rng, 16, np.float32, 6)):
        payload, new = ef.compress(x, state, np.random.default_rng(t))
        c = ef.decompress(payload)
        r = x.astype(np.float64) + state
        for i in range(16):
            gap = Fraction(float(x[i])) + Fraction(float(state[i])) - Fraction(float(c[i])) - Fraction(float(new[i]))
            limit = U64 * (abs(float(r[i])) + abs(float(r[i]) - float(c[i]))) * (1 + 8 * U64)
            assert abs(gap) <= Fraction(limit)
        state = new


def test_topk_exact_and_float32_rounding_is_carried():
    """Top-k with float32 x: the step-2 cast to float32 is kept in the memory, not lost."""
    d, k = 40, 4
    ef = ErrorFeedback(make("topk", k=k)) if "topk" in compressors.available() else None
    if ef is None:
        pytest.skip("topk not registered yet")
    rng = np.random.default_rng(7)
    state = ef.init(d)
    sum_x = [Fraction(0)] * d
    sum_c = [Fraction(0)] * d
    for _ in range(200):
        x = rng.standard_normal(d).astype(np.float32)
        r = x.astype(np.float64) + state
        payload, state = ef.compress(x, state)
        c = ef.decompress(payload)
        assert np.count_nonzero(c) <= k
        # Memory entries that were sent keep exactly the float32 rounding of r.
        sent = c != 0
        assert np.array_equal(state[sent], r[sent] - r[sent].astype(np.float32).astype(np.float64))
        for i in range(d):
            sum_x[i] += Fraction(float(x[i]))
            sum_c[i] += Fraction(float(c[i]))
    # sum_t c_t = sum_t x_t - e_T holds exactly (every step-1 addition was exact for this data).
    assert all(sum_c[i] + Fraction(float(state[i])) == sum_x[i] for i in range(d))


def test_topk_memory_bounded_and_sum_tracks_inputs():
    """Deterministic k-contraction bound: ||e_{t+1}|| <= sqrt(1-k/d) (||e_t|| + ||x_t||)."""
    if "topk" not in compressors.available():
        pytest.skip("topk not registered yet")
    d, k, T = 50, 5, 400
    ef = ErrorFeedback(make("topk", k=k))
    rng = np.random.default_rng(11)
    xs = rng.standard_normal((T, d)) + 0.3  # a fixed sequence with a common drift
    G = np.linalg.norm(xs, axis=1).max()
    a = np.sqrt(1 - k / d)
    limit = a * G / (1 - a)  # fixed point of e <= a (e + G)
    state = ef.init(d, dtype=np.float64)
    norms, total_c = [], np.zeros(d)
    for x in xs:
        prev = np.linalg.norm(state)
        payload, state = ef.compress(x, state)
        total_c += ef.decompress(payload)
        norms.append(np.linalg.norm(state))
        # float64 norms of exactly computed vectors: relative slack 1e-12 covers their rounding.
        assert norms[-1] <= a * (prev + np.linalg.norm(x)) * (1 + 1e-12)
    assert max(norms) <= limit * (1 + 1e-12)
    assert max(norms) > 0.5 * G  # the memory really carries something
    # sum_t c_t = sum_t x_t - e_T (here every step was exact, so to float64 summation error).
    drift = np.abs(total_c + state - xs.sum(axis=0)).max()
    assert drift <= T * 4 * U64 * (np.abs(xs).sum(axis=0).max() + limit)
    # Without the memory the sum of transmitted vectors drifts past that bound (it grows with T).
    plain = sum(make("topk", k=k).decompress(make("topk", k=k).compress(x)) for x in xs)
    assert np.linalg.norm(plain - xs.sum(axis=0)) > 2 * limit


@pytest.mark.parametrize("name", ["qsgd", "sign", "onebit"])
def test_quantizer_memory_tracks_sum(name):
    """With a quantizer the telescoped identity holds to the accumulated float64 roundings."""
    if name not in compressors.available():
        pytest.skip(f"{name} not registered yet")
    ef = ErrorFeedback(make(name))
    d, T = 32, 100
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((T, d)).astype(np.float32)
    state = ef.init(d)
    gap = [Fraction(0)] * d
    budget = np.zeros(d)
    for t, x in enumerate(xs):
        r = x.astype(np.float64) + state
        payload, new = ef.compress(x, state, np.random.default_rng(t))
        c = ef.decompress(payload).astype(np.float64)
        for i in range(d):
            gap[i] += Fraction(float(x[i])) + Fraction(float(state[i])) - Fraction(c[i]) - Fraction(float(new[i]))
        budget += U64 * (np.abs(r) + np.abs(r - c)) * (1 + 8 * U64)
        state = new
    assert all(abs(gap[i]) <= Fraction(float(budget[i])) for i in range(d))
    assert np.linalg.norm(state) < 50 * np.sqrt(d)  # bounded memory (no blow-up) on this sequence


def test_batch_matches_rows_and_compressor():
    comp = make("qsgd", s=4) if "qsgd" in compressors.available() else make("fp16")
    ef = ErrorFeedback(comp)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((5, 33)).astype(np.float32)
    S = rng.standard_normal((5, 33)) * 0.01
    S0 = S.copy()
    batch, new = ef.compress_batch(X, S, [np.random.default_rng(i) for i in range(5)])
    for i in range(5):
        p, s = ef.compress(X[i], S[i], np.random.default_rng(i))
        assert p.to_bytes() == batch[i].to_bytes() and np.array_equal(s, new[i])
    Y = ef.decompress_batch(batch)
    assert np.array_equal(Y, np.stack([ef.decompress(p) for p in batch]))
    # One generator: the wrapped compressor's batch on Q = float32(X + S), same stream.
    b1, _ = ef.compress_batch(X, S, np.random.default_rng(9))
    b2 = comp.compress_batch((X + S).astype(np.float32), np.random.default_rng(9))
    assert b1.buffer.tobytes() == b2.buffer.tobytes()
    assert np.array_equal(S, S0)  # the input state was not modified in place


def test_golden_bytes_fp16_two_steps():
    """fp16 with memory: step 1 sends fp16(x); step 2 sends fp16(x + (x - fp16(x)))."""
    ef = ErrorFeedback(make("fp16"))
    x = np.array([0.1, 1 / 3], np.float32)
    state = ef.init(2)
    p1, state = ef.compress(x, state)
    assert p1.to_bytes().hex() == "662e5535"  # 0x2e66 = 0.0999755859375, 0x3555 = 0.333251953125
    p2, state = ef.compress(x, state)
    assert p2.to_bytes().hex() == "672e5635"  # the carried error tips both entries up one ulp
    assert state.tolist() == [2 * float(x[0]) - 0.0999755859375 - 0.10003662109375,
                              2 * float(x[1]) - 0.333251953125 - 0.33349609375]


def test_state_does_not_change_in_place_and_init_shapes():
    ef = ErrorFeedback(make("identity"))
    assert ef.init(4).shape == (4,) and ef.init((3, 4)).shape == (3, 4)
    assert ef.init(4, dtype=np.float32).dtype == np.float64
    s = np.full(4, 0.25)
    _, s2 = ef.compress(np.ones(4, np.float32), s)
    assert s.tolist() == [0.25] * 4 and s2 is not s


def test_config_round_trip_nested():
    cands = [ErrorFeedback(make("fp16")), ErrorFeedback({"name": "identity"}), ErrorFeedback("fp16")]
    if "qsgd" in compressors.available():
        cands.append(ErrorFeedback(make("chain", stages=[{"name": "fp16"}, {"name": "qsgd", "s": 8}])))
    for ef in cands:
        cfg = ef.get_config()
        assert cfg["name"] == "error_feedback" and cfg["compressor"] == ef.compressor.get_config()
        text = json.dumps(cfg)
        assert ErrorFeedback.from_config(text) == ef
        assert ErrorFeedback.from_config(json.loads(text)) == ef
        assert hash(ErrorFeedback.from_config(text)) == hash(ef)


def test_not_a_registered_compressor():
    ef = ErrorFeedback(make("fp16"))
    assert "error_feedback" not in compressors.available()
    with pytest.raises(ValueError, match="unknown compressor 'error_feedback'"):
        make(ef.get_config())
    with pytest.raises(TypeError, match="spec"):
        make(ef)
    with pytest.raises(TypeError, match=r"stages\[1\]"):
        make("chain", stages=[make("fp16"), ef])


def test_bad_inputs_name_the_parameter():
    ef = ErrorFeedback(make("identity"))
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="state must have the shape"):
        ef.compress(x, ef.init(5))
    with pytest.raises(ValueError, match="state must have the shape"):
        ef.compress_batch(np.ones((2, 4)), ef.init(4))
    with pytest.raises(ValueError, match="state must be the float64 memory"):
        ef.compress(x, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="state must be finite"):
        ef.compress(x, np.array([0.0, np.nan, 0.0, 0.0]))
    with pytest.raises(ValueError, match="state must be finite"):
        ef.compress(x, np.array([0.0, np.inf, 0.0, 0.0]))
    with pytest.raises(TypeError, match="state must be a numpy"):
        ef.compress(x, [0.0] * 4)
    with pytest.raises(ValueError, match="x must be finite"):
        ef.compress(np.array([np.nan, 0, 0, 0], np.float32), ef.init(4))
    with pytest.raises(ValueError, match="overflows float32"):
        ef.compress(x, np.full(4, 1e39))
    with pytest.raises(TypeError, match="compressor must be"):
        ErrorFeedback(3)
    with pytest.raises(TypeError, match="compressor must be a plain compressor"):
        ErrorFeedback(ErrorFeedback(make("fp16")))
    with pytest.raises(ValueError, match="compressor: unknown compressor 'nope'"):
        ErrorFeedback("nope")
    with pytest.raises(ValueError, match="shape"):
        ef.init(0)
    with pytest.raises(ValueError, match="shape"):
        ef.init((1, 2, 3))
    with pytest.raises(TypeError, match="dtype"):
        ef.init(3, dtype=np.int32)
    with pytest.raises(ValueError, match="error_feedback"):
        ErrorFeedback.from_config({"name": "fp16"})
    with pytest.raises(ValueError, match="exactly the key 'compressor'"):
        ErrorFeedback.from_config({"name": "error_feedback", "compressor": {"name": "fp16"}, "x": 1})
    with pytest.raises(Exception):
        ef.compressor = make("fp16")  # frozen
    if "qsgd" in compressors.available():
        with pytest.raises(TypeError, match="rng"):
            ErrorFeedback(make("qsgd")).compress(x, ef.init(4))  # randomized: needs rng
