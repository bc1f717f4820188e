"""Communication lower bounds (THEORY.md section 8), with the Omega() constants set to 1.

* Tsitsiklis & Luo 1987 [V form, constant 1 -> M]: two nodes optimizing a d-dimensional convex
  function to accuracy eps must exchange ``Omega(d (log d + log 1/eps))`` bits --
  :func:`tsitsiklis_luo_bits`.
* [M] With B bits per node and round the added variance is ``Omega(d/B) ||x||^2``
  (so a constant blow-up needs ``Omega(d)`` bits, [V] QSGD) -- :func:`variance_lower_bound`.
* Safaryan-Shulgin-Richtarik uncertainty principle [M]: a compressor with residual variance factor
  alpha (``E||C(x) - x||^2 <= alpha ||x||^2``) sending b bits in d dimensions has
  ``alpha 4^(b/d) >= 1`` -- :func:`ssr_min_variance_factor`, :func:`ssr_min_bits`.

References:
    J. N. Tsitsiklis, Z.-Q. Luo, "Communication complexity of convex optimization", J. Complexity
    3 (1987). D. Alistarh et al., QSGD, NeurIPS 2017 (Section 1 / 3, lower bound discussion).
    M. Safaryan, E. Shulgin, P. Richtarik, "Uncertainty Principle for Communication Compression in
    Distributed and Federated Learning and the Search for an Optimal Compressor", Information and
    Inference 2022 (Theorem 1 there).
"""

from __future__ import annotations

import math

from ._args import check_float, check_int, check_nonneg, check_pos

__all__ = ["tsitsiklis_luo_bits", "variance_lower_bound", "ssr_min_variance_factor", "ssr_min_bits"]


def tsitsiklis_luo_bits(d: int, eps: float) -> float:
    """``d (log2 d + log2(1/eps))`` bits, the Omega() bound with constant 1 [M].

    Args:
        d: dimension (>= 1).
        eps: accuracy, in (0, 1).

    Returns:
        Bits.

    Example:
        >>> tsitsiklis_luo_bits(8, 0.25)    # 8 (3 + 2)
        40.0

    References:
        Tsitsiklis & Luo 1987.
    """
    d = check_int("d", d, low=1)
    eps = check_float("eps", eps, low=0.0, high=1.0, low_open=True, high_open=True)
    return d * (math.log2(d) + math.log2(1.0 / eps))


def variance_lower_bound(d: int, B: float, norm_sq: float = 1.0) -> float:
    """``(d / B) ||x||^2``: the Omega(d/B) extra variance with B bits per node, constant 1 [M].

    Args:
        d: dimension (>= 1).
        B: bits per node and round (> 0).
        norm_sq: ``||x||^2`` (>= 0).

    Returns:
        The lower bound on the added variance.

    Example:
        >>> variance_lower_bound(1000, 250.0, 2.0)
        8.0

    References:
        QSGD (NeurIPS 2017), discussion of Lemma 3.1 and Theorem 3.2 (THEORY.md section 8).
    """
    d = check_int("d", d, low=1)
    return d / check_pos("B", B) * check_nonneg("norm_sq", norm_sq)


def ssr_min_variance_factor(b: float, d: int) -> float:
    """The smallest residual variance factor ``alpha = 4^(-b/d)`` allowed with b bits in d dims [M].

    Args:
        b: bits of the message (>= 0).
        d: dimension (>= 1).

    Returns:
        ``4 ** (-b / d)`` (alpha must be at least this).

    Example:
        >>> ssr_min_variance_factor(64, 32)    # 4^-2
        0.0625

    References:
        Safaryan, Shulgin, Richtarik (2022), uncertainty principle ``alpha 4^(b/d) >= 1``.
    """
    b = check_nonneg("b", b)
    d = check_int("d", d, low=1)
    return 4.0 ** (-b / d)


def ssr_min_bits(alpha: float, d: int) -> float:
    """Bits needed for residual variance factor alpha: ``b >= (d/2) log2(1/alpha)`` [M].

    Args:
        alpha: residual variance factor, in (0, 1] (``alpha >= 1`` needs 0 bits).
        d: dimension (>= 1).

    Returns:
        The minimal number of bits.

    Example:
        >>> ssr_min_bits(0.0625, 32)
        64.0

    References:
        Safaryan, Shulgin, Richtarik (2022), uncertainty principle.
    """
    alpha = check_pos("alpha", alpha)
    d = check_int("d", d, low=1)
    return max(0.0, d / 2.0 * math.log2(1.0 / alpha))
