"""Plain NumPy/Python reference for 1BitSGD (the oracle of :mod:`simdist.kernels.onebit`).

Wire format as in :mod:`simdist.compressors.onebit`: per bucket float32 (avg+, avg-), then one
bit per entry (1 = negative).

Example:
    >>> import numpy as np
    >>> msg, nbits = encode(np.array([0.1, -0.3, 0.5, -0.1, 0.0]))
    >>> nbits, [round(float(v), 6) for v in decode(msg, 5)]
    (69, [0.2, -0.2, 0.2, -0.2, 0.2])
"""

from __future__ import annotations

import numpy as np

from ..coding.bitio import BitReader, BitWriter
from ..errors import DecodeError
from .sign import _check_tail, bits_f32, buckets, f32_bits, seq_sum

__all__ = ["encode", "decode"]


def _mean_f32(v) -> np.float32:
    return np.float32(seq_sum(v) / v.size) if v.size else np.float32(0.0)


def encode(x, *, bucket=None) -> tuple[bytes, int]:
    """Encode a vector; return ``(message, nbits)``."""
    x = np.asarray(x, dtype=np.float64)
    w = BitWriter()
    for lo, hi in buckets(x.size, bucket):
        v = x[lo:hi]
        w.write(f32_bits(_mean_f32(v[v >= 0])), 32)
        w.write(f32_bits(_mean_f32(v[v < 0])), 32)
    for v in x:
        w.write(1 if v < 0 else 0, 1)
    return w.to_bytes(), w.nbits


def decode(data: bytes, d: int, *, bucket=None) -> np.ndarray:
    """Decode a message into a float64 vector (DecodeError on malformed data)."""
    spans = buckets(d, bucket)
    r = BitReader(data)
    pairs = [(r.read(32), r.read(32)) for _ in spans]
    y = np.empty(d)
    for (lo, hi), (up, un) in zip(spans, pairs):
        ap, an = bits_f32(up), bits_f32(un)
        if not (np.isfinite(ap) and np.isfinite(an)):
            raise DecodeError("onebit: non-finite average")
        if up >> 31 or an > 0:
            raise DecodeError("onebit: avg+ < 0 or avg- > 0")
        bits = [r.read(1) for _ in range(lo, hi)]
        if (sum(bits) == 0 and un != 0) or (sum(bits) == hi - lo and up != 0):
            raise DecodeError("onebit: nonzero average for an empty side")
        y[lo:hi] = [float(an) if bit else float(ap) for bit in bits]
    _check_tail(r, data)
    return y
