"""Numba kernels for TernGrad: per-bucket float32 scale, then base-3 packed ternary symbols.

Layout of a row (see :mod:`simdist.compressors.terngrad`): ``nb`` float32 scales, then the
symbols ``t_i = 1 + sign(g_i) b_i`` in {0, 1, 2}, 5 per byte as the base-3 number
``t_0 3^4 + t_1 3^3 + ... + t_4`` (first entry most significant); a final group of ``m < 5``
symbols uses :data:`PARTIAL_BITS` [m] = ceil(log2(3^m)) bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..coding.bitio import get_bits, put_bits
from ..rng import uniform_word
from .sign import check_row, f32_scratch, f32_up, get_f32, max_abs, put_f32

__all__ = ["PARTIAL_BITS", "terngrad_nbits", "terngrad_encode", "terngrad_decode"]

#: Bits of a final group of m = 0..4 symbols: ceil(log2(3^m)).
PARTIAL_BITS = np.array([0, 2, 4, 5, 7], dtype=np.int64)
_POW3 = np.array([1, 3, 9, 27, 81, 243], dtype=np.int64)
_SCALE = 2.0**-32
#: _DIGITS[m, v, u]: base-3 digit u (most significant first) of the m-symbol group value v < 3^m.
_DIGITS = np.array(
    [[[(v // 3 ** (m - 1 - u)) % 3 if u < m and v < 3**m else 0 for u in range(5)] for v in range(243)] for m in range(6)],
    dtype=np.int64,
)


def terngrad_nbits(d: int, b: int) -> int:
    """Message length in bits for dimension d and bucket size b."""
    return 32 * (-(-d // b)) + 8 * (d // 5) + int(PARTIAL_BITS[d % 5])


@njit(cache=True)
def terngrad_encode(X, keys, b, clip, buf, rowbytes, scales):
    """Encode every row of X (n, d) into ``buf``; entry k of row i uses the
    uniform word ``uniform_word(keys[i], k)`` (:mod:`simdist.rng`, SplitMix64 stream of the row key).

    Steps per bucket B (sums in float64, index order):
      1. magnitudes ``a_i = |g_i|``; if ``clip > 0``: ``thr = clip * std(g_B)`` (population std,
         ``mean = sum/m``, ``var = sum((g - mean)^2)/m``) and, when ``thr > 0``, ``a_i = min(a_i, thr)``;
      2. ``s = f32_up(max a_i)`` (stored in ``scales`` and written as 32 bits);
      3. ``b_i = [w_i 2^-32 < a_i / s]`` (0 when s = 0), symbol ``t_i = 1 + sign(g_i) b_i``.
    """
    n, d = X.shape
    nb = (d + b - 1) // b
    sf, su = f32_scratch()
    full = d // 5
    for i in range(n):
        hpos = i * rowbytes * 8
        gbyte = i * rowbytes + nb * 4  # first symbol byte
        acc = 0  # base-3 accumulator of the current group
        cnt = 0
        for j in range(nb):
            lo = j * b
            hi = min(d, lo + b)
            thr = np.inf
            if clip > 0:  # 1. clipping threshold
                m = hi - lo
                s1 = 0.0
                for k in range(lo, hi):
                    s1 += np.float64(X[i, k])
                mean = s1 / m
                s2 = 0.0
                for k in range(lo, hi):
                    t = np.float64(X[i, k]) - mean
                    s2 += t * t
                thr = clip * np.sqrt(s2 / m)
                if not thr > 0:
                    thr = np.inf
            s = f32_up(max_abs(X[i], lo, hi, thr), sf, su)  # 2. scale
            scales[i, j] = s
            hpos = put_f32(buf, hpos, s, sf, su)
            s64 = np.float64(s)
            if s64 == 0.0:  # 3. all symbols are 1 (zero)
                for k in range(lo, hi):
                    acc = acc * 3 + 1
                    cnt += 1
                    if cnt == 5:
                        buf[gbyte] = acc
                        gbyte += 1
                        acc = 0
                        cnt = 0
                continue
            for k in range(lo, hi):  # 3. symbols (branch-free: the events are coin flips)
                g = np.float64(X[i, k])
                p = min(abs(g), thr) / s64
                hit = np.int64(np.float64(uniform_word(keys[i], k)) * _SCALE < p)
                neg = np.int64(g < 0)
                acc = acc * 3 + 1 + hit - 2 * hit * neg
                cnt += 1
                if cnt == 5:
                    buf[gbyte] = acc
                    gbyte += 1
                    acc = 0
                    cnt = 0
        if cnt > 0:
            put_bits(buf, (i * rowbytes + nb * 4 + full) * 8, acc, PARTIAL_BITS[cnt])


@njit(cache=True)
def terngrad_decode(buffer, offsets, b, nbits, Y):
    """Decode every row into Y (n, d); return a status (0 ok, negative: see DECODE_ERRORS).

    Rejected: a non-finite scale (-6), a scale with its sign bit set or a group value
    ``>= 3^m`` (-3), a row shorter than ``nbits`` (-1).
    """
    n, d = Y.shape
    nb = (d + b - 1) // b
    full = d // 5
    rem = d - 5 * full
    sf, su = f32_scratch()
    sc = np.empty(nb, np.float64)
    for i in range(n):
        st = check_row(buffer, offsets, i, nbits)
        if st < 0:
            return st
        limit = offsets[i + 1] * 8
        pos = offsets[i] * 8
        for j in range(nb):
            f, sbit, pos = get_f32(buffer, limit, pos, sf, su)
            if pos < 0:
                return -1
            if not np.isfinite(f):
                return -6
            if sbit:
                return -3
            sc[j] = np.float64(f)
        byte0 = offsets[i] + nb * 4
        j = 0
        end = min(b, d)
        s = sc[0]
        k = 0
        for q in range(full + (1 if rem else 0)):
            m = 5
            if q < full:
                v = np.int64(buffer[byte0 + q])
            else:
                m = rem
                v, p2 = get_bits(buffer, limit, (byte0 + q) * 8, PARTIAL_BITS[m])
                if p2 < 0:
                    return -1
            if v >= _POW3[m]:
                return -3
            for u in range(m):
                t = _DIGITS[m, v, u]
                if k == end:
                    j += 1
                    end = min(d, end + b)
                    s = sc[j]
                Y[i, k] = s * (t - 1)
                k += 1
    return 0
