"""Fixed-width packing of small unsigned integers (signs, levels) into bits.

``width`` bits per value, MSB-first, back to back; ``count * width`` bits in all.
Used for the dense encodings (QSGD fixed-width levels, TernGrad's 2-bit symbols,
1-bit signs) where a constant width beats a variable-length code.

Example:
    >>> import numpy as np
    >>> data, nbits = pack(np.array([3, 0, 2, 1]), 2)
    >>> data, nbits
    (b'\\xc9', 8)
    >>> unpack(data, 2, 4).tolist()
    [3, 0, 2, 1]
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._validate import check_int
from ..errors import raise_decode_status
from .bitio import check_padding, get_bits, put_bits

__all__ = ["put_fixed", "get_fixed", "pack", "unpack", "width_for"]


def width_for(max_value: int) -> int:
    """Bits needed for values in [0, max_value]: max(1, ceil(log2(max_value + 1)))."""
    return max(1, int(max_value).bit_length())


@njit(cache=True)
def put_fixed(buf, pos, values, width):
    """Write every entry of ``values`` (int array) in ``width`` bits; return the new position."""
    for i in range(values.shape[0]):
        pos = put_bits(buf, pos, np.int64(values[i]), width)
    return pos


@njit(cache=True)
def get_fixed(buf, limit, pos, out, width):
    """Read ``out.shape[0]`` values of ``width`` bits into ``out``; return the new position (-1 if truncated)."""
    if pos < 0 or pos + out.shape[0] * width > limit:
        return -1
    for i in range(out.shape[0]):
        v, pos = get_bits(buf, limit, pos, width)
        out[i] = v
    return pos


@njit(cache=True)
def _unpack(buf, width, count):
    out = np.empty(count, dtype=np.int64)
    pos = get_fixed(buf, buf.shape[0] * 8, 0, out, width)
    if pos >= 0 and not check_padding(buf, pos):
        pos = -4
    return out, pos


def pack(values, width: int) -> tuple[bytes, int]:
    """Pack non-negative integers into ``width`` (1..63) bits each; return ``(message, nbits)``."""
    width = check_int("width", width, low=1, high=63)
    v = np.asarray(values)
    if v.ndim != 1 or not np.issubdtype(v.dtype, np.integer):
        raise TypeError(f"values must be a 1-D integer array, got dtype {v.dtype} and shape {v.shape}")
    v = v.astype(np.int64)
    if v.size and (v.min() < 0 or v.max() >= (1 << width)):
        raise ValueError(f"values must be in [0, {(1 << width) - 1}] for width={width}")
    nbits = v.size * width
    buf = np.zeros((nbits + 7) >> 3, dtype=np.uint8)
    put_fixed(buf, 0, v, width)
    return buf.tobytes(), nbits


def unpack(data: bytes, width: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack`; raises DecodeError on truncated data or trailing bytes."""
    width = check_int("width", width, low=1, high=63)
    count = check_int("count", count, low=0)
    out, status = _unpack(np.frombuffer(bytes(data), dtype=np.uint8), width, count)
    raise_decode_status(min(status, 0), "fixed-width")
    return out
