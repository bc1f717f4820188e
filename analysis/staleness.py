"""Bounded-staleness (asynchronous) SGD: THEORY.md section 10 as functions.

* :func:`delayed_gd_critical_step` [D]: gradient descent with a fixed delay tau on a quadratic of
  curvature L, x_{t+1} - x* = (x_t - x*) - a (x_{t - tau} - x*) with a = lr L, is asymptotically stable
  iff 0 < a < 2 sin(pi / (2 (2 tau + 1))) (Levin & May 1976; tau = 0: a < 2, the classical 2/L;
  tau = 1: a < 1). The step must shrink like 1/(tau + 1), as the theory's step 1/(L (tau + 1)) says.
* :func:`delayed_gd_spectral_radius` [D]: the largest modulus of the roots of
  z^(tau+1) - z^tau + a = 0, the per-step contraction of that recurrence (< 1 iff stable).
* :func:`stale_sgd_bound` [M]: the convex L-smooth rate with delay tau, in the form of THEORY.md 10:
  R sqrt(2 sigma^2 / T) + (tau + 1) L R^2 / T (Bubeck's synchronous bound, Thm 6.3, with L replaced
  by (tau + 1) L; the constants are not verified against the papers): the delay only affects the
  higher-order term.

Example:
    >>> round(delayed_gd_critical_step(1), 12), round(delayed_gd_critical_step(0), 12)
    (1.0, 2.0)
    >>> delayed_gd_spectral_radius(0.5, 1) < 1 < delayed_gd_spectral_radius(1.1, 1)
    True

References:
    S. A. Levin, R. M. May, "A note on difference-delay equations", Theoretical Population Biology
    9 (1976); A. Agarwal, J. C. Duchi, NeurIPS 2011; X. Lian et al., NeurIPS 2015; S. Bubeck,
    "Convex Optimization: Algorithms and Complexity" (2015), Thm 6.3.
"""

from __future__ import annotations

import math

import numpy as np

from ._args import check_int, check_pos

__all__ = ["delayed_gd_critical_step", "delayed_gd_spectral_radius", "stale_sgd_bound"]


def delayed_gd_critical_step(tau: int, L: float = 1.0) -> float:
    """The largest stable step of fixed-delay gradient descent on curvature L: 2 sin(pi/(2(2 tau + 1))) / L [D]."""
    tau = check_int("tau", tau, low=0)
    return 2.0 * math.sin(math.pi / (2 * (2 * tau + 1))) / check_pos("L", L)


def delayed_gd_spectral_radius(a: float, tau: int) -> float:
    """max |z| over the roots of z^(tau+1) - z^tau + a (a = lr L > 0) [D]."""
    tau = check_int("tau", tau, low=0)
    a = check_pos("a", a)
    coeffs = np.zeros(tau + 2)
    coeffs[0], coeffs[1], coeffs[-1] = 1.0, -1.0, a
    if tau == 0:
        coeffs = np.array([1.0, a - 1.0])
    return float(np.max(np.abs(np.roots(coeffs))))


def stale_sgd_bound(R: float, sigma: float, L: float, T: int, tau: int) -> float:
    """R sqrt(2 sigma^2 / T) + (tau + 1) L R^2 / T [M] (see the module docstring)."""
    R, L = check_pos("R", R), check_pos("L", L)
    sigma = float(sigma)
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be in [0, inf), got {sigma!r}")
    T = check_int("T", T, low=1)
    tau = check_int("tau", tau, low=0)
    return R * math.sqrt(2.0 * sigma**2 / T) + (tau + 1) * L * R**2 / T
