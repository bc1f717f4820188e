"""The engine's fast communication path: in-place error feedback, fused aggregation, reused
buffers, per-node generators, divergence of compressed runs, and the array-backed Trace.

Functional tests only (no timings): ``benchmarks/bench_engine.py`` measures the speed and memory.
"""

from __future__ import annotations

import numpy as np
import pytest

import simdist
from simdist import problems
from simdist.collectives.fastpath import allgather_bits, allreduce_sum, allreduce_trace
from simdist.collectives.trace import Trace
from simdist.compressors import make
from simdist.compressors.error_feedback import ErrorFeedback
from simdist.engine.comm import (
    CommState, Diverged, _sampling_rng, communicate, init_comm,
)
from simdist.kernels.rows import mean_rows as _mean_rows
from simdist.kernels.rows import mean_rows_and_residual as _mean_rows_and_residual
from simdist.network import make as make_net
from simdist.problems.partition import sample_minibatch
from simdist.rng import node_step_rng, shared_rng

#: Compressors of every family: quantizers, sign, sparsifiers (rand-k with a shared key), fp16.
CONFIGS = [
    {"name": "qsgd", "s": 16, "bucket": 8},
    {"name": "qsgd", "s": 2, "encoding": "fixed"},
    {"name": "terngrad"},
    {"name": "sign"},
    {"name": "onebit"},
    {"name": "topk", "k": 3},
    {"name": "randk", "k": 4},
    {"name": "fp16"},
]


def _matrix(rng, P, d, dtype):
    G = rng.standard_normal((P, d)) * rng.choice([1e-3, 1.0, 1e3], size=(P, 1))
    G[rng.random((P, d)) < 0.1] = 0.0
    G[rng.random((P, d)) < 0.05] = -0.0  # signed zeros must survive the in-place arithmetic
    return np.ascontiguousarray(G, dtype=dtype)


def _rngs(comp, seed, t, P):
    if comp.needs_key:
        return [shared_rng(seed, t) for _ in range(P)]
    return [node_step_rng(seed, i, t) for i in range(P)]


# -- the fused aggregation kernels ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("P", [1, 2, 3, 4, 5, 8, 9, 13])
def test_fused_mean_and_residual_equal_numpy_bitwise(dtype, P):
    rng = np.random.default_rng(P)
    Pm, Y = _matrix(rng, P, 37, dtype), _matrix(rng, P, 37, dtype)
    want_mean = Y.astype(np.float64).mean(axis=0)  # what the engine computed before the fused kernel
    want_res = Pm - Y
    out = np.full(37, np.nan)
    _mean_rows(Y, out)
    assert out.tobytes() == want_mean.tobytes()  # tobytes: -0.0 vs 0.0 would differ
    out[:] = np.nan
    Yc = Y.copy()
    _mean_rows_and_residual(Pm, Yc, out)
    assert out.tobytes() == want_mean.tobytes() and Yc.tobytes() == want_res.tobytes()


# -- in-place error feedback == ErrorFeedback (float64, bit for bit) -------------------------------
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_in_place_error_feedback_is_the_error_feedback_class_bitwise(cfg):
    P, d, seed = 5, 24, 11
    comp = make(cfg)
    ef = ErrorFeedback(comp)
    st = init_comm(comp, P, d, dtype=np.float64, error_feedback=True, seed=seed)
    assert st.memory.dtype == np.float64 and not st.memory.any()
    state = ef.init((P, d), dtype=np.float64)
    rng = np.random.default_rng(3)
    for t in range(6):
        G = _matrix(rng, P, d, np.float64)
        batch, state = ef.compress_batch(G, state, _rngs(comp, seed, t, P))
        want_agg = ef.decompress_batch(batch).mean(axis=0)
        want_trace = allgather_bits(batch.nbits)
        Gc = G.copy()
        agg, bits, wire, secs = communicate(Gc, st, t)
        assert agg.tobytes() == want_agg.tobytes()
        assert st.memory.tobytes() == state.tobytes()  # the memory, bit for bit (signed zeros too)
        assert bits == batch.nbits.mean() and wire == want_trace.total_bits / P
        assert secs == make_net("10gbe").price(want_trace)
        if not comp.fuses_error_feedback:  # G holds p = g + e_old: it encodes to the class's very bytes
            again = comp.compress_batch(Gc, _rngs(comp, seed, t, P))
            assert again.buffer.tobytes() == batch.buffer.tobytes() and np.array_equal(again.nbits, batch.nbits)


