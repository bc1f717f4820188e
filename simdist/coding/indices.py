"""Index coding: a sorted set of distinct indices in [0, d) as a compact bit block.

Wire format of an index block (MSB-first, as everywhere in :mod:`simdist.coding`):

1. ``omega(k + 1)``: the count k (0 <= k <= d) in Elias omega code.
2. Only when k >= 1: one mode bit, then the k indices in that mode:

   * mode ``0`` (gaps): ``delta(g_j)`` for j = 0..k-1, where ``g_j = idx[j] - idx[j-1]`` with
     ``idx[-1] = -1`` (the gap from the previous index, so every value is >= 1). Elias delta is
     used because the typical gap of a sparsifier is about d/k: delta(g) takes
     log g + 2 log log g + 1 bits, shorter than gamma (2 log g + 1) for g >= 32 and than omega
     for the usual gaps of 16..10^6.
   * mode ``1`` (fixed): each index in ``w = ceil(log2 d)`` bits (``w = 0`` when d = 1).

   The encoder writes the shorter of the two; on a tie it writes mode 1 (fixed).
3. The end gap ``delta(d - idx[k-1])`` (``delta(d + 1)`` when k = 0): all k + 1 gaps sum to
   d + 1, so the block determines its dimension and a receiver that assumes another d gets a
   DecodeError instead of a silently misplaced vector (a few bits per message).

The block is ``omega_len(k+1) + [k >= 1] * (1 + min(sum_j delta_len(g_j), k * w)) +
delta_len(d - idx[k-1])`` bits long. Decoding rejects a count above d, an index >= d,
non-increasing indices (mode 1; gaps are >= 1 by construction), an end gap that does not reach
d, a truncated block and, in :func:`decode_indices`, trailing data or non-zero padding.

Three forms with one format:

* Numba helpers for the compressor kernels: :func:`choose_mode`, :func:`index_block_len`,
  :func:`put_index_block`, :func:`get_index_header`, :func:`get_index_body` (readers never raise:
  they return a negative position, the status codes of :data:`simdist.errors.DECODE_ERRORS`);
* array functions :func:`encode_indices`, :func:`decode_indices`, :func:`index_code_length`;
* the plain-Python reference in :mod:`simdist.reference.sparse`.

Example:
    >>> import numpy as np
    >>> data, nbits = encode_indices(np.array([3, 9, 10]), 16)
    >>> decode_indices(data, 16).tolist(), nbits, index_code_length(np.array([3, 9, 10]), 16)
    ([3, 9, 10], 23, 23)

References:
    P. Elias, IEEE Trans. Inf. Theory 21(2), 1975 (the integer codes).
    Renggli et al., "SparCML", SC19 (index/value streams of sparse gradients);
    THEORY.md section 5: top-k with index coding compresses about d / (k log d) against fp32.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._validate import check_int
from ..errors import raise_decode_status
from .bitio import check_padding, get_bit
from .elias import MAX_VALUE, get_omega, omega_len, put_omega
from .stream import (  # noqa: F401  (re-exported: the sparse kernels use them through this module)
    _clz,
    bit_length,
    delta_code,
    fast_delta_len,
    sink_close,
    sink_open,
    sink_put,
    source_delta,
    source_get,
    source_open,
    source_refill,
)

__all__ = [
    "MAX_DIM",
    "MODE_GAPS",
    "MODE_FIXED",
    "fixed_width",
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
    "choose_mode",
    "index_block_len",
    "put_index_block",
    "get_index_header",
    "get_index_body",
    "encode_indices",
    "decode_indices",
    "index_code_length",
]

#: Largest dimension an index block can describe (omega(k + 1) needs k + 1 <= MAX_VALUE).
MAX_DIM = MAX_VALUE - 1
MODE_GAPS = 0
MODE_FIXED = 1


@njit(cache=True, inline="always")
def fixed_width(d):
    """Bits of one fixed-width index for dimension d >= 1: ceil(log2 d) (0 when d = 1)."""
    w = 0
    m = d - 1
    while m > 0:
        m >>= 1
        w += 1
    return w


@njit(cache=True, inline="always")
def choose_mode(k, gap_bits, last, d):
    """Block length and mode from the count k, the total delta-code length of the gaps and the
    last index (-1 when k = 0).

    Returns ``(nbits, mode)``: gaps when strictly shorter than fixed width, else fixed.
    """
    n = omega_len(k + 1) + fast_delta_len(d - last)  # count and end gap
    if k == 0:
        return n, MODE_FIXED
    fixed_bits = k * fixed_width(d)
    if gap_bits < fixed_bits:
        return n + 1 + gap_bits, MODE_GAPS
    return n + 1 + fixed_bits, MODE_FIXED


@njit(cache=True)
def index_block_len(idx, k, d):
    """``(nbits, mode)`` of the block for the first k entries of ``idx`` (sorted, distinct, < d)."""
    gap_bits = 0
    prev = -1
    for j in range(k):
        gap_bits += fast_delta_len(idx[j] - prev)
        prev = idx[j]
    return choose_mode(k, gap_bits, prev, d)


@njit(cache=True)
def put_index_block(buf, pos, idx, k, d, mode):
    """Write the block of the first k entries of ``idx`` at bit ``pos``; return the new position.

    ``buf`` must be zero from ``pos`` on and large enough.
    """
    pos = put_omega(buf, pos, k + 1)
    bp, acc, nacc = sink_open(buf, pos)
    if k > 0:
        bp, acc, nacc = sink_put(buf, bp, acc, nacc, mode, 1)
        if mode == MODE_GAPS:
            prev = -1
            for j in range(k):
                code, n = delta_code(idx[j] - prev)
                bp, acc, nacc = sink_put(buf, bp, acc, nacc, code, n)
                prev = idx[j]
        else:
            w = fixed_width(d)
            for j in range(k):
                bp, acc, nacc = sink_put(buf, bp, acc, nacc, idx[j], w)
    code, n = delta_code(d - (idx[k - 1] if k > 0 else -1))  # end gap
    bp, acc, nacc = sink_put(buf, bp, acc, nacc, code, n)
    return sink_close(buf, bp, acc, nacc)


@njit(cache=True)
def get_index_header(buf, limit, pos, d):
    """Read the count and the mode; return ``(k, mode, new_pos)``.

    ``new_pos`` < 0 on error: -1 truncated, -2 malformed omega code, -5 count > d.
    """
    v, pos = get_omega(buf, limit, pos)
    if pos < 0:
        return 0, 0, pos
    k = v - 1
    if k > d:
        return 0, 0, -5
    if k == 0:
        return 0, MODE_FIXED, pos
    mode, pos = get_bit(buf, limit, pos)
    if pos < 0:
        return 0, 0, -1
    return k, mode, pos


@njit(cache=True)
def get_index_body(buf, limit, pos, d, k, mode, out):
    """Read k indices written in ``mode`` into ``out[:k]``, then the end gap; return the new
    position.

    ``limit`` (the end of the message, in bits) must be a multiple of 8. The position is
    negative on error: -1 truncated, -3 an index >= d or not increasing, -5 the end gap does
    not reach d (the block was written for another dimension).
    """
    lim = limit >> 3
    bp, acc, nacc = source_open(buf, pos, lim)
    prev = -1
    if mode == MODE_GAPS:
        for j in range(k):
            g, bp, acc, nacc = source_delta(buf, bp, acc, nacc, lim)
            if g < 0:
                return g
            if g >= d - prev:  # prev + g >= d (written without overflow)
                return -3
            prev += g
            out[j] = prev
    else:
        w = fixed_width(d)
        if pos + k * w > limit:
            return -1
        for j in range(k):
            v, bp, acc, nacc = source_get(buf, bp, acc, nacc, lim, w)
            if v < 0:
                return -1
            if v >= d or v <= prev:
                return -3
            out[j] = v
            prev = v
    g, bp, acc, nacc = source_delta(buf, bp, acc, nacc, lim)
    if g < 0:
        return g
    if g != d - prev:
        return -5
    return bp * 8 - nacc


@njit(cache=True)
def _encode(idx, d):
    k = idx.shape[0]
    nbits, mode = index_block_len(idx, k, d)
    buf = np.zeros((nbits + 7) >> 3, dtype=np.uint8)
    put_index_block(buf, 0, idx, k, d, mode)
    return buf, nbits


@njit(cache=True)
def _decode(buf, d):
    limit = buf.shape[0] * 8
    k, mode, pos = get_index_header(buf, limit, 0, d)
    if pos < 0:
        return np.empty(0, np.int64), pos
    out = np.empty(k, np.int64)
    pos = get_index_body(buf, limit, pos, d, k, mode, out)
    if pos >= 0 and not check_padding(buf, pos):
        pos = -4
    return out, pos


def _check_d(d) -> int:
    return check_int("d", d, low=1, high=MAX_DIM)


def _check_indices(idx, d: int) -> np.ndarray:
    a = np.asarray(idx)
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
        raise TypeError(f"idx must be a 1-D integer array, got dtype {a.dtype} and shape {a.shape}")
    a = a.astype(np.int64)
    if a.size and (a[0] < 0 or a[-1] >= d):
        raise ValueError(f"idx must lie in [0, {d - 1}] (d={d}), got min {a.min()} and max {a.max()}")
    if a.size > 1 and np.any(np.diff(a) <= 0):
        raise ValueError("idx must be strictly increasing (sorted, distinct)")
    return a


def index_code_length(idx, d: int) -> int:
    """Length in bits of the index block of ``idx`` (the shorter mode, count and flag included).

    Args:
        idx: sorted distinct indices in [0, d).
        d: the dimension, 1 <= d <= MAX_DIM.

    Returns:
        The exact number of bits :func:`encode_indices` writes.

    Example:
        >>> index_code_length(np.arange(8), 8)    # omega(9)=7 + flag + 8 gaps of 1 bit + end gap 1
        17
    """
    d = _check_d(d)
    a = _check_indices(idx, d)
    return int(index_block_len(a, a.shape[0], d)[0])


def encode_indices(idx, d: int) -> tuple[bytes, int]:
    """Encode a sorted set of distinct indices in [0, d); return ``(message, nbits)``.

    Args:
        idx: 1-D integer array, strictly increasing, entries in [0, d).
        d: the dimension, 1 <= d <= MAX_DIM.

    Returns:
        The block as ceil(nbits/8) bytes (zero padding) and its exact length in bits.

    Raises:
        ValueError, TypeError: ``idx`` or ``d`` out of range.
    """
    d = _check_d(d)
    a = _check_indices(idx, d)
    buf, nbits = _encode(a, d)
    return buf.tobytes(), int(nbits)


def decode_indices(data, d: int) -> np.ndarray:
    """Inverse of :func:`encode_indices`; the message must end with the block (zero padding only).

    Args:
        data: the message bytes.
        d: the dimension the indices were coded for.

    Returns:
        int64 array of the indices (sorted, distinct, in [0, d)).

    Raises:
        DecodeError: truncated or malformed, count > d, index >= d, non-increasing indices,
            an end gap that does not reach d (written for another dimension), trailing data.
    """
    d = _check_d(d)
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    out, status = _decode(buf, d)
    raise_decode_status(min(int(status), 0), "index block")
    return out
