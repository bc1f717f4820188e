"""simdist.robust: the aggregation rules against plain definitions, their exact resilience properties
(THEORY.md 9 [D]), the attacks, and analysis.robust (Krum's Proposition 1 by Monte Carlo)."""

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import robust as theory
from simdist.robust import aggregators as agg
from simdist.robust import attacks


def _krum_reference(V, f, m):
    """Krum/Multi-Krum straight from the definition (loops, float64)."""
    V = V.astype(np.float64)
    n = V.shape[0]
    scores = []
    for i in range(n):
        d = sorted(float(np.sum((V[i] - V[j]) ** 2)) for j in range(n) if j != i)
        scores.append(sum(d[: n - f - 2]))
    order = sorted(range(n), key=lambda i: (scores[i], i))[:m]
    return np.mean(V[sorted(order)], axis=0), scores


@pytest.mark.parametrize("n,f,m", [(5, 1, 1), (7, 2, 1), (9, 2, 3), (12, 3, 5), (4, 0, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_krum_equals_the_definition(n, f, m, dtype):
    V = np.random.default_rng(n * 10 + f).standard_normal((n, 6)).astype(dtype)
    want, scores = _krum_reference(V, f, m)
    k = agg.Krum(f=f, m=m)
    np.testing.assert_allclose(k.scores(V), scores, rtol=1e-12)
    np.testing.assert_allclose(k.aggregate(V), want, rtol=1e-12, atol=1e-15)
    if m == 1:  # Krum returns one of the received vectors, exactly
        assert any(np.array_equal(k.aggregate(V), row.astype(np.float64)) for row in V)


def test_krum_ties_go_to_the_lower_index():
    V = np.array([[0.0], [1.0], [0.0], [1.0], [0.0], [0.0]])  # the four zeros score 0, the ones 2
    assert agg.Krum(f=1).select(V).tolist() == [0]
    assert agg.Krum(f=1, m=3).select(V).tolist() == [0, 2, 4]
    V[:] = 1.0  # all equal: every score ties
    assert agg.Krum(f=1, m=4).select(V).tolist() == [0, 1, 2, 3]


def test_median_and_trimmed_mean_equal_numpy_and_scipy():
    from scipy.stats import trim_mean

    V = np.random.default_rng(1).standard_normal((10, 7)).astype(np.float32)
    np.testing.assert_array_equal(agg.Median().aggregate(V), np.median(V.astype(np.float64), axis=0))
    for beta in (0.0, 0.1, 0.2, 0.45):
        got = agg.TrimmedMean(beta=beta).aggregate(V)
        b = int(beta * 10)
        S = np.sort(V.astype(np.float64), axis=0)
        np.testing.assert_allclose(got, S[b:10 - b].mean(axis=0), rtol=1e-15)
        np.testing.assert_array_equal(got, trim_mean(V.astype(np.float64), beta, axis=0))


def test_mean_is_the_engine_mean_bit_for_bit():
    from simdist.kernels.rows import mean_rows

    V = np.random.default_rng(2).standard_normal((9, 33)).astype(np.float32) * 1e3
    want = np.empty(33)
    mean_rows(V, want)
    assert np.array_equal(agg.Mean().aggregate(V), want)


@st.composite
def _honest_and_byzantine(draw):
    f = draw(st.integers(1, 3))
    n = draw(st.integers(2 * f + 3, 2 * f + 8))
    d = draw(st.integers(1, 6))
    # |x| < 1e-100 becomes 0: two distinct values then differ by >= ulp(1e-100) ~ 1e-116, whose square does
    # not underflow (Krum compares squared distances: vectors closer than ~1e-154 look identical to it)
    num = st.floats(-1e6, 1e6).map(lambda x: 0.0 if abs(x) < 1e-100 else x)
    v = np.array(draw(st.lists(num.filter(lambda x: abs(x) <= 1e3), min_size=d, max_size=d)))
    B = np.array(draw(st.lists(st.lists(num, min_size=d, max_size=d), min_size=f, max_size=f)))
    perm = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).permutation(n)
    V = np.concatenate([np.tile(v, (n - f, 1)), B])[perm]
    return V, v, f


@settings(max_examples=60, deadline=None)
@given(_honest_and_byzantine())
def test_identical_honest_vectors_are_recovered_exactly(case):
    """[D] n - f honest copies of v, f arbitrary vectors: Krum / Multi-Krum (n > 2f + 2, m <= n - f),
    the median (n - f > n/2) and the trimmed mean with b >= f all return v exactly."""
    V, v, f = case
    n = V.shape[0]
    np.testing.assert_array_equal(agg.Krum(f=f).aggregate(V), v)
    # Multi-Krum averages m copies of v: exact up to the rounding of (v + ... + v) / m
    np.testing.assert_allclose(agg.Krum(f=f, m=n - f).aggregate(V), v, rtol=4 * 2.0**-52, atol=0)
    np.testing.assert_array_equal(agg.Median().aggregate(V), v)
    beta = (f + 0.5) / n  # b = floor(beta n) = f
    np.testing.assert_allclose(agg.TrimmedMean(beta=beta).aggregate(V), v, rtol=1e-15, atol=0)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 3))
