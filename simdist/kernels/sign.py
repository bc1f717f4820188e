"""Numba kernels for sign compression, and the float32-scale / sign-bit helpers of the bucketed quantizers.

Shared by :mod:`simdist.kernels.onebit`, :mod:`~simdist.kernels.terngrad` and
:mod:`~simdist.kernels.nuqsgd`:

* :func:`put_f32` / :func:`get_f32`: a float32 as its 32 IEEE-754 bits, MSB first (big-endian order
  of the bit stream). The bit cast goes through a 1-element scratch array and its uint32 view,
  allocated once per kernel call by :func:`f32_scratch`.
* :func:`f32_up`: round a float64 to float32, then one ulp up if rounding lowered it (so that a
  scale that must dominate every |x_i| still does on the wire).
* :func:`lane_sum_abs`: ``sum |x_k|`` in 8 interleaved float64 lanes (a documented order, 4x faster
  than one sequential accumulator); :func:`max_abs`: ``max |x_k|`` (any order gives the same).
* :func:`pack_signs_row`: one bit per entry, 1 = negative (the IEEE sign-bit convention), MSB first,
  the same bytes as ``np.packbits(x < 0)``. ``-0.0`` and ``+0.0`` give bit 0.
* :func:`check_row`: the byte range of a row is inside the buffer and holds at least ``nbits`` bits.

Kernels never raise; decoders return a status code (see :data:`simdist.errors.DECODE_ERRORS`).
Fixed-length formats check once that the whole row fits in the row's bytes before the bulk loop;
that one check covers every later byte read of the body (headers go through ``get_bits``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..coding.bitio import get_bits, put_bits

__all__ = [
    "f32_scratch",
    "put_f32",
    "get_f32",
    "f32_up",
    "lane_sum_abs",
    "max_abs",
    "pack_signs_row",
    "check_row",
    "sign_encode",
    "sign_decode",
]


@njit(cache=True)
def f32_scratch():
    """A 1-element float32 array and its uint32 view (for bit casts inside kernels)."""
    f = np.zeros(1, np.float32)
    return f, f.view(np.uint32)


@njit(cache=True, inline="always")
def put_f32(buf, pos, value, sf, su):
    """Write float32 ``value`` as 32 bits at ``pos``; return the new position."""
    sf[0] = value
    return put_bits(buf, pos, np.int64(su[0]), 32)


@njit(cache=True, inline="always")
def get_f32(buf, limit, pos, sf, su):
    """Read 32 bits as a float32; return ``(value, sign_bit, new_pos)`` (new_pos = -1 past ``limit``)."""
    v, pos = get_bits(buf, limit, pos, 32)
    su[0] = np.uint32(v)
    return sf[0], (v >> 31) & 1, pos


@njit(cache=True, inline="always")
def f32_up(x, sf, su):
    """Round float64 ``x >= 0`` to float32, one ulp up if rounding went below ``x`` (inf on overflow)."""
    f = np.float32(x)
    if np.float64(f) < x:
        sf[0] = f
        su[0] += np.uint32(1)
        f = sf[0]
    return f


@njit(cache=True, inline="always")
def lane_sum_abs(x, lo, hi):
    """``sum |x_k|`` over ``[lo, hi)`` in float64, in 8 interleaved lanes (ILP, not sequential).

    Lane ``l`` adds ``|x_{lo+l}|, |x_{lo+l+8}|, ...`` in order starting from 0.0; the result is
    ``((((0.0 + lane_0) + lane_1) + ...) + lane_7)``. The references reproduce this order exactly
    (:func:`simdist.reference.sign.lane_sum`).
    """
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    k = lo
    while k + 8 <= hi:
        a0 += abs(np.float64(x[k]))
        a1 += abs(np.float64(x[k + 1]))
        a2 += abs(np.float64(x[k + 2]))
        a3 += abs(np.float64(x[k + 3]))
        a4 += abs(np.float64(x[k + 4]))
        a5 += abs(np.float64(x[k + 5]))
        a6 += abs(np.float64(x[k + 6]))
        a7 += abs(np.float64(x[k + 7]))
        k += 8
    r = hi - k
    if r > 0:
        a0 += abs(np.float64(x[k]))
    if r > 1:
        a1 += abs(np.float64(x[k + 1]))
    if r > 2:
        a2 += abs(np.float64(x[k + 2]))
    if r > 3:
        a3 += abs(np.float64(x[k + 3]))
    if r > 4:
        a4 += abs(np.float64(x[k + 4]))
    if r > 5:
        a5 += abs(np.float64(x[k + 5]))
    if r > 6:
        a6 += abs(np.float64(x[k + 6]))
    return 0.0 + a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7


@njit(cache=True, inline="always")
def max_abs(x, lo, hi, cap):
    """``max min(|x_k|, cap)`` over ``[lo, hi)`` (0.0 if empty), in 4 lanes (max is order-free)."""
    m0 = m1 = m2 = m3 = 0.0
    k = lo
    while k + 4 <= hi:
        m0 = max(m0, min(abs(np.float64(x[k])), cap))
        m1 = max(m1, min(abs(np.float64(x[k + 1])), cap))
        m2 = max(m2, min(abs(np.float64(x[k + 2])), cap))
        m3 = max(m3, min(abs(np.float64(x[k + 3])), cap))
        k += 4
    while k < hi:
        m0 = max(m0, min(abs(np.float64(x[k])), cap))
        k += 1
    return max(max(m0, m1), max(m2, m3))


@njit(cache=True, inline="always")
def pack_signs_row(buf, byte0, x):
    """Write one bit per entry of row ``x`` (1 where ``x_i < 0``) from byte ``byte0`` on."""
    d = x.shape[0]
    q = d >> 3
    for t in range(q):
        k = t << 3
        v = 0
        for u in range(8):
            v = (v << 1) | (1 if x[k + u] < 0 else 0)
        buf[byte0 + t] = v
    r = d & 7
    if r:
        k = q << 3
        v = 0
        for u in range(r):
            v = (v << 1) | (1 if x[k + u] < 0 else 0)
        buf[byte0 + q] = v << (8 - r)


@njit(cache=True, inline="always")
def check_row(buffer, offsets, i, nbits):
    """Status for row ``i``: 0 when its bytes are inside ``buffer`` and hold ``nbits`` bits."""
    a = offsets[i]
    b = offsets[i + 1]
    if a < 0 or b < a or b > buffer.shape[0]:
        return -5
    if (b - a) * 8 < nbits:
        return -1
    return 0


@njit(cache=True)
def sign_encode(X, b, scaled, buf, rowbytes, scales):
    """Encode every row of X (n, d) into ``buf`` (n * rowbytes zero bytes).

    Row layout: (if ``scaled``) one float32 ``||x_B||_1 / |B|`` per bucket B of ``b`` entries,
    then ``d`` sign bits. The scales are also stored in ``scales`` (n, nbuckets) float32.
    """
    n, d = X.shape
    nb = (d + b - 1) // b
    sf, su = f32_scratch()
    for i in range(n):
        pos = i * rowbytes * 8
        if scaled:
            for j in range(nb):
                lo = j * b
                hi = min(d, lo + b)
                f = np.float32(lane_sum_abs(X[i], lo, hi) / (hi - lo))
                scales[i, j] = f
                pos = put_f32(buf, pos, f, sf, su)
        pack_signs_row(buf, pos >> 3, X[i])


@njit(cache=True)
def sign_decode(buffer, offsets, b, scaled, nbits, Y):
    """Decode every row into Y (n, d); return a status (0 ok, negative: see DECODE_ERRORS).

    A scale must be finite with a clear sign bit (the encoder never writes anything else).
    """
    n, d = Y.shape
    nb = (d + b - 1) // b
    sf, su = f32_scratch()
    vals = np.empty(2, np.float64)
    for i in range(n):
        st = check_row(buffer, offsets, i, nbits)
        if st < 0:
            return st
        limit = offsets[i + 1] * 8
        pos = offsets[i] * 8
        byte0 = offsets[i] + (nb * 4 if scaled else 0)
        for j in range(nb):
            sc = 1.0
            if scaled:
                f, sbit, pos = get_f32(buffer, limit, pos, sf, su)
                if pos < 0:
                    return -1
                if not np.isfinite(f):
                    return -6
                if sbit:
                    return -3
                sc = np.float64(f)
            vals[0] = sc
            vals[1] = -sc
            lo = j * b
            hi = min(d, lo + b)
            for k in range(lo, hi):  # table lookup, no branch: the signs are coin flips
                Y[i, k] = vals[(buffer[byte0 + (k >> 3)] >> (7 - (k & 7))) & 1]
    return 0
