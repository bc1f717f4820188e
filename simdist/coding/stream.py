"""Sequential bit streams with a 64-bit accumulator, and fast code helpers, for hot kernels.

A *sink* appends codes to a byte buffer through a register (whole bytes are stored as they
fill); a *source* reads through a left-aligned 64-bit window that is refilled byte by byte and
never reads past the message's last byte. Both are Numba inline functions that thread their
state ``(byte position, accumulator, valid bits)`` through return values, so a kernel keeps it
in registers. The format is the same MSB-first bit order as :mod:`simdist.coding.bitio`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

try:  # LLVM ctlz (a single instruction); pure-Numba fallback for other Numba versions
    from numba.cpython.unsafe.numbers import leading_zeros as _clz
except ImportError:  # pragma: no cover
    @njit(cache=True, inline="always")
    def _clz(v):
        v = np.uint64(v)
        n = 64
        while v != np.uint64(0):
            v >>= np.uint64(1)
            n -= 1
        return n


__all__ = [
    "bit_length",
    "fast_delta_len",
    "delta_code",
    "sink_open",
    "sink_put",
    "sink_close",
    "source_open",
    "source_refill",
    "source_get",
    "source_delta",
]


@njit(cache=True, inline="always")
def bit_length(v):
    """Number of bits of v >= 1 (one ``ctlz`` instruction)."""
    return 64 - _clz(np.uint64(v))


@njit(cache=True, inline="always")
def fast_delta_len(v):
    """Length of delta(v), v >= 1 (same value as :func:`simdist.coding.elias.delta_len`)."""
    n = bit_length(v)
    return 2 * bit_length(n) + n - 2


@njit(cache=True, inline="always")
def sink_open(buf, pos):
    """Start sequential writing at bit ``pos``: ``(byte, acc, nacc)`` with the bits already in
    the partial byte kept. Write with :func:`sink_put`, end with :func:`sink_close`."""
    nacc = pos & 7
    bp = pos >> 3
    acc = np.uint64(0)
    if nacc:
        acc = np.uint64(buf[bp]) >> np.uint64(8 - nacc)
    return bp, acc, nacc


@njit(cache=True, inline="always")
def sink_put(buf, bp, acc, nacc, value, n):
    """Append the low n (0..56) bits of ``value``; whole bytes are stored (not OR-ed)."""
    acc = (acc << np.uint64(n)) | np.uint64(value)
    nacc += n
    while nacc >= 8:
        nacc -= 8
        buf[bp] = np.uint8((acc >> np.uint64(nacc)) & np.uint64(0xFF))
        bp += 1
    return bp, acc, nacc


@njit(cache=True, inline="always")
def sink_close(buf, bp, acc, nacc):
    """Store the partial last byte (zero padded); return the bit position reached."""
    if nacc:
        buf[bp] = np.uint8((acc << np.uint64(8 - nacc)) & np.uint64(0xFF))
    return bp * 8 + nacc


@njit(cache=True, inline="always")
def delta_code(v):
    """delta(v) (1 <= v <= MAX_VALUE) as ``(code, length)``: the integer
    ``(n << (n - 1)) | (v mod 2**(n-1))`` (n = bit length of v) written in ``fast_delta_len(v)``
    bits, its leading zeros being the gamma prefix of n."""
    n = bit_length(v)
    code = (np.int64(n) << (n - 1)) | (v & ((np.int64(1) << (n - 1)) - 1))
    return code, 2 * bit_length(n) + n - 2


@njit(cache=True, inline="always")
def source_refill(buf, bp, acc, nacc, lim):
    """Top up the left-aligned 64-bit accumulator ``acc`` (``nacc`` valid bits) from byte ``bp``,
    never reading byte ``lim`` or beyond: ``(bp, acc, nacc)`` with nacc >= 57 unless at the end."""
    while nacc <= 56 and bp < lim:
        acc |= np.uint64(buf[bp]) << np.uint64(56 - nacc)
        bp += 1
        nacc += 8
    return bp, acc, nacc


@njit(cache=True, inline="always")
def source_open(buf, pos, lim):
    """Start sequential reading at bit ``pos`` (0 <= pos <= 8 lim) of a message ending at byte
    ``lim``: ``(bp, acc, nacc)``; the bit position is always ``8 bp - nacc``."""
    bp, acc, nacc = source_refill(buf, pos >> 3, np.uint64(0), 0, lim)
    skip = pos & 7
    return bp, acc << np.uint64(skip), nacc - skip


@njit(cache=True, inline="always")
def source_get(buf, bp, acc, nacc, lim, n):
    """Read n (0..56) bits: ``(value, bp, acc, nacc)``, value -1 when fewer than n bits remain."""
    if nacc < n:
        return np.int64(-1), bp, acc, nacc
    if n == 0:
        return np.int64(0), bp, acc, nacc
    v = np.int64(acc >> np.uint64(64 - n))
    bp, acc, nacc = source_refill(buf, bp, acc << np.uint64(n), nacc - n, lim)
    return v, bp, acc, nacc


@njit(cache=True, inline="always")
def source_delta(buf, bp, acc, nacc, lim):
    """Read delta(v) for v < 2**31: ``(v, bp, acc, nacc)``; v = -1 truncated, -3 when the code
    announces v >= 2**31 (more than any index block can hold)."""
    z = _clz(acc)  # gamma prefix of n = bit length of v; 64 when acc == 0
    if 2 * z + 1 > nacc:
        return np.int64(-1), bp, acc, nacc
    if z >= 5:  # n >= 32
        return np.int64(-3), bp, acc, nacc
    n = np.int64((acc << np.uint64(z)) >> np.uint64(63 - z))
    total = 2 * z + n  # at most 39 bits
    if total > nacc:
        return np.int64(-1), bp, acc, nacc
    v = np.int64(1)
    if n > 1:
        v = (v << (n - 1)) | np.int64((acc << np.uint64(2 * z + 1)) >> np.uint64(65 - n))
    bp, acc, nacc = source_refill(buf, bp, acc << np.uint64(total), nacc - total, lim)
    return v, bp, acc, nacc
