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

NCCL (``backend="nccl"``, one GPU per rank): rank r uses GPU ``LOCAL_RANK`` (set by torchrun and
``simdist launch``; else the rank), selected with ``torch.cuda.set_device`` before the process
group starts (:func:`nccl_device`); the message tensors live on that GPU. Two rules of NCCL shape
the code, and gloo runs the same code (so the gloo tests exercise it):

1. NCCL point-to-point calls block the GPU stream until the peer's matching call runs, so a rank
   that sends to a peer and receives from it in the same round (a 2-rank ring) would deadlock if
   both sent first. An exchange (:meth:`TorchTransport._sendrecv`) therefore posts its send and its
   receive together (``torch.distributed.batch_isend_irecv``): first the two headers, then the two
   bodies (whose lengths the headers gave).
2. ``Work.wait`` does not block the host under NCCL unless ``TORCH_NCCL_BLOCKING_WAIT=1``, which
   this transport sets (if unset) before joining, so that the timeout below holds under NCCL too.

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
from .p2p import PointToPointTransport, decode_payload, encode_payload, free_port

__all__ = ["TorchTransport", "nccl_device", "encode_payload", "decode_payload", "free_port"]

_HEADER = struct.Struct("<QQ")


def nccl_device(rank: int, gpus: int, local_rank: str | None = None) -> int:
    """The GPU index of a rank under NCCL: ``LOCAL_RANK`` when set (torchrun, ``simdist launch``), else the rank.

    Args:
        rank: the global rank. gpus: the number of GPUs this process sees.
        local_rank: the value of env LOCAL_RANK (None when unset).

    Raises:
        RuntimeError: no GPU, or fewer GPUs than ranks on this machine (NCCL needs one GPU per rank).

    Example:
        >>> nccl_device(5, 4, "1")
        1
    """
    if gpus < 1:
        raise RuntimeError("backend 'nccl' needs a CUDA GPU per rank and torch sees none; use backend='gloo'")
    index = check_int("LOCAL_RANK", int(local_rank), low=0) if local_rank not in (None, "") else rank
    if index >= gpus:
        raise RuntimeError(f"backend 'nccl' needs one GPU per rank: this rank's local rank is {index} but only "
                           f"{gpus} GPU(s) are visible; start at most {gpus} ranks per machine or use backend='gloo'")
    return index


class TorchTransport(PointToPointTransport):
    """This process's rank of a torch.distributed process group, driving SPMD collectives.

    Args:
        rank, size: this rank and the world size (default: env RANK and WORLD_SIZE, as torchrun
            and ``simdist launch`` set them).
        backend: "gloo" (CPU) or "nccl" (one GPU per rank, see the module docstring).
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
        if backend == "nccl":
            self._device = self._select_gpu()
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

    def _select_gpu(self) -> str:
        """Check NCCL and pick this rank's GPU (``torch.cuda.set_device``) before joining."""
        import torch

        if not self._dist.is_nccl_available():
            raise RuntimeError("backend 'nccl' is not available in this torch build (a CUDA build of torch is "
                               "needed); use backend='gloo'")
        index = nccl_device(self.rank, torch.cuda.device_count(), os.environ.get("LOCAL_RANK"))
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")  # wait() honours the timeout (module docstring)
        torch.cuda.set_device(index)  # pragma: no cover - needs a GPU
        return f"cuda:{index}"  # pragma: no cover

    # -- raw messages -------------------------------------------------------------------------
    def _tensor(self, arr: np.ndarray):
        import torch

        if not arr.flags.writeable:  # torch wants writable memory (a send only reads it): copy once
            arr = arr.copy()
        t = torch.from_numpy(arr)
        return t if self._device == "cpu" else t.to(self._device)

    def _empty(self, n: int):
        """A receive buffer of n bytes on the transport's device."""
        import torch

        return torch.empty(n, dtype=torch.uint8, device=self._device)

    def _batch(self, ops: list) -> None:
        """Post ``(isend|irecv, tensor, peer, tag)`` operations together and wait for all of them."""
        dist = self._dist
        if not ops:
            return
        works = list(dist.batch_isend_irecv([dist.P2POp(op, t, peer, tag=tag) for op, t, peer, tag in ops]) or ())
        if len(works) == len(ops):  # gloo: one request per operation, each names its peer
            for w, (op, _, peer, _) in zip(works, ops):
                self._wait(w, peer, "sending to" if op is dist.isend else "waiting for a message from")
            return
        peer = next((p for op, _, p, _ in ops if op is dist.irecv), ops[0][2])  # NCCL: one coalesced request
        for w in works:  # pragma: no cover - NCCL only
            self._wait(w, peer, "exchanging messages with")

    def _sendrecv(self, dst: int, body: np.ndarray, src: int) -> np.ndarray:
        """One exchange: the headers of both directions posted together, then both bodies (module docstring)."""
        dist = self._dist
        sseq, rseq = self._sent[dst], self._recvd[src]
        self._sent[dst] += 1
        self._recvd[src] += 1
        stag, rtag = 2 * (sseq % (1 << 20)), 2 * (rseq % (1 << 20))
        head = self._empty(16)
        self._batch([(dist.isend, self._tensor(self._header(body.nbytes, sseq)), dst, stag),
                     (dist.irecv, head, src, rtag)])
        n = self._check_header(head, src, rseq)
        got = self._empty(n)
        ops = [(dist.isend, self._tensor(body), dst, stag + 1)] if body.nbytes else []
        self._batch(ops + ([(dist.irecv, got, src, rtag + 1)] if n else []))
        return got.cpu().numpy()

    @staticmethod
    def _header(nbytes: int, seq: int) -> np.ndarray:
        return np.frombuffer(_HEADER.pack(nbytes, seq), np.uint8).copy()

    def _check_header(self, head, src: int, seq: int) -> int:
        n, got_seq = _HEADER.unpack(head.cpu().numpy().tobytes())
        if got_seq != seq:
            raise RuntimeError(f"rank {self.rank}: message {got_seq} from rank {src} arrived where {seq} was expected")
        return n

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
        head = self._header(body.nbytes, seq)
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
        head = self._empty(16)
        self._wait(dist.irecv(head, src, tag=tag), src, "waiting for a message from")
        n = self._check_header(head, src, seq)
        body = self._empty(n)
        if n:
            self._wait(dist.irecv(body, src, tag=tag + 1), src, "waiting for a message from")
        return body.cpu().numpy()

    def close(self) -> None:
        """Leave the process group."""
        if self._dist.is_initialized():
            self._dist.destroy_process_group()
