"""CUDA kernels (Numba's CUDA target) of QSGD with the Elias (omega) code.

The wire format is :mod:`simdist.compressors.qsgd`'s ``encoding="elias"``: per bucket the
32-bit float32 scale, ``omega(position of the first nonzero)`` (b + 1 when none), then per
nonzero ``sign, omega(level), omega(distance to the next nonzero)`` (the last one's distance
reaching position b + 1). The bytes equal those of the CPU kernel
(:mod:`simdist.kernels.qsgd_encode`) and of the reference (:mod:`simdist.reference.qsgd`).

Encoding, given the signed levels of :func:`simdist.gpu.kernels.qsgd_levels` (steps as in
:func:`simdist.gpu.codecs_qsgd_elias.compress_qsgd_elias`):

1. ``nonzero_marks``: ``A[t] = t + 1`` for a nonzero entry (t = i d + j, the flat index), else 0;
   its inclusive prefix max (:mod:`simdist.gpu.scan`) gives, for every entry, the flat position
   of the last nonzero at or before it. Taking the max with the bucket's first flat index resets
   it at bucket starts, so one unsegmented scan serves every bucket of every row.
2. ``code_lengths``: the bits written *at* entry t, in stream order: the 32-bit scale if t starts
   a bucket; ``omega(distance from the previous nonzero or the bucket start) + 1 + omega(|level|)``
   if t is nonzero; ``omega(b + 1 - last nonzero)`` if t ends a bucket. (The format's "distance
   to the next nonzero" after a nonzero is the next one's "distance from the previous": the
   same bits, attributed to the entry that follows.)
3. an inclusive prefix sum of the lengths gives every code's bit offset in its row and each
   row's length (``row_bits``);
4. ``write_codes``: each entry ORs its bits into a zeroed array of big-endian 32-bit words
   (:func:`simdist.gpu.bitstream.put_bits`: neighbours may share a word), at its row's byte offset;
5. :func:`simdist.gpu.bitstream.words_to_bytes`: one thread per byte of the message block.

Decoding (``decode_rows``) is one thread per row, sequential, with every check of the CPU decoder:
the format carries no bucket index (a bucket's length depends on its levels), so a bucket's
start is known only once the buckets before it are decoded. This is the slow part of the GPU
path: a row of d entries costs one thread O(d) steps. (Parallel decoding would need a side
channel of bucket offsets in the format, or a speculative decode from every bit position.)

Example (runs on a GPU, or anywhere with ``NUMBA_ENABLE_CUDASIM=1``):
    >>> import numpy as np
    >>> from numba import cuda
    >>> if cuda.is_available():
    ...     lev = np.array([[0, 2, 0, -1]], np.int32)
    ...     A = np.zeros(4, np.int64)
    ...     nonzero_marks[1, 4](lev, A)
    ...     marks = A.tolist()
    ... else:
    ...     marks = [0, 2, 0, 4]
    >>> marks  # flat position + 1 of each nonzero
    [0, 2, 0, 4]

References:
    Alistarh et al., "QSGD", NeurIPS 2017, Sec. 3.2 (Elias coding of the quantized vector);
    P. Elias, IEEE Trans. Inf. Theory 21(2), 1975 (omega code).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .bitstream import exact_length, get_bits_checked, get_omega, omega_code, put_bits
from .kernels import _F32_INF_BITS, f32_value, vmax, vmin

__all__ = ["nonzero_marks", "code_lengths", "row_bits", "write_codes", "decode_rows"]


# --- encoding -------------------------------------------------------------------------------------------


@cuda.jit
def nonzero_marks(lev, A):
    """1. A[t] = t + 1 where the flat entry t of the (n, d) levels is nonzero, else 0."""
    t = cuda.grid(1)
    n, d = lev.shape
    if t < n * d:
        A[t] = t + 1 if lev[t // d, t % d] != 0 else 0


@cuda.jit(device=True)
def _entry(t, d, b):
    """(row, index, flat index of its bucket's start, bucket length) of flat entry t."""
    i = t // d
    j = t - i * d
    lo = (j // b) * b
    return i, j, i * d + lo, vmin(d - lo, b)


@cuda.jit
def code_lengths(lev, P, b, L, C):
    """2. L[t] = C[t] = the bits written at entry t (scale, nonzero code, end-of-bucket code);
    P: the prefix max of the marks. (C is then scanned in place.)"""
    t = cuda.grid(1)
    n, d = lev.shape
    if t >= n * d:
        return
    i, j, g0, m = _entry(t, d, b)
    r = t - g0  # 0-based position in the bucket
    ln = np.int64(32) if r == 0 else np.int64(0)
    lv = np.int64(lev[i, j])
    if lv != 0:
        prev = (vmax(P[t - 1], g0) if r > 0 else g0) - g0  # 1-based position of the previous nonzero
        ln += omega_code(r + 1 - prev)[1] + 1 + omega_code(abs(lv))[1]
    if r == m - 1:
        ln += omega_code(m + 1 - (vmax(P[t], g0) - g0))[1]  # distance to position m + 1
    L[t] = ln
    C[t] = ln


@cuda.jit
def row_bits(C, d, nbits):
    """3. nbits[i] = the length of row i, from the inclusive prefix sum C of the code lengths."""
    i = cuda.grid(1)
    if i < nbits.shape[0]:
        nbits[i] = C[(i + 1) * d - 1] - (C[i * d - 1] if i > 0 else 0)


@cuda.jit
def write_codes(lev, P, C, L, bits, offsets, s, b, words):
    """4. OR entry t's bits (as counted by ``code_lengths``) into ``words`` at its row's byte offset."""
    t = cuda.grid(1)
    n, d = lev.shape
    if t >= n * d or L[t] == 0:
        return
    i, j, g0, m = _entry(t, d, b)
    r = t - g0
    pos = offsets[i] * 8 + C[t] - L[t] - (C[i * d - 1] if i > 0 else 0)
    if r == 0:
        pos = put_bits(words, pos, bits[i, j // b], 32)
    lv = np.int64(lev[i, j])
    if lv != 0:
        prev = (vmax(P[t - 1], g0) if r > 0 else g0) - g0
        c, ln = omega_code(r + 1 - prev)
        pos = put_bits(words, pos, c, ln)
        pos = put_bits(words, pos, 1 if lv < 0 else 0, 1)
        c, ln = omega_code(abs(lv))
        pos = put_bits(words, pos, c, ln)
    if r == m - 1:
        c, ln = omega_code(m + 1 - (vmax(P[t], g0) - g0))
        put_bits(words, pos, c, ln)


# --- decoding -------------------------------------------------------------------------------------------


@cuda.jit
def decode_rows(buf, offsets, s, b, Y, nbits, status):
    """One thread per row (Y zeroed first): status[i] = 0, or the CPU decoder's code for row i
    (-1 truncated, -2 malformed omega, -3 out of range, -4 trailing data, -5 zero scale with
    nonzeros, -6 non-finite scale); nbits[i] = the bits the row's message takes."""
    i = cuda.grid(1)
    n, d = Y.shape
    if i >= n:
        return
    nb = (d + b - 1) // b
    start = offsets[i] * 8
    limit = offsets[i + 1] * 8
    pos = start
    status[i] = 0
    for k in range(nb):
        lo = k * b
        stop = vmin(d, lo + b) - lo + 1  # position b + 1
        bits, pos = get_bits_checked(buf, limit, pos, 32)
        if pos < 0:
            status[i] = -1
            return
        if bits >= 0x80000000:
            status[i] = -3  # negative scale
            return
        if bits >= _F32_INF_BITS:
            status[i] = -6
            return
        sc = f32_value(bits)
        unit = sc / s
        p, pos = get_omega(buf, limit, pos)
        if pos < 0:
            status[i] = pos
            return
        if p > stop:
            status[i] = -3
            return
        if p != stop and sc == 0.0:
            status[i] = -5
            return
        while p != stop:
            sign, pos = get_bits_checked(buf, limit, pos, 1)
            lv, pos = get_omega(buf, limit, pos)  # (a failed read leaves pos < 0: the next fails too)
            g, pos2 = get_omega(buf, limit, pos)
            if pos < 0 or pos2 < 0:
                status[i] = pos if pos < 0 else pos2
                return
            pos = pos2
            if lv > s:
                status[i] = -3
                return
            val = np.float64(lv) * unit
            Y[i, lo + p - 1] = -val if sign else val
            if g > stop - p:
                status[i] = -3
                return
            p += g
    nbits[i] = pos - start
    if not exact_length(buf, start, limit, pos):
        status[i] = -4  # trailing bytes or nonzero padding bits (the base class's check on the CPU)
