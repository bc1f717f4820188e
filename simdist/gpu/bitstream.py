"""Device bit streams for the variable-length GPU codecs: Elias codes, OR-ed writes, checked reads.

Shared by :mod:`simdist.gpu.kernels_qsgd_elias` and :mod:`simdist.gpu.kernels_topk`. The bit
order is the CPU's (:mod:`simdist.coding.bitio`): MSB first, rows starting on byte boundaries.

* Writing: many threads write codes at known bit offsets of one stream. Each ORs its bits into
  a zeroed array of 32-bit words holding the stream big-endian (bit 0 = the MSB of word 0) with
  ``cuda.atomic.or_`` (:func:`put_bits`; neighbouring codes may share a word), then
  :func:`words_to_bytes` turns the words into the message bytes (one thread per byte).
* Reading: :func:`get_bits_checked` / :func:`get_omega` / :func:`get_delta` never read at or past
  the row's bit ``limit`` and return a negative position on error (-1 truncated, -2 malformed
  omega prefix, -3 a delta code announcing a value >= 2**31), as the CPU readers do.
* Codes: :func:`omega_code` and :func:`delta_code` give ``(code, length)`` (the CPU's
  ``_omega_code`` and :func:`simdist.coding.stream.delta_code`).

Example (runs on a GPU, or anywhere with ``NUMBA_ENABLE_CUDASIM=1``):
    >>> import numpy as np
    >>> from numba import cuda
    >>> if cuda.is_available():
    ...     L = np.zeros(2, np.int64)
    ...     code_probe[1, 2](np.array([16, 16], np.int64), np.array([0, 1], np.int64), L)
    ...     lens = L.tolist()
    ... else:
    ...     lens = [11, 9]
    >>> lens  # |omega(16)| = 11, |delta(16)| = 9
    [11, 9]

References:
    P. Elias, "Universal codeword sets and representations of the integers", IEEE Trans. Inf.
    Theory 21(2), 1975.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .kernels import vmin

__all__ = [
    "bit_length", "omega_code", "delta_code", "code_probe", "put_bits", "get_bits_checked", "get_omega",
    "get_delta", "exact_length", "zero_words", "words_to_bytes", "zero_matrix",
]


@cuda.jit(device=True)
def bit_length(v):
    """Number of bits of v >= 0 (0 for 0)."""
    nb = np.int64(0)
    v = np.int64(v)
    while v > 0:
        v >>= 1
        nb += 1
    return nb


@cuda.jit(device=True)
def omega_code(k):
    """(code, length) of omega(k) for 1 <= k < 2**31 (at most 42 bits): the CPU's ``_omega_code``."""
    code = np.int64(0)
    ln = np.int64(1)
    k = np.int64(k)
    while k > 1:
        nb = bit_length(k)
        code |= k << ln
        ln += nb
        k = nb - 1
    return code, ln


@cuda.jit(device=True)
def delta_code(v):
    """(code, length) of delta(v), 1 <= v < 2**31: ``(n << (n - 1)) | (v mod 2**(n-1))`` in
    ``2 bit_length(n) + n - 2`` bits (n = bit length of v; the leading zeros are gamma's prefix)."""
    v = np.int64(v)
    n = bit_length(v)
    return (n << (n - 1)) | (v & ((np.int64(1) << (n - 1)) - 1)), 2 * bit_length(n) + n - 2


@cuda.jit
def code_probe(ks, which, lens):
    """lens[i] = the length of omega(ks[i]) (which[i] = 0) or delta(ks[i]) (1): a test hook."""
    t = cuda.grid(1)
    if t < ks.shape[0]:
        lens[t] = omega_code(ks[t])[1] if which[t] == 0 else delta_code(ks[t])[1]


@cuda.jit(device=True)
def _or_word(words, w, v):
    cuda.atomic.or_(words, w, np.uint32(v & 0xFFFFFFFF))


