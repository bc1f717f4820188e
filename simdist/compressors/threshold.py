"""Threshold sparsification: keep every entry with ``|x_i| >= tau``, send it with its index.

Wire format: identical to :mod:`simdist.compressors.topk` (index block with the count, mode bit,
indices in the shorter of delta-coded gaps / ``ceil(log2 d)``-bit indices and the end gap, then
the kept values as binary32 patterns, MSB first), except that the count varies with x. When no
entry reaches tau the message is the index block alone: ``omega(1)`` = ``0``, then the end gap
``delta(d + 1)``.
``|x_i|`` is compared with tau in float64.

Deterministic and biased. Error (exact, [D]): ``||C(x) - x||^2 = sum of x_i^2 over |x_i| < tau``
(for float64 input the float32 rounding of the kept values comes on top).

References:
    N. Strom, "Scalable distributed DNN training using commodity GPU cloud computing",
    Interspeech 2015 (threshold quantization with residuals).
    Lin et al., "Deep Gradient Compression", ICLR 2018 (threshold sparsification, Sec. 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_float, check_int
from ..coding.indices import MAX_DIM
from ..errors import raise_decode_status
from ..kernels.sparse import sparse_decode, threshold_encode_batch
from .base import Compressor
from .registry import register
from .topk import f32_overflow_error

__all__ = ["Threshold"]


@register
@dataclass(frozen=True)
class Threshold(Compressor):
    """Keep the entries with ``|x_i| >= tau``.

    Args:
        tau: the threshold, a finite float > 0.

    Example:
        >>> import numpy as np
        >>> c = Threshold(tau=1.0)
        >>> p = c.compress(np.array([0.5, -3.0, 1.0, 0.25], np.float32))
        >>> c.decompress(p).tolist(), p.nbits
        ([0.0, -3.0, 1.0, 0.0], 76)
        >>> Threshold(tau=10.0).compress(np.ones(4, np.float32)).nbits   # omega(1) + delta(5)
        6

    References:
        Strom, Interspeech 2015; THEORY.md section 5.
    """

    tau: float

    name = "threshold"
    unbiased = False
    needs_rng = False

    def __post_init__(self):
        object.__setattr__(self, "tau", check_float("tau", self.tau, low=0.0, low_open=True))

    def _check_dim(self, d: int) -> None:
        check_int("d", d, low=1, high=MAX_DIM)

    def _encode_batch(self, X, rng):
        buf, offsets, nbits, status, row = threshold_encode_batch(X, self.tau)
        if status < 0:
            raise f32_overflow_error(self.name, row)
        return buf, offsets, nbits, None

    def _decode_batch(self, buffer, offsets, d, dtype, keys, out=None):
        Y, nbits, status, row = sparse_decode(buffer, offsets, d, -1, dtype, out)
        raise_decode_status(int(status), f"{self.name} (row {row})")
        return Y, nbits

    def exact_variance(self, x):
        """[D] ``||x - C(x)||^2`` = sum of ``x_i^2`` over ``|x_i| < tau`` (exact arithmetic)."""
        x = np.asarray(x, dtype=np.float64)
        dropped = x[np.abs(x) < self.tau]
        return float(np.dot(dropped, dropped))
