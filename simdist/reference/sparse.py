"""Plain-Python references of the sparsifiers and their index coding (the test oracles).

Slow, obviously correct code with the same wire format as :mod:`simdist.coding.indices` and
:mod:`simdist.kernels.sparse` (see their docstrings): bit strings built with
:class:`~simdist.coding.BitWriter` and the Elias string codes, selection by a stable
``np.argsort``, the rand-k sampler with Python integers. The tests require the kernels to
produce the identical bytes and to decode to the identical arrays.

Example:
    >>> import numpy as np
    >>> ref_topk_indices(np.array([1.0, -2.0, 2.0, 0.5]), 2).tolist()
    [1, 2]
    >>> data, nbits = ref_encode_indices([3, 9, 10], 16)
    >>> data.hex(), nbits
    ('a0c75c', 23)
"""

from __future__ import annotations

import numpy as np

from ..coding.bitio import BitReader, BitWriter
from ..coding.elias import delta_str, omega_str
from ..errors import DecodeError

__all__ = [
    "ref_fixed_width",
    "ref_index_bits",
    "ref_encode_indices",
    "ref_decode_indices",
    "ref_topk_indices",
    "ref_threshold_indices",
    "ref_randk_indices",
    "ref_sparse_encode",
    "ref_sparse_decode",
    "ref_randk_encode",
    "ref_randk_decode",
]

_M64 = (1 << 64) - 1


def ref_fixed_width(d: int) -> int:
    """ceil(log2 d) for d >= 1."""
    return (d - 1).bit_length()


def ref_index_bits(idx, d: int) -> str:
    """The index block as a '0'/'1' string (count, mode bit, indices in the shorter mode)."""
    idx = [int(i) for i in idx]
    bits = omega_str(len(idx) + 1)
    end = delta_str(d - (idx[-1] if idx else -1))
    if not idx:
        return bits + end
    gaps = "".join(delta_str(i - p) for p, i in zip([-1] + idx[:-1], idx))
    w = ref_fixed_width(d)
    fixed = "".join(format(i, "b").zfill(w) if w else "" for i in idx)
    return bits + ("0" + gaps if len(gaps) < len(fixed) else "1" + fixed) + end


def ref_encode_indices(idx, d: int) -> tuple[bytes, int]:
    """Reference of :func:`simdist.coding.indices.encode_indices`."""
    w = BitWriter()
    w.write_str(ref_index_bits(idx, d))
    return w.to_bytes(), w.nbits


def _read_delta(r: BitReader) -> int:
    zeros = 0
    while r.read(1) == 0:
        zeros += 1
        if zeros > 62:
            raise DecodeError("malformed delta code")
    n = (1 << zeros) | r.read(zeros)
    if n > 63:
        raise DecodeError("malformed delta code")
    return (1 << (n - 1)) | r.read(n - 1)


def _read_omega(r: BitReader) -> int:
    n = 1
    while r.read(1) == 1:
        if n > 62:
            raise DecodeError("malformed omega code")
        n = (1 << n) | r.read(n)
    return n


def _read_block(r: BitReader, d: int) -> list[int]:
    k = _read_omega(r) - 1
    if k > d:
        raise DecodeError(f"count {k} > d={d}")
    out, prev = [], -1
    mode = r.read(1) if k else 1
    for _ in range(k):
        i = prev + _read_delta(r) if mode == 0 else r.read(ref_fixed_width(d))
        if i >= d or i <= prev:
            raise DecodeError(f"index {i} out of range or not increasing")
        out.append(i)
        prev = i
    if _read_delta(r) != d - prev:
        raise DecodeError(f"the end gap does not reach d={d}")
    return out


def _check_end(r: BitReader, data: bytes) -> None:
    if len(data) != (r.pos + 7) // 8 or r.read(r.remaining) != 0:
        raise DecodeError("trailing data")


def ref_decode_indices(data: bytes, d: int) -> list[int]:
    """Reference of :func:`simdist.coding.indices.decode_indices` (DecodeError on bad data)."""
    r = BitReader(data)
    out = _read_block(r, d)
    _check_end(r, data)
    return out


