"""Bit-level writer and reader: the bottom of simdist's coding layer.

Bits are written MSB-first into a zero-initialised ``uint8`` buffer; a message of
``nbits`` bits occupies ``ceil(nbits / 8)`` bytes and its padding bits are zero.

Two implementations with the same format:

* Numba functions (:func:`put_bits`, :func:`get_bits`, :func:`get_bit`) used inside
  the encode/decode kernels. They never raise: a reader returns a negative position
  (``-1`` = ran past ``limit``) and the kernel turns it into a status code that the
  Python wrapper raises as :class:`simdist.DecodeError`. Every read is bounds-checked
  against ``limit`` (in bits), so a malformed message can never read out of bounds.
* :class:`BitWriter` / :class:`BitReader`: plain-Python references (slow, obviously
  correct) that the tests use as oracles and that are handy for headers.

Example:
    >>> w = BitWriter(); w.write(0b101, 3); w.write(1, 1)
    >>> w.to_bytes(), w.nbits
    (b'\\xb0', 4)
    >>> r = BitReader(b'\\xb0', 4); r.read(3), r.read(1)
    (5, 1)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..errors import DecodeError

__all__ = [
    "put_bits",
    "get_bits",
    "get_bit",
    "check_padding",
    "BitWriter",
    "BitReader",
    "nbytes_for",
]


def nbytes_for(nbits: int) -> int:
    """Bytes needed for ``nbits`` bits: ceil(nbits / 8)."""
    return (int(nbits) + 7) >> 3


@njit(cache=True, inline="always")
def put_bits(buf, pos, value, n):
    """Write the low ``n`` (0..63) bits of int64 ``value`` at bit ``pos``; return the new position.

    ``buf`` must be zero where it is written (bits are OR-ed in) and large enough.
    """
    while n > 0:
        byte = pos >> 3
        room = 8 - (pos & 7)
        take = room if n >= room else n
        chunk = (value >> (n - take)) & ((1 << take) - 1)
        buf[byte] |= np.uint8(chunk << (room - take))
        pos += take
        n -= take
    return pos


@njit(cache=True, inline="always")
def get_bits(buf, limit, pos, n):
    """Read ``n`` (0..63) bits at ``pos`` as an int64; return ``(value, new_pos)``.

    ``new_pos`` is -1 when the read would pass ``limit`` (bits); nothing is read then.
    """
    if pos < 0 or pos + n > limit:
        return 0, -1
    v = 0
    while n > 0:
        byte = pos >> 3
        room = 8 - (pos & 7)
        take = room if n >= room else n
        chunk = (np.int64(buf[byte]) >> (room - take)) & ((1 << take) - 1)
        v = (v << take) | chunk
        pos += take
        n -= take
    return v, pos


@njit(cache=True, inline="always")
def get_bit(buf, limit, pos):
    """Read one bit; return ``(bit, new_pos)`` with ``new_pos = -1`` past ``limit``."""
    if pos < 0 or pos >= limit:
        return 0, -1
    return (np.int64(buf[pos >> 3]) >> (7 - (pos & 7))) & 1, pos + 1


@njit(cache=True)
def check_padding(buf, nbits):
    """True when ``buf`` has exactly ceil(nbits/8) bytes and the bits after ``nbits`` are zero."""
    if buf.shape[0] != (nbits + 7) >> 3:
        return False
    rem = nbits & 7
    if rem == 0:
        return True
    return (np.int64(buf[nbits >> 3]) & ((1 << (8 - rem)) - 1)) == 0


class BitWriter:
    """Plain-Python MSB-first bit writer (the reference implementation).

    Example:
        >>> w = BitWriter(); w.write(1, 1); w.write(0, 2); w.nbits
        3
    """

    def __init__(self) -> None:
        self._bits: list[str] = []
        self._n = 0

    @property
    def nbits(self) -> int:
        """Number of bits written so far."""
        return self._n

    def write(self, value: int, n: int) -> None:
        """Append the low ``n`` bits of the non-negative integer ``value``, MSB first."""
        if n < 0 or value < 0 or (n < value.bit_length()):
            raise ValueError(f"value {value} does not fit in n={n} bits")
        if n:
            self._bits.append(format(value, f"0{n}b"))
            self._n += n

    def write_str(self, bits: str) -> None:
        """Append a string of '0'/'1' characters."""
        if set(bits) - {"0", "1"}:
            raise ValueError("bits must contain only '0' and '1'")
        self._bits.append(bits)
        self._n += len(bits)

    def bitstring(self) -> str:
        """All bits written, as a '0'/'1' string."""
        return "".join(self._bits)

    def to_bytes(self) -> bytes:
        """The message: ceil(nbits/8) bytes, zero-padded at the end."""
        s = self.bitstring()
        s += "0" * (-len(s) % 8)
        return int(s, 2).to_bytes(len(s) // 8, "big") if s else b""


class BitReader:
    """Plain-Python MSB-first bit reader that raises :class:`DecodeError` past the end."""

    def __init__(self, data: bytes, nbits: int | None = None) -> None:
        self._bits = "".join(format(b, "08b") for b in bytes(data))
        self.limit = len(self._bits) if nbits is None else int(nbits)
        if self.limit > len(self._bits):
            raise DecodeError(f"nbits={nbits} exceeds the {len(self._bits)} bits available")
        self.pos = 0

    @property
    def remaining(self) -> int:
        """Bits left before ``limit``."""
        return self.limit - self.pos

    def read(self, n: int) -> int:
        """Read ``n`` bits as an unsigned integer."""
        if self.pos + n > self.limit:
            raise DecodeError("truncated message: the bitstream ended before the code was complete")
        chunk = self._bits[self.pos : self.pos + n]
        self.pos += n
        return int(chunk, 2) if n else 0
