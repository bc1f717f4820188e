"""The compressor contract.

A compressor is an immutable configuration (a frozen dataclass) with a registry name.
It maps a vector to a :class:`~simdist.compressors.payload.Payload` (real bytes) and back:

    payload = c.compress(x, rng)          # x: 1-D float32/float64, rng: numpy Generator
    y = c.decompress(payload)             # same shape and dtype as x
    c.decompress(payload, out=y)          # or into a preallocated array (returned)
    payload.nbits, payload.to_bytes()     # exact wire size and the message itself
    c.from_bytes(payload.to_bytes(), x.size, dtype=x.dtype)   # the receiver's side

The batched form works on an (n, d) matrix, one row per node, in one kernel call:

    batch = c.compress_batch(X, rng)      # rng: one Generator, or n Generators (one per row)
    Y = c.decompress_batch(batch)         # (n, d); decompress_batch(batch, out=Y) reuses Y

With a sequence of n generators row i is bit-identical to ``c.compress(X[i], rng[i])``;
with one generator the rows use one derived stream (no Python loop over rows).

Subclasses implement two batch hooks and never see unvalidated input:

* ``_encode_batch(X, rng) -> (buffer, offsets, nbits, keys)``: ``buffer`` uint8 holds the
  row messages back to back, each starting at ``offsets[i]`` (n+1 byte offsets) and exactly
  ceil(nbits[i]/8) bytes long with zero padding; ``keys`` is None unless shared randomness is used.
  X is finite unless the class sets ``checks_finite = True``: then the encoder must detect NaN/Inf
  itself (typically for free inside its kernel) and raise
  :class:`simdist._validate.NonFiniteInput`; the base class turns that into the usual ValueError
  naming ``x``/``X``, the first bad flat index and the count.
* ``_decode_batch(buffer, offsets, d, dtype, keys, out=None) -> (Y, nbits)``: decode every row,
  reading no byte outside ``buffer[offsets[i]:offsets[i+1]]``, and return the values and the
  number of bits each row's message consumed; raise :class:`simdist.DecodeError` on malformed
  data. ``out`` is None or a validated, writable, C-contiguous (n, d) array of ``dtype`` that
  shares no memory with ``buffer``: a decoder may write into it and return it as Y (no fresh
  output pages); one that returns another array is copied into ``out`` by the base class (as
  is the result of an older ``_decode_batch`` without the ``out`` parameter, still supported). The
  base class then checks that each row is exactly ceil(nbits/8) bytes with zero padding.

Device arrays (CuPy, torch CUDA tensors, Numba device arrays): ``compress``/``compress_batch``
of such an array stay on the device for the compressors that have a GPU codec
(:mod:`simdist.gpu.dispatch`); the payload holds a device buffer of the input's kind (the CPU
path's exact bytes) and ``decompress`` returns a device array of that kind. The backend is read
from the array passed in; other compressors raise TypeError naming those that have GPU codecs.

Theory hooks (used by ``simdist check`` and :mod:`simdist.testing`): ``unbiased`` says whether
E[C(x)] = x; ``variance_bound(x)`` returns the proven bound on E||C(x) - x||^2 (or None) and
``exact_variance(x)`` the exact value where it is known.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import inspect
import json
from typing import Any, ClassVar

import numpy as np

from .._validate import (
    FLOAT_DTYPES, NonFiniteInput, check_finite, check_generator, check_int, check_like, check_matrix, check_out,
    check_vector,
)
from ..errors import DecodeError
from ..gpu.backend import is_device_array
from .payload import Payload, PayloadBatch

__all__ = ["Compressor"]


class Compressor(abc.ABC):
    """Base class of every compressor (subclasses are frozen dataclasses)."""

    #: Registry name (set by each subclass).
    name: ClassVar[str] = ""
    #: True when E[decompress(compress(x))] = x for every x.
    unbiased: ClassVar[bool] = False
    #: True when compress needs a numpy Generator.
    needs_rng: ClassVar[bool] = False
    #: True when a message determines its dimension up to padding slack (see :meth:`from_bytes`);
    #: False for formats where another dimension decodes just as well (Rand-k's bare values).
    determines_dim: ClassVar[bool] = True
    #: True when ``_encode_batch`` detects NaN/Inf itself (raising NonFiniteInput), so that
    #: compress/compress_batch skip their separate ``np.isfinite`` pass over the input.
    checks_finite: ClassVar[bool] = False

    # -- subclass hooks ---------------------------------------------------------------------
    @abc.abstractmethod
    def _encode_batch(self, X: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        """Encode validated rows of X; see the module docstring."""

    @abc.abstractmethod
    def _decode_batch(self, buffer, offsets, d: int, dtype, keys, out=None) -> tuple[np.ndarray, np.ndarray]:
        """Decode every row (into ``out`` when the decoder supports it); see the module docstring."""

    def _check_dim(self, d: int) -> None:
        """Raise ValueError when the compressor cannot handle dimension d (e.g. k > d)."""

    def variance_bound(self, x: np.ndarray) -> float | None:
        """Proven upper bound on E||C(x) - x||^2 (None when there is none)."""
        return None

    def exact_variance(self, x: np.ndarray) -> float | None:
        """Exact E||C(x) - x||^2 where an identity is known (None otherwise)."""
        return None

    # -- public API -------------------------------------------------------------------------
    def compress(self, x: np.ndarray, rng: np.random.Generator | None = None) -> Payload:
        """Encode a 1-D float32/float64 vector.

        Args:
            x: the vector (finite, non-empty).
            rng: the caller's generator (required when ``needs_rng``).

        Returns:
            The :class:`Payload` (its bytes, exact ``nbits``, ``dim`` and ``dtype``).
        """
        if type(x) is not np.ndarray and is_device_array(x):  # CuPy, torch CUDA, Numba: stay on the device
            return _device().compress(self, x, [rng] if self.needs_rng else None, "x")[0]
        x = check_vector("x", x, finite=not self.checks_finite)
        return self._compress_checked(x[None, :], [rng] if self.needs_rng else None, "x")[0]

    def compress_batch(self, X: np.ndarray, rng=None) -> PayloadBatch:
        """Encode each row of an (n, d) matrix in one kernel call.

        Args:
            X: (n, d) float32/float64 matrix, one row per node.
            rng: one Generator (derived stream) or a sequence of n Generators (row i then
                equals ``compress(X[i], rng[i])``); required when ``needs_rng``.

        Returns:
            A :class:`PayloadBatch` with one message per row.
        """
        if type(X) is not np.ndarray and is_device_array(X):
            return _device().compress(self, X, rng, "X")
        return self._compress_checked(check_matrix("X", X, finite=not self.checks_finite), rng, "X")

    def _check_rng(self, rng) -> None:
        if self.needs_rng:
            if rng is None:
                raise TypeError(f"{self.name} is randomized: pass rng=numpy.random.default_rng(seed)")
            if not isinstance(rng, np.random.Generator):
                for g in rng:
                    check_generator("rng", g)

    def _compress_checked(self, X: np.ndarray, rng, name: str) -> PayloadBatch:
        # X already validated (C-contiguous; finite unless checks_finite): one read pass saved
        self._check_dim(X.shape[1])
        self._check_rng(rng)
        try:
            buffer, offsets, nbits, keys = self._encode_batch(X, rng)
        except NonFiniteInput:
            check_finite(name, X)  # raises the error naming x (1-D: X = x[None, :], same flat index) or X
            raise
        buffer.setflags(write=False)
        return PayloadBatch(buffer, offsets, nbits, X.shape[1], X.dtype, self.name, keys)

    #: True when :meth:`compress_batch_ef` forms the new memory inside the encoder (no decode, no
    #: extra pass over memory); the engine then lets the receivers' decode write into X.
    fuses_error_feedback = False

    def compress_batch_ef(self, X: np.ndarray, E: np.ndarray, rng=None) -> PayloadBatch:
        """The sender's side of error feedback for every row: encode p = X + E and set E = p - c.

        c is exactly what :meth:`decompress_batch` returns for the message (value for value, in the
        batch's dtype), so ``p == c + E`` holds after the call up to the rounding of the float
        subtraction p - c in X's dtype. The messages are bit-identical to
        ``compress_batch(X + E, rng)``. Compressors with ``fuses_error_feedback`` (QSGD) compute p
        and p - c bucket by bucket inside the encoder, from the levels they send; the base class adds,
        encodes, decodes and subtracts.

        Args:
            X: (n, d) float32/float64 gradients, C-contiguous and writable: used as scratch (its
                contents afterwards are unspecified).
            E: (n, d) memory of X's dtype, C-contiguous, writable, not overlapping X (updated in place).
            rng: as in :meth:`compress_batch`.

        Returns:
            A :class:`PayloadBatch` with one message per row of p.

        Raises:
            ValueError: p holds NaN or Inf (E is then partly updated), or bad shapes / dtypes.

        References:
            Seide et al., Interspeech 2014 (error feedback); Karimireddy et al., ICML 2019,
            Algorithm 2 (e_{t+1} = p_t - C(p_t)).
        """
        X = check_matrix("X", X, finite=False)
        check_like("E", E, X.shape, X.dtype)
        if not (X.flags.writeable and E.flags.writeable):
            raise ValueError("X and E must be writable (E receives the new memory, X is scratch)")
        if np.shares_memory(X, E):
            raise ValueError("E must not share memory with X")
        self._check_dim(X.shape[1])
        self._check_rng(rng)
        try:
            buffer, offsets, nbits, keys = self._encode_batch_ef(X, E, rng)
        except NonFiniteInput:
            raise ValueError("X + E must be finite; found NaN or Inf") from None
        buffer.setflags(write=False)
        return PayloadBatch(buffer, offsets, nbits, X.shape[1], X.dtype, self.name, keys)

    def _encode_batch_ef(self, X, E, rng):
        """Hook of :meth:`compress_batch_ef`: X += E, encode, decode into E, E = X - E (override to fuse)."""
        with np.errstate(over="ignore", invalid="ignore"):
            np.add(X, E, out=X)
        if not np.all(np.isfinite(X)):
            raise NonFiniteInput("X + E")
        buffer, offsets, nbits, keys = self._encode_batch(X, rng)
        self._decode_checked(buffer, offsets, X.shape[1], X.dtype, keys, E)  # E = c
        np.subtract(X, E, out=E)  # E = p - c
        return buffer, offsets, nbits, keys

    def decompress(self, payload: Payload, out: np.ndarray | None = None) -> np.ndarray:
        """Decode one payload into an array of its ``dim`` and ``dtype``.

        Args:
            payload: a :class:`Payload` of this compressor.
            out: optional destination, a writable C-contiguous array of shape ``(dim,)`` and the
                payload's dtype; reusing one across steps avoids fresh output pages. Its previous
                contents are overwritten entirely (unspecified if decoding raises).

        Returns:
            The decoded vector: ``out`` itself when given.
        """
        if not isinstance(payload, Payload):
            raise TypeError(f"payload must be a Payload, got {type(payload).__name__}")
        offsets = np.array([0, payload.nbytes], dtype=np.int64)
        keys = None if payload.key is None else np.array([payload.key], dtype=np.int64)
        batch = PayloadBatch(payload.data, offsets, np.array([payload.nbits], np.int64),
                             payload.dim, payload.dtype, payload.codec, keys)
        if out is None:
            return self.decompress_batch(batch)[0]
        if type(payload.data) is not np.ndarray:  # a payload on the device: out is a device array
            return _device().decompress(self, batch, out, (payload.dim,))
        check_out("out", out, (payload.dim,), payload.dtype, payload.data)
        self.decompress_batch(batch, out=out.reshape(1, -1))  # a view: C-contiguous
        return out

    def decompress_batch(self, batch: PayloadBatch, out: np.ndarray | None = None) -> np.ndarray:
        """Decode every row of a batch into an (n, dim) array of the batch's dtype.

        Args:
            batch: a :class:`PayloadBatch` of this compressor.
            out: optional destination, a writable C-contiguous ``(n, dim)`` array of the batch's
                dtype (overwritten entirely; unspecified if decoding raises).

        Returns:
            The decoded rows: ``out`` itself when given.
        """
        if not isinstance(batch, PayloadBatch):
            raise TypeError(f"batch must be a PayloadBatch, got {type(batch).__name__}")
        if batch.codec != self.name:
            raise ValueError(f"payload was written by {batch.codec!r}, not by {self.name!r}")
        if type(batch.buffer) is not np.ndarray:  # messages on the device: decoded there (device codecs)
            return _device().decompress(self, batch, out)
        if out is not None:
            check_out("out", out, (batch.offsets.shape[0] - 1, batch.dim), batch.dtype, batch.buffer)
        Y, nbits = self._decode_checked(batch.buffer, batch.offsets, batch.dim, batch.dtype, batch.keys, out)
        if not np.array_equal(nbits, batch.nbits):
            raise DecodeError(f"{self.name}: decoded length {nbits.tolist()} bits != declared {batch.nbits.tolist()}")
        return Y

    def decompress_batch_mean(self, batch: PayloadBatch, out: np.ndarray, *, chunk_bytes: int = 4 << 20) -> np.ndarray:
        """The float64 mean of the decoded rows, without holding them all: what every receiver of an
        allgather applies.

        Rows are decoded a few at a time (about ``chunk_bytes`` of decoded values, so they stay in
        cache, and at most a quarter of the rows, so the buffer stays small next to the matrix) and added in order into ``out`` (:func:`simdist.kernels.rows.add_rows`), then divided
        by n: bit-identical to ``decompress_batch(batch).astype(np.float64).mean(axis=0)``, with
        O(chunk) memory instead of O(n d) and no pass of the decoded matrix through main memory.

        Args:
            batch: a :class:`PayloadBatch` of this compressor (host buffer).
            out: writable C-contiguous (dim,) float64 array.
            chunk_bytes: decoded bytes per chunk (>= one row).

        Returns:
            ``out``.
        """
        from ..kernels.rows import add_rows

        if not isinstance(batch, PayloadBatch):
            raise TypeError(f"batch must be a PayloadBatch, got {type(batch).__name__}")
        if type(batch.buffer) is not np.ndarray:
            raise TypeError("decompress_batch_mean takes host batches (NumPy buffers); decode device batches "
                            "with decompress_batch")
        check_out("out", out, (batch.dim,), np.float64, batch.buffer)
        n, d = len(batch), batch.dim
        rows = max(1, min(-(-n // 4), int(chunk_bytes) // (d * np.dtype(batch.dtype).itemsize)))  # <= n/4 rows
        tmp = np.empty((rows, d), batch.dtype)
        out[:] = 0.0  # as numpy's sum: from +0.0
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            add_rows(self.decompress_batch(batch.rows(r0, r1), out=tmp[: r1 - r0]), out)
        out /= n
        return out

    def decompress_batch_residual(self, batch: PayloadBatch, P: np.ndarray, out: np.ndarray,
                                  mean_out: np.ndarray) -> np.ndarray:
        """Decode a batch into error feedback's new memory and the mean of the decoded rows.

        With C the decoded rows (``decompress_batch(batch)``): ``out`` receives P - C (in the batch's
        dtype) and ``mean_out`` the float64 mean of the rows of C, rows added in order from +0.0
        and then divided by n, i.e. bit-identical to ``C.astype(np.float64).mean(axis=0)``. This is
        the engine's step after the allgather: every node applies the mean, and each keeps
        e_new = p - c. The base class decodes into ``out``, then forms both in one pass over
        memory (:mod:`simdist.kernels.rows`); a compressor may override ``_decode_residual`` to
        fuse them into its decoder. (Measured for QSGD at P = 64, d = 2**20: a fused decoder that
        writes p - c and adds c into the mean took ~100 ms against ~80 ms for decode + pass, since
        the per-nonzero read-modify-write of the mean costs more than the pass it saves.)

        Args:
            batch: a :class:`PayloadBatch` of this compressor, n rows of dimension d.
            P: the (n, d) matrix that was encoded, of the batch's dtype.
            out: writable C-contiguous (n, d) array of the batch's dtype (may not overlap P).
            mean_out: writable C-contiguous (d,) float64 array.

        Returns:
            ``out``.
        """
        if not isinstance(batch, PayloadBatch):
            raise TypeError(f"batch must be a PayloadBatch, got {type(batch).__name__}")
        if batch.codec != self.name:
            raise ValueError(f"payload was written by {batch.codec!r}, not by {self.name!r}")
        shape = (batch.offsets.shape[0] - 1, batch.dim)
        check_like("P", P, shape, batch.dtype)
        check_out("out", out, shape, batch.dtype, batch.buffer)
        check_out("mean_out", mean_out, (batch.dim,), np.float64, out)
        if np.shares_memory(out, P) or np.shares_memory(mean_out, P):
            raise ValueError("out and mean_out must not share memory with P")
        nbits = self._decode_residual(batch, P, out, mean_out)
        if not np.array_equal(nbits, batch.nbits):
            raise DecodeError(f"{self.name}: decoded length {nbits.tolist()} bits != declared {batch.nbits.tolist()}")
        return out

    def _decode_residual(self, batch, P, out, mean_out):
        """Hook of :meth:`decompress_batch_residual` (override to fuse): returns the decoded nbits."""
        from ..kernels.rows import mean_rows_and_residual

        _, nbits = self._decode_checked(batch.buffer, batch.offsets, batch.dim, batch.dtype, batch.keys, out)
        mean_rows_and_residual(P, out, mean_out)
        return nbits

    def from_bytes(self, data, dim: int, *, dtype=np.float32, key: int | None = None) -> Payload:
        """Rebuild a payload from received bytes (validated by decoding them).

        Args:
            data: the message (bytes, bytearray, memoryview or uint8 array).
            dim: the dimension of the encoded vector (>= 1).
            dtype: dtype that ``decompress`` should return (float32 or float64).
            key: the shared key, for compressors that use shared randomness (Rand-k).

        Raises:
            DecodeError: the bytes are malformed, truncated or have trailing data, or they are not a
                message of dimension ``dim`` (the error then names ``dim``).

        Note:
            Messages carry no header: the dimension is the receiver's knowledge, as in the papers'
            formats. A wrong ``dim`` is detected whenever the format determines it: every
            variable-length code (Elias-coded QSGD, index-coded sparsifiers) and every fixed-width
            format whose byte length changes with ``dim``. A fixed-width message (sign, 1-bit,
            TernGrad, fixed-width QSGD/NUQSGD) cannot tell ``dim`` from a ``dim'`` whose message has
            the same number of bytes (fewer than 8 bits of padding slack); frame messages with their
            length where that matters.
        """
        dim = check_int("dim", dim, low=1)
        self._check_dim(dim)
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        if isinstance(data, np.ndarray):
            if data.dtype != np.uint8 or data.ndim != 1:
                raise TypeError(f"data must be bytes or a 1-D uint8 array, got {data.dtype} {data.shape}")
            buf = np.array(data, dtype=np.uint8)
        elif isinstance(data, (bytes, bytearray, memoryview)):
            buf = np.frombuffer(bytes(data), dtype=np.uint8).copy()
        else:
            raise TypeError(f"data must be bytes or a 1-D uint8 array, got {type(data).__name__}")
        keys = None if key is None else np.array([check_int("key", key)], dtype=np.int64)
        try:
            _, nbits = self._decode_checked(buf, np.array([0, buf.shape[0]], np.int64), dim, dtype, keys)
        except DecodeError as exc:
            raise DecodeError(
                f"{exc} (from_bytes: {buf.shape[0]} bytes do not decode as a {self.name} message of dim={dim}; "
                f"check dim, which must be the encoded vector's dimension)"
            ) from None
        buf.setflags(write=False)
        return Payload(buf, int(nbits[0]), dim, dtype, self.name, key)

    def _decode_checked(self, buffer, offsets, d, dtype, keys, out=None):
        if self.needs_key and keys is None:
            raise ValueError(f"{self.name} needs the shared key (key=...) to decode")
        Y, nbits = self._decode_into(buffer, offsets, int(d), np.dtype(dtype), keys, out)
        if out is not None and Y is not out:
            out[...] = Y  # a decoder that does not write into out
            Y = out
        nbits = np.asarray(nbits, dtype=np.int64)
        self._check_row_bytes(buffer, offsets, nbits)
        return Y, nbits

    def _check_row_bytes(self, buffer, offsets, nbits) -> None:
        """:meth:`_check_framing` of host rows (reads each row's last byte)."""
        lengths = np.diff(offsets)
        last = np.where(lengths > 0, buffer[np.maximum(offsets[1:] - 1, 0)] if buffer.size else 0, 0)
        self._check_framing(offsets, nbits, last, lengths)

    def _check_framing(self, offsets, nbits, last, lengths=None) -> None:
        """DecodeError unless every row is exactly ceil(nbits/8) bytes whose padding bits (in ``last``,
        each row's last byte) are zero."""
        lengths = np.diff(offsets) if lengths is None else lengths
        bad = lengths != (nbits + 7) >> 3
        rem = nbits & 7
        bad |= (rem != 0) & ((last.astype(np.int64) & ((1 << (8 - rem)) - 1)) != 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DecodeError(
                f"{self.name}: trailing data in row {i}: {int(lengths[i])} bytes for a "
                f"{int(nbits[i])}-bit message (expected {(int(nbits[i]) + 7) >> 3} bytes, zero padding)"
            )

    def _decode_into(self, buffer, offsets, d, dtype, keys, out):
        """``_decode_batch`` with ``out`` passed only to implementations that accept it."""
        if out is not None and _takes_out(type(self)._decode_batch):
            return self._decode_batch(buffer, offsets, d, dtype, keys, out=out)
        return self._decode_batch(buffer, offsets, d, dtype, keys)  # (then copied into out)

    #: True when decoding needs a shared key (set by Rand-k).
    needs_key: ClassVar[bool] = False

    # -- configuration ----------------------------------------------------------------------
    def get_config(self) -> dict:
        """JSON-ready config: ``{"name": ..., **parameters}`` (nested compressors as configs)."""
        cfg = {"name": self.name}
        for f in dataclasses.fields(self):
            cfg[f.name] = _to_json(getattr(self, f.name))
        return cfg

    @classmethod
    def from_config(cls, config: dict) -> "Compressor":
        """Inverse of :meth:`get_config` (accepts the dict or its JSON string)."""
        from .registry import make

        if isinstance(config, str):
            config = json.loads(config)
        if not isinstance(config, dict) or "name" not in config:
            raise TypeError(f"config must be a dict with a 'name' key, got {config!r}")
        if cls is not Compressor and cls.name and config["name"] != cls.name:
            raise ValueError(f"config is for {config['name']!r}, not {cls.name!r}")
        return make(config)

    def __str__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{self.name}({params})"


def _device():
    """:mod:`simdist.gpu.dispatch` (imported on first use: it loads ``numba.cuda``)."""
    from ..gpu import dispatch

    return dispatch


@functools.lru_cache(maxsize=None)
def _takes_out(decode_batch) -> bool:
    """Whether a ``_decode_batch`` implementation accepts the ``out`` argument."""
    return "out" in inspect.signature(decode_batch).parameters


def _to_json(v):
    if isinstance(v, Compressor):
        return v.get_config()
    if isinstance(v, (tuple, list)):
        return [_to_json(e) for e in v]
    if isinstance(v, np.generic):
        return v.item()
    return v
