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
from .p2p import PointToPointTransport, decode_payload, encode_payload, free_port

__all__ = ["TorchTransport", "encode_payload", "decode_payload", "free_port"]


class TorchTransport(PointToPointTransport):
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

    def close(self) -> None:
        """Leave the process group."""
        if self._dist.is_initialized():
            self._dist.destroy_process_group()
