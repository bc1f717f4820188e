"""What every one-process-per-rank transport shares: running the SPMD generators of
:mod:`simdist.collectives.transport` over real point-to-point messages, recording the same trace as
the simulator, and the untraced byte helpers the distributed training loop uses.

A subclass supplies three primitives: ``_isend(dst, body) -> pending`` (start sending a uint8 array;
a list of ``(request, peer, what)``), ``_recv(src) -> uint8 array`` (a complete framed message) and
``_wait(request, peer, what)`` (bounded by the transport's timeout, raising TimeoutError naming the
peer); and may override ``_sendrecv(dst, body, src)`` (send one message and receive one at once;
the default starts the send, receives, then finishes the send), as the NCCL transport does. The payload codec (:func:`encode_payload` / :func:`decode_payload`) frames the algorithms'
payloads as bytes: a part table (kind, dtype code, byte count) and the raw bytes, never pickle.
"""

from __future__ import annotations

import struct

import numpy as np

from .._validate import check_int
from ..collectives.trace import Trace
from ..collectives.transport import Comm, Recv, Send, SendRecv, drive

__all__ = ["PointToPointTransport", "encode_payload", "decode_payload", "free_port"]

#: dtypes a dense payload part may have (the code on the wire is the index).
_DTYPES = tuple(np.dtype(t) for t in ("uint8", "int64", "float32", "float64", "float16", "int32", "uint32",
                                      "uint64", "int8", "int16", "uint16"))
_CODE = {dt: i for i, dt in enumerate(_DTYPES)}
_PART = struct.Struct("<BBHIQ")
_HEAD = struct.Struct("<II")


def encode_payload(payload) -> np.ndarray:
    """The body bytes of ``payload`` (array, bytes or tuple of them) as a uint8 array.

    Example:
        >>> p = (np.array([3, 5], np.int64), b"ab")
        >>> q = decode_payload(encode_payload(p))
        >>> q[0].tolist(), bytes(q[1])
        ([3, 5], b'ab')
    """
    is_tuple = isinstance(payload, tuple)
    parts = payload if is_tuple else (payload,)
    table, datas = [_HEAD.pack(int(is_tuple), len(parts))], []
    for part in parts:
        if isinstance(part, np.ndarray):
            arr = np.ascontiguousarray(part).reshape(-1)
            if arr.dtype not in _CODE:
                raise TypeError(f"payload arrays must have one of the dtypes {[str(d) for d in _DTYPES]}, got {arr.dtype}")
            raw = arr.view(np.uint8)
            table.append(_PART.pack(0, _CODE[arr.dtype], 0, 0, raw.nbytes))
        elif isinstance(part, (bytes, bytearray, memoryview)):
            raw = np.frombuffer(bytes(part), np.uint8)
            table.append(_PART.pack(1, 0, 0, 0, raw.nbytes))
        else:
            raise TypeError(f"payload parts must be numpy arrays or bytes, got {type(part).__name__}")
        datas.append(raw)
    head = np.frombuffer(b"".join(table), np.uint8)
    return np.concatenate([head, *datas]) if datas else head.copy()


def decode_payload(body: np.ndarray):
    """Inverse of :func:`encode_payload` (raises ValueError on a malformed body)."""
    buf = memoryview(np.ascontiguousarray(body, np.uint8)).cast("B")
    if len(buf) < _HEAD.size:
        raise ValueError("malformed message: shorter than its part table")
    is_tuple, nparts = _HEAD.unpack_from(buf, 0)
    pos = _HEAD.size
    if pos + nparts * _PART.size > len(buf) or (not is_tuple and nparts != 1):
        raise ValueError("malformed message: bad part table")
    specs = []
    for _ in range(nparts):
        specs.append(_PART.unpack_from(buf, pos))
        pos += _PART.size
    parts = []
    for kind, code, _a, _b, nbytes in specs:
        if pos + nbytes > len(buf) or kind > 1 or code >= len(_DTYPES):
            raise ValueError("malformed message: a part runs past the end or has an unknown kind/dtype")
        raw = bytes(buf[pos:pos + nbytes])
        pos += nbytes
        parts.append(np.frombuffer(raw, _DTYPES[code]).copy() if kind == 0 else raw)
    if pos != len(buf):
        raise ValueError("malformed message: trailing bytes")
    return tuple(parts) if is_tuple else parts[0]


