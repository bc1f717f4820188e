"""Sparsification, sign compression and error feedback as plain functions.

* k-contraction [M] (Stich, Cordonnier, Jaggi, NeurIPS 2018, Definition 2.1):
  ``E||x - comp(x)||^2 <= (1 - k/d) ||x||^2`` for top-k and unscaled rand-k -- :func:`k_contraction_bound`.
* [D] ``||x - top_k(x)||^2`` = sum of the ``d - k`` smallest ``x_i^2`` -- :func:`topk_exact_error`.
* [D] rand-k: unscaled ``(1 - k/d)||x||^2``; scaled by ``d/k`` (unbiased) ``(d/k - 1)||x||^2``
  -- :func:`randk_exact_error`.
* Scaled sign ``C(v) = (||v||_1/d) sign(v)`` (Karimireddy et al., ICML 2019): delta-approximate with
  ``delta = ||v||_1^2 / (d ||v||_2^2)`` -- :func:`scaled_sign_delta`; [D] its error
  ``||v||_2^2 - ||v||_1^2 / d`` -- :func:`scaled_sign_error`.
* EF-SGD non-convex rate [M] -- :func:`ef_sgd_nonconvex_bound`; Mem-SGD strongly convex rate
  terms [M] -- :func:`memsgd_rate_terms`, :func:`memsgd_crossover`.
* Top-k with index coding saves about ``d / (k log2 d)`` against dense fp32 -- :func:`topk_compression_ratio`.

References:
    S. U. Stich, J.-B. Cordonnier, M. Jaggi, "Sparsified SGD with Memory", NeurIPS 2018
    (Definition 2.1, Theorem 2.4). S. P. Karimireddy, Q. Rebjock, S. U. Stich, M. Jaggi, "Error
    Feedback Fixes SignSGD and other Gradient Compression Schemes", ICML 2019 (Section 3: the
    delta of scaled sign; Section 4: the non-convex EF-SGD rate), as stated in THEORY.md section 4.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._args import as_vector, check_float, check_int, check_nonneg, check_pos

__all__ = [
    "k_contraction_bound",
    "topk_exact_error",
    "randk_exact_error",
    "scaled_sign_delta",
    "scaled_sign_error",
    "ef_sgd_step_size",
    "ef_sgd_nonconvex_bound",
    "MemSGDRate",
    "memsgd_rate_terms",
    "memsgd_crossover",
    "topk_compression_ratio",
]


def _dk(d, k):
    d = check_int("d", d, low=1)
    k = check_int("k", k, low=1, high=d)
    return d, k


def k_contraction_bound(d: int, k: int, norm_sq: float) -> float:
    """k-contraction bound ``(1 - k/d) ||x||^2`` on ``E||x - comp(x)||^2`` [M].

    Args:
        d: dimension, >= 1.
        k: entries kept, in [1, d].
        norm_sq: ``||x||_2^2`` (>= 0).

    Returns:
        The bound.

    Example:
        >>> k_contraction_bound(10, 2, 5.0)
        4.0

    References:
        Stich, Cordonnier, Jaggi, NeurIPS 2018, Definition 2.1 (top_k and rand_k satisfy it).
    """
    d, k = _dk(d, k)
    return (1.0 - k / d) * check_nonneg("norm_sq", norm_sq)


def topk_exact_error(v, k: int) -> float:
    """Exact ``||v - top_k(v)||^2``: the sum of the ``d - k`` smallest ``v_i^2`` [D].

    Args:
        v: the vector.
        k: entries kept, in [1, d].

    Returns:
        The squared error (ties do not matter).

    Example:
        >>> topk_exact_error([3.0, -1.0, 2.0, 0.5], 2)    # 1 + 0.25
        1.25

    References:
        Derived from the definition (Stich et al., NeurIPS 2018, Section 2).
    """
    v = as_vector("v", v)
    _, k = _dk(v.size, k)
    sq = np.sort(v * v)
    return float(np.sum(sq[: v.size - k]))


def randk_exact_error(v, k: int, scaled: bool = False) -> float:
    """Exact ``E||v - rand_k(v)||^2`` (k coordinates uniformly without replacement) [D].

    Args:
        v: the vector.
        k: entries kept, in [1, d].
        scaled: False: kept entries unchanged, ``(1 - k/d)||v||^2``; True: kept entries times
            ``d/k`` (unbiased), ``(d/k - 1)||v||^2``.

    Returns:
        The expected squared error.

    Example:
        >>> randk_exact_error([1.0, 1.0, 1.0, 1.0], 1), randk_exact_error([1.0, 1.0, 1.0, 1.0], 1, True)
        (3.0, 12.0)

    References:
        Stich et al., NeurIPS 2018, Section 2 (rand_k); derived from the definition.
    """
    v = as_vector("v", v)
    d, k = _dk(v.size, k)
    if not isinstance(scaled, (bool, np.bool_)):
        raise TypeError(f"scaled must be a bool, got {type(scaled).__name__}")
    n2 = float(np.dot(v, v))
    return (d / k - 1.0) * n2 if scaled else (1.0 - k / d) * n2


def scaled_sign_delta(v) -> float:
    """``delta = ||v||_1^2 / (d ||v||_2^2)`` of the scaled sign compressor (in [1/d, 1]).

    Args:
        v: the vector (for ``v = 0`` the compressor is exact and 1.0 is returned).

    Returns:
        delta, such that ``||C(v) - v||^2 <= (1 - delta) ||v||^2`` (with equality).

    Example:
        >>> scaled_sign_delta([1.0, -1.0, 0.0, 0.0])    # 4 / (4 * 2)
        0.5

    References:
        Karimireddy, Rebjock, Stich, Jaggi, ICML 2019, Section 3 (scaled sign is delta-approximate).
    """
    v = as_vector("v", v)
    n2 = float(np.dot(v, v))
    if n2 == 0.0:
        return 1.0
    return min(1.0, float(np.sum(np.abs(v))) ** 2 / (v.size * n2))


def scaled_sign_error(v) -> float:
    """Exact ``||C(v) - v||^2 = ||v||_2^2 - ||v||_1^2 / d`` for ``C(v) = (||v||_1/d) sign(v)`` [D].

    Args:
        v: the vector.

    Returns:
        The squared error (deterministic compressor).

    Example:
        >>> scaled_sign_error([1.0, -1.0, 0.0, 0.0])    # 2 - 4/4
        1.0

    The identity holds when every entry is sent as ``+-||v||_1/d`` (sign(0) mapped to +1 or -1,
    one bit per entry): ``d c^2 - 2 c ||v||_1 + ||v||^2`` with ``c = ||v||_1/d``. A compressor that
    sends zero for ``v_i = 0`` has the smaller error ``||v||^2 - ||v||_1^2 (2d - nnz(v)) / d^2``.

    References:
        Karimireddy et al., ICML 2019, Section 3; derived from the definition.
    """
    v = as_vector("v", v)
    return max(0.0, float(np.dot(v, v) - np.sum(np.abs(v)) ** 2 / v.size))


def ef_sgd_step_size(T: int) -> float:
    """EF-SGD step ``gamma = 1 / sqrt(T + 1)`` for the non-convex rate [M].

    Example:
        >>> ef_sgd_step_size(99)
        0.1
    """
    T = check_int("T", T, low=0)
    return 1.0 / math.sqrt(T + 1)


def ef_sgd_nonconvex_bound(f_gap: float, L: float, sigma_sq: float, delta: float, T: int) -> float:
    """EF-SGD non-convex rate with ``gamma = 1/sqrt(T+1)`` [M]:

    ``min_t E||grad f(x_t)||^2 <= (4 f_gap + L sigma^2) / (2 sqrt(T+1))
    + 4 L^2 sigma^2 (1 - delta) / (delta^2 (T+1))``.

    Args:
        f_gap: ``f(x_0) - f*`` (>= 0).
        L: smoothness (> 0).
        sigma_sq: bound on the second moment of the stochastic gradients (>= 0).
        delta: compressor quality, in (0, 1].
        T: number of iterations (>= 0).

    Returns:
        The bound.

    Example:
        >>> ef_sgd_nonconvex_bound(1.0, 1.0, 0.0, 0.5, 3)    # 4 / (2 * 2)
        1.0

    References:
        Karimireddy, Rebjock, Stich, Jaggi, ICML 2019, Section 4 (non-convex EF-SGD rate).
    """
    f_gap = check_nonneg("f_gap", f_gap)
    L = check_pos("L", L)
    sigma_sq = check_nonneg("sigma_sq", sigma_sq)
    delta = check_float("delta", delta, low=0.0, high=1.0, low_open=True)
    T = check_int("T", T, low=0)
    return (4.0 * f_gap + L * sigma_sq) / (2.0 * math.sqrt(T + 1)) + 4.0 * L * L * sigma_sq * (1.0 - delta) / (
        delta * delta * (T + 1)
    )


class MemSGDRate(NamedTuple):
    """The three terms of the Mem-SGD rate (O() constants 1) and their sum."""

    sgd: float
    second: float
    third: float

    @property
    def total(self) -> float:
        return self.sgd + self.second + self.third


def memsgd_rate_terms(G_sq: float, mu: float, kappa: float, d: int, k: int, T: int) -> MemSGDRate:
    """Mem-SGD strongly convex rate terms, O() constants 1 [M]:

    ``G^2/(mu T)``, ``(d/k)^2 kappa G^2/(mu T^2)``, ``(d/k)^3 G^2/(mu T^3)``.

    Args:
        G_sq: bound on ``E||grad||^2`` (>= 0).
        mu: strong convexity (> 0).
        kappa: condition number ``L/mu`` (>= 1).
        d, k: dimension and entries kept (1 <= k <= d).
        T: iterations (>= 1).

    Returns:
        :class:`MemSGDRate` (``.total`` is the sum).

    Example:
        >>> memsgd_rate_terms(1.0, 1.0, 1.0, 10, 1, 10)
        MemSGDRate(sgd=0.1, second=1.0, third=1.0)

    References:
        Stich, Cordonnier, Jaggi, NeurIPS 2018, Theorem 2.4.
    """
    G_sq, mu = check_nonneg("G_sq", G_sq), check_pos("mu", mu)
    kappa = check_float("kappa", kappa, low=1.0)
    d, k = _dk(d, k)
    T = check_int("T", T, low=1)
    r = d / k
    return MemSGDRate(G_sq / (mu * T), r * r * kappa * G_sq / (mu * T * T), r**3 * G_sq / (mu * T**3))


def memsgd_crossover(d: int, k: int, kappa: float) -> float:
    """Iterations after which the SGD term of Mem-SGD dominates: ``(d/k) sqrt(kappa)`` [M].

    Example:
        >>> memsgd_crossover(100, 10, 4.0)
        20.0

    References:
        Stich, Cordonnier, Jaggi, NeurIPS 2018, discussion after Theorem 2.4.
    """
    d, k = _dk(d, k)
    kappa = check_float("kappa", kappa, low=1.0)
    return d / k * math.sqrt(kappa)


def topk_compression_ratio(d: int, k: int) -> float:
    """Approximate compression of top-k with index coding against dense fp32: ``d / (k log2 d)``.

    Args:
        d: dimension (>= 2).
        k: entries kept, in [1, d].

    Returns:
        The ratio.

    Example:
        >>> topk_compression_ratio(1024, 4)   # 1024 / (4 * 10)
        25.6

    References:
        THEORY.md section 5 (index coding of top-k; e.g. SparCML, SC19).
    """
    d = check_int("d", d, low=2)
    _, k = _dk(d, k)
    return d / (k * math.log2(d))
