"""Numba kernels for 1BitSGD: per-bucket (avg+, avg-) float32 pair, then one sign bit per entry.

Layout of a row (see :mod:`simdist.compressors.onebit`): ``nb`` pairs of float32 (avg+, avg-),
then ``d`` bits, 1 where ``x_i < 0``. ``nbits = 64 nb + d``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .sign import check_row, f32_scratch, get_f32, pack_signs_row, put_f32

__all__ = ["onebit_encode", "onebit_decode"]


@njit(cache=True)
def onebit_encode(X, b, buf, rowbytes, avgs):
    """Encode every row of X (n, d) into ``buf``; the pairs also go to ``avgs`` (n, nb, 2) float32.

    avg+ is the float64 mean (sum in index order) of the entries ``>= 0``, avg- that of the
    entries ``< 0``, each rounded to the nearest float32; an empty side gives +0.0.
    """
    n, d = X.shape
    nb = (d + b - 1) // b
    sf, su = f32_scratch()
    for i in range(n):
        pos = i * rowbytes * 8
        for j in range(nb):
            lo = j * b
            hi = min(d, lo + b)
            sp = 0.0
            sn = 0.0
            cp = 0
            for k in range(lo, hi):
                v = np.float64(X[i, k])
                if v < 0:
                    sn += v
                else:
                    sp += v
                    cp += 1
            cn = hi - lo - cp
            ap = np.float32(sp / cp) if cp > 0 else np.float32(0.0)
            an = np.float32(sn / cn) if cn > 0 else np.float32(0.0)
            avgs[i, j, 0] = ap
            avgs[i, j, 1] = an
            pos = put_f32(buf, pos, ap, sf, su)
            pos = put_f32(buf, pos, an, sf, su)
        pack_signs_row(buf, pos >> 3, X[i])


@njit(cache=True)
def onebit_decode(buffer, offsets, b, nbits, Y):
    """Decode every row into Y (n, d); return a status (0 ok, negative: see DECODE_ERRORS).

    Rejected: a non-finite average (-6); avg+ with its sign bit set, avg- > 0, or an average
    that is not +0.0 although its side of the bucket is empty (-3). The encoder writes none of these.
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
        byte0 = offsets[i] + nb * 8
        for j in range(nb):
            ap, sp, pos = get_f32(buffer, limit, pos, sf, su)
            bp = su[0]
            an, sn, pos = get_f32(buffer, limit, pos, sf, su)
            bn = su[0]
            if pos < 0:
                return -1
            if not (np.isfinite(ap) and np.isfinite(an)):
                return -6
            if sp or an > 0:
                return -3
            lo = j * b
            hi = min(d, lo + b)
            vals[0] = ap
            vals[1] = an
            neg = 0
            for k in range(lo, hi):  # table lookup, no branch: the signs are coin flips
                bit = (buffer[byte0 + (k >> 3)] >> (7 - (k & 7))) & 1
                neg += bit
                Y[i, k] = vals[bit]
            if (neg == 0 and bn != 0) or (neg == hi - lo and bp != 0):
                return -3
    return 0
