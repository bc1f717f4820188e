"""A real transport over torch.distributed (gloo on CPU, NCCL on GPU): one process per rank.

:class:`TorchTransport` executes the requests of a collective written once per rank
(:mod:`simdist.collectives.transport`) with real point-to-point messages, through
:func:`~simdist.collectives.transport.drive`. The algorithms are the simulator's, unchanged.

Wire format of one payload (what crosses the wire is its bytes, never pickled objects):

1. a header message: 16 bytes, two little-endian uint64: the body's length in bytes, and the
   sequence number of this message on the (src, dst) channel (checked by the receiver);
2. the body: ``uint32 flags`` (bit 0: the payload is a tuple), ``uint32 nparts``, then per part
   ``uint8 kind`` (0: a 1-D numpy array, 1: raw bytes), ``uint8 dtype code`` (index into
   ``_DTYPES``), ``uint16 0``, ``uint32 0``, ``uint64 nbytes``; then the parts' bytes back to back.

Framing (header, part table) is not counted in the trace, as :mod:`.transport` specifies:
the trace counts payload bits only.

Trace: every rank records the messages it *sends* ``(round, src=rank, dst, nbits)`` and its
reductions ``(round, rank, nbytes)``. ``round`` is the index of the request in the rank's own
request sequence (0, 1, ...); reductions are recorded at the round of the request completed
last. For algorithms in which every rank issues one request per synchronous round (ring
allreduce, recursive-doubling/Bruck allgather, power-of-two recursive doubling and
Rabenseifner) this is exactly the simulator's round, so the union of the ranks' traces
equals :class:`~simdist.collectives.simulated.SimulatedTransport`'s trace (tested). Where
the simulator lets some ranks run ahead (non-power-of-two folds), the per-rank numbering is
the rank's own count and may differ from the simulator's schedule; (src, dst, nbits) still match.

Reliability: rendezvous on ``tcp://MASTER_ADDR:MASTER_PORT`` with MASTER_ADDR defaulting to
127.0.0.1 (loopback only unless told otherwise); ``timeout`` seconds (default 60) bound the
rendezvous and every wait: a dead or stalled peer makes this rank raise :class:`TimeoutError`
naming the peer, never hang.

Example (in each of P processes started by ``simdist launch`` or torchrun, which set RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT):

    from simdist.collectives import dense
    t = TorchTransport()                                   # reads the environment
    total, trace = t.run(dense.make("ring"), my_vector)    # the same generator the simulator runs

References:
    PyTorch, torch.distributed point-to-point communication (isend/irecv, gloo backend).
"""

from __future__ import annotations

import os
import struct
from datetime import timedelta

import numpy as np

from .._validate import check_choice, check_float, check_int
from ..collectives.trace import Trace
from ..collectives.transport import Comm, Recv, Send, SendRecv, drive

__all__ = ["TorchTransport", "encode_payload", "decode_payload", "free_port"]

#: dtypes a dense payload part may have (the code on the wire is the index).
_DTYPES = tuple(np.dtype(t) for t in ("uint8", "int64", "float32", "float64", "float16", "int32", "uint32",
                                      "uint64", "int8", "int16", "uint16"))
_CODE = {dt: i for i, dt in enumerate(_DTYPES)}
_PART = struct.Struct("<BBHIQ")
_HEAD = struct.Struct("<II")


