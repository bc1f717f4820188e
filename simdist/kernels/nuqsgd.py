"""Numba kernels for NUQSGD: per-bucket float32 norm, then fixed-width signed level codes.

Layout of a row (see :mod:`simdist.compressors.nuqsgd`): ``nb`` float32 norms, then ``d`` codes
``c_i = sgn_i j_i + (s + 1)`` in ``W = ceil(log2(2s + 3))`` bits each, where ``j_i`` in ``0..s+1``
indexes the levels ``{0, 2^-s, ..., 1/2, 1}`` (level ``j >= 1`` is ``2^(j-1-s)``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..coding.bitio import get_bits, put_bits
from ..rng import uniform_word
from .sign import check_row, f32_scratch, f32_up, get_f32, max_abs, put_f32

__all__ = ["nuqsgd_width", "nuqsgd_nbits", "nuqsgd_encode", "nuqsgd_decode"]

_SCALE = 2.0**-32
_EPS = 2.0**-52
_MANT = np.uint64((1 << 52) - 1)


def nuqsgd_width(s: int) -> int:
    """Bits per code: ceil(log2(2s + 3)) (codes 0..2s+2)."""
    return int(2 * s + 2).bit_length()


def nuqsgd_nbits(d: int, b: int, s: int) -> int:
    """Message length in bits for dimension d, bucket size b and s."""
    return 32 * (-(-d // b)) + nuqsgd_width(s) * d


@njit(cache=True)
def nuqsgd_encode(X, keys, b, s, width, buf, rowbytes, norms):
    """Encode every row of X (n, d) into ``buf``; entry k of row i uses the
    uniform word ``uniform_word(keys[i], k)`` (:mod:`simdist.rng`, SplitMix64 stream of the row key).

    Steps per bucket B (float64, sums in index order):
      1. ``amax = max |v_i|``; ``norm = amax * sqrt(sum (|v_i| / amax)^2)`` (0 if amax = 0),
         sent as ``f32_up(norm)`` (stored in ``norms``);
      2. ``r_i = min(|v_i| / norm32, 1)``; neighbouring levels: ``r < 2^-s``: j = 0, p = r 2^s;
         else ``r = (1 + f 2^-52) 2^e`` (IEEE fields of r): ``j = e + s + 1`` (level ``l = 2^e``)
         and ``p = (r - l) / l = f 2^-52`` exactly (0 when r = 1, j = s + 1);
      3. ``j += [w_i 2^-32 < p]``; code ``sgn_i j + s + 1`` (sgn = -1 iff v_i < 0).
    """
    n, d = X.shape
    nb = (d + b - 1) // b
    sf, su = f32_scratch()
    df = np.zeros(1, np.float64)
    du = df.view(np.uint64)
    two_s = math.ldexp(1.0, s)
    for i in range(n):
        hpos = i * rowbytes * 8
        pos = hpos + nb * 32
        for j in range(nb):
            lo = j * b
            hi = min(d, lo + b)
            amax = max_abs(X[i], lo, hi, np.inf)  # 1. norm
            norm = 0.0
            if amax > 0:
                acc = 0.0
                for k in range(lo, hi):
                    t = abs(np.float64(X[i, k])) / amax
                    acc += t * t
                norm = amax * np.sqrt(acc)
            f = f32_up(norm, sf, su)
            norms[i, j] = f
            hpos = put_f32(buf, hpos, f, sf, su)
            nrm = np.float64(f)
            for k in range(lo, hi):  # 2.-3. stochastic rounding to the neighbouring levels
                v = np.float64(X[i, k])
                lev = 0
                if nrm > 0:  # branch-free below: the level branch and the event are coin flips
                    r = min(abs(v) / nrm, 1.0)
                    # r = (1 + f 2^-52) 2^e (IEEE fields): level index e + s + 1, p = (r - 2^e)/2^e = f 2^-52
                    df[0] = r
                    bits = du[0]
                    small = r * two_s < 1.0
                    e = np.int64((bits >> np.uint64(52)) & np.uint64(0x7FF)) - 1023
                    lev = 0 if small else e + s + 1
                    p = r * two_s if small else np.float64(bits & _MANT) * _EPS
                    lev += np.int64(np.float64(uniform_word(keys[i], k)) * _SCALE < p)
                code = s + 1 + lev - 2 * lev * np.int64(v < 0)
                pos = put_bits(buf, pos, code, width)


@njit(cache=True)
def nuqsgd_decode(buffer, offsets, b, s, width, nbits, Y):
    """Decode every row into Y (n, d); return a status (0 ok, negative: see DECODE_ERRORS).

    Rejected: a non-finite norm (-6), a norm with its sign bit set or a code > 2s + 2 (-3),
    a row shorter than ``nbits`` (-1).
    """
    n, d = Y.shape
    nb = (d + b - 1) // b
    sf, su = f32_scratch()
    mult = np.empty(2 * s + 3, np.float64)  # code -> sgn * level
    for c in range(2 * s + 3):
        jj = c - (s + 1)
        mult[c] = 0.0 if jj == 0 else (1.0 if jj > 0 else -1.0) * math.ldexp(1.0, abs(jj) - 1 - s)
    for i in range(n):
        st = check_row(buffer, offsets, i, nbits)
        if st < 0:
            return st
        limit = offsets[i + 1] * 8
        hpos = offsets[i] * 8
        pos = hpos + nb * 32
        for j in range(nb):
            f, sbit, hpos = get_f32(buffer, limit, hpos, sf, su)
            if hpos < 0:
                return -1
            if not np.isfinite(f):
                return -6
            if sbit:
                return -3
            nrm = np.float64(f)
            lo = j * b
            hi = min(d, lo + b)
            for k in range(lo, hi):
                c, pos = get_bits(buffer, limit, pos, width)
                if pos < 0:
                    return -1
                if c > 2 * s + 2:
                    return -3
                Y[i, k] = nrm * mult[c]
    return 0
