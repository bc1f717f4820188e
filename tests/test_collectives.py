"""Dense collectives (ring, recursive doubling, Rabenseifner, allgather) on the simulated transport,
their priced cost against THEORY.md section 6 (analysis.collectives), and the analytic fast path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import collectives as cc
from simdist import collectives
from simdist.collectives import dense
from simdist.collectives.dense import chunk_bounds, make
from simdist.collectives.fastpath import allgather_bits, allreduce_sum, allreduce_trace
from simdist.collectives.simulated import SimulatedTransport
from simdist.network.alphabeta import AlphaBeta

ALLREDUCE = ["ring", "recursive_doubling", "rabenseifner"]
PS = list(range(1, 18)) + [32, 64]
# alpha, beta, gamma chosen so every term is visible and gamma > beta (R0's max matters)
NETS = [AlphaBeta(1.0, 1e-3, 0.0), AlphaBeta(1.0, 1e-3, 5e-4), AlphaBeta(1e-3, 1e-3, 7e-3)]


def _run(name, inputs):
    return SimulatedTransport(len(inputs)).run(make(name), inputs)


def _lg(p):
    return p.bit_length() - 1


# -- registry --------------------------------------------------------------------------------------


def test_registry():
    assert collectives.available() == ["allgather", "rabenseifner", "recursive_doubling", "ring"]
    assert dense.available("allreduce") == ["rabenseifner", "recursive_doubling", "ring"]
    assert make("ring").kind == "allreduce" and make("allgather").kind == "allgather"
    with pytest.raises(ValueError, match=r"collective must be one of \['allgather', 'rabenseifner'"):
        make("tree")
    with pytest.raises(ValueError, match="already registered"):
        dense.register("ring", "allreduce", dense.ring_allreduce)
    with pytest.raises(ValueError, match="kind"):
        dense.register("x", "bcast", dense.ring_allreduce)


def test_chunk_bounds_as_equal_as_possible():
    for d in range(0, 40):
        for p in range(1, 12):
            sizes = np.diff(chunk_bounds(d, p))
            assert sizes.sum() == d and sizes.max() - sizes.min() <= 1
            assert np.all(np.diff(sizes) <= 0)  # larger first


# -- allreduce results -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALLREDUCE)
@pytest.mark.parametrize("P", PS)
def test_allreduce_equals_sum_on_every_rank(name, P):
    rng = np.random.default_rng(P)
    for d in sorted({1, 2, P - 1 if P > 1 else 1, P, 2 * P + 3, 37}):
        for dtype, tol in [(np.float64, 1e-12), (np.float32, 1e-5)]:
            X = rng.standard_normal((P, d)).astype(dtype)
            keep = X.copy()
            out, _ = _run(name, list(X))
            assert np.array_equal(X, keep)  # inputs untouched
            for o in out:
                assert o.dtype == dtype and o.shape == (d,)
                assert np.array_equal(o, out[0])  # identical on every rank
            scale = np.abs(X).sum(0)
            assert np.all(np.abs(out[0].astype(np.float64) - X.astype(np.float64).sum(0)) <= tol * (1 + scale))
            # integer-valued floats: every summation order is exact
            Z = rng.integers(-1000, 1000, size=(P, d)).astype(dtype)
            outz, _ = _run(name, list(Z))
            assert np.array_equal(outz[0], Z.sum(0))


def test_summation_order_exact_in_float64():
    """Ring chunk 0 adds ranks 0, 1, ..., P-1 in order; power-of-two recursive doubling is the pairwise tree."""
    P, d = 8, 8
    X = np.random.default_rng(1).standard_normal((P, d)) * 10.0 ** np.arange(P)[:, None]
    seq = X[0].copy()
    for r in range(1, P):
        seq = seq + X[r]
    out, _ = _run("ring", list(X))
    assert out[0][0] == seq[0]
    Y = X.copy()
    while Y.shape[0] > 1:
        Y = Y[0::2] + Y[1::2]
    out, _ = _run("recursive_doubling", list(X))
    assert np.array_equal(out[0], Y[0])


@pytest.mark.parametrize("name", ALLREDUCE)
def test_single_rank_sends_nothing_and_returns_a_copy(name):
    x = np.arange(5.0)
    out, trace = _run(name, [x])
    assert np.array_equal(out[0], x) and out[0] is not x and not np.shares_memory(out[0], x)
    assert trace.nrounds == 0 and trace.total_bits == 0


@pytest.mark.parametrize("name", ALLREDUCE)
def test_outputs_do_not_alias(name):
    out, _ = _run(name, list(np.ones((4, 6))))
    out[0][0] = 123.0
    assert all(o[0] == 4.0 for o in out[1:])


def test_allreduce_rejects_non_vectors():
    with pytest.raises(TypeError, match="1-D numpy array"):
        _run("ring", [np.ones((2, 2)), np.ones((2, 2))])


# -- trace structure ---------------------------------------------------------------------------------


@pytest.mark.parametrize("P", PS)
def test_round_counts(P):
    rem = P - (1 << _lg(P))
    X = list(np.ones((P, 3 * P)))
    expected = {
        "ring": 2 * (P - 1),
        "recursive_doubling": _lg(P) + (2 if rem else 0),
        "rabenseifner": 2 * _lg(P) + (2 if rem else 0),
    }
    for name, rounds in expected.items():
        assert _run(name, X)[1].nrounds == rounds, name
    ag = _run("allgather", [b"ab"] * P)[1]
    assert ag.nrounds == (P - 1).bit_length()  # ceil(lg P)


def test_ring_trace_messages_exact():
    P, d = 4, 10  # chunks 3, 3, 2, 2 float64
    _, trace = _run("ring", list(np.ones((P, d))))
    m = trace.messages()
    assert len(m) == 2 * (P - 1) * P
    assert np.all(m[:, 2] == (m[:, 1] + 1) % P)
    sizes = 64 * np.diff(chunk_bounds(d, P))
    # round s: rank r sends chunk (r - s) (reduce-scatter), chunk (r + 1 - s') in allgather round s'
    for rnd, src, _, nbits in m.tolist():
        c = (src - rnd) % P if rnd < P - 1 else (src + 1 - (rnd - P + 1)) % P
        assert nbits == sizes[c]
    assert trace.total_bits == 2 * (P - 1) * 64 * d  # each round moves every chunk once
    assert sorted(trace.reductions()[:, 2].tolist()) == sorted((8 * np.diff(chunk_bounds(d, P))).tolist() * (P - 1))


def test_d_smaller_than_p_sends_empty_chunks():
    out, trace = _run("ring", list(np.arange(10.0).reshape(5, 2)))
    assert out[0].tolist() == [20.0, 25.0]
    assert trace.nrounds == 8 and (trace.messages()[:, 3] == 0).sum() > 0


# -- priced cost against the closed forms (THEORY.md 6; analysis.collectives) ------------------------


@pytest.mark.parametrize("P", PS)
@pytest.mark.parametrize("net", NETS, ids=["no-gamma", "gamma<beta", "gamma>beta"])
def test_priced_cost_equals_closed_form(P, net):
    args = (net.alpha, net.beta, net.gamma)
    p2 = 1 << _lg(P)
    # d divisible by P (ring) and by p' (Rabenseifner) so chunks are equal; float32
    d = 4 * P * p2
    n = 4 * d
    X = list(np.ones((P, d), np.float32))
    for name, f in [("ring", cc.ring_allreduce_cost), ("recursive_doubling", cc.recursive_doubling_allreduce_cost),
                    ("rabenseifner", cc.rabenseifner_allreduce_cost)]:
        _, trace = _run(name, X)
        assert net.price(trace) == pytest.approx(f(P, n, *args), rel=1e-12, abs=1e-12), name
        # the fast path's trace prices the same (it is equal; checked below too)
        assert net.price(allreduce_trace(name, P, d, 4)) == pytest.approx(f(P, n, *args), rel=1e-12, abs=1e-12)
    # allgather of equal blocks (n = gathered bytes)
    blk = 24
    _, trace = _run("allgather", [bytes(blk)] * P)
    assert net.price(trace) == pytest.approx(cc.recursive_doubling_allgather_cost(P, blk * P, *args), rel=1e-12)


def test_powers_of_two_match_thakur_textbook_forms():
    """For p = 2^k the executed traces price to Thakur-Rabenseifner-Gropp's formulas, written out here."""
    a, b, g = 1.0, 1e-3, 5e-4
    net = AlphaBeta(a, b, g)
    for P in [2, 4, 8, 16]:
        d = 64 * P
        n = 8 * d
        X = list(np.ones((P, d)))
        lg = _lg(P)
        assert net.price(_run("ring", X)[1]) == pytest.approx(2 * (P - 1) * a + 2 * (P - 1) / P * n * b
                                                              + (P - 1) / P * n * g)
        assert net.price(_run("recursive_doubling", X)[1]) == pytest.approx(lg * (a + n * b + n * g))
        assert net.price(_run("rabenseifner", X)[1]) == pytest.approx(2 * lg * a + 2 * (P - 1) / P * n * b
                                                                      + (P - 1) / P * n * g)
        assert net.price(_run("allgather", [bytes(16)] * P)[1]) == pytest.approx(lg * a + (P - 1) * 16 * b)


