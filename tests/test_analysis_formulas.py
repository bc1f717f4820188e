"""Every formula of analysis/ against hand-computed values and brute-force enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import lower_bounds as lb
from analysis import qsgd as aq
from analysis import quantizers as qz
from analysis import sgd
from analysis import sparsification as sp

# -- brute force oracles: enumerate every outcome of a stochastic rounding ------------------------


def _enumerate_rounding(r, lo, hi):
    """Yield (probability, rounded r) over all 2^d outcomes of unbiased rounding of r in [lo, hi]."""
    width = hi - lo
    p = np.divide(r - lo, width, out=np.zeros_like(r), where=width > 0)
    for bits in itertools.product((0, 1), repeat=r.size):
        b = np.array(bits, dtype=bool)
        prob = float(np.prod(np.where(b, p, 1 - p)))
        yield prob, np.where(b, hi, lo)


def _brute_moments(v, lo_r, hi_r, scale):
    """E[Q], E||Q - v||^2 and E nnz(Q) for Q_i = scale sgn(v_i) * (lo or hi) by enumeration."""
    r = np.abs(v) / scale
    mean = np.zeros_like(v)
    var = nnz = 0.0
    for prob, q in _enumerate_rounding(r, lo_r, hi_r):
        y = scale * np.sign(v) * q
        mean += prob * y
        var += prob * float(np.sum((y - v) ** 2))
        nnz += prob * np.count_nonzero(y)
    return mean, var, nnz


VECTORS = [
    np.array([3.0, -4.0, 0.0]),
    np.array([0.1, 0.2, -0.3, 0.05]),
    np.array([1.0, 1.0, 1.0, 1.0]),
    np.array([2.0]),
    np.array([0.7, -0.01, 0.3, 0.0, -0.5]),
]


# -- QSGD -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("d,s,expected", [(100, 2, 5.0), (4, 4, 0.25), (16, 4, 1.0), (512, 16, math.sqrt(2)), (1, 1, 1.0)])
def test_qsgd_variance_factor_known_points(d, s, expected):
    # min(d/s^2, sqrt(d)/s): (100,2) -> min(25, 5); (4,4) -> min(1/4, 1/2); (16,4) -> min(1, 1)
    assert aq.qsgd_variance_factor(d, s) == pytest.approx(expected, rel=1e-15)
    assert aq.qsgd_variance_bound(d, s, 3.0) == pytest.approx(3.0 * expected, rel=1e-15)


def test_qsgd_nnz_bound_known_points():
    assert aq.qsgd_nnz_bound(100, 2) == 24.0  # 2 (2 + 10)
    assert aq.qsgd_nnz_bound(10000, 4) == 416.0  # 4 (4 + 100)


def test_qsgd_code_length_theorem_3_2_by_hand():
    # d = 16, s = 2: s(s + sqrt d) = 12; 2 (s^2 + d) = 40; log2(40/12) = log2(10/3) = 1.7369655941662063
    # (3 + 1.5 * 1.7369655941662063) * 12 + 32 = 5.6054483912493094 * 12 + 32 = 99.26538069499171
    assert aq.qsgd_code_length_bound(16, 2) == pytest.approx(99.26538069499171, rel=1e-13)
    # d = 10000, s = 4: m = 416, 2 (16 + 10000)/416 = 48.153846..., log2 = 5.589556...
    m = 416.0
    assert aq.qsgd_code_length_bound(10000, 4) == pytest.approx((3 + 1.5 * math.log2(20032 / m)) * m + 32)
    assert aq.qsgd_dense_code_length_bound(1000) == 2832.0
    with pytest.raises(ValueError, match="s must be in"):
        aq.qsgd_code_length_bound(16, 1)  # Theorem 3.2 needs s >= 2


@pytest.mark.parametrize("v", VECTORS)
@pytest.mark.parametrize("s", [1, 2, 3, 8])
@pytest.mark.parametrize("norm", ["l2", "max"])
def test_qsgd_exact_identities_match_enumeration(v, s, norm):
    scale = float(np.linalg.norm(v)) if norm == "l2" else float(np.max(np.abs(v)))
    l, p, _ = aq.qsgd_levels(v, s, scale)
    lo = l / s
    hi = np.minimum(l + 1, s) / s
    mean, var, nnz = _brute_moments(v, lo, hi, scale)
    np.testing.assert_allclose(mean, v, atol=1e-12)  # Lemma 3.1 (i) by enumeration
    assert aq.qsgd_exact_variance(v, s, scale) == pytest.approx(var, rel=1e-12, abs=1e-15)
    assert aq.qsgd_expected_nnz(v, s, scale) == pytest.approx(nnz, rel=1e-12, abs=1e-15)
    if norm == "l2":
        assert var <= aq.qsgd_variance_bound(v.size, s, float(v @ v)) * (1 + 1e-12)
        assert nnz <= aq.qsgd_nnz_bound(v.size, s) + 1e-12


def test_qsgd_hand_values_and_zero_vector():
    # v = (3, 4), s = 2: r = (.6, .8), l = (1, 1), p = (.2, .6): 25/4 (0.16 + 0.24) = 2.5
    assert aq.qsgd_exact_variance([3.0, 4.0], 2) == pytest.approx(2.5, rel=1e-14)
    assert aq.qsgd_expected_nnz([3.0, 4.0], 1) == pytest.approx(1.4, rel=1e-14)
    assert aq.qsgd_exact_variance(np.zeros(5), 4) == 0.0
    assert aq.qsgd_expected_nnz(np.zeros(5), 4) == 0.0
    with pytest.raises(ValueError, match="scale must be >= max"):
        aq.qsgd_exact_variance([3.0, 4.0], 2, scale=3.0)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=40),
    st.integers(1, 64),
)
def test_qsgd_lemma_3_1_bounds_hold_for_the_exact_values(vals, s):
    v = np.array(vals)
    n2 = float(v @ v)
    assert aq.qsgd_exact_variance(v, s) <= aq.qsgd_variance_bound(v.size, s, n2) * (1 + 1e-9) + 1e-300
    assert aq.qsgd_expected_nnz(v, s) <= aq.qsgd_nnz_bound(v.size, s) + 1e-9


def test_qsgd_convergence_statements_by_hand():
    # B' = min(16/16, 4/4) * 1 = 1; T = 1 * max(2 * 1 / (2 * 0.01), 1 / 0.1) = 100
    assert aq.qsgd_iterations(0.1, 1.0, 1.0, 1.0, 16, 4, 2) == pytest.approx(100.0)
    assert aq.qsgd_iterations(0.1, 50.0, 1.0, 1.0, 16, 4, 2) == pytest.approx(500.0)  # L/eps dominates
    # gamma = (R / sqrt(B')) sqrt(2/T) = sqrt(2/8) = 0.5; step = 1 / (1 + sqrt(4) / 0.5) = 0.2
    assert aq.qsgd_step_size(1.0, 1.0, 1.0, 16, 4, 4, 8) == pytest.approx(0.2)
    assert aq.qsgd_step_size(2.0, 1.0, 0.0, 16, 4, 4, 8) == 0.5
    # sqrt(1 * 4 / 4) + 1 * 1 / 1 = 2
    assert aq.qsgd_nonconvex_bound(1.0, 4.0, 4, 1.0, 16, 4) == pytest.approx(2.0)


# -- NUQSGD and TernGrad --------------------------------------------------------------------------


def test_nuqsgd_levels_and_bound_by_hand():
    assert qz.nuqsgd_levels(3).tolist() == [0.0, 0.125, 0.25, 0.5, 1.0]
    # d = 16, s = 2: 1/8 + min(16/16/4, 4/4) = 0.125 + 0.25
    assert qz.nuqsgd_variance_bound(16, 2, 2.0) == pytest.approx(0.75)
    # d = 10000, s = 1: 1/8 + min(10000/4/4, 100/2) = 50.125
    assert qz.nuqsgd_variance_bound(10000, 1, 1.0) == pytest.approx(50.125)


@pytest.mark.parametrize("v", VECTORS)
@pytest.mark.parametrize("s", [1, 2, 4])
def test_nuqsgd_exact_identities_match_enumeration(v, s):
    levels = qz.nuqsgd_levels(s)
    scale = float(np.linalg.norm(v))
    r = np.abs(v) / scale
    j = np.clip(np.searchsorted(levels, r, side="right") - 1, 0, levels.size - 2)
    mean, var, nnz = _brute_moments(v, levels[j], levels[j + 1], scale)
    np.testing.assert_allclose(mean, v, atol=1e-12)
    assert qz.nuqsgd_exact_variance(v, s) == pytest.approx(var, rel=1e-12, abs=1e-15)
    assert qz.nuqsgd_expected_nnz(v, s) == pytest.approx(nnz, rel=1e-12, abs=1e-15)
    assert var <= qz.nuqsgd_variance_bound(v.size, s, scale**2) * (1 + 1e-12)


@pytest.mark.parametrize("v", VECTORS)
def test_terngrad_identities_match_enumeration(v):
    m = float(np.max(np.abs(v)))
    r = np.abs(v) / m
    mean, var, _ = _brute_moments(v, np.zeros_like(r), np.ones_like(r), m)
    np.testing.assert_allclose(mean, v, atol=1e-12)
    assert qz.terngrad_exact_variance(v) == pytest.approx(var, rel=1e-12, abs=1e-14)
    assert qz.terngrad_second_moment(v) == pytest.approx(var + float(v @ v), rel=1e-12)
    assert qz.terngrad_second_moment([1.0, -2.0, 0.5]) == 7.0  # 2 * 3.5


# -- sparsification -------------------------------------------------------------------------------


def test_topk_and_contraction_by_hand():
    assert sp.topk_exact_error([3.0, -1.0, 2.0, 0.5], 2) == pytest.approx(1.25)
    assert sp.topk_exact_error([3.0, -1.0, 2.0, 0.5], 4) == 0.0
    assert sp.k_contraction_bound(10, 2, 5.0) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="k must be in"):
        sp.k_contraction_bound(10, 11, 1.0)


@pytest.mark.parametrize("v", VECTORS)
@pytest.mark.parametrize("scaled", [False, True])
def test_randk_error_matches_enumeration_of_subsets(v, scaled):
    d = v.size
    for k in range(1, d + 1):
        subsets = list(itertools.combinations(range(d), k))
        err = 0.0
        mean = np.zeros(d)
        for sub in subsets:
            y = np.zeros(d)
            y[list(sub)] = v[list(sub)] * (d / k if scaled else 1.0)
            err += float(np.sum((y - v) ** 2)) / len(subsets)
            mean += y / len(subsets)
        assert sp.randk_exact_error(v, k, scaled) == pytest.approx(err, rel=1e-12, abs=1e-14)
        if scaled:
            np.testing.assert_allclose(mean, v, atol=1e-12)
        else:
            assert err <= sp.k_contraction_bound(d, k, float(v @ v)) * (1 + 1e-12)
        top = sp.topk_exact_error(v, k)
        assert top <= sp.k_contraction_bound(d, k, float(v @ v)) * (1 + 1e-12) + 1e-15


@pytest.mark.parametrize("v", VECTORS[:4])
def test_scaled_sign_identities(v):
    d = v.size
    l1 = float(np.sum(np.abs(v)))
    c = np.where(v >= 0, 1.0, -1.0) * l1 / d  # sign(0) -> +1: every entry sent as +-||v||_1/d
    err = float(np.sum((c - v) ** 2))
    assert sp.scaled_sign_error(v) == pytest.approx(err, rel=1e-12, abs=1e-14)
    delta = sp.scaled_sign_delta(v)
    assert err == pytest.approx((1 - delta) * float(v @ v), rel=1e-12, abs=1e-14)
    assert 1.0 / d - 1e-15 <= delta <= 1.0
    assert sp.scaled_sign_delta([1.0, -1.0, 0.0, 0.0]) == 0.5


def test_ef_sgd_and_memsgd_by_hand():
    # (4 * 1 + 1 * 0) / (2 * 2) = 1; sigma = 0 removes the second term
    assert sp.ef_sgd_nonconvex_bound(1.0, 1.0, 0.0, 0.5, 3) == pytest.approx(1.0)
    # (4*1 + 2*1)/(2*sqrt 4) + 4*4*1*(1-0.5)/(0.25*4) = 1.5 + 8 = 9.5
    assert sp.ef_sgd_nonconvex_bound(1.0, 2.0, 1.0, 0.5, 3) == pytest.approx(9.5)
    assert sp.ef_sgd_step_size(99) == pytest.approx(0.1)
    r = sp.memsgd_rate_terms(2.0, 0.5, 4.0, 100, 10, 20)
    # G^2/(mu T) = 2/10; (d/k)^2 kappa G^2/(mu T^2) = 100*4*2/(0.5*400) = 4; (d/k)^3 G^2/(mu T^3) = 1000*2/(0.5*8000) = 0.5
    assert (r.sgd, r.second, r.third) == pytest.approx((0.2, 4.0, 0.5))
    assert r.total == pytest.approx(4.7)
    assert sp.memsgd_crossover(100, 10, 4.0) == pytest.approx(20.0)
    assert sp.topk_compression_ratio(1024, 4) == pytest.approx(25.6)
    with pytest.raises(ValueError, match="delta must be in"):
        sp.ef_sgd_nonconvex_bound(1.0, 1.0, 1.0, 0.0, 3)


# -- SGD and lower bounds -------------------------------------------------------------------------


def test_sgd_by_hand():
    assert sgd.sgd_convex_bound(1.0, 2.0, 1.0, 4) == pytest.approx(1.25)  # sqrt(4/4) + 1/4
    assert sgd.sgd_step_size(1.0, 1.0, 2.0, 4) == pytest.approx(1 / 3)  # gamma = 1/2
    assert sgd.sgd_iterations(0.5, 1.0, 1.0, 1.0, P=2) == pytest.approx(16.0)
    assert sgd.parallel_variance(4.0, 8) == 0.5


@settings(max_examples=150, deadline=None)
@given(
    st.floats(1e-3, 10), st.floats(1e-2, 10), st.floats(0, 100), st.floats(0, 100), st.integers(1, 64)
)
def test_sgd_sufficient_iterations_reach_eps(eps, R, sigma_sq, L, P):
    # [D]: with T >= max(8 R^2 sigma^2/(P eps^2), 2 L R^2/eps), each term of the bound is <= eps/2.
    T = max(1, math.ceil(sgd.sgd_iterations(eps, R, sigma_sq, L, P)))
    assert sgd.sgd_convex_bound(R, sgd.parallel_variance(sigma_sq, P), L, T) <= eps * (1 + 1e-12)


def test_lower_bounds_by_hand():
    assert lb.tsitsiklis_luo_bits(8, 0.25) == pytest.approx(40.0)  # 8 (3 + 2)
    assert lb.variance_lower_bound(1000, 250.0, 2.0) == pytest.approx(8.0)
    assert lb.ssr_min_variance_factor(64, 32) == pytest.approx(0.0625)  # 4^-2
    assert lb.ssr_min_variance_factor(0, 32) == 1.0
    for b, d in [(1.0, 1), (100.0, 7), (3.5, 1000)]:
        assert lb.ssr_min_bits(lb.ssr_min_variance_factor(b, d), d) == pytest.approx(b)
    assert lb.ssr_min_bits(2.0, 10) == 0.0
    with pytest.raises(ValueError, match="eps must be in"):
        lb.tsitsiklis_luo_bits(8, 1.0)


@pytest.mark.parametrize(
    "call,match,exc",
    [
        (lambda: aq.qsgd_variance_bound(0, 2, 1.0), "d must be in", ValueError),
        (lambda: aq.qsgd_variance_bound(10, 0, 1.0), "s must be in", ValueError),
        (lambda: aq.qsgd_variance_bound(10, 2, -1.0), "norm_sq must be in", ValueError),
        (lambda: aq.qsgd_variance_bound(10.0, 2, 1.0), "d must be an integer", TypeError),
        (lambda: aq.qsgd_exact_variance([], 2), "v must be a non-empty", ValueError),
        (lambda: aq.qsgd_exact_variance([np.nan], 2), "v must be finite", ValueError),
        (lambda: qz.nuqsgd_variance_bound(4, 0, 1.0), "s must be in", ValueError),
        (lambda: sp.randk_exact_error([1.0], 1, "yes"), "scaled must be a bool", TypeError),
        (lambda: sgd.sgd_iterations(0.0, 1, 1, 1), "eps must be in", ValueError),
        (lambda: lb.ssr_min_bits(0.0, 4), "alpha must be in", ValueError),
    ],
)
def test_arguments_are_validated_with_the_parameter_named(call, match, exc):
    with pytest.raises(exc, match=match):
        call()
