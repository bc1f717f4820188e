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
