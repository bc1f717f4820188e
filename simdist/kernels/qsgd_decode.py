"""Numba decode kernel of QSGD (see :mod:`simdist.kernels.qsgd` for the layout).

Every bit is read at an absolute position ``pos`` of the row ``buffer[offsets[i]:offsets[i+1]]``.
Three paths, fastest first, each bounds-checked:

1. **window** (all 8 bytes at ``pos >> 3`` lie in the row): load them as one big-endian word,
   shift out ``pos & 7``: >= 57 valid bits. Up to four lookups of ``TABLE_BITS`` bits each in
   the multi-triple table of this s (:func:`multi_table`): one entry decodes every whole
   nonzero (sign, omega(level), omega(distance)) in the window, up to ``SLOTS`` = 4, with
   level <= s, and gives their signed levels, their offsets from the current position and the
   total length and distance (the length and distance also in the 16 KiB :func:`chain_table`, the
   only lookup on the loop's critical chain). It is used only when the total distance stays within the bucket
   (so every write is in range and the next bucket's scale is never decoded as a nonzero);
   the values are written branch-free (slots past the count repeat the last one), after one
   16-wide vector store of zeros at the first one (the zeros of the output are written as
   the decoder goes: no separate zero-fill pass, so a reused ``out`` gets no stale values).
   On AVX-512 hosts a second compiled copy writes the values and zeros of a window with one
   vector expand instead (:mod:`simdist.kernels.qsgd_simd_decode`; the same output, tested).
2. otherwise one nonzero from the window with the single-triple table ``TRIPLE``;
3. otherwise (long codes, the last 8 bytes of a row) the checked readers of
   :mod:`simdist.coding.bitio` / :func:`simdist.coding.elias.get_omega`.

Every decoded level (1..s), position (<= b + 1) and scale is range-checked; errors are status
codes that the wrapper raises as DecodeError.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

from ..coding.bitbuf import load_be64
from ..coding.bitio import get_bit, get_bits
from ..coding.elias import get_omega, omega_str
from ..errors import raise_decode_status
from . import qsgd_simd
from .qsgd_encode import F32_INF_BITS, f32_value
from .qsgd_simd_decode import expand_store, expand_table

__all__ = ["TABLE_BITS", "decode", "multi_table", "TRIPLE"]

#: Width of the lookup windows (a whole nonzero with level <= 31 and distance <= 15 fits).
TABLE_BITS = 13
_SHIFT = np.uint64(64 - TABLE_BITS)
#: Nonzeros per lookup at most (each takes >= 3 bits: 4 fill a 13-bit window).
SLOTS = 4


def _build_tables():
    dec_val = np.zeros(1 << TABLE_BITS, np.int64)
    dec_len = np.zeros(1 << TABLE_BITS, np.int64)  # 0: the code does not fit in TABLE_BITS bits
    for k in range(1, 1 << TABLE_BITS):
        code = omega_str(k)
        if len(code) <= TABLE_BITS:
            lo = int(code, 2) << (TABLE_BITS - len(code))
            dec_val[lo : lo + (1 << (TABLE_BITS - len(code)))] = k
            dec_len[lo : lo + (1 << (TABLE_BITS - len(code)))] = len(code)
    return dec_val, dec_len


DEC_VAL, DEC_LEN = _build_tables()


def _triple_at(w: int, start: int):
    """(sign, level, distance, length) of the nonzero at bit ``start`` of the TABLE_BITS-bit
    window ``w``, or None when it does not lie whole inside the window."""
    mask = (1 << TABLE_BITS) - 1
    q = start + 1
    if q >= TABLE_BITS or DEC_LEN[(w << q) & mask] == 0 or q + DEC_LEN[(w << q) & mask] > TABLE_BITS:
        return None
    lv, q = int(DEC_VAL[(w << q) & mask]), q + int(DEC_LEN[(w << q) & mask])
    if q >= TABLE_BITS or DEC_LEN[(w << q) & mask] == 0 or q + DEC_LEN[(w << q) & mask] > TABLE_BITS:
        return None
    g, q = int(DEC_VAL[(w << q) & mask]), q + int(DEC_LEN[(w << q) & mask])
    return (w >> (TABLE_BITS - 1 - start)) & 1, lv, g, q - start


def _build_triple_table():
    """One nonzero per lookup: length | level << 5 | distance << 17 | sign << 29 (0: none)."""
    out = np.zeros(1 << TABLE_BITS, np.int64)
    for w in range(1 << TABLE_BITS):
        t = _triple_at(w, 0)
        if t is not None:
            out[w] = t[3] | (t[1] << 5) | (t[2] << 17) | (t[0] << 29)
    return out


TRIPLE = _build_triple_table()


@lru_cache(maxsize=None)
def multi_table(s_cap: int) -> np.ndarray:
    """Multi-triple table for levels <= ``s_cap`` (call with min(s, 31): larger levels never fit).

    Entry: length (4 bits; 0: no whole nonzero fits in the window) | distance << 4 (6 bits) |
    the first nonzero's signed level & 63 << 10 (its offset is 0) | slot k at 4 + 12 k,
    1 <= k < SLOTS: signed level & 63 (6 bits) | offset << 6 (6 bits). Slots past the count
    repeat the last nonzero (so the kernel writes all SLOTS values branch-free). The length
    sits in the low bits so that the window shift is ``win << (e & 15)``: one op on the
    critical chain of the decoder.
    """
    out = np.zeros(1 << TABLE_BITS, np.int64)
    for w in range(1 << TABLE_BITS):
        start, dist, slots = 0, 0, []
        while len(slots) < SLOTS:
            t = _triple_at(w, start)
            if t is None or t[1] > s_cap:
                break
            slots.append(((-t[1] if t[0] else t[1]) & 63) | (dist << 6))
            start, dist = start + t[3], dist + t[2]
        if slots:
            assert 0 < start < 16 and dist < 64 and all(sl >> 6 < 64 for sl in slots)
            e = start | (dist << 4) | (slots[0] & 63) << 10
            for k in range(1, SLOTS):
                e |= slots[min(k, len(slots) - 1)] << (4 + 12 * k)
            out[w] = e
    return out


@lru_cache(maxsize=None)
def chain_table(s_cap: int) -> np.ndarray:
    """The part of :func:`multi_table` on the decoder's critical chain (window -> entry -> shift ->
    next window), 2 bytes an entry: length | distance << 4. At 16 KiB it stays in L1, where the
    64 KiB multi table does not; the values come from the multi table off that chain."""
    m = multi_table(s_cap)
    return ((m & 15) | (((m >> 4) & 63) << 4)).astype(np.uint16)


@njit(cache=True)
def _decode_kernel(buf, offsets, s, b, elias, width, dec_val, dec_len, triple, multi, chain, etab, Y, nbits):
    """Scalar value writes (any host)."""
    return _decode_body(buf, offsets, s, b, elias, width, dec_val, dec_len, triple, multi, chain, etab, Y, nbits,
                        False)


@njit(cache=True)
def _decode_kernel_simd(buf, offsets, s, b, elias, width, dec_val, dec_len, triple, multi, chain, etab, Y, nbits):
    """AVX-512 hosts: a window's values and zeros written by one vector expand
    (:func:`simdist.kernels.qsgd_simd_decode.expand_store`); the same output."""
    return _decode_body(buf, offsets, s, b, elias, width, dec_val, dec_len, triple, multi, chain, etab, Y, nbits,
                        True)


@njit(cache=True, inline="always")
def _decode_body(buf, offsets, s, b, elias, width, dec_val, dec_len, triple, multi, chain, etab, Y, nbits, simd):
    n, d = Y.shape
    lanes = 64 // Y.itemsize  # entries expand_store writes
    nb = (d + b - 1) // b
    fs = np.float64(s)
    vt = np.empty(64, Y.dtype)
    for i in range(n):
        end = offsets[i + 1]
        limit = end * 8
        pos = offsets[i] * 8
        y = Y[i]
        for k in range(nb):
            lo = k * b
            hi = min(d, lo + b)
            # 1. the scale (and 2e. below: omega(first position)) from the window if it fits
            if (pos >> 3) + 8 <= end:
                win = load_be64(buf, pos >> 3) << np.uint64(pos & 7)
                bits = np.int64(win >> np.uint64(32))
                pos += 32
            else:
                bits, pos = get_bits(buf, limit, pos, 32)
                if pos < 0:
                    return i, np.int64(-1)
            if bits >= 0x80000000:
                return i, np.int64(-3)  # negative scale (sign bit set)
            if bits >= F32_INF_BITS:
                return i, np.int64(-6)  # Inf or NaN scale
            sc = f32_value(bits)
            unit = sc / fs
            if not elias:  # 2f. one fixed-width code per entry
                for jj in range(hi - lo):
                    c, pos = get_bits(buf, limit, pos, width)
                    if pos < 0:
                        return i, np.int64(-1)
                    if c > 2 * s:
                        return i, np.int64(-3)
                    if c != s and sc == 0.0:
                        return i, np.int64(-5)
                    y[lo + jj] = np.float64(c - s) * unit
                continue
            # 2e. omega(first position), then per nonzero: sign, omega(level), omega(distance)
            stop = hi - lo + 1  # position b + 1
            p = np.int64(0)
            if (pos >> 3) + 8 <= end:
                w12 = (load_be64(buf, pos >> 3) << np.uint64(pos & 7)) >> _SHIFT
                p = dec_val[w12]
                pos += dec_len[w12]  # 0 when the code is longer than the window
            if p == 0:
                p, pos = get_omega(buf, limit, pos)
                if pos < 0:
                    return i, pos
            if p > stop:
                return i, np.int64(-3)
            if p != stop and sc == 0.0:
                return i, np.int64(-5)
            yb = y[lo:hi]
            for t in range(p - 1):  # 3. zeros are written as the decoder goes (Y may be a reused
                yb[t] = 0  # output): here the ones before the first nonzero
            for c in range(64):  # the value of each signed level & 63 (|level| < 32), as stored
                vt[c] = np.float64((c ^ 32) - 32) * unit
            while p != stop:
                if (pos >> 3) + 8 <= end:  # the window path
                    win = load_be64(buf, pos >> 3) << np.uint64(pos & 7)
                    h = np.int64(chain[win >> _SHIFT])
                    if (h & 15) != 0 and p + (h >> 4) <= stop:
                        for _ in range(4):  # 4 x TABLE_BITS <= 57 bits: no reload
                            q = np.uint64(lo + p - 1)  # index in the row of the first nonzero
                            dist = h >> 4
                            if simd and dist <= lanes and lo + p - 1 + lanes <= d:  # values and zeros
                                expand_store(y, q, etab, win >> _SHIFT, unit)  # of [q, q + lanes)
                            else:
                                e = multi[win >> _SHIFT]  # the values: off the chain of lookups
                                if dist <= 16 and lo + p + 15 <= d:  # zero [q, q + 16): one vector store
                                    for t in range(16):
                                        y[q + np.uint64(t)] = 0
                                else:  # zero [q, q + dist), inside the bucket (p + dist <= stop)
                                    for t in range(dist):
                                        y[q + np.uint64(t)] = 0
                                y[q] = vt[(e >> 10) & 63]  # then the values (slot 0 at offset 0)
                                y[q + np.uint64((e >> 22) & 63)] = vt[(e >> 16) & 63]
                                y[q + np.uint64((e >> 34) & 63)] = vt[(e >> 28) & 63]
                                y[q + np.uint64((e >> 46) & 63)] = vt[(e >> 40) & 63]
                            p += dist
                            pos += h & 15
                            win <<= np.uint64(h & 15)
                            h = np.int64(chain[win >> _SHIFT])
                            if (h & 15) == 0 or p + (h >> 4) > stop:
                                break
                        continue
                    e = triple[win >> _SHIFT]
                    if e != 0:  # one nonzero from the window
                        pos += e & 31
                        sign = e >> 29
                        lv = (e >> 5) & 4095
                        g = (e >> 17) & 4095
                    else:
                        sign, lv, g, pos = _checked_triple(buf, limit, pos)
                else:
                    sign, lv, g, pos = _checked_triple(buf, limit, pos)
                if pos < 0:
                    return i, pos
                if lv > s:
                    return i, np.int64(-3)
                val = np.float64(lv) * unit
                yb[p - 1] = -val if sign else val
                if g > stop - p:
                    return i, np.int64(-3)
                for t in range(g - 1):  # the zeros up to the next nonzero (or the bucket's end)
                    yb[p + t] = 0
                p += g
        nbits[i] = pos - offsets[i] * 8
    return -1, np.int64(0)


@njit(cache=True)
def _checked_triple(buf, limit, pos):
    """(sign, level, distance, new pos) of the nonzero at ``pos``; new pos < 0 on error."""
    sign, pos = get_bit(buf, limit, pos)
    if pos < 0:
        return 0, 0, 0, np.int64(-1)
    lv, pos = get_omega(buf, limit, pos)
    if pos < 0:
        return 0, 0, 0, pos
    g, pos = get_omega(buf, limit, pos)
    return np.int64(sign), lv, g, pos


_SIMD = [True]  # tests switch the vector writes off to compare both paths


def decode(buffer, offsets, d, s, b, elias, width, dtype, out=None):
    """Decode every row into ``out`` (a C-contiguous (n, d) array of dtype; a fresh one when
    None), which the kernel overwrites entirely; returns ``(Y, nbits)``; raises DecodeError on
    malformed rows."""
    n = offsets.shape[0] - 1
    Y = np.empty((n, d), dtype) if out is None else out
    nbits = np.zeros(n, np.int64)
    cap = min(int(s), 31)
    kernel = _decode_kernel_simd if qsgd_simd.AVAILABLE and _SIMD[0] else _decode_kernel
    row, st = kernel(buffer, offsets, np.int64(s), np.int64(b), elias, np.int64(width), DEC_VAL, DEC_LEN,
                     TRIPLE, multi_table(cap), chain_table(cap), expand_table(cap), Y, nbits)
    if row >= 0:
        raise_decode_status(int(st), f"qsgd (row {row})")
    return Y, nbits