def test_communicate_consumes_g_into_the_accumulated_vector():
    P, d = 3, 16
    st = init_comm({"name": "topk", "k": 2}, P, d, error_feedback=True)
    rng = np.random.default_rng(0)
    communicate(_matrix(rng, P, d, np.float64), st, 0)
    e_old = st.memory.copy()
    G = _matrix(rng, P, d, np.float64)
    Gc = G.copy()
    communicate(Gc, st, 1)
    assert Gc.tobytes() == (G + e_old).tobytes()  # p = g + e_old, in G's storage
    # top-k: the new memory is p except at the k sent entries, where it is p minus p sent as float32
    sent = st.memory != Gc
    assert np.array_equal(sent.sum(axis=1), [2] * P)
    assert np.array_equal(st.memory[sent], Gc[sent] - Gc[sent].astype(np.float32).astype(np.float64))


@pytest.mark.parametrize("name,cfg,kw", [
    ("least_squares", {"name": "qsgd", "s": 4}, dict(nodes=4, steps=12, lr=0.1, batch_size=2, momentum=0.5)),
    ("mean_estimation", {"name": "topk", "k": 2}, dict(nodes=3, steps=12, lr=0.5, batch_size=1)),
    ("least_squares", {"name": "randk", "k": 3}, dict(nodes=2, steps=12, lr=0.05, batch_size=3)),
])
def test_engine_run_is_the_plain_error_feedback_loop(name, cfg, kw):
    """The whole run (losses, bits) equals a plain loop written with the ErrorFeedback class."""
    seed = 5
    h = simdist.train(name, cfg, seed=seed, error_feedback=True, **kw)
    prob, comp = problems.make(name), make(cfg)
    ef = ErrorFeedback(comp)
    P, B = kw["nodes"], kw["batch_size"]
    parts = prob.partition(P, "iid", seed)
    x = np.array(prob.x0, dtype=np.float64)
    v = np.zeros_like(x)
    state = ef.init((P, prob.dim), dtype=np.float64)
    losses, bits = [], []
    for t in range(kw["steps"]):
        G = prob.grads(x, sample_minibatch(parts, B, _sampling_rng(seed, t)))
        batch, state = ef.compress_batch(G, state, _rngs(comp, seed, t, P))
        v = kw.get("momentum", 0.0) * v + ef.decompress_batch(batch).astype(np.float64).mean(axis=0)
        x = x - kw["lr"] * v
        losses.append(prob.loss(x))
        bits.append(batch.nbits.mean())
    assert h.loss.tolist() == losses and h.bits.tolist() == bits


# -- reused buffers carry no state between steps -----------------------------------------------------
@pytest.mark.parametrize("error_feedback", [False, True])
def test_reused_buffers_carry_no_stale_state(error_feedback):
    P, d, seed = 4, 40, 2
    rng = np.random.default_rng(1)
    Gs = [_matrix(rng, P, d, np.float32) for _ in range(4)]
    cfg = {"name": "qsgd", "s": 8, "bucket": 16}
    a = init_comm(cfg, P, d, dtype=np.float32, error_feedback=error_feedback, seed=seed)
    outs = []
    for t, G in enumerate(Gs):
        outs.append(communicate(G.copy(), a, t))
    # the same steps from a fresh state that only receives the memory (the one thing that carries over)
    mem = np.zeros((P, d), np.float32)
    for t, G in enumerate(Gs):
        b = init_comm(cfg, P, d, dtype=np.float32, error_feedback=error_feedback, seed=seed)
        if error_feedback:
            b.memory[...] = mem
        got = communicate(G.copy(), b, t)
        assert got[0].tobytes() == outs[t][0].tobytes() and got[1:] == outs[t][1:]
        mem = None if b.memory is None else b.memory.copy()


