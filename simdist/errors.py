"""Exceptions raised by simdist."""

from __future__ import annotations

__all__ = ["DecodeError", "DECODE_ERRORS", "raise_decode_status"]


class DecodeError(ValueError):
    """Encoded bytes are malformed, truncated, or inconsistent with the declared shape.

    Raised by every decoder instead of crashing, hanging, reading out of bounds or
    returning a silently wrong array. It is a ``ValueError`` so callers that already
    guard against bad input keep working.
    """


#: Status codes returned by Numba decode kernels (kernels never raise; the
#: Python wrapper turns a negative status into a :class:`DecodeError`).
DECODE_ERRORS = {
    -1: "truncated message: the bitstream ended before the code was complete",
    -2: "malformed integer code (a prefix longer than 62 bits)",
    -3: "decoded value out of range (position, level or index beyond the declared dimension or levels)",
    -4: "trailing data: bytes or non-zero padding bits after the end of the message",
    -5: "inconsistent header (count or length fields disagree with the declared dimension)",
    -6: "non-finite value (NaN or Inf) where a finite scale is required",
}


def raise_decode_status(status: int, what: str) -> None:
    """Raise :class:`DecodeError` for a negative kernel status; do nothing otherwise.

    Args:
        status: the status returned by a decode kernel (>= 0 means success).
        what: the codec name, used in the message.
    """
    if status < 0:
        reason = DECODE_ERRORS.get(int(status), f"decode failure (status {status})")
        raise DecodeError(f"{what}: {reason}")
