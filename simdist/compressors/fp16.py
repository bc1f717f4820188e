"""fp16: round each entry to IEEE-754 binary16, 16 bits per entry (2x compression).

Entries must lie within the float16 range (|x_i| <= 65504); larger gradients need
loss scaling before this compressor, so they are refused rather than sent as Inf.
Rounding is to nearest (deterministic, hence biased by at most half an fp16 ulp).

References:
    Micikevicius et al., "Mixed Precision Training", ICLR 2018.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Compressor
from .identity import raw_float_decode
from .registry import register

__all__ = ["FP16"]

_FP16_MAX = float(np.finfo(np.float16).max)


@register
@dataclass(frozen=True)
class FP16(Compressor):
    """Half-precision wire format.

    Example:
        >>> import numpy as np
        >>> c = FP16(); p = c.compress(np.array([1.0, 0.1], np.float32))
        >>> p.nbits, c.decompress(p).dtype
        (32, dtype('float32'))
    """

    name = "fp16"

    def _encode_batch(self, X, rng):
        n, d = X.shape
        big = np.abs(X) > _FP16_MAX
        if big.any():
            raise ValueError(
                f"x must satisfy |x_i| <= {_FP16_MAX} (the float16 range) for fp16; "
                f"max |x_i| = {float(np.abs(X).max())}"
            )
        buffer = X.astype("<f2").view(np.uint8).reshape(-1).copy()
        offsets = np.arange(n + 1, dtype=np.int64) * (2 * d)
        return buffer, offsets, np.full(n, 16 * d, dtype=np.int64), None

    def _decode_batch(self, buffer, offsets, d, dtype, keys, out=None):
        return raw_float_decode(self.name, buffer, offsets, d, dtype, "<f2")

    def exact_variance(self, x):
        return float(np.sum((x.astype(np.float16).astype(np.float64) - x) ** 2))