@cuda.jit(device=True)
def put_bits(words, pos, value, n):
    """OR the low ``n`` (0..63) bits of ``value`` at bit ``pos`` of the big-endian word stream."""
    value = np.int64(value)
    while n > 0:
        take = vmin(n, 32 - (pos & 31))
        chunk = (value >> (n - take)) & ((np.int64(1) << take) - 1)
        _or_word(words, pos >> 5, chunk << (32 - (pos & 31) - take))
        pos += take
        n -= take
    return pos


@cuda.jit(device=True)
def get_bits_checked(buf, limit, pos, n):
    """(value, new pos) of the ``n`` (0..63) bits at ``pos``; new pos -1 when ``pos + n > limit``."""
    if pos < 0 or pos + n > limit:
        return np.int64(0), np.int64(-1)
    v = np.int64(0)
    while n > 0:
        room = 8 - (pos & 7)
        take = vmin(room, n)
        v = (v << take) | ((np.int64(buf[pos >> 3]) >> (room - take)) & ((np.int64(1) << take) - 1))
        pos += take
        n -= take
    return v, pos


@cuda.jit(device=True)
def get_omega(buf, limit, pos):
    """(k, new pos) of the omega code at ``pos``; new pos -1 truncated, -2 malformed (prefix > 62 bits)."""
    k = np.int64(1)
    while True:
        bit, pos = get_bits_checked(buf, limit, pos, 1)
        if pos < 0:
            return np.int64(0), np.int64(-1)
        if bit == 0:
            return k, pos
        if k > 62:
            return np.int64(0), np.int64(-2)
        v, pos = get_bits_checked(buf, limit, pos, k)
        if pos < 0:
            return np.int64(0), np.int64(-1)
        k = (np.int64(1) << k) | v


@cuda.jit(device=True)
def get_delta(buf, limit, pos):
    """(v, new pos) of the delta code at ``pos``; new pos -1 truncated, -3 when the code announces
    v >= 2**31 (a gamma prefix of 5 or more zeros), as :func:`simdist.coding.stream.source_delta`."""
    z = np.int64(0)
    while True:
        bit, p = get_bits_checked(buf, limit, pos + z, 1)
        if p < 0:
            return np.int64(0), np.int64(-1)
        if bit == 1:
            break
        z += 1
        if z >= 5:
            return np.int64(0), (np.int64(-1) if pos + 2 * z + 1 > limit else np.int64(-3))
    n, pos = get_bits_checked(buf, limit, pos + z, z + 1)
    if pos < 0:
        return np.int64(0), np.int64(-1)
    v, pos = get_bits_checked(buf, limit, pos, n - 1)
    if pos < 0:
        return np.int64(0), np.int64(-1)
    return (np.int64(1) << (n - 1)) | v, pos


@cuda.jit(device=True)
def exact_length(buf, start, limit, pos):
    """True when a row ``[start, limit)`` whose message ended at bit ``pos`` is exactly
    ceil((pos - start) / 8) bytes with zero padding (the CPU base class's trailing-data check)."""
    used = pos - start
    pad = np.int64(0)
    if (used & 7) != 0:
        pad, _ = get_bits_checked(buf, limit, pos, 8 - (used & 7))
    return limit - start == ((used + 7) >> 3) * 8 and pad == 0


@cuda.jit
def zero_words(words):
    """words[:] = 0 (on the device: no host transfer)."""
    t = cuda.grid(1)
    if t < words.shape[0]:
        words[t] = 0


@cuda.jit
def words_to_bytes(words, buf):
    """buf[q] = byte q of the big-endian word stream (the message block, rows back to back)."""
    q = cuda.grid(1)
    if q < buf.shape[0]:
        buf[q] = (words[q >> 2] >> (24 - 8 * (q & 3))) & 0xFF


@cuda.jit
def zero_matrix(Y):
    """Y[:, :] = 0 (the decoders write only the nonzeros)."""
    t = cuda.grid(1)
    n, d = Y.shape
    if t < n * d:
        Y[t // d, t % d] = 0
