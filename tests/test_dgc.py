"""DGC: against a plain NumPy reference of its 5 steps, the ErrorFeedback identity, the accumulation
invariant, the warm-up schedule, config, and errors."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _mutations import mutate

from simdist import DecodeError
from simdist.compressors import DGC, DGCState, ErrorFeedback, Payload
from simdist.compressors.topk import TopK
from simdist.reference.sparse import ref_sparse_decode, ref_sparse_encode


# -- the reference (plain NumPy, one row at a time) --------------------------------------------
def ref_density(sparsity: float, warmup_steps: int, step: int) -> Fraction:
    """Warm-up densities 1/4, 1/16, ... while above the final density, in equal stages."""
    final = 1 - Fraction(str(sparsity))
    stages, dens = [], Fraction(1, 4)
    while dens > final:
        stages.append(dens)
        dens /= 4
    if step < warmup_steps and stages:
        return stages[step * len(stages) // warmup_steps]
    return final


def ref_step(cfg: dict, x: np.ndarray, u: np.ndarray, v: np.ndarray, step: int):
    """One DGC step of one node: (message bytes, nbits, decoded values, new u, new v, clipped?)."""
    d = x.size
    g = x.astype(np.float64)
    clipped = False
    if cfg["clip_norm"] is not None:  # 1. clip
        norm = np.sqrt(np.sum(g * g))
        if norm > cfg["clip_norm"]:
            g = g * (cfg["clip_norm"] / norm)
            clipped = True
    u = cfg["momentum"] * u + g  # 2. momentum correction
    v = v + u  # 3. accumulation
    q = v.astype(x.dtype)
    k = max(1, math.ceil(d * ref_density(cfg["sparsity"], cfg["warmup_steps"], step)))
    idx = np.sort(np.argsort(-np.abs(q), kind="stable")[:k])  # 4. exact top-k, ties to the lowest index
    data, nbits = ref_sparse_encode(q, idx)
    c = np.zeros(d)
    c[idx] = q[idx].astype(np.float32)  # the values travel as binary32
    v = v.copy()
    v[idx] -= c[idx]  # 5. clear what was sent (the float32 rounding stays)
    if cfg["momentum_masking"]:
        u = u.copy()
        u[c != 0] = 0.0
    return data, nbits, c, u, v, clipped


def _config(**kw) -> dict:
    cfg = {"momentum": 0.9, "sparsity": 0.99, "warmup_steps": 0, "clip_norm": None, "momentum_masking": True}
    cfg.update(kw)
    return cfg


def _gradients(rng, P, d, dtype, steps):
    """Rows of very different scales, every other step small integers (ties) and zeros."""
    out = []
    for t in range(steps):
        if t % 2:
            X = rng.integers(-3, 4, (P, d)).astype(np.float64)
        else:
            X = rng.standard_normal((P, d)) * np.exp(rng.standard_normal((P, 1)))
        out.append(X.astype(dtype))
    return out


def _run_against_reference(cfg, P, d, dtype, steps, seed):
    """Run DGC (batch and per row) and the reference side by side; return how many rows were clipped."""
    dgc = DGC(**cfg)
    state = dgc.init((P, d), dtype)
    ref = [(np.zeros(d), np.zeros(d)) for _ in range(P)]
    n_clipped = 0
    for t, X in enumerate(_gradients(np.random.default_rng(seed), P, d, dtype, steps)):
        before = DGCState(state.u.copy(), state.v.copy())
        batch, new = dgc.compress_batch(X, state, t)
        assert np.array_equal(state.u, before.u) and np.array_equal(state.v, before.v)  # not in place
        C = dgc.decompress_batch(batch)
        assert C.dtype == X.dtype and new.u.dtype == new.v.dtype == np.float64
        for i in range(P):
            data, nbits, c, u, v, clipped = ref_step(cfg, X[i], *ref[i], t)
            n_clipped += clipped
            assert batch[i].to_bytes() == data and batch[i].nbits == nbits, f"step {t} row {i}"
            assert np.array_equal(C[i], c)
            assert np.array_equal(new.u[i], u) and np.array_equal(new.v[i], v), f"step {t} row {i}"
            p, s = dgc.compress(X[i], DGCState(state.u[i], state.v[i]), t)  # one row alone: the same
            assert p.to_bytes() == data and np.array_equal(s.u, u) and np.array_equal(s.v, v)
            ref[i] = (u, v)
        state = new
    return n_clipped


# -- (a) payloads, nbits and state equal the reference -------------------------------------------
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("masking", [True, False])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("P,d", [(1, 1), (3, 7), (4, 64), (2, 300)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_reference(dtype, P, d, momentum, masking, clip):
    cfg = _config(momentum=momentum, momentum_masking=masking, sparsity=0.99, warmup_steps=3,
                  clip_norm=math.sqrt(d) if clip else None)
    n_clipped = _run_against_reference(cfg, P, d, dtype, steps=7, seed=17 * d + P)
    if clip:
        assert 0 < n_clipped < 7 * P  # both branches of step 1 were exercised
    # Masking changes the velocity (so the comparison above can tell it apart).
    x = np.arange(1.0, d + 1.0)
    _, s = DGC(**cfg).compress(x, DGC(**cfg).init(d, np.float64), 10)
    assert (s.u[-1] == 0.0) == masking


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 4), st.integers(1, 80), st.sampled_from([np.float32, np.float64]),
    st.sampled_from([0.0, 0.5, 0.9, 0.99]), st.sampled_from([0.0, 0.5, 0.9, 0.99, 0.999]),
    st.integers(0, 6), st.one_of(st.none(), st.floats(0.1, 20.0)), st.booleans(), st.integers(0, 2**32 - 1),
)
def test_matches_reference_property(P, d, dtype, momentum, sparsity, warmup, clip, masking, seed):
    cfg = _config(momentum=momentum, sparsity=sparsity, warmup_steps=warmup, clip_norm=clip, momentum_masking=masking)
    _run_against_reference(cfg, P, d, dtype, steps=5, seed=seed)


def test_payload_is_topk_payload_any_topk_decoder_reads_it():
    dgc = DGC(momentum=0.9, sparsity=0.9, warmup_steps=2)
    rng = np.random.default_rng(3)
    state = dgc.init(50)
    for t in range(4):
        x = rng.standard_normal(50).astype(np.float32)
        u, v = state
        payload, state = dgc.compress(x, state, t)
        k = dgc.k_at(t, 50)
        assert payload.codec == "topk" and k == [13, 13, 5, 5][t]
        q = (v + (0.9 * u + x.astype(np.float64))).astype(np.float32)
        assert payload.to_bytes() == TopK(k=k).compress(q).to_bytes()
        assert np.array_equal(TopK(k=k).decompress(payload), dgc.decompress(payload))
        assert np.count_nonzero(dgc.decompress(payload)) == k


# -- (b) momentum 0, no clipping, constant sparsity: exactly ErrorFeedback(TopK(k)) [D] ----------
@pytest.mark.parametrize("masking", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d,sparsity", [(1, 0.5), (40, 0.9), (1000, 0.999), (257, 0.0)])
def test_momentum_zero_is_error_feedback_topk(d, sparsity, dtype, masking):
    dgc = DGC(momentum=0.0, sparsity=sparsity, momentum_masking=masking)
    k = dgc.k_at(0, d)
    assert k == max(1, math.ceil(d * (1 - Fraction(str(sparsity)))))
    ef = ErrorFeedback(TopK(k=k))
    rng = np.random.default_rng(d)
    state, memory = dgc.init((3, d), dtype), ef.init((3, d), dtype)
    carried = False
    for t, X in enumerate(_gradients(rng, 3, d, dtype, 12)):
        batch, state = dgc.compress_batch(X, state, t)
        ref, memory = ef.compress_batch(X, memory)
        assert batch.buffer.tobytes() == ref.buffer.tobytes()
        assert np.array_equal(batch.nbits, ref.nbits) and np.array_equal(batch.offsets, ref.offsets)
        assert np.array_equal(state.v, memory), f"step {t}"
        carried |= bool(np.any(state.v != 0))
    assert carried or k == d  # the memory carries something whenever entries are held back


# -- (c) sum of what was sent + v == sum of the velocities, exactly [D] -------------------------
@pytest.mark.parametrize("masking", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum,T", [(0.0, 40), (0.5, 40), (0.75, 12)])
def test_accumulation_invariant_exact(momentum, T, dtype, masking):
    """Dyadic inputs (j/8, |j| <= 64) and dyadic momentum, few enough steps that every value
    fits in 53 bits (m = 3/4 adds about 2 fractional bits a step): every float64 addition is exact."""
    d = 30
    dgc = DGC(momentum=momentum, sparsity=0.9, warmup_steps=8, momentum_masking=masking)
    rng = np.random.default_rng(5)
    state = dgc.init(d, dtype)
    sent = [Fraction(0)] * d
    velocities = [Fraction(0)] * d
    sent64, vel64 = np.zeros(d), np.zeros(d)
    for t in range(T):
        x = (rng.integers(-64, 65, d) / 8.0).astype(dtype)
        u_t = momentum * state.u + x.astype(np.float64)  # the velocity of step t, from the outside
        payload, state = dgc.compress(x, state, t)
        c = dgc.decompress(payload).astype(np.float64)
        for i in range(d):
            sent[i] += Fraction(float(c[i]))
            velocities[i] += Fraction(float(u_t[i]))
        sent64 += c
        vel64 += u_t
        assert all(sent[i] + Fraction(float(state.v[i])) == velocities[i] for i in range(d)), f"step {t}"
        assert np.array_equal(sent64 + state.v, vel64)
    assert np.count_nonzero(state.v) > d // 2  # most entries hold an unsent remainder


# -- (d) the warm-up schedule -------------------------------------------------------------------
def test_schedule_paper_example():
    paper = [0.75, 0.9375, 0.984375, 0.99609375]
    dgc = DGC(sparsity=0.999, warmup_steps=4)
    assert dgc.warmup_stages == 4
    assert [dgc.sparsity_at(t) for t in range(7)] == paper + [0.999] * 3
    long = DGC(sparsity=0.999, warmup_steps=400)  # four equal stages of 100 steps
    assert [long.sparsity_at(t) for t in (0, 99, 100, 199, 200, 299, 300, 399, 400, 10**9)] == [
        0.75, 0.75, 0.9375, 0.9375, 0.984375, 0.984375, 0.99609375, 0.99609375, 0.999, 0.999]
    assert [long.k_at(t, 1000) for t in (0, 100, 200, 300, 400)] == [250, 63, 16, 4, 1]
    assert [DGC(sparsity=0.999, warmup_steps=10).sparsity_at(t) for t in range(10)] == [
        paper[i] for i in (0, 0, 0, 1, 1, 2, 2, 2, 3, 3)]  # floor(4 t / 10)
    assert DGC(sparsity=0.999).sparsity_at(0) == 0.999  # no warm-up


@pytest.mark.parametrize("sparsity,stages", [(0.0, 0), (0.5, 0), (0.75, 0), (0.8, 1), (0.9375, 1),
                                             (0.95, 2), (0.99, 3), (0.999, 4), (0.9999, 6)])
def test_schedule_stage_count(sparsity, stages):
    dgc = DGC(sparsity=sparsity, warmup_steps=stages)
    assert dgc.warmup_stages == stages
    got = [dgc.sparsity_at(t) for t in range(stages + 2)]
    assert got == [1 - 0.25 ** (j + 1) for j in range(stages)] + [sparsity] * 2
    assert all(a < b for a, b in zip(got[:stages], got[1 : stages + 1]))  # increasing up to the final one


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 999), st.integers(1, 10**6), st.integers(0, 50), st.integers(0, 100))
def test_k_is_exact_ceiling_of_decimal_density(permille, d, warmup, step):
    sparsity = permille / 1000
    dgc = DGC(sparsity=sparsity, warmup_steps=warmup)
    k = dgc.k_at(step, d)
    assert k == max(1, math.ceil(d * ref_density(sparsity, warmup, step)))
    assert 1 <= k <= d
    assert dgc.sparsity_at(step) == float(1 - ref_density(sparsity, warmup, step))


def test_k_at_decimal_edge_cases():
    # the binary value of 0.999 is below 999/1000: ceil(1000 * (1 - 0.999)) would be 2 in floats
    assert math.ceil(1000 * (1 - 0.999)) == 2
    assert DGC(sparsity=0.999).k_at(0, 1000) == 1
    assert DGC(sparsity=0.99).k_at(0, 100) == 1 and DGC(sparsity=0.9).k_at(0, 10) == 1
    assert DGC(sparsity=0.999).k_at(0, 1) == 1 and DGC(sparsity=0.999).k_at(0, 1001) == 2
    assert DGC(sparsity=0.0).k_at(0, 7) == 7


# -- (e) every bad parameter is named -----------------------------------------------------------
@pytest.mark.parametrize("kwargs,exc,match", [
    ({"momentum": -0.1}, ValueError, r"momentum must be in \[0.0, 1.0\)"),
    ({"momentum": 1.0}, ValueError, r"momentum must be in \[0.0, 1.0\)"),
    ({"momentum": float("nan")}, ValueError, r"momentum must be in"),
    ({"momentum": "0.9"}, TypeError, r"momentum must be a real number"),
    ({"momentum": True}, TypeError, r"momentum must be a real number"),
    ({"sparsity": 1.0}, ValueError, r"sparsity must be in \[0.0, 1.0\)"),
    ({"sparsity": -0.01}, ValueError, r"sparsity must be in \[0.0, 1.0\)"),
    ({"sparsity": float("inf")}, ValueError, r"sparsity must be in"),
    ({"sparsity": None}, TypeError, r"sparsity must be a real number"),
    ({"warmup_steps": -1}, ValueError, r"warmup_steps must be in \[0, inf\]"),
    ({"warmup_steps": 2.0}, TypeError, r"warmup_steps must be an integer"),
    ({"warmup_steps": True}, TypeError, r"warmup_steps must be an integer"),
    ({"clip_norm": 0.0}, ValueError, r"clip_norm must be in \(0.0, inf\]"),
    ({"clip_norm": -1.0}, ValueError, r"clip_norm must be in \(0.0, inf\]"),
    ({"clip_norm": float("inf")}, ValueError, r"clip_norm must be in"),
    ({"clip_norm": "1"}, TypeError, r"clip_norm must be a real number"),
    ({"momentum_masking": 1}, TypeError, r"momentum_masking must be a bool"),
    ({"momentum_masking": "yes"}, TypeError, r"momentum_masking must be a bool"),
    ({"momentum_masking": None}, TypeError, r"momentum_masking must be a bool"),
])
def test_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        DGC(**kwargs)


def test_bad_calls_name_the_argument():
    dgc = DGC(sparsity=0.5)
    x = np.ones(4, np.float32)
    s = dgc.init(4)
    with pytest.raises(ValueError, match=r"step must be in \[0, inf\]"):
        dgc.compress(x, s, -1)
    with pytest.raises(TypeError, match="step must be an integer"):
        dgc.compress(x, s, 1.0)
    with pytest.raises(ValueError, match=r"d must be in \[1, inf\]"):
        dgc.k_at(0, 0)
    with pytest.raises(TypeError, match="state must be a DGCState"):
        dgc.compress(x, (s.u, s.v), 0)
    with pytest.raises(ValueError, match=r"state.u must be a C-contiguous float64 array of shape \(4,\)"):
        dgc.compress(x, DGCState(np.zeros(5), s.v), 0)
    with pytest.raises(ValueError, match=r"state.v must be a C-contiguous float64 array"):
        dgc.compress(x, DGCState(s.u, np.zeros(4, np.float32)), 0)
    with pytest.raises(ValueError, match="state.u must be a C-contiguous float64 array"):
        dgc.compress_batch(np.ones((2, 4)), s, 0)
    with pytest.raises(ValueError, match="state.v must be finite"):
        dgc.compress(x, DGCState(s.u, np.array([0.0, np.inf, 0.0, 0.0])), 0)
    with pytest.raises(ValueError, match="shape"):
        dgc.init(0)
    with pytest.raises(ValueError, match="shape"):
        dgc.init((1, 2, 3))
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        dgc.init(3, np.int32)
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        dgc.compress([1.0] * 4, s, 0)
    with pytest.raises(ValueError, match="X must be 2-D"):
        dgc.compress_batch(x, s, 0)
    with pytest.raises(TypeError, match="payload must be a Payload"):
        dgc.decompress(b"\x00")
    with pytest.raises(TypeError, match="batch must be a PayloadBatch"):
        dgc.decompress_batch(None)
    with pytest.raises(Exception):
        dgc.momentum = 0.5  # frozen


def test_malformed_payload_raises_decode_error():
    dgc = DGC(sparsity=0.5)
    payload, _ = dgc.compress(np.arange(1.0, 9.0), dgc.init(8, np.float64), 0)
    data = payload.to_bytes()
    bad = [data[:1], data[:-1], data + b"\x00", b"\xff" * len(data), b"\x00"]  # b"\x00": count 0
    for blob in bad:
        p = Payload(np.frombuffer(blob, np.uint8), 8 * len(blob), 8, np.dtype(np.float64), "topk")
        with pytest.raises(DecodeError):
            dgc.decompress(p)
    wrong_dim = Payload(payload.data, payload.nbits, 9, payload.dtype, "topk")
    with pytest.raises(DecodeError):
        dgc.decompress(wrong_dim)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 200), st.integers(0, 2**32 - 1), st.data())
def test_fuzz_mutated_messages(d, seed, data):
    """A mutated message is rejected with DecodeError, or decodes as the reference reads it."""
    rng = np.random.default_rng(seed)
    dgc = DGC(sparsity=0.9)
    payload, _ = dgc.compress(rng.standard_normal(d), dgc.init(d, np.float64), 0)
    _, msg = mutate(data, payload.to_bytes())
    mutated = Payload(np.frombuffer(bytes(msg), np.uint8), payload.nbits, d, np.dtype(np.float64), "topk")
    try:
        ref, ref_nbits = ref_sparse_decode(bytes(msg), d, np.float64)
    except DecodeError:
        ref = None
    count_zero = len(msg) > 0 and msg[0] < 0x80  # omega(k + 1) = '0': k = 0, refused by DGC
    if ref is None or ref_nbits != payload.nbits or count_zero:
        with pytest.raises(DecodeError):
            dgc.decompress(mutated)
    else:
        assert np.array_equal(dgc.decompress(mutated), ref)


# -- (f) config ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{}, {"momentum": 0.0, "sparsity": 0.0}, {"clip_norm": 2.5, "warmup_steps": 7},
                                    {"momentum": 0.95, "sparsity": 0.9999, "momentum_masking": False}])
def test_config_round_trip(kwargs):
    dgc = DGC(**kwargs)
    cfg = dgc.get_config()
    assert cfg["name"] == "dgc" and set(cfg) == {"name", "momentum", "sparsity", "warmup_steps", "clip_norm",
                                                   "momentum_masking"}
    text = json.dumps(cfg)
    back = DGC.from_config(text)
    assert back == dgc and hash(back) == hash(dgc) and DGC.from_config(json.loads(text)) == dgc
    assert str(back) == str(dgc) == (f"dgc(momentum={dgc.momentum!r}, sparsity={dgc.sparsity!r}, warmup_steps="
                                     f"{dgc.warmup_steps!r}, clip_norm={dgc.clip_norm!r}, momentum_masking="
                                     f"{dgc.momentum_masking!r})")
    assert DGC.from_config({"name": "dgc"}) == DGC()  # missing keys: defaults
    with pytest.raises(ValueError, match="unknown stateful wrapper 'topk'; available: dgc"):
        DGC.from_config({"name": "topk", "k": 3})
    with pytest.raises(TypeError, match="spec must be a stateful wrapper name"):
        DGC.from_config({"momentum": 0.5})
    with pytest.raises(TypeError, match="config must be a dict or its JSON string"):
        DGC.from_config([cfg])
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['k'\] for stateful wrapper 'dgc'"):
        DGC.from_config({**cfg, "k": 3})
    with pytest.raises(ValueError, match="momentum must be in"):
        DGC.from_config({**cfg, "momentum": 2.0})


def test_exported_not_registered():
    from simdist import compressors

    assert compressors.DGC is DGC and "DGC" in compressors.__all__
    assert "dgc" not in compressors.available()


# -- (g) NaN / Inf / overflow -------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_input_raises(bad, dtype):
    dgc = DGC(clip_norm=1.0)
    x = np.ones(6, dtype)
    x[3] = bad
    with pytest.raises(ValueError, match="x must be finite; found NaN or Inf at flat index 3"):
        dgc.compress(x, dgc.init(6, dtype), 0)
    X = np.ones((2, 6), dtype)
    X[1, 2] = bad
    state = dgc.init((2, 6), dtype)
    with pytest.raises(ValueError, match="X must be finite; found NaN or Inf at flat index 8"):
        dgc.compress_batch(X, state, 0)
    assert not state.u.any() and not state.v.any()
    with pytest.raises(ValueError, match="state.u must be finite"):
        dgc.compress(np.ones(6, dtype), DGCState(np.full(6, bad), np.zeros(6)), 0)


def test_overflow_raises():
    dgc = DGC(sparsity=0.5)
    with pytest.raises(ValueError, match="overflows float32"):
        dgc.compress(np.ones(4, np.float32), DGCState(np.zeros(4), np.full(4, 1e39)), 0)
    with pytest.raises(ValueError, match="overflows float64"):
        dgc.compress(np.full(4, 1e308), DGCState(np.zeros(4), np.full(4, 1e308)), 0)
    with pytest.raises(ValueError, match="norm of a gradient overflows float64"):
        DGC(clip_norm=1.0).compress(np.full(4, 1e200), DGC().init(4, np.float64), 0)
