"""Encoded messages: :class:`Payload` (one node) and :class:`PayloadBatch` (one per node).

A payload *is* its wire bytes. ``nbits`` is the exact length of the encoded message,
measured by the encoder that wrote the buffer; ``to_bytes()`` returns ceil(nbits/8)
bytes whose padding bits are zero. Two pieces of context travel beside the bytes and
are not counted, because the receiver already has them: the dimension ``dim`` and the
dtype the receiver wants back. Rand-k additionally uses a ``key`` that the nodes
derive from a shared seed (so its indices are never sent).

The bytes may live on a GPU: a payload of a device array (:mod:`simdist.gpu.dispatch`) holds a
device buffer of the input's kind (CuPy, torch CUDA, Numba); ``to_bytes()`` copies it to the host,
and the compressor decodes it on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Payload", "PayloadBatch"]


@dataclass(frozen=True, eq=False)
class Payload:
    """One encoded message.

    Attributes:
        data: read-only ``uint8`` array of ceil(nbits/8) bytes (the message), or a uint8 device array.
        nbits: exact number of bits of the message.
        dim: dimension of the vector it encodes (known to the receiver, not sent).
        dtype: dtype that ``decompress`` returns (known to the receiver, not sent).
        codec: registry name of the compressor that wrote it.
        key: shared-randomness key (Rand-k), derived by every node, not sent; else None.
    """

    data: np.ndarray
    nbits: int
    dim: int
    dtype: np.dtype
    codec: str
    key: int | None = None

    def to_bytes(self) -> bytes:
        """The message as ``bytes`` (ceil(nbits/8) of them; a device buffer is copied to the host)."""
        if type(self.data) is not np.ndarray:
            from ..gpu.backend import to_host

            return to_host(self.data).tobytes()
        return self.data.tobytes()

    @property
    def nbytes(self) -> int:
        """Length of the message in bytes."""
        return int(self.data.shape[0])

    def __repr__(self) -> str:
        return f"Payload(codec={self.codec!r}, dim={self.dim}, nbits={self.nbits}, dtype={self.dtype})"


@dataclass(frozen=True, eq=False)
class PayloadBatch:
    """The messages of n nodes, stored back to back (each starting on a byte boundary).

    Attributes:
        buffer: ``uint8`` array holding every message (a NumPy array, or a device array for the
            GPU path); row i is ``buffer[offsets[i]:offsets[i+1]]``.
        offsets: int64 array of n+1 byte offsets.
        nbits: int64 array of n exact message lengths in bits.
        dim, dtype, codec: as in :class:`Payload`.
        keys: int64 array of n shared keys (Rand-k) or None.
    """

    buffer: np.ndarray
    offsets: np.ndarray
    nbits: np.ndarray
    dim: int
    dtype: np.dtype
    codec: str
    keys: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.nbits.shape[0])

    def __getitem__(self, i: int) -> Payload:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} out of range for a batch of {n} payloads")
        i %= n
        data = self.buffer[int(self.offsets[i]) : int(self.offsets[i + 1])]
        key = None if self.keys is None else int(self.keys[i])
        return Payload(data, int(self.nbits[i]), self.dim, self.dtype, self.codec, key)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def rows(self, start: int, stop: int) -> "PayloadBatch":
        """The messages of rows ``start <= i < stop`` as a batch (a view of the same buffer, no copy)."""
        n = len(self)
        if not 0 <= start <= stop <= n:
            raise IndexError(f"rows [{start}, {stop}) out of range for a batch of {n} payloads")
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        keys = None if self.keys is None else self.keys[start:stop]
        return PayloadBatch(self.buffer[lo:hi], self.offsets[start : stop + 1] - lo, self.nbits[start:stop],
                            self.dim, self.dtype, self.codec, keys)

    @property
    def total_bits(self) -> int:
        """Sum of the message lengths in bits."""
        return int(self.nbits.sum())

    @classmethod
    def from_rows(cls, rows, nbits, dim: int, dtype, codec: str, keys=None) -> "PayloadBatch":
        """Build a batch from a list of per-row ``uint8`` arrays (already ceil(nbits/8) long)."""
        lengths = np.array([r.shape[0] for r in rows], dtype=np.int64)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        buffer = np.concatenate(rows) if rows else np.zeros(0, np.uint8)
        return cls(_readonly(buffer), offsets, np.asarray(nbits, np.int64), dim, np.dtype(dtype), codec, keys)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a
