"""Plain NumPy/Python reference for sign compression (scaled sign and signSGD), and the
float32 / sign-bit helpers shared by the other quantizer references.

Same wire format as :mod:`simdist.compressors.sign` (the oracle of its Numba kernels):
(if scaled) one float32 ``sum|v_B| / |B|`` per bucket, then one bit per entry (1 = negative).

Example:
    >>> import numpy as np
    >>> encode(np.array([1.0, -3.0, 0.0, 2.0]))
    (b'?\\xc0\\x00\\x00@', 36)
"""

from __future__ import annotations

import numpy as np

from ..coding.bitio import BitReader, BitWriter
from ..errors import DecodeError

__all__ = ["f32_bits", "bits_f32", "f32_up", "seq_sum", "lane_sum", "buckets", "encode", "decode"]


def f32_bits(f) -> int:
    """The 32 IEEE-754 bits of a float32 as an int."""
    return int(np.array([f], dtype=np.float32).view(np.uint32)[0])


def bits_f32(u: int) -> np.float32:
    """Inverse of :func:`f32_bits`."""
    return np.array([u], dtype=np.uint32).view(np.float32)[0]


def f32_up(x: float) -> np.float32:
    """float32 nearest to x >= 0, moved one ulp up if that is below x."""
    with np.errstate(over="ignore"):
        f = np.float32(x)
    if float(f) < x:
        f = np.nextafter(f, np.float32(np.inf))
    return f


def seq_sum(a) -> float:
    """Float64 sum ``((0.0 + a_0) + a_1) + ...`` in index order, as the kernels add.

    ``np.cumsum`` adds sequentially (unlike the pairwise ``np.sum``); the leading ``0.0 +`` turns
    a sum of only -0.0 into +0.0, like a kernel accumulator that starts at 0.0.
    """
    a = np.asarray(a, dtype=np.float64)
    return 0.0 + float(np.cumsum(a)[-1]) if a.size else 0.0


def lane_sum(a) -> float:
    """Float64 sum in the kernels' 8-lane order: lane l adds ``a[l], a[l+8], ...`` in order,
    then ``0.0 + lane_0 + lane_1 + ... + lane_7`` (``np.cumsum`` down the columns is sequential)."""
    a = np.asarray(a, dtype=np.float64)
    padded = np.zeros(-(-a.size // 8) * 8)
    padded[: a.size] = a
    lanes = np.cumsum(padded.reshape(-1, 8), axis=0)[-1] if a.size else np.zeros(8)
    total = 0.0
    for v in lanes:
        total += float(v)
    return total


def buckets(d: int, bucket) -> list[tuple[int, int]]:
    """(lo, hi) of each bucket: ``bucket`` entries each (None = one bucket), the last may be shorter."""
    b = d if bucket is None else min(int(bucket), d)
    return [(lo, min(d, lo + b)) for lo in range(0, d, b)]


def encode(x, *, scaled: bool = True, bucket=None) -> tuple[bytes, int]:
    """Encode a vector; return ``(message, nbits)``."""
    x = np.asarray(x, dtype=np.float64)
    w = BitWriter()
    if scaled:
        for lo, hi in buckets(x.size, bucket):
            w.write(f32_bits(np.float32(lane_sum(np.abs(x[lo:hi])) / (hi - lo))), 32)
    for v in x:
        w.write(1 if v < 0 else 0, 1)
    return w.to_bytes(), w.nbits


def decode(data: bytes, d: int, *, scaled: bool = True, bucket=None) -> np.ndarray:
    """Decode a message into a float64 vector (DecodeError on bad or trailing data)."""
    spans = buckets(d, bucket if scaled else None)
    r = BitReader(data)
    scales = []
    if scaled:
        for _ in spans:
            u = r.read(32)
            f = bits_f32(u)
            if not np.isfinite(f):
                raise DecodeError("sign: non-finite scale")
            if u >> 31:
                raise DecodeError("sign: negative scale")
            scales.append(float(f))
    else:
        scales = [1.0]
    y = np.empty(d)
    for (lo, hi), sc in zip(spans, scales):
        for k in range(lo, hi):
            y[k] = -sc if r.read(1) else sc
    _check_tail(r, data)
    return y


def _check_tail(r: BitReader, data: bytes) -> None:
    if len(data) != (r.pos + 7) // 8 or any(r.read(1) for _ in range(r.remaining)):
        raise DecodeError("trailing data after the message")
