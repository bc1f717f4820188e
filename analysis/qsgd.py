"""QSGD (Alistarh, Grubic, Li, Tomioka, Vojnovic, NeurIPS 2017) as plain functions.

The quantizer with ``s`` levels maps ``v`` to ``scale * sgn(v_i) * xi_i`` where, for
``r_i = |v_i| / scale`` in ``[l/s, (l+1)/s]``, ``xi_i = (l+1)/s`` with probability
``p_i = s r_i - l`` and ``l/s`` otherwise (``scale = ||v||_2``, or ``max|v_i|`` for the max-norm
variant). Bucketed compressors call these per bucket (with the bucket size in place of ``d``)
and sum the results themselves.

Statements (THEORY.md section 1; [V] read in the paper, [M] constants not verified, [D] exact):

* Lemma 3.1 (ii) [V]: ``E||Q_s(v) - v||^2 <= min(d/s^2, sqrt(d)/s) ||v||^2`` -- :func:`qsgd_variance_bound`.
* Lemma 3.1 (iii) [V]: ``E nnz(Q_s(v)) <= s (s + sqrt d)`` -- :func:`qsgd_nnz_bound`.
* [D]: ``E||Q_s(v) - v||^2 = (scale^2/s^2) sum_i p_i (1 - p_i)`` -- :func:`qsgd_exact_variance`;
  ``E nnz = #{l_i >= 1} + sum_{l_i = 0} p_i`` -- :func:`qsgd_expected_nnz`.
* Theorem 3.2 [V] (o(1) dropped): expected code length -- :func:`qsgd_code_length_bound`.
* Corollary 3.3 [V]: ``2.8 d + 32`` bits for ``s = sqrt d`` -- :func:`qsgd_dense_code_length_bound`.
* Theorem 3.4 [V form, O() constant 1 -> M]: iteration count and step size -- :func:`qsgd_iterations`,
  :func:`qsgd_step_size`.
* Theorem 3.5 [V form, O() constant 1 -> M]: non-convex bound -- :func:`qsgd_nonconvex_bound`.

References:
    D. Alistarh et al., "QSGD: Communication-Efficient SGD via Gradient Quantization and
    Encoding", NeurIPS 2017: Lemma 3.1, Theorem 3.2, Corollary 3.3, Theorems 3.4 and 3.5.
"""

from __future__ import annotations

import math

import numpy as np

from ._args import as_vector, check_int, check_nonneg, norm2, check_pos

__all__ = [
    "qsgd_variance_factor",
    "qsgd_variance_bound",
    "qsgd_nnz_bound",
    "qsgd_levels",
    "qsgd_exact_variance",
    "qsgd_expected_nnz",
    "qsgd_code_length_bound",
    "qsgd_dense_code_length_bound",
    "qsgd_step_size",
    "qsgd_iterations",
    "qsgd_nonconvex_bound",
]


def qsgd_variance_factor(d: int, s: int) -> float:
    """The factor ``min(d/s^2, sqrt(d)/s)`` of Lemma 3.1 (ii) [V].

    Args:
        d: dimension (or bucket size), >= 1.
        s: number of levels, >= 1.

    Returns:
        ``min(d / s**2, sqrt(d) / s)``.

    Example:
        >>> qsgd_variance_factor(512, 16)   # bucket 512, 4-bit: sqrt(512)/16
        1.4142135623730951

    References:
        QSGD (NeurIPS 2017), Lemma 3.1 (ii).
    """
    d = check_int("d", d, low=1)
    s = check_int("s", s, low=1)
    return min(d / s**2, math.sqrt(d) / s)


def qsgd_variance_bound(d: int, s: int, norm_sq: float) -> float:
    """Upper bound on ``E||Q_s(v) - v||^2`` [V].

    Args:
        d: dimension (bucket size for bucketed QSGD), >= 1.
        s: number of levels, >= 1.
        norm_sq: ``||v||_2^2`` (>= 0).

    Returns:
        ``min(d/s^2, sqrt(d)/s) * norm_sq``.

    Example:
        >>> qsgd_variance_bound(100, 2, 1.0)    # min(25, 5)
        5.0

    References:
        QSGD (NeurIPS 2017), Lemma 3.1 (ii).
    """
    norm_sq = check_nonneg("norm_sq", norm_sq)
    return qsgd_variance_factor(d, s) * norm_sq


