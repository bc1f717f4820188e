"""Shared hypothesis helper for decoder fuzz tests: one random mutation of an encoded message."""

from hypothesis import strategies as st


def mutate(data, msg: bytearray) -> tuple[str, bytearray]:
    """Draw a mutation kind and apply it: truncate (drop >= 1 byte), flip 1-4 bits, or append 1-4 bytes.

    Returns:
        ``(kind, mutated message)``; ``kind`` is "truncate", "flip" or "append".
    """
    msg = bytearray(msg)
    kind = data.draw(st.sampled_from(["truncate", "flip", "append"]))
    if kind == "truncate":
        msg = msg[: data.draw(st.integers(0, len(msg) - 1))]
    elif kind == "flip":
        for i in data.draw(st.lists(st.integers(0, 8 * len(msg) - 1), min_size=1, max_size=4)):
            msg[i // 8] ^= 1 << (7 - i % 8)
    else:
        msg += data.draw(st.binary(min_size=1, max_size=4))
    return kind, msg


def decode64(c, data, d):
    """What a receiver does: rebuild the payload from bytes and decompress it (float64)."""
    import numpy as np

    return c.decompress(c.from_bytes(data, d, dtype=np.float64))


def check_agrees_with_reference(c, data: bytes, d: int, ref_decode) -> None:
    """The compressor's decoder and the reference decoder reject the same bytes or return the same array."""
    import numpy as np
    import pytest

    from simdist import DecodeError

    try:
        y = decode64(c, data, d)
    except DecodeError:
        with pytest.raises(DecodeError):
            ref_decode(data)
        return
    assert y.shape == (d,) and np.all(np.isfinite(y))
    np.testing.assert_array_equal(y, ref_decode(data))


def check_mutation_outcome(c, kind: str, msg: bytes, d: int) -> None:
    """A mutated message is rejected, or (bit flips only) decodes to a finite array of the right shape."""
    import numpy as np

    from simdist import DecodeError

    try:
        y = decode64(c, bytes(msg), d)
    except DecodeError:
        return  # any mutation may be rejected
    assert kind == "flip", "a truncated or extended message was accepted"
    assert y.shape == (d,) and np.all(np.isfinite(y))
