"""Wire format of the sparse blocks exchanged by the SparCML allreduces (:mod:`.sparse`).

A block covers the index range ``[lo, hi)`` of a length-N vector (``L = hi - lo``); its entries
are held as a pair ``(indices, values)``: int64 indices, strictly increasing, in ``[lo, hi)``,
and values of the allreduce's dtype (float32 or float64; ``vb`` = 4 or 8 bytes).

Messages (all little-endian; every bit of the payload is counted, nothing is framing):

* **sparse stream** of nnz items, as SparCML sends them (fixed-width items, no index coding):
  ``nnz`` uint32 *global* indices, then ``nnz`` values of the dtype (structure of arrays).
  ``nbits = 8 nnz (INDEX_BYTES + vb)`` with ``INDEX_BYTES = 4`` (so N <= 2**32). The
  receiver gets nnz from the length: it must be a whole number of items.
* **dense block**: the ``L`` values of the block, ``nbits = 8 L vb``.
* **quantized block** (dynamic mode with a quantizer, :func:`encode_quantized`): one tag byte
  (0: a sparse stream follows, 1: a compressor payload for the ``L`` values follows, e.g. QSGD),
  then the body; ``nbits = 8 + nbits(body)`` (the tag is counted).

Switch rule (THEORY.md section 6, [V] from the SparCML code): a block of nnz entries is sent
dense when ``nnz (INDEX_BYTES + vb) >= L vb`` (:func:`is_dense`), i.e. at density
``vb / (INDEX_BYTES + vb)`` -- 1/2 for float32, 2/3 for float64. Hence in dynamic mode a sparse
stream is always strictly shorter than the dense block, and the length alone tells them apart;
in plain sparse mode (no switch) every message is a sparse stream.

Decoders check the length, that indices are strictly increasing and inside ``[lo, hi)``, and raise
:class:`simdist.DecodeError` otherwise; they never read outside the message.

Example:
    >>> buf = encode_sparse(np.array([2, 5]), np.array([1.5, -2.0], np.float32))
    >>> buf.nbytes, decode_block(buf, 0, 8, np.float32, "sparse")[0].tolist()
    (16, [2, 5])
    >>> is_dense(3, 8, 4), is_dense(4, 8, 4)
    (False, True)

References:
    C. Renggli, S. Ashkboos, M. Aghagolzadeh, D. Alistarh, T. Hoefler, "SparCML: High-Performance
    Sparse Communication for Machine Learning", SC19 (32-bit index + 32-bit value items).
"""

from __future__ import annotations

import numpy as np

from ..errors import DecodeError

__all__ = ["INDEX_BYTES", "is_dense", "encode_sparse", "encode_dense", "encode_block", "encode_quantized",
           "decode_block"]

#: Bytes of one index on the wire (uint32).
INDEX_BYTES = 4

_MODES = ("sparse", "dynamic", "quantized")


def is_dense(nnz: int, block_len: int, value_bytes: int, index_bytes: int = INDEX_BYTES) -> bool:
    """The switch rule: ``nnz (index_bytes + value_bytes) >= block_len value_bytes``."""
    return int(nnz) * (index_bytes + value_bytes) >= int(block_len) * value_bytes


def _le(dtype) -> np.dtype:
    return np.dtype(dtype).newbyteorder("<")


def encode_sparse(indices: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A sparse stream: uint32 indices then values (the values' dtype), as a uint8 array."""
    idx = np.asarray(indices, dtype="<u4")
    val = np.asarray(values).astype(_le(values.dtype), copy=False)
    return np.concatenate((idx.view(np.uint8), val.view(np.uint8)))


def encode_dense(indices: np.ndarray, values: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """A dense block of ``hi - lo`` values (zeros where no index), as a uint8 array."""
    dense = np.zeros(hi - lo, dtype=_le(values.dtype))
    dense[np.asarray(indices, np.int64) - lo] = values
    return dense.view(np.uint8)


def encode_block(indices: np.ndarray, values: np.ndarray, lo: int, hi: int, dynamic: bool) -> np.ndarray:
    """The block's message: dense when ``dynamic`` and the switch rule says so, else sparse."""
    if dynamic and is_dense(indices.size, hi - lo, values.dtype.itemsize):
        return encode_dense(indices, values, lo, hi)
    return encode_sparse(indices, values)


def encode_quantized(indices, values, lo: int, hi: int, compressor, rng) -> tuple[np.ndarray, int]:
    """A tagged dynamic block: ``(buffer, nbits)``; dense blocks go through ``compressor``."""
    if hi == lo or not is_dense(indices.size, hi - lo, values.dtype.itemsize):
        body = encode_sparse(indices, values)
        return np.concatenate((np.zeros(1, np.uint8), body)), 8 + 8 * body.nbytes
    dense = np.zeros(hi - lo, dtype=values.dtype)
    dense[np.asarray(indices, np.int64) - lo] = values
    payload = compressor.compress(dense, rng)
    body = np.frombuffer(payload.to_bytes(), dtype=np.uint8)
    return np.concatenate((np.ones(1, np.uint8), body)), 8 + int(payload.nbits)


def _decode_sparse(buf: np.ndarray, lo: int, hi: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    vb = np.dtype(dtype).itemsize
    item = INDEX_BYTES + vb
    if buf.nbytes % item:
        raise DecodeError(f"sparse block: {buf.nbytes} bytes is not a whole number of {item}-byte items")
    nnz = buf.nbytes // item
    idx = buf[: INDEX_BYTES * nnz].view("<u4").astype(np.int64)
    val = buf[INDEX_BYTES * nnz:].view(_le(dtype)).astype(dtype)
    if nnz and (idx[0] < lo or idx[-1] >= hi or np.any(np.diff(idx) <= 0)):
        raise DecodeError(f"sparse block: indices must be strictly increasing inside [{lo}, {hi})")
    return idx, val


def decode_block(buf, lo: int, hi: int, dtype, mode: str, compressor=None, nbits: int | None = None):
    """Decode one block message into ``(indices, values)`` (a dense block yields all L indices).

    Args:
        buf: the message (uint8 array or bytes).
        lo, hi: the block's index range.
        dtype: the value dtype.
        mode: ``"sparse"`` (always a sparse stream), ``"dynamic"`` (dense iff the length is
            ``L vb``) or ``"quantized"`` (tagged; ``compressor`` decodes the dense bodies,
            ``nbits`` is the message's exact length).

    Raises:
        DecodeError: malformed message.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    buf = np.frombuffer(bytes(buf), dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf.view(np.uint8)
    buf = np.ascontiguousarray(buf.reshape(-1))
    L, vb = hi - lo, np.dtype(dtype).itemsize
    if mode == "dynamic" and buf.nbytes == L * vb:
        return np.arange(lo, hi, dtype=np.int64), buf.view(_le(dtype)).astype(dtype)
    if mode == "quantized":
        if buf.nbytes < 1 or buf[0] > 1:
            raise DecodeError("quantized block: missing or unknown tag byte")
        if buf[0] == 1:
            body = bytes(buf[1:])
            bits = None if nbits is None else int(nbits) - 8
            payload = compressor.from_bytes(body, L, dtype=dtype)
            if bits is not None and payload.nbits != bits:
                raise DecodeError(f"quantized block: {payload.nbits} bits decoded, {bits} announced")
            vals = compressor.decompress(payload)
            if not np.all(np.isfinite(vals)):
                raise DecodeError("quantized block: non-finite values")
            return np.arange(lo, hi, dtype=np.int64), vals.astype(dtype, copy=False)
        buf = buf[1:]
    return _decode_sparse(buf, lo, hi, dtype)
