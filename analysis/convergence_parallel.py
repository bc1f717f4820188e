"""Parallel SGD against the theory: the averaged gradient's variance and Bubeck's bound (THEORY 7).

Two exact [D] oracles and a small driver that replays the engine's full-precision loop:

* :func:`engine_sgd` runs steps 1, 2, 4 and 5 of :func:`simdist.train` (full precision, no momentum)
  with the engine's own components -- ``problem.partition``, ``sample_minibatch`` with the engine's
  per-step sampling generator, ``problem.grads``, the float32 wire cast, the mean over nodes and the
  learning-rate schedule -- and additionally returns the *average of the iterates*, which the engine's
  history does not record. Tests check that its iterates equal ``simdist.train``'s bit for bit.
* :func:`engine_averaged_gradients` returns the aggregated gradient the engine would apply at a
  fixed x, for its steps t = 0, 1, ... (independent minibatches of one fixed partition).
* :func:`partitioned_gradient_error` [D]: each node draws its B samples uniformly with replacement
  from its own part D_i (m samples), not from the whole set, so for the aggregated gradient
  g = (1/P) sum_i (1/B) sum_b g_{j_ib}(x):

      E||g - grad f(x)||^2 = ||mu_kept - grad f(x)||^2 + (1 / (P^2 B)) sum_i sigma_i^2,

  with mu_i, sigma_i^2 = mean and variance (1/m normalisation) of the g_j over D_i and mu_kept
  the mean of the mu_i (the bias is 0 when P divides n: no sample is dropped). Since
  (1/P) sum_i sigma_i^2 <= sigma^2 (within-part variance <= total variance), the variance part is
  at most sigma^2 / (P B), the textbook value (THEORY 7) that holds for sampling from the whole set.
* :func:`mean_estimation_expected_suboptimality` [D]: for mean estimation (f(x) - f* =
  ||x - x*||^2 / 2, grad f(x) = x - x*) SGD with a constant step eta is the linear recursion
  e_{t+1} = (1 - eta) e_t - eta xi_t, xi_t iid with mean c and E||xi - c||^2 = V, so the average
  ebar of e_1..e_T has, with a = 1 - eta and alpha = a (1 - a^T) / (eta T),

      E ebar = alpha e_0 - (1 - alpha) c,
      E||ebar - E ebar||^2 = (V / T^2) sum_{k=1..T} (1 - a^k)^2,
      E f(xbar) - f* = (||E ebar||^2 + E||ebar - E ebar||^2) / 2.

Example:
    >>> from simdist import problems
    >>> p = problems.make("mean_estimation", d=3, n=64)
    >>> bias_sq, var = partitioned_gradient_error(p, p.x0, p.partition(4), 1)
    >>> bool(bias_sq < 1e-20 and var <= p.sigma2 / 4)    # 4 divides 64: unbiased up to rounding
    True

References:
    S. Bubeck, "Convex Optimization: Algorithms and Complexity", 2015, Theorem 6.3 (the iterate
    average is of x_1..x_T, the points after each step); THEORY.md section 7.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._args import check_int, check_nonneg, check_pos

__all__ = [
    "EngineRun",
    "engine_sgd",
    "engine_averaged_gradients",
    "partitioned_gradient_error",
    "mean_estimation_expected_suboptimality",
    "first_hitting_horizon",
]


def _engine_parts():
    # The engine's own sampling stream and minibatch sampler (private in simdist.engine.loop: a public
    # hook there, e.g. a per-step callback, would let this driver go; tests pin the equality).
    from simdist.engine.comm import _sampling_rng
    from simdist.problems.partition import sample_minibatch

    return _sampling_rng, sample_minibatch


def _aggregate(G: np.ndarray) -> np.ndarray:
    # engine step 4, full precision: fp32 on the wire, summed in the ring allreduce's own order, / P
    from simdist.collectives.fastpath import allreduce_sum

    total, _ = allreduce_sum(G.astype(np.float32), "ring")
    return total.astype(np.float64) / G.shape[0]


@dataclass
class EngineRun:
    """The result of :func:`engine_sgd`.

    Attributes:
        x_final: x_T (float64, the engine's ``x`` after the last step).
        x_avg: (1/T) sum_{t=1..T} x_t, the average of the iterates after each step (Bubeck's xbar).
        loss: (T,) f(x_t) after each step, as the engine's ``History.loss``.
    """

    x_final: np.ndarray
    x_avg: np.ndarray
    loss: np.ndarray


def engine_sgd(problem, *, nodes: int, steps: int, lr, batch_size: int = 1, seed: int = 0,
               partition: str = "iid", record_loss: bool = True) -> EngineRun:
    """Full-precision data-parallel SGD run by :func:`simdist.train`, plus the iterate average (via its callback).

    Args:
        problem: a problem object (``simdist.problems``).
        nodes: P (>= 1, <= n_samples).
        steps: T (>= 1).
        lr: a positive number or a schedule spec (``simdist.engine.schedules.make``).
        batch_size: B per node (>= 1).
        seed: the run's seed (partition and sampling streams, as in the engine).
        partition: ``"iid"`` or ``"skewed"``.
        record_loss: evaluate f(x_t) every step (False: ``loss`` is empty, faster).

    Returns:
        :class:`EngineRun`.

    Example:
        >>> from simdist import problems
        >>> r = engine_sgd(problems.make("mean_estimation", d=2, n=8), nodes=2, steps=3, lr=0.5)
        >>> r.loss.shape, r.x_avg.shape
        ((3,), (2,))
    """
    import simdist

    T = check_int("steps", steps, low=1)
    acc = np.zeros(problem.dim)
    last = {}

    def collect(t, x, agg):  # the engine's public per-step hook: x is x_{t+1}
        acc.__iadd__(x)
        last["x"] = x

    h = simdist.train(problem, None, nodes=nodes, steps=T, lr=lr, batch_size=batch_size, seed=seed,
                      partition=partition, eval_every=1 if record_loss else T, callback=collect)
    loss = h.loss.copy() if record_loss else np.zeros(0)
    return EngineRun(np.array(last["x"]), acc / T, loss)


def engine_averaged_gradients(problem, x, *, nodes: int, trials: int, batch_size: int = 1, seed: int = 0,
                              partition: str = "iid") -> np.ndarray:
    """The aggregated gradient the engine applies at a fixed x, for its steps t = 0..trials-1.

    Args:
        problem: a problem object.
        x: the fixed point, (d,).
        nodes, batch_size, seed, partition: as in :func:`engine_sgd`.
        trials: number of steps (independent minibatch draws from one partition), >= 2.

    Returns:
        (trials, d) float64 array; row t = (1/P) sum_i float32(g_i) of the engine's step t.
    """
    sampling_rng, sample_minibatch = _engine_parts()
    P, m = check_int("nodes", nodes, low=1), check_int("trials", trials, low=2)
    B = check_int("batch_size", batch_size, low=1)
    parts = problem.partition(P, partition, seed)
    out = np.empty((m, problem.dim))
    for t in range(m):
        out[t] = _aggregate(problem.grads(x, sample_minibatch(parts, B, sampling_rng(seed, t))))
    return out


def partitioned_gradient_error(problem, x, parts, batch_size: int = 1) -> tuple[float, float]:
    """Exact [D] squared bias and variance of the engine's aggregated gradient at x (module docstring).

    Args:
        problem: a problem object.
        x: the point, (d,).
        parts: (P, m) partition (``problem.partition``).
        batch_size: B (>= 1); samples drawn with replacement, as the engine does.

    Returns:
        ``(bias_sq, variance)``: E||g - grad f(x)||^2 = bias_sq + variance (float64 arithmetic; the
        engine's float32 wire cast adds about 2^-48 ||g||^2 more, far below any Monte-Carlo resolution).
    """
    B = check_int("batch_size", batch_size, low=1)
    parts = np.asarray(parts)
    P = parts.shape[0]
    S = problem.sample_grads(x).astype(np.float64)
    grad = S.mean(axis=0)
    Gp = S[parts]  # (P, m, d)
    mu = Gp.mean(axis=1)
    sig2 = np.mean(np.sum((Gp - mu[:, None, :]) ** 2, axis=2), axis=1)  # (P,)
    bias = mu.mean(axis=0) - grad
    return float(bias @ bias), float(sig2.sum() / (P * P * B))


def mean_estimation_expected_suboptimality(e0, c, V: float, eta: float, T: int) -> float:
    """Exact [D] E f(xbar_T) - f* of constant-step SGD on mean estimation (module docstring).

    Args:
        e0: x_0 - x*, (d,).
        c: the aggregated gradient's constant bias (mu_kept - grad f), (d,) (zeros when P divides n).
        V: the aggregated gradient's variance E||xi - c||^2 (>= 0).
        eta: step, in (0, 2).
        T: horizon (>= 1); xbar_T averages x_1..x_T.

    Returns:
        The expected suboptimality of the iterate average.

    Example:
        >>> mean_estimation_expected_suboptimality([2.0], [0.0], 1.0, 1.0, 4)   # x_t = x* + noise: V/(2T)
        0.125
    """
    e0, c = np.asarray(e0, dtype=np.float64), np.asarray(c, dtype=np.float64)
    V = check_nonneg("V", V)
    eta = check_pos("eta", eta)
    if eta >= 2.0:
        raise ValueError(f"eta must be in (0, 2) (a stable step for L = 1), got {eta}")
    T = check_int("T", T, low=1)
    a = 1.0 - eta
    aT = a**T
    alpha = a * (1.0 - aT) / (eta * T)
    mean = alpha * e0 - (1.0 - alpha) * c
    # sum_{k=1..T} (1 - a^k)^2 = T - 2 a (1 - a^T)/(1 - a) + a^2 (1 - a^{2T})/(1 - a^2)
    s = T - 2.0 * a * (1.0 - aT) / eta + (a * a * (1.0 - aT * aT) / (1.0 - a * a) if a != 0.0 else 0.0)
    return 0.5 * (float(mean @ mean) + V * s / (T * T))


def first_hitting_horizon(expected, eps: float, t_max: int) -> int | None:
    """The smallest horizon T in [1, t_max] with ``expected(T) <= eps`` (a linear scan), or None.

    Used with :func:`mean_estimation_expected_suboptimality` under the horizon-dependent step of
    Bubeck's theorem (one run per horizon T, not the first time one run crosses eps).
    """
    eps = check_pos("eps", eps)
    for T in range(1, check_int("t_max", t_max, low=1) + 1):
        if expected(T) <= eps:
            return T
    return None