def test_float32_memory_stays_float32_and_the_invariant_holds():
    P, d = 3, 50
    rng = np.random.default_rng(4)
    for cfg, exact in (({"name": "topk", "k": 5}, True), ({"name": "qsgd", "s": 4}, False)):
        st = init_comm(cfg, P, d, dtype=np.float32, error_feedback=True, seed=1)
        comp = make(cfg)
        for t in range(4):
            G = _matrix(rng, P, d, np.float32)
            e_old = st.memory.copy()
            communicate(G.copy(), st, t)
            p = G + e_old  # float32: the compressor's input
            c = comp.decompress_batch(comp.compress_batch(p, _rngs(comp, 1, t, P)))
            assert st.memory.dtype == np.float32
            assert st.memory.tobytes() == (p - c).tobytes()  # fused (qsgd) or not (topk)
            lhs = p.astype(np.float64)  # x + e_old after its one float32 rounding
            rhs = c.astype(np.float64) + st.memory.astype(np.float64)
            if exact:
                assert np.array_equal(lhs, rhs)  # sparsifier: Sterbenz, no rounding
            else:
                u = 2.0**-24  # one float32 rounding of e_new = fl(p - c)
                assert np.all(np.abs(lhs - rhs) <= u * np.abs(lhs - c))


def test_full_precision_communication_and_bad_inputs():
    P, d = 6, 10
    st = init_comm(None, P, d, collective="rabenseifner")
    G = _matrix(np.random.default_rng(0), P, d, np.float64)
    agg, bits, wire, secs = communicate(G.copy(), st, 0)
    total, _ = allreduce_sum(G.astype(np.float32), "rabenseifner")  # the executed algorithm's fp32 sum
    assert agg.tobytes() == (total.astype(np.float64) / P).tobytes()
    tr = allreduce_trace("rabenseifner", P, d, 4)
    assert bits == 32 * d and wire == tr.total_bits / P and secs == make_net("10gbe").price(tr)
    with pytest.raises(Diverged, match="float32 range"):
        communicate(np.full((P, d), 1e300), st, 0)
    with pytest.raises(ValueError, match=r"G must be a writable C-contiguous \(6, 10\) float64"):
        communicate(np.zeros((P, d + 1)), st, 0)
    with pytest.raises(ValueError, match="G must be"):
        communicate(np.zeros((P, d), np.float32), st, 0)
    with pytest.raises(ValueError, match="error_feedback needs a compressor"):
        init_comm(None, P, d, error_feedback=True)
    with pytest.raises(ValueError, match="does not fit"):
        init_comm({"name": "topk", "k": 11}, P, d)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        init_comm("qsgd", P, d, dtype=np.int32)
    with pytest.raises(ValueError, match="nodes"):
        init_comm("qsgd", 0, d)
    assert isinstance(st, CommState)


@pytest.mark.parametrize("error_feedback", [False, True])
def test_a_compressed_run_that_diverges_stops_with_the_reason(error_feedback):
    h = simdist.train("least_squares", "qsgd", nodes=2, steps=200, lr=50.0, error_feedback=error_feedback)
    assert h.diverged and h.stopped_at is not None and 0 < h.stopped_at < 200
    assert "qsgd cannot encode" in h.stop_reason and "diverged" in h.stop_reason
    assert h.steps_run == h.stopped_at and np.all(np.isfinite(h.loss))


