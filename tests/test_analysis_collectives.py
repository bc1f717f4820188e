"""analysis.collectives: the THEORY.md section 6 formulas at hand-computed points, and against the
priced traces of the executed algorithms (simdist.collectives on the simulated transport)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import collectives as ac
from simdist.network import AlphaBeta

PS = list(range(1, 18)) + [32, 64]

# -- hand-computed points --------------------------------------------------------------------------


def test_pow2_split():
    assert [ac.pow2_split(p) for p in (1, 2, 3, 4, 7, 8, 9, 100)] == [
        (1, 0), (2, 0), (2, 1), (4, 0), (4, 3), (8, 0), (8, 1), (64, 36)]


def test_ring_hand_points():
    # p = 4, n = 1000: 6 alpha + 2 * 3 * 250 beta + 3 * 250 gamma
    assert ac.ring_allreduce_cost(4, 1000, 1.0, 0.001, 0.0001) == pytest.approx(6 + 1.5 + 0.075)
    assert ac.ring_allreduce_cost(1, 1000, 1.0, 1.0, 1.0) == 0.0
    # equal chunks: elem_bytes gives the same as the real-valued form
    assert ac.ring_allreduce_cost(4, 64, 1.0, 0.5, 0.25, elem_bytes=4) == pytest.approx(
        ac.ring_allreduce_cost(4, 64, 1.0, 0.5, 0.25))
    # d = 5 floats on p = 2 -> chunks 3, 2 elements (m = 1): RS max(12b + 8g, 8b + 12g)
    a, b, g = 0.0, 1.0, 3.0
    assert ac.ring_allreduce_cost(2, 20, a, b, g, elem_bytes=4) == pytest.approx(8 + 36 + 12)
    # d = 6 on p = 4 -> chunks 2, 2, 1, 1 (m = 2): RS 3 (8b + 8g), AG 3 (8b)
    assert ac.ring_allreduce_cost(4, 24, 0.0, 1.0, 3.0, elem_bytes=4) == pytest.approx(3 * 32 + 3 * 8)
    # d < p: d = 2 on p = 5 -> chunks 1, 1, 0, 0, 0: every round still pays alpha
    assert ac.ring_allreduce_cost(5, 8, 1.0, 1.0, 1.0, elem_bytes=4) == pytest.approx(4 * (1 + 8) + 4 * (1 + 4))


def test_recursive_doubling_hand_points():
    assert ac.recursive_doubling_allreduce_cost(8, 100, 1.0, 0.01, 0.001) == pytest.approx(3 * (1 + 1 + 0.1))
    assert ac.recursive_doubling_allreduce_cost(1, 100, 1.0, 1.0, 1.0) == 0.0
    # p = 6: p' = 4, r = 2 <= p' - 2 -> Thakur's (lg p' + 2) alpha + (lg p' + 2) n beta + (lg p' + 1) n gamma
    assert ac.recursive_doubling_allreduce_cost(6, 100, 1.0, 0.01, 0.001) == pytest.approx(4 + 4 + 0.3)
    # p = 7: r = 3 = p' - 1 -> R0 = max(alpha + n beta, n gamma)
    assert ac.recursive_doubling_allreduce_cost(7, 100, 1.0, 0.01, 0.1) == pytest.approx(10 + 2 * 12 + 2)
    assert ac.recursive_doubling_allreduce_cost(7, 100, 1.0, 0.01, 0.001) == pytest.approx(2 + 2 * 2.1 + 2)


def test_rabenseifner_hand_points():
    # p = 8, n = 800: 6 alpha + 2 * 700 beta + 700 gamma
    assert ac.rabenseifner_allreduce_cost(8, 800, 1.0, 0.01, 0.001) == pytest.approx(6 + 14 + 0.7)
    # p = 5: p' = 4, r = 1 <= p'/2 - 1 = 1: R0 = max(a + n b, n g, a + n/2 (b + g))
    a, b, g, n = 1.0, 0.01, 0.02, 400
    core = 4 * a + 2 * 0.75 * n * b + 0.75 * n * g
    assert ac.rabenseifner_allreduce_cost(5, n, a, b, g) == pytest.approx(max(5, 8, 7) + core + 5)
    # p = 6: r = 2 > p'/2 - 1: the bracket is absent
    assert ac.rabenseifner_allreduce_cost(6, n, 1.0, 0.01, 0.0) == pytest.approx(5 + (4 + 6) + 5)
    # power of two equals the ring's bandwidth and reduction terms, with 2 lg p alpha
    assert ac.rabenseifner_allreduce_cost(16, 1600, 0.0, 0.01, 0.001) == pytest.approx(
        ac.ring_allreduce_cost(16, 1600, 0.0, 0.01, 0.001))


def test_allgather_hand_points():
    assert ac.recursive_doubling_allgather_cost(8, 800, 1.0, 0.01) == pytest.approx(3 + 7)
    assert ac.recursive_doubling_allgather_cost(5, 500, 1.0, 0.01) == pytest.approx(3 + 4)
    assert ac.bruck_allgather_cost(5, 500, 1.0, 0.01) == pytest.approx(3 + 4)
    assert ac.ring_allgather_cost(5, 500, 1.0, 0.01) == pytest.approx(4 + 4)
    assert ac.recursive_doubling_allgather_cost(1, 500, 1.0, 0.01) == 0.0


@pytest.mark.parametrize("p", [2, 3, 5, 6, 7, 9, 12, 13, 15, 17, 31, 33])
def test_non_pow2_is_at_most_thakurs_sum(p):
    """Thakur et al. charge the whole pre-step alpha + n beta + n gamma: an upper bound on R0."""
    q, r = ac.pow2_split(p)
    k = q.bit_length() - 1
    for a, b, g in [(1.0, 0.01, 0.001), (1.0, 0.001, 0.01), (0.0, 1.0, 5.0)]:
        n = 1000.0
        rd_thakur = (k + 2) * a + (k + 2) * n * b + (k + 1) * n * g
        rb_thakur = (2 * k + 2) * a + (2 + 2 * (q - 1) / q) * n * b + (1 + (q - 1) / q) * n * g
        rd = ac.recursive_doubling_allreduce_cost(p, n, a, b, g)
        rb = ac.rabenseifner_allreduce_cost(p, n, a, b, g)
        if r == 0:
            continue
        assert rd <= rd_thakur * (1 + 1e-12) and rb <= rb_thakur * (1 + 1e-12)
        if r <= q - 2:
            assert rd == pytest.approx(rd_thakur, rel=1e-12)


def test_ring_bandwidth_optimal_for_large_n():
    # for large n, ring and Rabenseifner approach 2 n beta; recursive doubling lg p n beta
    n, p = 1e9, 16
    ring = ac.ring_allreduce_cost(p, n, 1e-6, 1e-10)
    rd = ac.recursive_doubling_allreduce_cost(p, n, 1e-6, 1e-10)
    assert ring == pytest.approx(2 * n * 1e-10 * 15 / 16, rel=1e-3)
    assert rd / ring == pytest.approx(4 / (2 * 15 / 16), rel=1e-3)


# -- SparCML [M] -----------------------------------------------------------------------------------


def test_sparcml_hand_points():
    assert ac.sparse_recursive_doubling_cost(8, 10, 1.0, 0.01, 8, "best") == pytest.approx(3 + 30 * 0.08)
    assert ac.sparse_recursive_doubling_cost(8, 10, 1.0, 0.01, 8, "worst") == pytest.approx(3 + 70 * 0.08)
    assert ac.sparse_recursive_doubling_cost(1, 10, 1.0, 0.01) == 0.0
    assert ac.split_allgather_cost(4, 100, 200, 1.0, 0.01, 8) == pytest.approx(5 + 300 * 0.75 * 0.08)
    assert ac.dynamic_dense_cost(4, 100, 1000, 1.0, 0.01, 8, 4) == pytest.approx(5 + 0.75 * (800 + 4000) * 0.01)
    assert ac.sparcml_switch_density() == 0.5
    assert ac.sparcml_switch_density(8, 4) == pytest.approx(1 / 3)


def test_sparcml_best_at_most_worst_and_dense_cheaper_when_dense():
    for P in (2, 4, 8, 64):
        best = ac.sparse_recursive_doubling_cost(P, 1000, 1e-6, 1e-9, case="best")
        worst = ac.sparse_recursive_doubling_cost(P, 1000, 1e-6, 1e-9, case="worst")
        assert best <= worst
    # a result as dense as N: the dense second phase (4 bytes/value) beats items of 8 bytes
    P, N = 16, 10**6
    assert ac.dynamic_dense_cost(P, N // 4, N, 1e-6, 1e-9) < ac.split_allgather_cost(P, N // 4, N, 1e-6, 1e-9)


# -- bad parameters --------------------------------------------------------------------------------

DENSE = [ac.ring_allreduce_cost, ac.recursive_doubling_allreduce_cost, ac.rabenseifner_allreduce_cost,
         ac.recursive_doubling_allgather_cost, ac.ring_allgather_cost, ac.bruck_allgather_cost]


@pytest.mark.parametrize("f", DENSE)
def test_dense_bad_parameters(f):
    with pytest.raises(ValueError, match="p must be"):
        f(0, 10, 1.0, 1.0, 0.0)
    with pytest.raises(TypeError, match="p must be an integer"):
        f(2.5, 10, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="n_bytes"):
        f(2, -1, 1.0, 1.0, 0.0)
    for i, name in enumerate(["alpha", "beta", "gamma"]):
        args = [1.0, 1.0, 0.0]
        args[i] = -1.0
        with pytest.raises(ValueError, match=name):
            f(2, 10, *args)
        args[i] = math.nan
        with pytest.raises(ValueError, match=name):
            f(2, 10, *args)


def test_ring_elem_bytes_errors():
    with pytest.raises(ValueError, match="multiple of elem_bytes"):
        ac.ring_allreduce_cost(2, 10, 1.0, 1.0, elem_bytes=4)
    with pytest.raises(ValueError, match="elem_bytes"):
        ac.ring_allreduce_cost(2, 8, 1.0, 1.0, elem_bytes=0)


def test_sparcml_bad_parameters():
    with pytest.raises(ValueError, match="power of two"):
        ac.sparse_recursive_doubling_cost(6, 10, 1.0, 1.0)
    with pytest.raises(ValueError, match="case"):
        ac.sparse_recursive_doubling_cost(4, 10, 1.0, 1.0, case="typical")
    with pytest.raises(ValueError, match="k must be"):
        ac.split_allgather_cost(4, -1, 10, 1.0, 1.0)
    with pytest.raises(ValueError, match="N must be"):
        ac.dynamic_dense_cost(4, 1, 0, 1.0, 1.0)
    with pytest.raises(ValueError, match="index_bytes"):
        ac.sparcml_switch_density(0, 0)


# -- against the executed algorithms ---------------------------------------------------------------

dense = pytest.importorskip("simdist.collectives.dense")
simulated = pytest.importorskip("simdist.collectives.simulated")

NETS = [AlphaBeta(1e-6, 1e-9, 1e-10), AlphaBeta(1e-6, 1e-10, 1e-9), AlphaBeta(0.0, 1.0, 3.0),
        AlphaBeta(5.0, 0.0, 0.0), AlphaBeta(2e-5, 8e-10, 0.0)]


def _run(name, p, d, dtype=np.float32, seed=0):
    X = np.random.default_rng(seed).standard_normal((p, d)).astype(dtype)
    out, trace = simulated.SimulatedTransport(p).run(dense.make(name), list(X))
    return X, out, trace


def _check(price, formula):
    assert price == pytest.approx(formula, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("p", PS)
def test_ring_trace_equals_formula(p):
    e = 4
    for d in sorted({p, 3 * p, 3 * p + 1, 3 * p + 2, 1, 2, 7}):
        _, _, trace = _run("ring", p, d)
        for net in NETS:
            _check(net.price(trace), ac.ring_allreduce_cost(p, d * e, net.alpha, net.beta, net.gamma, elem_bytes=e))
            if d % p == 0:
                _check(net.price(trace), ac.ring_allreduce_cost(p, d * e, net.alpha, net.beta, net.gamma))


@pytest.mark.parametrize("p", PS)
def test_recursive_doubling_trace_equals_formula(p):
    for d in (1, 5, 64):
        _, _, trace = _run("recursive_doubling", p, d, np.float64)
        for net in NETS:
            _check(net.price(trace), ac.recursive_doubling_allreduce_cost(p, 8 * d, net.alpha, net.beta, net.gamma))


@pytest.mark.parametrize("p", PS)
def test_rabenseifner_trace_equals_formula(p):
    q, _ = ac.pow2_split(p)
    for d in (q, 4 * q, 64 * q):  # blocks equal: d divisible by p'
        _, _, trace = _run("rabenseifner", p, d)
        for net in NETS:
            _check(net.price(trace), ac.rabenseifner_allreduce_cost(p, 4 * d, net.alpha, net.beta, net.gamma))


@pytest.mark.parametrize("p", PS)
def test_allgather_trace_equals_formula(p):
    for blk in (1, 3, 40):  # each rank contributes blk bytes: n = p * blk
        data = [(np.full(blk, i % 256, np.uint8), 8 * blk) for i in range(p)]
        out, trace = simulated.SimulatedTransport(p).run(dense.make("allgather"), data)
        for net in NETS:
            _check(net.price(trace), ac.recursive_doubling_allgather_cost(p, p * blk, net.alpha, net.beta))
            if p & (p - 1) and p > 1:
                _check(net.price(trace), ac.bruck_allgather_cost(p, p * blk, net.alpha, net.beta))
        assert out[0][p - 1][1] == 8 * blk
