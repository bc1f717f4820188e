"""Minibatch / parallel SGD on smooth convex problems (Bubeck 2015, Theorem 6.3; QSGD Theorem 2.1).

For convex, L-smooth f, ``R^2 = sup ||x - x0||^2``, stochastic gradients of variance ``sigma^2``,
step ``1 / (L + 1/gamma)`` with ``gamma = (R/sigma) sqrt(2/T)``:

    E f(avg x_t) - f* <= R sqrt(2 sigma^2 / T) + L R^2 / T           [V]  (:func:`sgd_convex_bound`)

Averaging P independent gradients divides the variance by P (:func:`parallel_variance`), so
``T = O(R^2 max(2 sigma^2 / (P eps^2), L / eps))``; [D] the bound is <= eps as soon as
``T >= max(8 R^2 sigma^2 / (P eps^2), 2 L R^2 / eps)`` (:func:`sgd_iterations`): each term is
then at most eps/2.

References:
    S. Bubeck, "Convex Optimization: Algorithms and Complexity", Foundations and Trends in ML
    8(3-4), 2015, Theorem 6.3; restated as Theorem 2.1 in QSGD (Alistarh et al., NeurIPS 2017).
"""

from __future__ import annotations

import math

from ._args import check_int, check_nonneg, check_pos

__all__ = ["sgd_convex_bound", "sgd_step_size", "sgd_iterations", "parallel_variance"]


def sgd_convex_bound(R: float, sigma_sq: float, L: float, T: int) -> float:
    """``R sqrt(2 sigma^2 / T) + L R^2 / T`` [V].

    Args:
        R: radius ``sup ||x - x0||`` (>= 0).
        sigma_sq: variance of the (averaged) stochastic gradient (>= 0).
        L: smoothness (>= 0).
        T: iterations (>= 1).

    Returns:
        The bound on ``E f(avg x_t) - f*``.

    Example:
        >>> sgd_convex_bound(1.0, 2.0, 1.0, 4)    # sqrt(4/4) + 1/4
        1.25

    References:
        Bubeck 2015, Theorem 6.3 (QSGD Theorem 2.1).
    """
    R, sigma_sq, L = check_nonneg("R", R), check_nonneg("sigma_sq", sigma_sq), check_nonneg("L", L)
    T = check_int("T", T, low=1)
    return R * math.sqrt(2.0 * sigma_sq / T) + L * R * R / T


def sgd_step_size(L: float, R: float, sigma_sq: float, T: int) -> float:
    """Step ``1 / (L + 1/gamma)`` with ``gamma = (R / sigma) sqrt(2/T)`` [V] (``1/L`` when sigma = 0).

    Args:
        L: smoothness (> 0).
        R: radius (> 0).
        sigma_sq: gradient variance (>= 0).
        T: iterations (>= 1).

    Returns:
        The step size.

    Example:
        >>> sgd_step_size(1.0, 1.0, 2.0, 4)    # gamma = (1/sqrt 2) sqrt(1/2) = 1/2
        0.3333333333333333

    References:
        Bubeck 2015, Theorem 6.3 (QSGD Theorem 2.1).
    """
    L, R = check_pos("L", L), check_pos("R", R)
    sigma_sq = check_nonneg("sigma_sq", sigma_sq)
    T = check_int("T", T, low=1)
    if sigma_sq == 0.0:
        return 1.0 / L
    gamma = R / math.sqrt(sigma_sq) * math.sqrt(2.0 / T)
    return 1.0 / (L + 1.0 / gamma)


def sgd_iterations(eps: float, R: float, sigma_sq: float, L: float, P: int = 1) -> float:
    """Sufficient iteration count ``max(8 R^2 sigma^2 / (P eps^2), 2 L R^2 / eps)`` [D].

    Args:
        eps: target accuracy (> 0).
        R: radius (>= 0).
        sigma_sq: variance of one node's stochastic gradient (>= 0).
        L: smoothness (>= 0).
        P: number of nodes whose gradients are averaged (>= 1).

    Returns:
        T (a float; any integer T >= it guarantees ``E f(avg x_t) - f* <= eps``).

    Example:
        >>> sgd_iterations(0.5, 1.0, 1.0, 1.0, P=2)    # max(8/(2*0.25), 2/0.5)
        16.0

    References:
        Bubeck 2015, Theorem 6.3 with variance sigma^2/P; QSGD (NeurIPS 2017), Section 2.
    """
    eps = check_pos("eps", eps)
    R, sigma_sq, L = check_nonneg("R", R), check_nonneg("sigma_sq", sigma_sq), check_nonneg("L", L)
    P = check_int("P", P, low=1)
    return max(8.0 * R * R * sigma_sq / (P * eps * eps), 2.0 * L * R * R / eps)


def parallel_variance(sigma_sq: float, P: int) -> float:
    """Variance ``sigma^2 / P`` of the average of P independent stochastic gradients [D].

    Example:
        >>> parallel_variance(4.0, 8)
        0.5
    """
    return check_nonneg("sigma_sq", sigma_sq) / check_int("P", P, low=1)