# -- the array-backed Trace ---------------------------------------------------------------------------
def test_trace_arrays_are_read_only_views_and_appends_keep_order():
    t = Trace(3)
    t.add_message(0, 0, 1, 8)
    t.add_reduction(0, 1, 1)
    m1 = t.messages()
    assert m1.tolist() == [[0, 0, 1, 8]] and not m1.flags.writeable
    with pytest.raises(ValueError):
        m1[0, 3] = 0
    assert t.messages() is not None and np.shares_memory(t.messages(), m1)  # no copy once built
    for k in range(40):  # grows past the initial capacity
        t.add_message(k, k % 3, (k + 1) % 3, k)
    assert m1.tolist() == [[0, 0, 1, 8]]  # an earlier view is unchanged
    m = t.messages()
    assert m.shape == (41, 4) and m[1:, 3].tolist() == list(range(40)) and m[1:, 0].tolist() == list(range(40))
    assert t.nrounds == 40 and t.total_bits == 8 + sum(range(40))
    assert t.reductions().tolist() == [[0, 1, 1]]
    assert t.bits_sent_by_rank().tolist() == [8 + sum(range(0, 40, 3)), sum(range(1, 40, 3)), sum(range(2, 40, 3))]


def test_trace_copies_are_independent():
    t = Trace(2)
    t.add_message(0, 0, 1, 1)
    t.messages()
    c = t.copy()
    t.add_message(1, 1, 0, 2)
    c.add_message(1, 0, 1, 3)
    c.add_reduction(0, 0, 4)
    assert t.messages().tolist() == [[0, 0, 1, 1], [1, 1, 0, 2]] and t.reductions().tolist() == []
    assert c.messages().tolist() == [[0, 0, 1, 1], [1, 0, 1, 3]] and c.reductions().tolist() == [[0, 0, 4]]
    cached1 = allreduce_trace("ring", 4, 8, 4)
    cached1.add_message(99, 0, 1, 1)
    assert allreduce_trace("ring", 4, 8, 4).nrounds == 6  # the cached trace is untouched


def test_trace_from_arrays_extend_dict_and_equality():
    src = np.array([[0, 0, 1, 8], [0, 1, 0, 16]])
    t = Trace.from_arrays(2, src, [[0, 1, 2]])
    src[0, 3] = 999  # the trace owns a copy
    assert t.messages().tolist() == [[0, 0, 1, 8], [0, 1, 0, 16]]
    t.add_message(1, 0, 1, 24)  # appends after arrays work
    u = Trace.from_dict(t.to_dict())
    assert u == t and u.to_dict() == t.to_dict()
    shuffled = Trace.from_arrays(2, t.messages()[::-1], t.reductions())
    assert shuffled == t  # order-free equality
    other = Trace.from_arrays(2, [[0, 0, 1, 8], [0, 1, 0, 16], [1, 0, 1, 25]], [[0, 1, 2]])
    assert other != t and Trace(3) != Trace(2)
    t.extend(other)
    assert t.nrounds == 4 and t.messages()[3:].tolist() == [[2, 0, 1, 8], [2, 1, 0, 16], [3, 0, 1, 25]]
    assert t.reductions().tolist() == [[0, 1, 2], [2, 1, 2]]
    with pytest.raises(ValueError, match="distinct ranks"):
        Trace.from_arrays(2, [[0, 0, 0, 8]])
    with pytest.raises(ValueError, match="distinct ranks"):
        t.add_message(0, 1, 1, 8)
    with pytest.raises(ValueError, match="size 2 with one of size 3"):
        t.extend(Trace(3))


def test_large_ring_trace_prices_from_its_arrays():
    t = allreduce_trace("ring", 64, 1000, 4)
    net = make_net("10gbe")
    m = t.messages()
    assert m.shape == (2 * 63 * 64, 4) and np.shares_memory(m, t.messages())
    # the price from the arrays equals the round-by-round definition (slowest rank per round)
    per = {}
    for rnd, src, _, nbits in m.tolist():
        per[(rnd, src)] = per.get((rnd, src), 0.0) + net.alpha + net.beta * ((nbits + 7) // 8)
    for rnd, rank, nbytes in t.reductions().tolist():
        per[(rnd, rank)] = per.get((rnd, rank), 0.0) + net.gamma * nbytes
    rounds = {}
    for (rnd, _), s in per.items():
        rounds[rnd] = max(rounds.get(rnd, 0.0), s)
    assert net.price(t) == pytest.approx(sum(rounds.values()), rel=1e-12)
