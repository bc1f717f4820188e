"""Elias universal integer codes: gamma, delta and omega (the "recursive Elias code").

For an integer k >= 1 (log = log2):

* gamma: floor(log k) zeros, then k in binary: 2 floor(log k) + 1 bits.
* delta: gamma(floor(log k) + 1), then the floor(log k) low bits of k.
* omega (recursive): write "0"; while k > 1, prepend binary(k) and set k = len(binary(k)) - 1.
  Its length is log k + log log k + ... + 1 (QSGD, Section 3.2: "Elias(k)").
  Known lengths: 1->1, 2->3, 4->6, 8->7, 16->11, 100->13, 1000->17 bits.

Each code has three forms with one format:

* Numba ``put_*`` / ``get_*`` functions for use inside kernels (readers return a
  negative position on error: -1 truncated, -2 malformed prefix);
* array codecs :func:`encode` / :func:`decode` (bytes in, bytes out, ``DecodeError`` on bad data);
* plain-Python string references (:func:`omega_str` etc.), the oracles of the tests.

References:
    P. Elias, "Universal codeword sets and representations of the integers",
    IEEE Trans. Inf. Theory 21(2), 1975.
    Alistarh et al., "QSGD", NeurIPS 2017, Section 3.2.

Example:
    >>> omega_str(16)
    '10100100000'
    >>> data, nbits = encode("omega", np.array([1, 2, 1000]))
    >>> decode("omega", data, 3).tolist(), nbits
    ([1, 2, 1000], 21)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._validate import check_choice, check_int
from ..errors import raise_decode_status
from .bitio import check_padding, get_bit, get_bits, nbytes_for, put_bits

__all__ = [
    "MAX_VALUE",
    "put_gamma",
    "get_gamma",
    "put_delta",
    "get_delta",
    "put_omega",
    "get_omega",
    "gamma_len",
    "delta_len",
    "omega_len",
    "code_lengths",
    "encode",
    "decode",
    "gamma_str",
    "delta_str",
    "omega_str",
    "CODES",
]

#: Largest integer the kernels encode (codes stay within one 63-bit write).
MAX_VALUE = (1 << 31) - 1


@njit(cache=True, inline="always")
def _bitlen(k):
    n = 0
    while k > 0:
        k >>= 1
        n += 1
    return n


@njit(cache=True, inline="always")
def gamma_len(k):
    """Length in bits of gamma(k), k >= 1."""
    return 2 * _bitlen(k) - 1


@njit(cache=True, inline="always")
def delta_len(k):
    """Length in bits of delta(k), k >= 1."""
    n = _bitlen(k)
    return gamma_len(n) + n - 1


@njit(cache=True, inline="always")
def omega_len(k):
    """Length in bits of omega(k), k >= 1."""
    n = 1
    while k > 1:
        b = _bitlen(k)
        n += b
        k = b - 1
    return n


@njit(cache=True, inline="always")
def put_gamma(buf, pos, k):
    """Write gamma(k) (1 <= k <= MAX_VALUE) at ``pos``; return the new position."""
    n = _bitlen(k)
    return put_bits(buf, pos + n - 1, k, n)  # n-1 zeros are already in the buffer


@njit(cache=True, inline="always")
def get_gamma(buf, limit, pos):
    """Read gamma(k); return ``(k, new_pos)``; new_pos -1 truncated, -2 malformed."""
    zeros = 0
    while True:
        bit, pos = get_bit(buf, limit, pos)
        if pos < 0:
            return 0, -1
        if bit == 1:
            break
        zeros += 1
        if zeros > 62:
            return 0, -2
    v, pos = get_bits(buf, limit, pos, zeros)
    if pos < 0:
        return 0, -1
    return (np.int64(1) << zeros) | v, pos


@njit(cache=True, inline="always")
def put_delta(buf, pos, k):
    """Write delta(k) (1 <= k <= MAX_VALUE); return the new position."""
    n = _bitlen(k)
    pos = put_gamma(buf, pos, n)
    return put_bits(buf, pos, k & ((np.int64(1) << (n - 1)) - 1), n - 1)


@njit(cache=True, inline="always")
def get_delta(buf, limit, pos):
    """Read delta(k); return ``(k, new_pos)``."""
    n, pos = get_gamma(buf, limit, pos)
    if pos < 0:
        return 0, pos
    if n > 63:
        return 0, -2
    v, pos = get_bits(buf, limit, pos, n - 1)
    if pos < 0:
        return 0, -1
    return (np.int64(1) << (n - 1)) | v, pos


@njit(cache=True, inline="always")
def put_omega(buf, pos, k):
    """Write omega(k) (1 <= k <= MAX_VALUE); return the new position."""
    code = 0  # the terminating '0'
    length = 1
    while k > 1:
        b = _bitlen(k)
        code |= k << length
        length += b
        k = b - 1
    return put_bits(buf, pos, code, length)


@njit(cache=True, inline="always")
def get_omega(buf, limit, pos):
    """Read omega(k); return ``(k, new_pos)``; new_pos -1 truncated, -2 malformed."""
    n = np.int64(1)
    while True:
        bit, pos = get_bit(buf, limit, pos)
        if pos < 0:
            return 0, -1
        if bit == 0:
            return n, pos
        if n > 62:
            return 0, -2
        v, pos = get_bits(buf, limit, pos, n)
        if pos < 0:
            return 0, -1
        n = (np.int64(1) << n) | v


# --- array codecs --------------------------------------------------------------------------


@njit(cache=True)
def _lengths(values, which):
    out = np.empty(values.shape[0], dtype=np.int64)
    for i in range(values.shape[0]):
        k = values[i]
        out[i] = gamma_len(k) if which == 0 else (delta_len(k) if which == 1 else omega_len(k))
    return out


@njit(cache=True)
def _encode(values, which, nbits):
    buf = np.zeros((nbits + 7) >> 3, dtype=np.uint8)
    pos = 0
    for i in range(values.shape[0]):
        k = values[i]
        if which == 0:
            pos = put_gamma(buf, pos, k)
        elif which == 1:
            pos = put_delta(buf, pos, k)
        else:
            pos = put_omega(buf, pos, k)
    return buf


@njit(cache=True)
def _decode(buf, count, which, max_value):
    out = np.empty(count, dtype=np.int64)
    limit = buf.shape[0] * 8
    pos = 0
    for i in range(count):
        if which == 0:
            k, pos = get_gamma(buf, limit, pos)
        elif which == 1:
            k, pos = get_delta(buf, limit, pos)
        else:
            k, pos = get_omega(buf, limit, pos)
        if pos < 0:
            return out, pos
        if k > max_value:
            return out, -3
        out[i] = k
    if not check_padding(buf, pos):
        return out, -4
    return out, pos


CODES = {"gamma": 0, "delta": 1, "omega": 2}


def _as_values(values) -> np.ndarray:
    v = np.asarray(values)
    if v.ndim != 1 or not np.issubdtype(v.dtype, np.integer):
        raise TypeError(f"values must be a 1-D integer array, got dtype {v.dtype} and shape {v.shape}")
    v = v.astype(np.int64)
    if v.size and (v.min() < 1 or v.max() > MAX_VALUE):
        raise ValueError(f"values must be in [1, {MAX_VALUE}], got min {v.min()} and max {v.max()}")
    return v


def code_lengths(code: str, values) -> np.ndarray:
    """Bit length of each value's code (int64 array).

    Example:
        >>> code_lengths("omega", np.array([1, 2, 4, 8, 16, 100, 1000])).tolist()
        [1, 3, 6, 7, 11, 13, 17]
    """
    check_choice("code", code, CODES)
    return _lengths(_as_values(values), CODES[code])


def encode(code: str, values) -> tuple[bytes, int]:
    """Encode positive integers back to back; return ``(message, nbits)``."""
    check_choice("code", code, CODES)
    v = _as_values(values)
    which = CODES[code]
    nbits = int(_lengths(v, which).sum())
    return _encode(v, which, nbits).tobytes(), nbits


def decode(code: str, data: bytes, count: int) -> np.ndarray:
    """Decode exactly ``count`` integers; the message must end there (zero padding only).

    Raises:
        DecodeError: truncated, malformed, a value above MAX_VALUE, or trailing data.
    """
    check_choice("code", code, CODES)
    count = check_int("count", count, low=0)
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    out, status = _decode(buf, count, CODES[code], MAX_VALUE)
    raise_decode_status(min(status, 0), f"elias-{code}")
    return out


# --- plain-Python references ---------------------------------------------------------------


def gamma_str(k: int) -> str:
    """Reference gamma code of k >= 1 as a '0'/'1' string."""
    _ref_check(k)
    b = format(k, "b")
    return "0" * (len(b) - 1) + b


def delta_str(k: int) -> str:
    """Reference delta code of k >= 1 as a '0'/'1' string."""
    _ref_check(k)
    b = format(k, "b")
    return gamma_str(len(b)) + b[1:]


def omega_str(k: int) -> str:
    """Reference omega code of k >= 1 as a '0'/'1' string."""
    _ref_check(k)
    code = "0"
    while k > 1:
        b = format(k, "b")
        code = b + code
        k = len(b) - 1
    return code


def _ref_check(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