def ref_topk_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Sorted indices of the k largest |x_i|, ties to the lowest index (a stable full sort)."""
    return np.sort(np.argsort(-np.abs(x), kind="stable")[:k])


def ref_threshold_indices(x: np.ndarray, tau: float) -> np.ndarray:
    """Indices with |x_i| >= tau (compared in float64)."""
    return np.flatnonzero(np.abs(x).astype(np.float64) >= tau)


def ref_randk_indices(key: int, d: int, k: int) -> list[int]:
    """The rand-k sampler of :mod:`simdist.kernels.sparse` (splitmix64 + Floyd), in Python ints."""
    state = int(key) & _M64

    def draw() -> int:
        nonlocal state
        state = (state + 0x9E3779B97F4A7C15) & _M64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        return z ^ (z >> 31)

    chosen: set[int] = set()
    for j in range(d - k, d):
        bound = j + 1
        while True:
            r = draw() >> 1
            if r < (1 << 63) - (1 << 63) % bound:
                break
        t = r % bound
        chosen.add(j if t in chosen else t)
    return sorted(chosen)


def _f32_bits(v) -> int:
    with np.errstate(over="ignore"):
        f = np.float32(v)
    if not np.isfinite(f):
        raise ValueError("x: a kept value is outside the float32 range")
    return int(np.array([f], dtype=">f4").view(">u4")[0])


def ref_sparse_encode(x: np.ndarray, idx) -> tuple[bytes, int]:
    """Top-k/threshold message: index block, then float32(x[idx]) as 32-bit patterns."""
    w = BitWriter()
    w.write_str(ref_index_bits(idx, x.size))
    for i in idx:
        w.write(_f32_bits(x[i]), 32)
    return w.to_bytes(), w.nbits


def _read_f32(r: BitReader) -> float:
    v = np.array([r.read(32)], dtype=">u4").view(">f4")[0]
    if not np.isfinite(v):
        raise DecodeError("non-finite value")
    return float(v)


def ref_sparse_decode(data: bytes, d: int, dtype, expect_k: int = -1) -> tuple[np.ndarray, int]:
    """Decode a top-k/threshold message: ``(y, nbits)`` (DecodeError on bad data)."""
    r = BitReader(data)
    idx = _read_block(r, d)
    if expect_k >= 0 and len(idx) != expect_k:
        raise DecodeError(f"count {len(idx)} != k={expect_k}")
    y = np.zeros(d, dtype=dtype)
    for i in idx:
        y[i] = _read_f32(r)
    nbits = r.pos
    _check_end(r, data)
    return y, nbits


def ref_randk_encode(x: np.ndarray, key: int, k: int, scale: float = 1.0) -> tuple[bytes, int]:
    """Rand-k message: float32(x[idx]) for the key's indices (the decoder multiplies by ``scale``)."""
    w = BitWriter()
    for i in ref_randk_indices(key, x.size, k):
        w.write(_f32_bits(x[i]), 32)
        with np.errstate(over="ignore"):
            if not np.isfinite(np.array([float(np.float32(x[i])) * scale]).astype(x.dtype)[0]):
                raise ValueError("x: a kept value overflows once scaled")
    return w.to_bytes(), w.nbits


def ref_randk_decode(data: bytes, d: int, k: int, key: int, dtype, scale: float = 1.0) -> np.ndarray:
    """Decode a rand-k message: entry idx_j = float64(value_j) * scale, rounded to ``dtype``."""
    if len(data) != 4 * k:
        raise DecodeError(f"{len(data)} bytes for k={k} values")
    r = BitReader(data)
    y = np.zeros(d, dtype=dtype)
    for i in ref_randk_indices(key, d, k):
        with np.errstate(over="ignore"):
            y[i] = _read_f32(r) * scale
        if not np.isfinite(y[i]):
            raise DecodeError("value overflows once scaled")
    return y