def free_port(addr: str = "127.0.0.1") -> int:
    """A TCP port free on ``addr`` right now (for the rendezvous)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((addr, 0))
        return int(s.getsockname()[1])


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


class _TorchComm(Comm):
    __slots__ = ("_transport",)

    def __init__(self, rank: int, size: int, transport: "TorchTransport") -> None:
        super().__init__(rank, size)
        self._transport = transport

    def reduced(self, nbytes: int) -> None:
        t = self._transport
        t.trace.add_reduction(max(t._round - 1, 0), self._rank, check_int("nbytes", nbytes, low=0))


class TorchTransport:
    """This process's rank of a torch.distributed process group, driving SPMD collectives.

    Args:
        rank, size: this rank and the world size (default: env RANK and WORLD_SIZE, as torchrun
            and ``simdist launch`` set them).
        backend: "gloo" (CPU) or "nccl" (GPU; untested here).
        addr, port: rendezvous address (default env MASTER_ADDR, else 127.0.0.1) and port
            (default env MASTER_PORT).
        timeout: seconds (> 0) the rendezvous and every wait may take before TimeoutError.

    Attributes:
        trace: the :class:`~simdist.collectives.trace.Trace` of this rank's sends and reductions
            since construction or the last :meth:`reset_trace`.
    """

    def __init__(self, rank: int | None = None, size: int | None = None, *, backend: str = "gloo",
                 addr: str | None = None, port: int | None = None, timeout: float = 60.0) -> None:
        import torch.distributed as dist

        self._dist = dist
        self.size = check_int("size", size if size is not None else int(os.environ.get("WORLD_SIZE", "1")), low=1)
        self.rank = check_int("rank", rank if rank is not None else int(os.environ.get("RANK", "0")),
                              low=0, high=self.size - 1)
        self.backend = check_choice("backend", backend, ("gloo", "nccl"))
        self.timeout = check_float("timeout", timeout, low=0.0, low_open=True)
        addr = addr or os.environ.get("MASTER_ADDR", "127.0.0.1")
        if port is None:
            if "MASTER_PORT" not in os.environ:
                raise ValueError("port must be given (or env MASTER_PORT set) for the rendezvous")
            port = int(os.environ["MASTER_PORT"])
        port = check_int("port", port, low=0, high=65535)
        if self.size == 1 and port == 0:
            port = free_port(addr)
        self.addr, self.port = addr, port
        self._device = "cpu"
        if backend == "nccl":  # pragma: no cover - needs GPUs
            import torch

            self._device = f"cuda:{self.rank % max(torch.cuda.device_count(), 1)}"
        try:
            dist.init_process_group(backend, init_method=f"tcp://{addr}:{port}", rank=self.rank,
                                    world_size=self.size, timeout=timedelta(seconds=self.timeout))
        except Exception as exc:  # torch raises DistStoreError / RuntimeError on a rendezvous timeout
            raise TimeoutError(f"rank {self.rank}: rendezvous at {addr}:{port} with {self.size} ranks failed "
                               f"within {self.timeout:g} s: {exc}") from exc
        self._sent = [0] * self.size  # sequence numbers per channel (messages sent to / received from)
        self._recvd = [0] * self.size
        self._round = 0
        self.trace = Trace(self.size)
        self._context = ""

    # -- raw messages -------------------------------------------------------------------------
    def _tensor(self, arr: np.ndarray):
        import torch

        if not arr.flags.writeable:  # torch wants writable memory (a send only reads it): copy once
            arr = arr.copy()
        t = torch.from_numpy(arr)
        return t if self._device == "cpu" else t.to(self._device)

    def _wait(self, work, peer: int, what: str) -> None:
        try:
            ok = work.wait(timeout=timedelta(seconds=self.timeout))
        except Exception as exc:
            raise TimeoutError(
                f"rank {self.rank}: {what} rank {peer} failed or timed out (timeout {self.timeout:g} s)"
                f"{self._context}: the peer died or stalled ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from exc
        if ok is False:  # pragma: no cover - some backends report a timeout this way
            raise TimeoutError(f"rank {self.rank}: {what} rank {peer} timed out after {self.timeout:g} s{self._context}")

    def _isend(self, dst: int, body: np.ndarray) -> list:
        dist = self._dist
        seq = self._sent[dst]
        self._sent[dst] += 1
        head = np.frombuffer(struct.pack("<QQ", body.nbytes, seq), np.uint8).copy()
        tag = 2 * (seq % (1 << 20))
        keep = [self._tensor(head), self._tensor(body)]
        works = [dist.isend(keep[0], dst, tag=tag)]
        if body.nbytes:
            works.append(dist.isend(keep[1], dst, tag=tag + 1))
        return [(w, dst, "sending to") for w in works] + [(None, keep, None)]

    def _recv(self, src: int) -> np.ndarray:
        dist = self._dist
        seq = self._recvd[src]
        self._recvd[src] += 1
        tag = 2 * (seq % (1 << 20))
        head = self._tensor(np.zeros(16, np.uint8))
        self._wait(dist.irecv(head, src, tag=tag), src, "waiting for a message from")
        n, got_seq = struct.unpack("<QQ", head.cpu().numpy().tobytes())
        if got_seq != seq:
            raise RuntimeError(f"rank {self.rank}: message {got_seq} from rank {src} arrived where {seq} was expected")
        body = self._tensor(np.zeros(n, np.uint8))
        if n:
            self._wait(dist.irecv(body, src, tag=tag + 1), src, "waiting for a message from")
        return body.cpu().numpy()

    def _finish(self, pending: list) -> None:
        for w, peer, what in pending:
            if w is not None:
                self._wait(w, peer, what)

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
            pend = self._isend(req.dst, encode_payload(req.payload))
            result = decode_payload(self._recv(req.src))
            self._finish(pend)
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
        out = drive(algo(_TorchComm(self.rank, self.size, self), data, **params), self._handle)
        return out, self.trace

    def close(self) -> None:
        """Leave the process group."""
        if self._dist.is_initialized():
            self._dist.destroy_process_group()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
