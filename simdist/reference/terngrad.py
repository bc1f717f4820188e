"""Plain NumPy/Python reference for TernGrad (the oracle of :mod:`simdist.kernels.terngrad`).

Wire format as in :mod:`simdist.compressors.terngrad`: per bucket float32 scale, then the
ternary symbols (0 = -s, 1 = 0, 2 = +s) 5 per byte in base 3, a final group of m symbols in
ceil(log2(3^m)) bits. ``words`` are the uint32 words of the row (``simdist.rng.batch_uniform_bits``).

Example:
    >>> import numpy as np
    >>> msg, nbits = encode(np.array([0.5, -1.0, 0.0]), np.array([0, 0, 0], np.uint32))
    >>> nbits, decode(msg, 3).tolist()
    (37, [1.0, -1.0, 0.0])
"""

from __future__ import annotations

import math

import numpy as np

from ..coding.bitio import BitReader, BitWriter
from ..errors import DecodeError
from .sign import _check_tail, bits_f32, buckets, f32_bits, f32_up, seq_sum

__all__ = ["encode", "decode", "group_bits"]


def group_bits(m: int) -> int:
    """Bits of a group of m (1..5) base-3 symbols: 8 for a full group, else ceil(log2(3^m))."""
    return 8 if m == 5 else math.ceil(math.log2(3**m))


def encode(x, words, *, clip=None, bucket=None) -> tuple[bytes, int]:
    """Encode a vector with one uint32 word per entry; return ``(message, nbits)``."""
    x = np.asarray(x, dtype=np.float64)
    u = np.asarray(words, dtype=np.uint32).astype(np.float64) * 2.0**-32
    w = BitWriter()
    symbols = []
    for lo, hi in buckets(x.size, bucket):
        g = x[lo:hi]
        a = np.abs(g)
        if clip is not None:
            mean = seq_sum(g) / g.size
            thr = clip * np.sqrt(seq_sum((g - mean) * (g - mean)) / g.size)
            if thr > 0:
                a = np.minimum(a, thr)
        s = f32_up(float(a.max()))
        w.write(f32_bits(s), 32)
        p = a / float(s) if s > 0 else np.zeros_like(a)
        b = u[lo:hi] < p
        symbols += [1 + (-1 if gi < 0 else 1) * int(bi) for gi, bi in zip(g, b)]
    for q in range(0, len(symbols), 5):
        group = symbols[q : q + 5]
        w.write(sum(t * 3 ** (len(group) - 1 - j) for j, t in enumerate(group)), group_bits(len(group)))
    return w.to_bytes(), w.nbits


def decode(data: bytes, d: int, *, bucket=None) -> np.ndarray:
    """Decode a message into a float64 vector (DecodeError on malformed data)."""
    spans = buckets(d, bucket)
    r = BitReader(data)
    scales = []
    for _ in spans:
        bits = r.read(32)
        f = bits_f32(bits)
        if not np.isfinite(f) or bits >> 31:
            raise DecodeError("terngrad: bad scale")
        scales.append(float(f))
    symbols = []
    for q in range(0, d, 5):
        m = min(5, d - q)
        v = r.read(group_bits(m))
        if v >= 3**m:
            raise DecodeError("terngrad: group value >= 3^m")
        symbols += [(v // 3 ** (m - 1 - j)) % 3 for j in range(m)]
    y = np.empty(d)
    for (lo, hi), s in zip(spans, scales):
        y[lo:hi] = [s * (t - 1) for t in symbols[lo:hi]]
    _check_tail(r, data)
    return y
