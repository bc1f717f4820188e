"""Plain-Python reference of QSGD: the oracle the Numba kernels are tested against, bit for bit.

Slow and obviously correct: one entry at a time, Python floats (IEEE binary64), the string
Elias codes of :mod:`simdist.coding.elias` and :class:`~simdist.coding.bitio.BitWriter` /
:class:`~simdist.coding.bitio.BitReader`. The wire format is documented in
:mod:`simdist.compressors.qsgd`.

Example:
    >>> import numpy as np
    >>> words = np.array([0, 2**31, 2**32 - 1], np.uint32)
    >>> data, nbits = encode(np.array([0.5, -0.25, 0.0], np.float32), words, s=2)
    >>> decode(data, 3, s=2)[0].tolist(), nbits
    ([0.55901700258255, -0.279508501291275, 0.0], 43)
"""

from __future__ import annotations

import math
import struct

import numpy as np

from ..coding.bitio import BitReader, BitWriter
from ..coding.elias import omega_str
from ..errors import DecodeError

__all__ = ["scale32", "quantize", "encode", "decode"]


def scale32(v, norm: str = "l2") -> float:
    """The float32 scale of one bucket (returned as a Python float holding a float32 value)."""
    a = [abs(float(e)) for e in v]
    mx = max(a)
    if norm == "max":
        sc = mx
    else:
        lanes = [0.0] * 8
        for j, e in enumerate(a):  # lane k sums the entries k, k+8, ... in order
            lanes[j % 8] += e * e
        total = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
        sc = max(math.sqrt(total), mx)
    f = np.float32(sc)
    if float(f) < sc:
        f = np.nextafter(f, np.float32(np.inf))
    if not np.isfinite(f):
        raise ValueError("x: a bucket norm exceeds the float32 range")
    return float(f)


def quantize(v, words, s: int, norm: str = "l2"):
    """Quantize one bucket; returns ``(scale32, signed_levels)`` (levels as a list of ints)."""
    sc = scale32(v, norm)
    levels = []
    for e, w in zip(v, words):
        e = float(e)
        if sc == 0.0:
            levels.append(0)
            continue
        t = s * (abs(e) / sc)
        lv = math.floor(t)
        p = t - lv
        if lv >= s:
            lv, p = s, 0.0
        if int(w) * 2.0**-32 < p:
            lv += 1
        levels.append(-lv if e < 0 else lv)
    return sc, levels


def _buckets(d: int, bucket: int | None):
    b = d if bucket is None else bucket
    return [(lo, min(d, lo + b)) for lo in range(0, d, b)]


def encode(x, words, s: int, norm: str = "l2", bucket: int | None = None, encoding: str = "elias"):
    """Encode one vector with its random words; returns ``(message bytes, nbits)``."""
    w = BitWriter()
    width = (2 * s).bit_length()
    for lo, hi in _buckets(len(x), bucket):
        sc, levels = quantize(x[lo:hi], words[lo:hi], s, norm)
        w.write(struct.unpack(">I", struct.pack(">f", sc))[0], 32)
        if encoding == "fixed":
            for lv in levels:
                w.write(lv + s, width)
            continue
        prev = 0  # 1-based position of the previous nonzero (0 before the first)
        for pos, lv in enumerate(levels, start=1):
            if lv != 0:
                w.write_str(omega_str(pos - prev))  # first position, or distance from the previous
                w.write(1 if lv < 0 else 0, 1)
                w.write_str(omega_str(abs(lv)))
                prev = pos
        w.write_str(omega_str(hi - lo + 1 - prev))  # distance to position b + 1
    return w.to_bytes(), w.nbits


def _read_omega(r: BitReader) -> int:
    n = 1
    while True:
        if r.read(1) == 0:
            return n
        if n > 62:
            raise DecodeError("qsgd: malformed Elias omega code")
        n = (1 << n) | r.read(n)


def decode(data: bytes, d: int, s: int, bucket: int | None = None, encoding: str = "elias", dtype=np.float32):
    """Decode one message of dimension ``d``; returns ``(values, nbits)``.

    Raises:
        DecodeError: truncated, out-of-range, non-finite or inconsistent data, or trailing bytes.
    """
    r = BitReader(data)
    out = [0.0] * d
    for lo, hi in _buckets(d, bucket):
        bits = r.read(32)
        sc = struct.unpack(">f", struct.pack(">I", bits))[0]
        if bits >> 31:
            raise DecodeError("qsgd: negative scale")
        if not math.isfinite(sc):
            raise DecodeError("qsgd: non-finite scale")
        unit = sc / s
        if encoding == "fixed":
            for j in range(lo, hi):
                c = r.read((2 * s).bit_length())
                if c > 2 * s:
                    raise DecodeError("qsgd: level code out of range")
                if c != s and sc == 0.0:
                    raise DecodeError("qsgd: zero scale with nonzero levels")
                out[j] = float(c - s) * unit
            continue
        stop = hi - lo + 1
        pos = _read_omega(r)
        if pos > stop:
            raise DecodeError("qsgd: position out of range")
        if pos != stop and sc == 0.0:
            raise DecodeError("qsgd: zero scale with nonzero levels")
        while pos != stop:
            negative = r.read(1)
            lv = _read_omega(r)
            if lv > s:
                raise DecodeError("qsgd: level out of range")
            out[lo + pos - 1] = -(float(lv) * unit) if negative else float(lv) * unit
            gap = _read_omega(r)
            if pos + gap > stop:
                raise DecodeError("qsgd: position out of range")
            pos += gap
    nbits = r.pos
    if len(data) != (nbits + 7) // 8 or r.limit > nbits and r.read(r.limit - nbits) != 0:
        raise DecodeError("qsgd: trailing data")
    return np.array(out, np.float64).astype(dtype), nbits
