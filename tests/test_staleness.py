"""Bounded-staleness SGD (TrainConfig.staleness / delays, simdist.engine.staleness, analysis.staleness):
the delays against their definition, a run against an independent delayed-SGD loop, and the exact
stability threshold of fixed-delay gradient descent (Levin & May, THEORY.md 10 [D])."""

import numpy as np
import pytest

from analysis import staleness as theory
from simdist import problems
from simdist.engine.comm import _sampling_rng
from simdist.engine.loop import train
from simdist.engine.staleness import Staleness
from simdist.problems.partition import sample_minibatch
from simdist.rng import delay_rng


def test_delays_are_their_definition():
    st = Staleness(tau=5, mode="uniform", seed=7, nodes=6)
    for t in range(12):
        want = np.minimum(delay_rng(7, t).integers(0, 6, size=6), min(5, t))
        np.testing.assert_array_equal(st.delays(t), want)
    fixed = Staleness(tau=3, mode="fixed", seed=0, nodes=2)
    assert [fixed.delays(t).tolist() for t in range(5)] == [[0, 0], [1, 1], [2, 2], [3, 3], [3, 3]]
    draws = np.concatenate([st.delays(t) for t in range(5, 2005)])
    # uniform on {0..5}: the mean is 2.5 with sd sqrt(35/12)/sqrt(12000) = 0.0156; 5 sd
    assert abs(draws.mean() - 2.5) < 5 * np.sqrt(35 / 12 / draws.size)
    assert set(np.unique(draws)) == set(range(6))


def test_points_read_the_right_iterates():
    st = Staleness(tau=2, mode="uniform", seed=3, nodes=4)
    xs = [np.full(3, float(t)) for t in range(8)]
    for t, x in enumerate(xs):
        X = st.points(x, t)
        dl = st.delays(t)
        got = np.broadcast_to(X, (4, 3)) if X is x else X
        np.testing.assert_array_equal(got[:, 0], t - dl)
    with pytest.raises(ValueError, match="expected t=8, got 3"):
        st.points(xs[0], 3)
    one = Staleness(tau=2, mode="uniform", seed=3, nodes=4)
    for t, x in enumerate(xs):
        assert float(one.point(x, t, 2)[0]) == t - st.delays(t)[2]


def _reference(prob, P, B, T, lr, tau, mode, seed):
    """Delayed SGD written out: identity compression (fp32 payloads averaged in float64, rows in order)."""
    parts = prob.partition(P, "iid", seed)
    xs = [np.array(prob.x0, np.float64)]
    for t in range(T):
        if mode == "fixed":
            dl = np.full(P, min(tau, t))
        else:
            dl = np.minimum(delay_rng(seed, t).integers(0, tau + 1, size=P), min(tau, t))
        idx = sample_minibatch(parts, B, _sampling_rng(seed, t))
        G = np.stack([prob.grads(xs[t - dl[i]], idx[i:i + 1])[0] for i in range(P)])
        agg = np.zeros(prob.dim)
        for i in range(P):
            agg += G[i].astype(np.float32).astype(np.float64)
        xs.append(xs[t] - lr * (agg / P))
    return xs[-1]


@pytest.mark.parametrize("tau,mode", [(0, "uniform"), (3, "uniform"), (2, "fixed"), (6, "uniform")])
def test_a_stale_run_is_delayed_sgd(tau, mode):
    prob = problems.make("least_squares", d=6, n=60)
    h = train(prob, "identity", nodes=5, steps=20, lr=0.05, batch_size=2, seed=4, staleness=tau, delays=mode)
    np.testing.assert_array_equal(h.extra["x_final"], _reference(prob, 5, 2, 20, 0.05, tau, mode, 4))


def test_zero_staleness_is_the_synchronous_run():
    kw = dict(nodes=4, steps=12, lr=0.1, seed=2, error_feedback=True)
    a = train("logistic", "qsgd", **kw)
    b = train("logistic", "qsgd", staleness=0, delays="fixed", **kw)
    for k in ("loss", "grad_norm", "bits", "wire_bits"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


@pytest.mark.parametrize("tau", [0, 1, 2, 4, 8])
def test_critical_step_is_where_the_spectral_radius_crosses_one(tau):
    ac = theory.delayed_gd_critical_step(tau)
    assert theory.delayed_gd_spectral_radius(ac * (1 - 1e-6), tau) < 1 < theory.delayed_gd_spectral_radius(
        ac * (1 + 1e-6), tau)
    assert theory.delayed_gd_critical_step(tau, L=4.0) == pytest.approx(ac / 4, rel=1e-15)


@pytest.mark.parametrize("tau", [1, 2, 4])
@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_fixed_delay_gradient_descent_is_stable_exactly_below_the_critical_step(tau, factor):
    """mean_estimation with s = 0 is deterministic (every sample is e = m 1, L = 1). One node, batch 1, fixed
    delay tau, lr = a: the run is x_{t+1} = x_t - a fl32(x_{t-tau} - e) (the fp32 wire), checked bit for bit
    against that recurrence. Below the critical step (a = 0.9 a_c) the distance to x* = e falls by the
    spectral radius rho < 1 per step, above it (a = 1.1 a_c) it grows: after T = ln(1e6)/|ln rho| steps the
    distance is below 1e-3 or above 1e3 times the initial one (rho^T = 1e-6 or 1e6: a factor 1000 of room
    for the transient of the other roots)."""
    prob = problems.make("mean_estimation", d=3, n=4, s=0.0)
    e = prob.samples[0]
    a = factor * theory.delayed_gd_critical_step(tau)
    rho = theory.delayed_gd_spectral_radius(a, tau)
    T = int(np.ceil(np.log(1e6) / abs(np.log(rho))))
    h = train(prob, None, nodes=1, steps=T, lr=a, seed=0, staleness=tau, delays="fixed")
    xs = [np.array(prob.x0, np.float64)]
    for t in range(T):
        g = (xs[max(t - tau, 0)] - e).astype(np.float32).astype(np.float64)
        xs.append(xs[t] - a * g)
    assert h.steps_run == T and h.extra["x_final"] == xs[-1].tolist()
    ratio = np.linalg.norm(xs[-1] - e) / np.linalg.norm(xs[0] - e)
    assert ratio < 1e-3 if factor < 1 else ratio > 1e3, (rho, T, ratio)


def test_bound_form_and_refusals():
    assert theory.stale_sgd_bound(2.0, 1.0, 3.0, 100, 4) == pytest.approx(2 * np.sqrt(2 / 100) + 5 * 3 * 4 / 100)
    with pytest.raises(ValueError, match=r"staleness must be in \[0, inf\]"):
        train("least_squares", steps=1, staleness=-1)
    with pytest.raises(ValueError, match="delays must be one of"):
        train("least_squares", steps=1, staleness=2, delays="poisson")
    with pytest.raises(ValueError, match="sigma must be in"):
        theory.stale_sgd_bound(1.0, -1.0, 1.0, 10, 1)
