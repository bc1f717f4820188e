"""Identity (fp32): the uncompressed baseline, 32 bits per entry.

The message is the vector as little-endian IEEE-754 binary32, d * 32 bits. A float64
input is rounded to float32 on the wire (and returned as float64), as a real fp32
all-reduce would do.

References:
    The full-precision baseline of every paper compared here (e.g. QSGD, NeurIPS 2017, Sec. 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DecodeError
from .base import Compressor
from .registry import register

__all__ = ["Identity", "raw_float_decode"]


def raw_float_decode(name: str, buffer, offsets, d: int, dtype, wire) -> tuple[np.ndarray, np.ndarray]:
    """Decode rows of raw little-endian floats of dtype ``wire`` (shared by identity and fp16)."""
    wire = np.dtype(wire)
    row = d * wire.itemsize
    n = offsets.shape[0] - 1
    lengths = np.diff(offsets)
    if np.any(lengths != row):
        i = int(np.flatnonzero(lengths != row)[0])
        raise DecodeError(f"{name}: row {i} has {int(lengths[i])} bytes, expected {row} for dim={d}")
    body = np.frombuffer(np.ascontiguousarray(buffer[offsets[0] : offsets[0] + n * row]).tobytes(), dtype=wire)
    if not np.all(np.isfinite(body)):
        raise DecodeError(f"{name}: message holds NaN or Inf values")
    Y = body.reshape(n, d).astype(dtype)
    return Y, np.full(n, 8 * row, dtype=np.int64)


@register
@dataclass(frozen=True)
class Identity(Compressor):
    """Send the vector as fp32 (no compression).

    Example:
        >>> import numpy as np
        >>> c = Identity(); p = c.compress(np.ones(4, np.float32))
        >>> p.nbits, c.decompress(p).tolist()
        (128, [1.0, 1.0, 1.0, 1.0])
    """

    name = "identity"
    unbiased = True

    def _encode_batch(self, X, rng):
        n, d = X.shape
        buffer = np.ascontiguousarray(X, dtype="<f4").view(np.uint8).reshape(-1).copy()
        offsets = np.arange(n + 1, dtype=np.int64) * (4 * d)
        return buffer, offsets, np.full(n, 32 * d, dtype=np.int64), None

    def _decode_batch(self, buffer, offsets, d, dtype, keys, out=None):
        return raw_float_decode(self.name, buffer, offsets, d, dtype, "<f4")

    def variance_bound(self, x):
        return 0.0 if x.dtype == np.float32 else float(np.sum((x.astype(np.float32) - x) ** 2))

    def exact_variance(self, x):
        return self.variance_bound(x)