def qsgd_nnz_bound(d: int, s: int) -> float:
    """Upper bound on the expected number of nonzeros of ``Q_s(v)`` [V].

    Args:
        d: dimension (bucket size), >= 1.
        s: number of levels, >= 1.

    Returns:
        ``s * (s + sqrt(d))``.

    Example:
        >>> qsgd_nnz_bound(100, 2)
        24.0

    References:
        QSGD (NeurIPS 2017), Lemma 3.1 (iii).
    """
    d = check_int("d", d, low=1)
    s = check_int("s", s, low=1)
    return s * (s + math.sqrt(d))


def qsgd_levels(v, s: int, scale: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Lower level ``l_i`` and round-up probability ``p_i`` of each entry [D].

    Args:
        v: the vector (1-D, finite).
        s: number of levels, >= 1.
        scale: the normalization (default ``||v||_2``; ``max|v_i|`` for the max-norm variant).
            Must be >= ``max|v_i|`` (up to a relative 1e-6 for float32 rounding; ratios are
            clipped to 1).

    Returns:
        ``(l, p, scale)``: int64 levels in ``[0, s]``, probabilities in ``[0, 1)`` and the scale used.
        With ``scale == 0`` every level and probability is 0.

    Example:
        >>> import numpy as np
        >>> l, p, sc = qsgd_levels([3.0, 4.0], 2)
        >>> l.tolist(), np.round(p, 6).tolist(), sc
        ([1, 1], [0.2, 0.6], 5.0)
    """
    v = as_vector("v", v)
    s = check_int("s", s, low=1)
    scale = norm2(v) if scale is None else check_nonneg("scale", scale)
    vmax = float(np.max(np.abs(v)))
    if vmax > scale * (1.0 + 1e-6):
        raise ValueError(f"scale must be >= max|v_i| = {vmax!r}, got {scale!r}")
    if scale == 0.0:
        z = np.zeros(v.size)
        return z.astype(np.int64), z, 0.0
    t = np.minimum(np.abs(v) / scale, 1.0) * s
    l = np.floor(t)
    return l.astype(np.int64), t - l, scale


def qsgd_exact_variance(v, s: int, scale: float | None = None) -> float:
    """Exact ``E||Q_s(v) - v||^2 = (scale^2/s^2) sum_i p_i (1 - p_i)`` [D].

    Args:
        v: the vector (one bucket for bucketed QSGD).
        s: number of levels, >= 1.
        scale: ``||v||_2`` by default; ``max|v_i|`` for the max-norm variant.

    Returns:
        The exact variance (a float >= 0).

    Example:
        >>> round(qsgd_exact_variance([3.0, 4.0], 2), 6)   # 25/4 * (0.2*0.8 + 0.6*0.4)
        2.5

    References:
        Derived from the definition in QSGD (NeurIPS 2017), Section 3.1 (cf. Lemma 3.1 (ii)).
    """
    _, p, scale = qsgd_levels(v, s, scale)
    s = int(s)
    return float(scale**2 / s**2 * np.sum(p * (1.0 - p)))


def qsgd_expected_nnz(v, s: int, scale: float | None = None) -> float:
    """Exact ``E nnz(Q_s(v)) = #{i : l_i >= 1} + sum_{i : l_i = 0} p_i`` [D].

    Args:
        v: the vector (one bucket for bucketed QSGD).
        s: number of levels, >= 1.
        scale: ``||v||_2`` by default; ``max|v_i|`` for the max-norm variant.

    Returns:
        The expected number of nonzero entries.

    Example:
        >>> round(qsgd_expected_nnz([3.0, 4.0], 1), 6)    # l = 0, 0: p = 0.6 + 0.8
        1.4

    References:
        Derived from the definition in QSGD (NeurIPS 2017), Section 3.1 (cf. Lemma 3.1 (iii)).
    """
    l, p, _ = qsgd_levels(v, s, scale)
    return float(np.count_nonzero(l >= 1) + np.sum(p[l == 0]))


def qsgd_code_length_bound(d: int, s: int) -> float:
    """Theorem 3.2 bound on the expected Elias-coded length in bits, o(1) term dropped [V].

    ``(3 + (3/2) log2(2 (s^2 + d) / (s (s + sqrt d)))) * s (s + sqrt d) + 32``.

    Args:
        d: dimension (>= 1).
        s: number of levels (>= 2, as in the theorem).

    Returns:
        The bound in bits.

    Example:
        >>> qsgd_code_length_bound(16, 2)    # (3 + 1.5 log2(40/12)) * 12 + 32
        99.2653806949917

    References:
        QSGD (NeurIPS 2017), Theorem 3.2 (the o(1) in the 3/2 + o(1) coefficient is dropped).
    """
    d = check_int("d", d, low=1)
    s = check_int("s", s, low=2)
    m = s * (s + math.sqrt(d))
    return (3.0 + 1.5 * math.log2(2.0 * (s * s + d) / m)) * m + 32.0


def qsgd_dense_code_length_bound(d: int) -> float:
    """Corollary 3.3: the dense encoding for ``s = sqrt d`` uses at most ``2.8 d + 32`` bits [V].

    Args:
        d: dimension (>= 1).

    Returns:
        ``2.8 d + 32`` (bits).

    Example:
        >>> qsgd_dense_code_length_bound(1000)
        2832.0

    References:
        QSGD (NeurIPS 2017), Corollary 3.3.
    """
    d = check_int("d", d, low=1)
    return 2.8 * d + 32.0


def _b_prime(d, s, B):
    return qsgd_variance_factor(d, s) * check_nonneg("B", B)


def qsgd_step_size(L: float, R: float, B: float, d: int, s: int, K: int, T: int) -> float:
    """Theorem 3.4 step size ``1 / (L + sqrt(K)/gamma)``, ``gamma = (R / sqrt(B')) sqrt(2/T)`` [M].

    ``B' = min(d/s^2, sqrt(d)/s) B``; gamma is Theorem 2.1's with ``sigma^2 -> B'`` (form [V],
    that substitution [M]). With ``B' = 0`` the step is ``1/L``.

    Args:
        L: smoothness constant (> 0).
        R: ``sup ||x - x0||`` (> 0).
        B: second-moment bound of the stochastic gradients (>= 0).
        d, s: dimension and quantization levels.
        K: number of nodes (>= 1).
        T: number of iterations (>= 1).

    Returns:
        The step size.

    Example:
        >>> qsgd_step_size(1.0, 1.0, 0.0, 100, 10, 4, 100)
        1.0

    References:
        QSGD (NeurIPS 2017), Theorem 3.4 (and Theorem 2.1 for gamma).
    """
    L, R = check_pos("L", L), check_pos("R", R)
    K, T = check_int("K", K, low=1), check_int("T", T, low=1)
    bp = _b_prime(d, s, B)
    if bp == 0.0:
        return 1.0 / L
    gamma = R / math.sqrt(bp) * math.sqrt(2.0 / T)
    return 1.0 / (L + math.sqrt(K) / gamma)


def qsgd_iterations(eps: float, L: float, R: float, B: float, d: int, s: int, K: int) -> float:
    """Theorem 3.4: ``T = R^2 max(2 B' / (K eps^2), L / eps)`` iterations suffice, O() constant 1 [M].

    Args:
        eps: target accuracy ``E f(avg x_t) - f* <= eps`` (> 0).
        L: smoothness constant (> 0).
        R: ``sup ||x - x0||`` (> 0).
        B: second-moment bound of the stochastic gradients (>= 0).
        d, s: dimension and quantization levels (``B' = min(d/s^2, sqrt d/s) B``).
        K: number of nodes (>= 1).

    Returns:
        The iteration count (a float; round up to use it).

    Example:
        >>> round(qsgd_iterations(0.1, 1.0, 1.0, 1.0, 16, 4, 2), 9)    # B' = 1: max(2/(2*0.01), 10)
        100.0

    References:
        QSGD (NeurIPS 2017), Theorem 3.4.
    """
    eps, L, R = check_pos("eps", eps), check_pos("L", L), check_pos("R", R)
    K = check_int("K", K, low=1)
    return R * R * max(2.0 * _b_prime(d, s, B) / (K * eps * eps), L / eps)


def qsgd_nonconvex_bound(L: float, f_gap: float, N: int, B: float, d: int, s: int) -> float:
    """Theorem 3.5: bound on ``(1/L) E||grad f(x_R)||^2``, O() constant 1 [M].

    ``sqrt(L (f(x_1) - f*) / N) + min(d/s^2, sqrt(d)/s) B / L``.

    Args:
        L: smoothness constant (> 0).
        f_gap: ``f(x_1) - f*`` (>= 0).
        N: number of iterations (>= 1).
        B: second-moment bound of the stochastic gradients (>= 0).
        d, s: dimension and quantization levels.

    Returns:
        The bound.

    Example:
        >>> qsgd_nonconvex_bound(1.0, 4.0, 4, 1.0, 16, 4)   # sqrt(1) + 1
        2.0

    References:
        QSGD (NeurIPS 2017), Theorem 3.5.
    """
    L = check_pos("L", L)
    f_gap = check_nonneg("f_gap", f_gap)
    N = check_int("N", N, low=1)
    return math.sqrt(L * f_gap / N) + _b_prime(d, s, B) / L