def free_port(addr: str = "127.0.0.1") -> int:
    """A TCP port free on ``addr`` right now (for the rendezvous)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((addr, 0))
        return int(s.getsockname()[1])


class _RankComm(Comm):
    __slots__ = ("_transport",)

    def __init__(self, rank: int, size: int, transport: "PointToPointTransport") -> None:
        super().__init__(rank, size)
        self._transport = transport

    def reduced(self, nbytes: int) -> None:
        t = self._transport
        t.trace.add_reduction(max(t._round - 1, 0), self._rank, check_int("nbytes", nbytes, low=0))


class PointToPointTransport:
    """Base class: the transport interface on top of ``_isend`` / ``_recv`` / ``_wait`` (see the module docstring).

    Subclasses set ``rank``, ``size``, ``trace`` (a :class:`Trace`), ``_round`` and ``_context``.
    """

    def _finish(self, pending: list) -> None:
        for req, peer, what in pending:
            if req is not None:
                self._wait(req, peer, what)

    def _sendrecv(self, dst: int, body: np.ndarray, src: int) -> np.ndarray:
        """Send ``body`` to ``dst`` while receiving the message of ``src`` (returned)."""
        pend = self._isend(dst, body)
        got = self._recv(src)
        self._finish(pend)
        return got

    def send_bytes(self, dst: int, body: np.ndarray) -> None:
        """Send a uint8 array to ``dst`` (untraced: measurements and control, not the algorithm)."""
        self._finish(self._isend(dst, np.ascontiguousarray(body, np.uint8)))

    def recv_bytes(self, src: int) -> np.ndarray:
        """Receive the uint8 array ``src`` sent with :meth:`send_bytes` (untraced)."""
        return self._recv(src)

    def gather_bytes(self, body: np.ndarray, root: int = 0) -> list | None:
        """Every rank's uint8 array, in rank order, on ``root`` (None elsewhere); untraced."""
        if self.rank != root:
            self.send_bytes(root, body)
            return None
        return [np.asarray(body, np.uint8) if r == root else self.recv_bytes(r) for r in range(self.size)]

    def bcast_bytes(self, body: np.ndarray | None, root: int = 0) -> np.ndarray:
        """``root``'s uint8 array on every rank (a star from the root); untraced."""
        if self.rank == root:
            pend = []
            for r in range(self.size):
                if r != root:
                    pend += self._isend(r, np.ascontiguousarray(body, np.uint8))
            self._finish(pend)
            return np.asarray(body, np.uint8)
        return self.recv_bytes(root)

    # -- the transport interface --------------------------------------------------------------
    def _handle(self, req):
        rnd = self._round
        if isinstance(req, Send):
            self.trace.add_message(rnd, self.rank, req.dst, req.nbits)
            self._finish(self._isend(req.dst, encode_payload(req.payload)))
            result = None
        elif isinstance(req, Recv):
            result = decode_payload(self._recv(req.src))
        elif isinstance(req, SendRecv):
            self.trace.add_message(rnd, self.rank, req.dst, req.nbits)
            result = decode_payload(self._sendrecv(req.dst, encode_payload(req.payload), req.src))
        else:  # pragma: no cover - drive() only passes requests
            raise TypeError(f"unknown request {req!r}")
        self._round = rnd + 1
        return result

    def run(self, algo, data, *, context: str = "", **params):
        """Run this rank's part of ``algo(comm, data, **params)``.

        Args:
            algo: a per-rank generator function (:mod:`simdist.collectives.dense`, ...).
            data: this rank's input.
            context: text added to timeout messages (e.g. "at step 3").

        Returns:
            ``(output, trace)``: this rank's output and the trace of this run on this rank (its
            sends and reductions, rounds counted from 0; see the module docstring).
        """
        self.trace = Trace(self.size)
        self._round = 0
        self._context = f" ({context})" if context else ""
        out = drive(algo(_RankComm(self.rank, self.size, self), data, **params), self._handle)
        return out, self.trace

    def close(self) -> None:
        """Release the transport's resources (nothing by default)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