def test_median_and_trimmed_mean_stay_within_the_honest_range(seed, f):
    """[D] per coordinate, the median (f < n/2) and the trimmed mean (b >= f) lie within [min, max] of the
    honest values, whatever the f Byzantine values are."""
    rng = np.random.default_rng(seed)
    n = 2 * f + 2 + int(rng.integers(0, 5))  # b = f needs n - 2f >= 1 values left (beta < 1/2)
    H = rng.standard_normal((n - f, 4))
    B = rng.choice([-1e9, 1e9, 0.0], size=(f, 4)) * rng.random((f, 4))
    V = np.concatenate([H, B])
    lo, hi = H.min(axis=0), H.max(axis=0)
    for rule in (agg.Median(), agg.TrimmedMean(beta=(f + 0.5) / n)):
        out = rule.aggregate(V)
        assert np.all(out >= lo) and np.all(out <= hi), rule


def test_geometric_median_satisfies_its_optimality_condition():
    rng = np.random.default_rng(3)
    V = np.concatenate([rng.standard_normal((9, 5)), 1e4 + rng.standard_normal((3, 5))])
    z = agg.GeometricMedian(tol=1e-15, max_iter=5000).aggregate(V)
    U = (z - V) / np.linalg.norm(z - V, axis=1)[:, None]
    assert np.linalg.norm(U.sum(axis=0)) < 1e-5 * V.shape[0]  # the subgradient of sum ||z - V_i|| vanishes
    assert np.linalg.norm(z) < 2.0  # the 3 far vectors (a minority) barely move it
    one = np.array([[1.0, 2.0]])
    np.testing.assert_array_equal(agg.GeometricMedian().aggregate(one), [1.0, 2.0])


def test_registry_configs_round_trip():
    assert set(agg.available()) == {"mean", "median", "trimmed_mean", "krum", "geometric_median"}
    assert set(attacks.available()) == {"sign_flip", "ipm", "alie", "gaussian"}
    for a in (agg.Krum(f=2, m=3), agg.TrimmedMean(beta=0.2), agg.GeometricMedian(nu=1e-6), agg.Median()):
        cfg = json.loads(json.dumps(a.get_config()))
        assert agg.make(cfg) == a
    for a in (attacks.SignFlip(scale=3.0), attacks.ALIE(z=1.5), attacks.ALIE(), attacks.Gaussian(sigma=2.0)):
        assert attacks.make(json.loads(json.dumps(a.get_config()))) == a


@pytest.mark.parametrize("make,kwargs,match", [
    (agg.make, {"spec": "krum", "f": -1}, r"f must be in \[0, inf\]"),
    (agg.make, {"spec": "krum", "m": 0}, r"m must be in \[1, inf\]"),
    (agg.make, {"spec": "trimmed_mean", "beta": 0.5}, r"beta must be in \[0.0, 0.5\)"),
    (agg.make, {"spec": "geometric_median", "tol": 0.0}, r"tol must be in \(0.0, 1.0\)"),
    (agg.make, {"spec": "median", "beta": 0.1}, "unknown parameter"),
    (agg.make, {"spec": "mode"}, "unknown aggregator 'mode'; available"),
    (attacks.make, {"spec": "sign_flip", "scale": 0.0}, r"scale must be in \(0.0, inf\]"),
    (attacks.make, {"spec": "alie", "z": -1.0}, r"z must be in \(0.0, inf\]"),
    (attacks.make, {"spec": "gaussian", "sigma": float("nan")}, "sigma must be in"),
    (attacks.make, {"spec": "label_flip"}, "unknown attack"),
])
def test_bad_parameters_name_the_parameter_and_range(make, kwargs, match):
    spec = kwargs.pop("spec")
    with pytest.raises(ValueError, match=match):
        make(spec, **kwargs)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"krum with f=2 needs more than 2f \+ 2 = 6 nodes, got nodes=6"):
        agg.Krum(f=2).aggregate(np.zeros((6, 3)))
    with pytest.raises(ValueError, match=r"m must be in \[1, n - f\] = \[1, 5\]"):
        agg.Krum(f=2, m=6).aggregate(np.zeros((7, 3)))
    with pytest.raises(ValueError, match="V must be finite"):
        agg.Median().aggregate(np.array([[1.0, np.nan], [0.0, 0.0]]))
    with pytest.raises(TypeError, match="V must be a numpy.ndarray"):
        agg.Median().aggregate([[1.0]])
    with pytest.raises(ValueError, match="V must be 2-D"):
        agg.Median().aggregate(np.zeros(3))
    with pytest.raises(ValueError, match="honest must be finite"):
        attacks.SignFlip().forge(np.array([[np.inf]]), 1, None)
    with pytest.raises(TypeError, match="needs a numpy.random.Generator"):
        attacks.Gaussian().forge(np.zeros((2, 2)), 1, None)
    with pytest.raises(ValueError, match=r"byzantine must be in \[0, 2\]"):
        attacks.inject(np.zeros((3, 2)), 3, attacks.SignFlip(), None)


