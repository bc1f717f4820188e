"""A real transport over MPI (mpi4py): one process per rank, started by ``mpirun``.

:class:`MPITransport` executes the requests of a collective written once per rank
(:mod:`simdist.collectives.transport`) with real MPI point-to-point messages, through
:func:`~simdist.collectives.transport.drive`, exactly as
:class:`~simdist.transports.torch_dist.TorchTransport` does over torch.distributed: the
algorithms are the simulator's, unchanged, and ``run_rank(config, MPITransport())``
(:mod:`simdist.engine.distributed`) runs the training loop.

Wire format (what crosses the wire is bytes, never pickled objects: only mpi4py's buffer-based
uppercase ``Isend``/``Irecv`` of contiguous uint8 numpy arrays are used):

1. a header message (tag ``2 s``): 16 bytes, two little-endian uint64: the body's length in
   bytes, and the sequence number ``seq`` of this message on the (src, dst) channel (checked by
   the receiver); ``s = seq mod 2**14`` (MPI guarantees tags up to 32767);
2. the body (tag ``2 s + 1``, omitted when empty): the body of
   :func:`~simdist.transports.torch_dist.encode_payload` (flags, part table, the parts' bytes).

Framing is not counted in the trace, which counts payload bits only.

Trace: as :class:`~simdist.transports.torch_dist.TorchTransport`: every rank records the
messages it *sends* ``(round, src=rank, dst, nbits)`` and its reductions ``(round, rank,
nbytes)``; ``round`` is the index of the request in the rank's own request sequence, which
for the synchronous algorithms (ring, recursive doubling / Bruck allgather, power-of-two
recursive doubling and Rabenseifner) is the simulator's round, so the union of the ranks'
traces equals :class:`~simdist.collectives.simulated.SimulatedTransport`'s trace (tested).

Reliability: MPI has no timeout on point-to-point operations. Every wait here polls
``Request.Test()`` until a deadline ``timeout`` seconds (default 60) away and then raises
:class:`TimeoutError` naming the peer, so a dead or stalled peer never hangs this rank. The
pending request cannot be safely cancelled, and ``MPI_Finalize`` may wait for the lost peer:
a rank that timed out should **abort the job** (``transport.abort()``, i.e.
``MPI_Abort``), which makes ``mpirun`` stop every rank; ``simdist launch --backend mpi`` does so.
A rank that exits without finalizing makes ``mpirun`` stop the job by itself.

mpi4py is imported lazily (by the constructor), so ``import simdist`` works without it.

Example (in each of P processes started by ``mpirun -np 4 python ...`` or by
``simdist launch --backend mpi``):

    from simdist.collectives import dense
    t = MPITransport(timeout=30)                           # rank and size from MPI_COMM_WORLD
    total, trace = t.run(dense.make("ring"), my_vector)    # the same generator the simulator runs

References:
    MPI Forum, MPI: A Message-Passing Interface Standard, version 4.0 (2021), ch. 3
    (nonblocking communication, message ordering); L. Dalcin, Y.-L. L. Fang, "mpi4py: Status
    Update After 12 Years of Development", CiSE 23(4), 2021.
"""

from __future__ import annotations

import struct
import time

import numpy as np

from .._validate import check_float
from ..collectives.trace import Trace
from .p2p import PointToPointTransport

__all__ = ["MPITransport", "under_mpirun"]

_HDR = struct.Struct("<QQ")
_TAGS = 1 << 14  # sequence numbers modulo this give the tags 2 s, 2 s + 1 (<= 32767, MPI's minimum TAG_UB)

#: environment variables set by mpirun / mpiexec (Open MPI, MPICH/Hydra, PMIx, Slurm's PMI).
MPI_ENV = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")


def under_mpirun(environ=None) -> bool:
    """Whether this process was started by mpirun/mpiexec (one of :data:`MPI_ENV` is set).

    Example:
        >>> under_mpirun({"OMPI_COMM_WORLD_RANK": "0"}), under_mpirun({})
        (True, False)
    """
    import os

    env = os.environ if environ is None else environ
    return any(k in env for k in MPI_ENV)


class MPITransport(PointToPointTransport):
    """This process's rank of an MPI communicator, driving SPMD collectives.

    Args:
        comm: an mpi4py intracommunicator (default ``MPI.COMM_WORLD``); rank and size are its.
        timeout: seconds (> 0) every wait may take before TimeoutError naming the peer.
        poll: the longest sleep (seconds, > 0) between two ``Test()`` polls while waiting
            (the sleep grows from 0 to ``poll``, so short waits stay fast and long ones yield the CPU).

    Attributes:
        rank, size: this rank and the communicator's size.
        trace: the :class:`~simdist.collectives.trace.Trace` of this rank's sends and reductions
            of the last :meth:`run`.
    """

    def __init__(self, comm=None, *, timeout: float = 60.0, poll: float = 1e-3) -> None:
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.size = int(self.comm.Get_size())
        self.rank = int(self.comm.Get_rank())
        self.timeout = check_float("timeout", timeout, low=0.0, low_open=True)
        self.poll = check_float("poll", poll, low=0.0, low_open=True)
        self._sent = [0] * self.size  # sequence numbers per channel (messages sent to / received from)
        self._recvd = [0] * self.size
        self._round = 0
        self.trace = Trace(self.size)
        self._context = ""

    # -- raw messages -------------------------------------------------------------------------
    def _wait(self, req, peer: int, what: str) -> None:
        """Poll ``req`` until it completes or the timeout passes (then TimeoutError naming ``peer``)."""
        if req.Test():
            return
        deadline = time.monotonic() + self.timeout
        nap = 0.0
        while not req.Test():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"rank {self.rank}: {what} rank {peer} timed out after {self.timeout:g} s{self._context}: "
                    f"the peer died or stalled (abort the MPI job: MPITransport.abort())")
            time.sleep(nap)
            nap = min(self.poll, nap * 2 if nap else 1e-5)

    def _isend(self, dst: int, body: np.ndarray) -> list:
        seq = self._sent[dst]
        self._sent[dst] += 1
        tag = 2 * (seq % _TAGS)
        head = np.frombuffer(_HDR.pack(body.nbytes, seq), np.uint8).copy()
        pend = [(self.comm.Isend([head, self._MPI.BYTE], dst, tag), dst, "sending to")]
        if body.nbytes:
            pend.append((self.comm.Isend([body, self._MPI.BYTE], dst, tag + 1), dst, "sending to"))
        return pend + [(None, (head, body), None)]  # keep the buffers alive until the sends complete

    def _recv(self, src: int) -> np.ndarray:
        seq = self._recvd[src]
        self._recvd[src] += 1
        tag = 2 * (seq % _TAGS)
        head = np.zeros(_HDR.size, np.uint8)
        self._wait(self.comm.Irecv([head, self._MPI.BYTE], src, tag), src, "waiting for a message from")
        n, got_seq = _HDR.unpack(head.tobytes())
        if got_seq != seq:
            raise RuntimeError(f"rank {self.rank}: message {got_seq} from rank {src} arrived where {seq} was expected")
        body = np.zeros(n, np.uint8)
        if n:
            self._wait(self.comm.Irecv([body, self._MPI.BYTE], src, tag + 1), src, "waiting for a message from")
        return body

    def abort(self, code: int = 1) -> None:
        """``MPI_Abort``: stop every rank of the job (after a timeout or any failure). Does not return."""
        self.comm.Abort(int(code))

    def close(self) -> None:
        """Nothing to release: MPI is finalized by mpi4py at exit (kept for TorchTransport's interface)."""