@pytest.mark.parametrize("P", PS)
def test_unequal_chunks(P):
    """d not divisible by P: ring is exactly the max-chunk form; Rabenseifner lies between the forms."""
    net = AlphaBeta(1.0, 1e-3, 5e-4)
    args = (net.alpha, net.beta, net.gamma)
    p2 = 1 << _lg(P)
    for d in sorted({P + 1, 3 * P - 1, 5 * P + 2}):
        if d % P == 0:
            continue
        X = list(np.ones((P, d), np.float32))
        ring = net.price(_run("ring", X)[1])
        assert ring == pytest.approx(cc.ring_allreduce_cost(P, 4 * d, *args, elem_bytes=4), rel=1e-12)
        cmax = 4 * -(-d // P)  # bytes of the largest chunk
        # messages are at most a max chunk: the max-chunk form bounds it
        assert ring <= cc.ring_allreduce_cost(P, P * cmax, *args) + 1e-12
        assert ring >= cc.ring_allreduce_cost(P, 4 * d, *args) - 1e-12
        if d % p2:
            rab = net.price(_run("rabenseifner", X)[1])
            bmax = 4 * -(-d // p2)
            assert cc.rabenseifner_allreduce_cost(P, 4 * d, *args) - 1e-12 <= rab
            assert rab <= cc.rabenseifner_allreduce_cost(P, p2 * bmax, *args) + 1e-12


# -- allgather ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("P", PS)
def test_allgather_delivers_every_block_with_exact_bits(P):
    rng = np.random.default_rng(100 + P)
    nbits = rng.integers(0, 200, size=P)
    data = [(rng.integers(0, 256, size=(int(nb) + 7) // 8).astype(np.uint8), int(nb)) for nb in nbits]
    out, trace = _run("allgather", data)
    for rank_out in out:
        assert len(rank_out) == P
        for (buf, nb), (buf0, nb0) in zip(rank_out, data):
            assert buf.dtype == np.uint8 and np.array_equal(buf, buf0) and nb == nb0
    # every rank receives the P - 1 other blocks' bits exactly once
    m = trace.messages()
    recv_bits = np.bincount(m[:, 2], weights=m[:, 3], minlength=P)
    assert np.array_equal(recv_bits, nbits.sum() - nbits)
    assert trace == allgather_bits(nbits)


def test_allgather_accepts_arrays_and_bytes():
    out, trace = _run("allgather", [np.array([1.5]), b"\x01\x02"])
    assert out[1][0][1] == 64 and np.frombuffer(out[1][0][0].tobytes(), np.float64)[0] == 1.5
    assert out[0][1][0].tolist() == [1, 2] and out[0][1][1] == 16
    with pytest.raises(ValueError, match="nbits"):
        _run("allgather", [(b"\x01", 9), (b"\x02", 8)])
    with pytest.raises(TypeError, match="allgather data"):
        _run("allgather", [[1], [2]])


# -- analytic fast path -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALLREDUCE)
@pytest.mark.parametrize("P", PS)
def test_fastpath_equals_executed(name, P):
    rng = np.random.default_rng(7 * P)
    for d in sorted({1, max(P - 1, 1), P, 2 * P + 3, 50}):
        for dtype in (np.float32, np.float64):
            X = rng.standard_normal((P, d)).astype(dtype)
            out, trace = _run(name, list(X))
            s, t = allreduce_sum(X, name)
            assert t == trace
            assert s.dtype == dtype and np.array_equal(s, out[0])  # bit-identical, not just close


@settings(max_examples=60, deadline=None)
@given(P=st.integers(1, 40), d=st.integers(1, 90), name=st.sampled_from(ALLREDUCE), seed=st.integers(0, 2**31))
def test_fastpath_equals_executed_hypothesis(P, d, name, seed):
    X = np.random.default_rng(seed).standard_normal((P, d))
    out, trace = _run(name, list(X))
    s, t = allreduce_sum(X, name)
    assert t == trace and np.array_equal(s, out[0])


@settings(max_examples=60, deadline=None)
@given(nbits=st.lists(st.integers(0, 10_000), min_size=1, max_size=40))
def test_allgather_bits_equals_executed(nbits):
    data = [(np.zeros((nb + 7) // 8, np.uint8), nb) for nb in nbits]
    _, trace = _run("allgather", data)
    assert allgather_bits(np.array(nbits)) == trace


def test_fastpath_trace_is_a_fresh_copy():
    _, t1 = allreduce_sum(np.ones((4, 8)), "ring")
    t1.add_message(99, 0, 1, 1)
    _, t2 = allreduce_sum(np.ones((4, 8)), "ring")
    assert t2.nrounds == 6


def test_fastpath_bad_input():
    with pytest.raises(ValueError, match="algorithm must be one of"):
        allreduce_sum(np.ones((2, 2)), "tree")
    with pytest.raises(ValueError, match="algorithm"):
        allreduce_sum(np.ones((2, 2)), "allgather")
    with pytest.raises(TypeError, match="X must be a 2-D float32 or float64"):
        allreduce_sum(np.ones(3), "ring")
    with pytest.raises(TypeError, match="X must"):
        allreduce_sum(np.ones((2, 2), np.int64), "ring")
    with pytest.raises(ValueError, match="X must have"):
        allreduce_sum(np.ones((2, 0)), "ring")
    with pytest.raises(ValueError, match="nbits"):
        allgather_bits([1, -1])
    with pytest.raises(ValueError, match="nbits"):
        allgather_bits([])
    with pytest.raises(ValueError, match="algorithm"):
        allgather_bits([1, 2], "ring")
    with pytest.raises(ValueError, match="d must be"):
        allreduce_trace("ring", 2, 0, 4)


def test_fastpath_accepts_non_contiguous_input():
    X = np.random.default_rng(3).standard_normal((6, 20))[:, ::2]
    s, _ = allreduce_sum(X, "rabenseifner")
    out, _ = _run("rabenseifner", list(np.ascontiguousarray(X)))
    assert np.array_equal(s, out[0])