def test_attacks_equal_their_definitions():
    rng = np.random.default_rng(4)
    H = rng.standard_normal((7, 5))
    mu, sd = H.mean(axis=0), H.std(axis=0)
    np.testing.assert_array_equal(attacks.SignFlip(scale=3.0).forge(H, 2, None), np.tile(-3.0 * mu, (2, 1)))
    np.testing.assert_array_equal(attacks.IPM(epsilon=0.5).forge(H, 3, None), np.tile(-0.5 * mu, (3, 1)))
    np.testing.assert_array_equal(attacks.ALIE(z=1.5).forge(H, 1, None), (mu - 1.5 * sd)[None])
    z = theory.alie_z(9, 2)
    np.testing.assert_array_equal(attacks.ALIE().forge(H, 2, None), np.tile(mu - z * sd, (2, 1)))
    g1 = attacks.Gaussian(sigma=2.0).forge(H, 4, np.random.default_rng(9))
    np.testing.assert_array_equal(g1, np.random.default_rng(9).normal(0.0, 2.0, (4, 5)))


def test_inject_replaces_the_last_rows_in_place():
    G = np.arange(12.0, dtype=np.float32).reshape(4, 3)
    honest = G[:3].copy()
    attacks.inject(G, 1, attacks.SignFlip(scale=1e39), None)  # beyond float32: +-inf, reported by the step
    assert np.array_equal(G[:3], honest) and np.all(np.isinf(G[3])) and np.all(G[3] < 0)
    G2 = G.copy()
    attacks.inject(G2, 0, attacks.SignFlip(), None)
    assert np.array_equal(G2, G, equal_nan=True)


def test_alie_z_is_baruch_et_al():
    from scipy.stats import norm

    for n, f in itertools.product(range(3, 60), range(1, 10)):
        if f >= n:
            continue
        s = n // 2 + 1 - f
        if s < 1:
            with pytest.raises(ValueError, match="fewer attackers than the majority"):
                theory.alie_z(n, f)
        else:
            assert theory.alie_z(n, f) == norm.ppf((n - s) / n)
    assert round(theory.alie_z(50, 12), 4) == round(float(norm.ppf(36 / 50)), 4)  # s = 14


def test_krum_constants():
    assert theory.krum_min_nodes(0) == 3 and theory.krum_min_nodes(4) == 11
    n, f = 13, 3
    eta = np.sqrt(2 * (n - f + (f * (n - f - 2) + f**2 * (n - f - 1)) / (n - 2 * f - 2)))
    assert theory.krum_eta(n, f) == pytest.approx(eta, rel=1e-15)
    assert theory.krum_sin_alpha(n, f, 4, 0.1, 10.0) == pytest.approx(eta * 2 * 0.1 / 10.0, rel=1e-15)
    with pytest.raises(ValueError, match=r"n must be in \[9, inf\]"):
        theory.krum_eta(8, 3)
    with pytest.raises(ValueError, match="sin alpha < 1"):
        theory.krum_inner_product_bound(13, 3, 100, 1.0, 1.0)


@pytest.mark.parametrize("attack", ["sign_flip", "alie", {"name": "ipm", "epsilon": 0.5}, {"name": "gaussian", "sigma": 10.0}])
def test_krum_resilience_proposition_holds_by_monte_carlo(attack):
    """Blanchard et al. Prop. 1 [M], decided at 99% confidence (one-sided Student t)."""
    g = np.linspace(1.0, 2.0, 8)
    v = theory.verify_krum_resilience(11, 2, g, 0.05, attack, trials=400, seed=1)
    assert v.passed, v
    assert v.reference == pytest.approx(-theory.krum_inner_product_bound(11, 2, 8, 0.05, float(np.linalg.norm(g))))


def test_the_krum_check_can_fail():
    """The verdict is not vacuous: the mean aggregate under a strong sign flip violates the inequality."""

    class MeanAsKrum(agg.Krum):
        def _aggregate(self, V):
            return V.mean(axis=0)

    import analysis.robust as mod

    real = agg.Krum
    try:
        agg.Krum = MeanAsKrum
        v = mod.verify_krum_resilience(11, 2, np.ones(8), 0.05, {"name": "sign_flip", "scale": 10.0}, trials=50)
    finally:
        agg.Krum = real
    assert not v.passed
