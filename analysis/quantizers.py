"""NUQSGD and TernGrad variance statements as plain functions.

* NUQSGD [M] (Ramezani-Kebrya et al., JMLR 2021): levels ``{0, 2^-s, 2^-(s-1), ..., 1/2, 1}`` of
  ``r_i = |v_i| / ||v||_2``, unbiased stochastic rounding between neighbouring levels.
  [D] exact variance ``scale^2 sum_i (b_i - r_i)(r_i - a_i)`` (``a_i <= r_i <= b_i`` the neighbouring
  levels) -- :func:`nuqsgd_exact_variance`; [D] bound from the level geometry
  ``||v||^2 (1/8 + min(d 2^-2s / 4, sqrt(d) 2^-s))`` -- :func:`nuqsgd_variance_bound`.
* TernGrad [M] (Wen et al., NeurIPS 2017): ``g_hat = ||g||_inf sign(g) b``, ``P(b_k = 1) = |g_k|/||g||_inf``.
  [D] ``E||g_hat||^2 = ||g||_inf ||g||_1`` -- :func:`terngrad_second_moment`; hence (unbiased)
  ``E||g_hat - g||^2 = ||g||_inf ||g||_1 - ||g||_2^2`` -- :func:`terngrad_exact_variance`.

Bucketed compressors call these per bucket (bucket size in place of ``d``) and sum.

References:
    A. Ramezani-Kebrya, F. Faghri, I. Markov, V. Aksenov, D. Alistarh, D. M. Roy, "NUQSGD: Provably
    Communication-efficient Data-parallel SGD via Nonuniform Quantization", JMLR 22 (2021).
    W. Wen et al., "TernGrad: Ternary Gradients to Reduce Communication in Distributed Deep
    Learning", NeurIPS 2017 (Section 3, unbiasedness and the variance of the ternary gradient).
"""

from __future__ import annotations

import math

import numpy as np

from ._args import as_vector, check_int, check_nonneg, norm2

__all__ = [
    "nuqsgd_levels",
    "nuqsgd_variance_bound",
    "nuqsgd_exact_variance",
    "nuqsgd_expected_nnz",
    "terngrad_second_moment",
    "terngrad_exact_variance",
]


def nuqsgd_levels(s: int) -> np.ndarray:
    """The NUQSGD levels ``[0, 2^-s, 2^-(s-1), ..., 1/2, 1]`` (s + 2 of them) [M].

    Args:
        s: the exponent of the smallest nonzero level, >= 1.

    Returns:
        The float64 levels in increasing order.

    Example:
        >>> nuqsgd_levels(2).tolist()
        [0.0, 0.25, 0.5, 1.0]

    References:
        NUQSGD (JMLR 2021), Section 3 (the nonuniform levels).
    """
    s = check_int("s", s, low=1)
    return np.concatenate(([0.0], 2.0 ** -np.arange(s, -1, -1, dtype=np.float64)))


def _brackets(v, s, scale):
    v = as_vector("v", v)
    scale = norm2(v) if scale is None else check_nonneg("scale", scale)
    vmax = float(np.max(np.abs(v)))
    if vmax > scale * (1.0 + 1e-6):
        raise ValueError(f"scale must be >= max|v_i| = {vmax!r}, got {scale!r}")
    levels = nuqsgd_levels(s)
    if scale == 0.0:
        z = np.zeros(v.size)
        return z, z, z, 0.0
    r = np.minimum(np.abs(v) / scale, 1.0)
    j = np.clip(np.searchsorted(levels, r, side="right") - 1, 0, levels.size - 2)
    return r, levels[j], levels[j + 1], scale


def nuqsgd_variance_bound(d: int, s: int, norm_sq: float) -> float:
    """Bound ``E||Q(v) - v||^2 <= ||v||^2 (1/8 + min(d 2^-2s / 4, sqrt(d) 2^-s))`` [D].

    Args:
        d: dimension (bucket size), >= 1.
        s: level exponent, >= 1.
        norm_sq: ``||v||_2^2`` (>= 0).

    Returns:
        The bound.

    Example:
        >>> nuqsgd_variance_bound(16, 2, 1.0)     # 1/8 + min(16/64, 4/4)
        0.375

    References:
        NUQSGD (JMLR 2021), variance bound (Theorem 4 there); this form from the level geometry
        (THEORY.md section 2).
    """
    d = check_int("d", d, low=1)
    s = check_int("s", s, low=1)
    norm_sq = check_nonneg("norm_sq", norm_sq)
    return norm_sq * (0.125 + min(d * 2.0 ** (-2 * s) / 4.0, math.sqrt(d) * 2.0**-s))


def nuqsgd_exact_variance(v, s: int, scale: float | None = None) -> float:
    """Exact ``E||Q(v) - v||^2 = scale^2 sum_i (b_i - r_i)(r_i - a_i)`` [D].

    Args:
        v: the vector (one bucket).
        s: level exponent, >= 1.
        scale: ``||v||_2`` by default.

    Returns:
        The exact variance.

    Example:
        >>> round(nuqsgd_exact_variance([3.0, 4.0], 2), 9)   # r = .6, .8 in [.5, 1]: 25 (.4*.1 + .2*.3)
        2.5

    References:
        Derived from the definition of NUQSGD (JMLR 2021), Section 3.
    """
    r, a, b, scale = _brackets(v, s, scale)
    return float(scale**2 * np.sum((b - r) * (r - a)))


def nuqsgd_expected_nnz(v, s: int, scale: float | None = None) -> float:
    """Exact expected number of nonzeros: ``#{r_i >= 2^-s} + sum_{r_i < 2^-s} r_i 2^s`` [D].

    Args:
        v: the vector (one bucket).
        s: level exponent, >= 1.
        scale: ``||v||_2`` by default.

    Returns:
        The expected count.

    Example:
        >>> nuqsgd_expected_nnz([1.0, 0.0, 0.0], 1)
        1.0
    """
    r, a, b, _ = _brackets(v, s, scale)
    low = a == 0.0
    return float(np.count_nonzero(~low) + np.sum(r[low] / b[low])) if r.size else 0.0


def terngrad_second_moment(v) -> float:
    """Exact ``E||g_hat||^2 = ||v||_inf ||v||_1`` of the TernGrad quantizer [D].

    Args:
        v: the (already clipped) gradient.

    Returns:
        The second moment.

    Example:
        >>> terngrad_second_moment([1.0, -2.0, 0.5])
        7.0

    References:
        TernGrad (NeurIPS 2017), Section 3 (derived from the definition).
    """
    v = as_vector("v", v)
    return float(np.max(np.abs(v)) * np.sum(np.abs(v)))


def terngrad_exact_variance(v) -> float:
    """Exact ``E||g_hat - v||^2 = ||v||_inf ||v||_1 - ||v||_2^2`` [D].

    Args:
        v: the (already clipped) gradient.

    Returns:
        The variance (>= 0).

    Example:
        >>> terngrad_exact_variance([1.0, -2.0, 0.5])    # 7 - 5.25
        1.75

    References:
        TernGrad (NeurIPS 2017), Section 3 (derived from the definition).
    """
    v = as_vector("v", v)
    return max(0.0, float(np.max(np.abs(v)) * np.sum(np.abs(v)) - np.dot(v, v)))
