"""Plain NumPy/Python reference for NUQSGD (the oracle of :mod:`simdist.kernels.nuqsgd`).

Wire format as in :mod:`simdist.compressors.nuqsgd`: per bucket float32 norm, then per entry the
code ``sgn * j + s + 1`` in ceil(log2(2s+3)) bits, j the index of the level in
``{0, 2^-s, ..., 1/2, 1}``. ``words`` are the uint32 words of the row (``simdist.rng.batch_uniform_bits``).

Example:
    >>> import numpy as np
    >>> msg, nbits = encode(np.array([3.0, -4.0]), np.array([0, 0], np.uint32), s=2)
    >>> nbits, decode(msg, 2, s=2).tolist()
    (38, [5.0, -5.0])
"""

from __future__ import annotations

import math

import numpy as np

from ..coding.bitio import BitReader, BitWriter
from ..errors import DecodeError
from .sign import _check_tail, bits_f32, buckets, f32_bits, f32_up, seq_sum

__all__ = ["levels", "width", "encode", "decode"]


def levels(s: int) -> np.ndarray:
    """``[0, 2^-s, 2^-(s-1), ..., 1/2, 1]``."""
    return np.array([0.0] + [2.0**-e for e in range(s, -1, -1)])


def width(s: int) -> int:
    """ceil(log2(2s + 3))."""
    return math.ceil(math.log2(2 * s + 3))


def _norm(g) -> float:
    amax = float(np.max(np.abs(g)))
    if amax == 0.0:
        return 0.0
    t = np.abs(g) / amax
    return amax * float(np.sqrt(seq_sum(t * t)))


def encode(x, words, *, s: int = 4, bucket=None) -> tuple[bytes, int]:
    """Encode a vector with one uint32 word per entry; return ``(message, nbits)``."""
    x = np.asarray(x, dtype=np.float64)
    u = np.asarray(words, dtype=np.uint32).astype(np.float64) * 2.0**-32
    lev = levels(s)
    w = BitWriter()
    codes = []
    for lo, hi in buckets(x.size, bucket):
        g = x[lo:hi]
        norm = f32_up(_norm(g))
        w.write(f32_bits(norm), 32)
        for k, v in enumerate(g):
            j = 0
            if norm > 0:
                r = min(abs(v) / float(norm), 1.0)
                j = int(np.searchsorted(lev, r, side="right")) - 1
                if j < s + 1 and u[lo + k] < (r - lev[j]) / (lev[j + 1] - lev[j]):
                    j += 1
            codes.append((-j if v < 0 else j) + s + 1)
    for c in codes:
        w.write(c, width(s))
    return w.to_bytes(), w.nbits


def decode(data: bytes, d: int, *, s: int = 4, bucket=None) -> np.ndarray:
    """Decode a message into a float64 vector (DecodeError on malformed data)."""
    lev = levels(s)
    spans = buckets(d, bucket)
    r = BitReader(data)
    norms = []
    for _ in spans:
        bits = r.read(32)
        f = bits_f32(bits)
        if not np.isfinite(f) or bits >> 31:
            raise DecodeError("nuqsgd: bad norm")
        norms.append(float(f))
    y = np.empty(d)
    for (lo, hi), nrm in zip(spans, norms):
        for k in range(lo, hi):
            c = r.read(width(s))
            if c > 2 * s + 2:
                raise DecodeError("nuqsgd: code > 2s + 2")
            j = c - (s + 1)
            y[k] = nrm * (1.0 if j >= 0 else -1.0) * lev[abs(j)]
    _check_tail(r, data)
    return y
