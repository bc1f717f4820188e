"""Byzantine-robust aggregation: the conditions and bounds of THEORY.md section 9, as functions, and a
Monte-Carlo verifier of Krum's resilience.

* :func:`krum_min_nodes`: Krum and Multi-Krum need n > 2f + 2 (Blanchard et al. 2017).
* :func:`krum_eta`, :func:`krum_sin_alpha`, :func:`krum_inner_product_bound`: Proposition 1 of
  Blanchard et al. [M: the form as commonly quoted, constants not checked against the paper's text]:
  for n - f correct vectors V_i i.i.d. with E V_i = g and E||V_i - g||^2 = d sigma^2, and any f
  Byzantine vectors (possibly chosen knowing the V_i), if 2f + 2 < n and
  eta(n, f) sqrt(d) sigma < ||g|| with
  ``eta(n, f) = sqrt(2 (n - f + (f (n - f - 2) + f^2 (n - f - 1)) / (n - 2f - 2)))``, then Krum is
  (alpha, f)-Byzantine resilient: ``<E Krum, g> >= (1 - sin alpha) ||g||^2 > 0`` with
  ``sin alpha = eta(n, f) sqrt(d) sigma / ||g||``.
* :func:`alie_z`: the shift of "A little is enough" (Baruch et al. 2019): s = floor(n/2 + 1) - f
  workers must be out-voted, z = Phi^-1((n - s)/n).
* :func:`verify_krum_resilience`: estimates <E Krum, g> by Monte Carlo under an attack and decides
  Proposition 1's inequality at a stated confidence (:func:`analysis.montecarlo.verdict_mean`).

Example:
    >>> krum_min_nodes(2)
    7
    >>> round(krum_eta(10, 1), 4)
    4.7958

References:
    Blanchard, El Mhamdi, Guerraoui, Stainer, NeurIPS 2017 (Krum, Proposition 1); Yin, Chen,
    Ramchandran, Bartlett, ICML 2018; Baruch, Baruch, Goldberg, NeurIPS 2019 (ALIE).
"""

from __future__ import annotations

import math

import numpy as np

from ._args import as_vector, check_int, check_pos
from .montecarlo import Verdict, verdict_mean

__all__ = ["krum_min_nodes", "krum_eta", "krum_sin_alpha", "krum_inner_product_bound", "alie_z",
           "verify_krum_resilience"]


def krum_min_nodes(f: int) -> int:
    """The fewest nodes Krum accepts with f Byzantine ones: 2f + 3 (n > 2f + 2)."""
    return 2 * check_int("f", f, low=0) + 3


def _check_nf(n: int, f: int) -> tuple[int, int]:
    f = check_int("f", f, low=0)
    n = check_int("n", n, low=krum_min_nodes(f))
    return n, f


def krum_eta(n: int, f: int) -> float:
    """eta(n, f) of Blanchard et al.'s Proposition 1 [M] (n > 2f + 2)."""
    n, f = _check_nf(n, f)
    return math.sqrt(2.0 * (n - f + (f * (n - f - 2) + f * f * (n - f - 1)) / (n - 2 * f - 2)))


def krum_sin_alpha(n: int, f: int, d: int, sigma: float, g_norm: float) -> float:
    """sin(alpha) = eta(n, f) sqrt(d) sigma / ||g||; Proposition 1 applies when it is < 1 [M]."""
    d = check_int("d", d, low=1)
    return krum_eta(n, f) * math.sqrt(d) * check_pos("sigma", sigma) / check_pos("g_norm", g_norm)


def krum_inner_product_bound(n: int, f: int, d: int, sigma: float, g_norm: float) -> float:
    """(1 - sin alpha) ||g||^2, the lower bound on <E Krum, g> [M]; ValueError when sin alpha >= 1
    (the proposition says nothing there)."""
    s = krum_sin_alpha(n, f, d, sigma, g_norm)
    if s >= 1.0:
        raise ValueError(f"Proposition 1 needs eta(n, f) sqrt(d) sigma < ||g|| (sin alpha < 1), got sin alpha = {s:.4g}")
    return (1.0 - s) * g_norm**2


def alie_z(n: int, f: int) -> float:
    """Baruch et al.'s z_max = Phi^-1((n - s)/n), s = floor(n/2 + 1) - f (needs s >= 1, i.e. f <= n/2)."""
    f = check_int("f", f, low=1)
    n = check_int("n", n, low=f + 1)
    s = n // 2 + 1 - f
    if s < 1:
        raise ValueError(f"alie needs fewer attackers than the majority: f must be in [1, {n // 2}] for n={n}, got {f}")
    from scipy.stats import norm

    return float(norm.ppf((n - s) / n))


def verify_krum_resilience(n: int, f: int, g, sigma: float, attack, *, trials: int = 2000, seed: int = 0,
                           confidence: float = 0.99, m: int = 1) -> Verdict:
    """Check Proposition 1's ``<E Krum, g> >= (1 - sin alpha) ||g||^2`` by Monte Carlo.

    Each trial draws the n - f correct vectors g + sigma N(0, I_d), lets ``attack`` forge the f others
    from them (omniscient), aggregates with Krum(f, m) and records <Krum, g>. The verdict is
    :func:`~analysis.montecarlo.verdict_mean` on -<Krum, g> against -(1 - sin alpha)||g||^2 (one-sided
    Student-t at ``confidence``: a correct statement is judged FAIL with probability <= 1 - confidence).

    Args:
        n, f: nodes and Byzantine nodes (n > 2f + 2, f >= 1).
        g: the true gradient (1-D, finite). sigma: per-coordinate noise std (> 0).
        attack: an attack name, config or :class:`simdist.robust.attacks.Attack`.
        trials (>= 2), seed (>= 0), confidence: of the Monte Carlo. m: Multi-Krum's m (1: Krum).

    Returns:
        The :class:`~analysis.montecarlo.Verdict` (``measured`` is the mean of -<Krum, g>).
    """
    from simdist.robust import aggregators, attacks

    n, f = _check_nf(n, f)
    check_int("f", f, low=1)
    g = as_vector("g", g)
    trials = check_int("trials", trials, low=2)
    seed = check_int("seed", seed, low=0)
    d, gn = g.size, float(np.linalg.norm(g))
    bound = krum_inner_product_bound(n, f, d, sigma, gn)
    krum, atk = aggregators.Krum(f=f, m=m), attacks.make(attack)
    rng = np.random.default_rng(seed)
    ips = np.empty(trials)
    for k in range(trials):
        H = g + sigma * rng.standard_normal((n - f, d))
        V = np.concatenate([H, atk.forge(H, f, rng)])
        ips[k] = krum.aggregate(V) @ g
    return verdict_mean(-ips, -bound, kind="bound", confidence=confidence,
                        statement=f"<E Krum, g> >= (1 - sin alpha)||g||^2 under {atk}",
                        source="Blanchard et al. 2017 Prop. 1 [M]",
                        detail=f"n={n}, f={f}, m={m}, d={d}, sigma={sigma:g}, ||g||={gn:.4g}, "
                               f"sin alpha={krum_sin_alpha(n, f, d, sigma, gn):.4f}; measured is -<Krum, g>")
