"""Top-k sparsification: keep the k entries of largest magnitude, send them with their indices.

Wire format (one row, MSB-first bits; see :mod:`simdist.coding.indices` and
:mod:`simdist.kernels.sparse`):

1. ``omega(k + 1)``: the count (always the effective k).
2. One mode bit, then the k indices, increasing: mode 0 = ``delta(gap)`` with
   ``gap = idx[j] - idx[j-1]`` (``idx[-1] = -1``); mode 1 = ``ceil(log2 d)`` bits each. The
   encoder writes the shorter one (fixed on a tie).
3. The end gap ``delta(d - idx[k-1])``, so that the message determines d (a receiver that
   assumes another dimension gets a DecodeError).
4. k values: the IEEE-754 binary32 pattern of each kept entry (float64 inputs rounded to
   nearest float32), MSB first, in index order.
5. Zero padding to a byte boundary.

The selection runs in O(d) (:mod:`simdist.kernels.select`, no full sort); ties at the k-th
magnitude go to the lowest index. Deterministic and biased. The compressor is a k-contraction
[M]: ``||x - C(x)||^2 <= (1 - k/d) ||x||^2``, with the exact [D] identity
``||x - C(x)||^2 = sum of the d - k smallest x_i^2`` (for float64 input the float32 rounding of
the kept values comes on top).

References:
    Stich, Cordonnier, Jaggi, "Sparsified SGD with Memory", NeurIPS 2018, Definition 2.1
    (k-contraction) and Lemma A.1 (top_k and rand_k are k-contractions).
    Alistarh et al., "The Convergence of Sparsified Gradient Methods", NeurIPS 2018.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validate import check_float, check_int
from ..coding.indices import MAX_DIM
from ..errors import raise_decode_status
from ..kernels.sparse import sparse_decode, topk_encode
from .base import Compressor
from .registry import register

__all__ = ["TopK", "check_k_ratio", "effective_k"]


def check_k_ratio(name: str, k, ratio) -> tuple[int | None, float | None]:
    """Validate that exactly one of ``k`` (int >= 1) and ``ratio`` (float in (0, 1]) is given."""
    if (k is None) == (ratio is None):
        raise ValueError(
            f"{name}: pass exactly one of k (an integer >= 1) or ratio (a float in (0, 1]), "
            f"got k={k!r}, ratio={ratio!r}"
        )
    if k is not None:
        return check_int("k", k, low=1), None
    return None, check_float("ratio", ratio, low=0.0, high=1.0, low_open=True)


def effective_k(k: int | None, ratio: float | None, d: int) -> int:
    """k itself, or ``max(1, ceil(ratio * d))`` (capped at d)."""
    if k is not None:
        return k
    return min(d, max(1, math.ceil(ratio * d)))


def check_k_dim(k: int | None, d: int) -> None:
    """ValueError naming k when k > d."""
    if k is not None and k > d:
        raise ValueError(f"k must be in [1, {d}] (at most the dimension d={d}), got k={k}")


def f32_overflow_error(name: str, row: int) -> ValueError:
    return ValueError(
        f"{name}: x has a kept value outside the float32 range (|x_i| > 3.4028235e38) in row {row}; "
        "the values are sent as float32"
    )


@register
@dataclass(frozen=True)
class TopK(Compressor):
    """Keep the k largest-magnitude entries (k given, or ``max(1, ceil(ratio * d))``).

    Args:
        k: number of entries kept, an integer >= 1 (at most d).
        ratio: fraction of entries kept, a float in (0, 1]. Exactly one of k / ratio.

    Example:
        >>> import numpy as np
        >>> c = TopK(k=2)
        >>> p = c.compress(np.array([0.5, -3.0, 1.0, 2.0], np.float32))
        >>> c.decompress(p).tolist(), p.nbits  # omega(3), mode, 2 x 2-bit indices, end gap, 2 x 32
        ([0.0, -3.0, 0.0, 2.0], 73)

    References:
        Stich, Cordonnier, Jaggi, NeurIPS 2018, Definition 2.1 [M]; THEORY.md section 5.
    """

    k: int | None = None
    ratio: float | None = None

    name = "topk"
    unbiased = False
    needs_rng = False

    def __post_init__(self):
        k, ratio = check_k_ratio(self.name, self.k, self.ratio)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "ratio", ratio)

    def k_for(self, d: int) -> int:
        """The number of entries kept for dimension d."""
        return effective_k(self.k, self.ratio, d)

    def _check_dim(self, d: int) -> None:
        check_int("d", d, low=1, high=MAX_DIM)
        check_k_dim(self.k, d)

    def _encode_batch(self, X, rng):
        buf, offsets, nbits, status, row = topk_encode(X, self.k_for(X.shape[1]))
        if status < 0:
            raise f32_overflow_error(self.name, row)
        return buf, offsets, nbits, None

    def _decode_batch(self, buffer, offsets, d, dtype, keys, out=None):
        Y, nbits, status, row = sparse_decode(buffer, offsets, d, self.k_for(d), dtype, out)
        raise_decode_status(int(status), f"{self.name} (row {row})")
        return Y, nbits

    def variance_bound(self, x):
        """k-contraction bound ``(1 - k/d) ||x||^2`` [M] (Stich et al. 2018, Def. 2.1)."""
        from analysis.sparsification import k_contraction_bound

        x = np.asarray(x, dtype=np.float64)
        return k_contraction_bound(x.size, self.k_for(x.size), float(np.dot(x, x)))

    def exact_variance(self, x):
        """[D] ``||x - C(x)||^2`` = sum of the d - k smallest ``x_i^2`` (exact arithmetic)."""
        from analysis.sparsification import topk_exact_error

        x = np.asarray(x, dtype=np.float64)
        return topk_exact_error(x, self.k_for(x.size))
