"""The transport interface: what a collective algorithm, written once per rank, may ask for.

A collective algorithm is a Python generator function ``algo(comm, data, **params)`` run
by every rank (SPMD). It yields small, transport-neutral *requests* built by its
:class:`Comm` and receives their results; it returns its output (PEP 380)::

    def swap(comm, data):
        peer = comm.size - 1 - comm.rank
        got = yield comm.sendrecv(dst=peer, payload=data, src=peer)
        return got

Requests (all blocking from the rank's point of view):

* ``comm.send(dst, payload, nbits=None)`` -> ``None``
* ``comm.recv(src)`` -> the payload ``src`` sent
* ``comm.sendrecv(dst, payload, src, nbits=None)`` -> the payload ``src`` sent
  (the send and the receive proceed independently, as ``MPI_Sendrecv``)

``comm.reduced(nbytes)`` is a plain call (not yielded): it records a local reduction of
``nbytes`` bytes, the gamma term of the alpha-beta model.

Payloads: a numpy array (a dense chunk: ``nbits = 8 * nbytes``), raw ``bytes`` /
``bytearray`` / ``uint8`` arrays with an explicit exact ``nbits`` (a compressed message),
or a tuple of such parts (several blocks in one message, e.g. in an allgather), whose
``nbits`` defaults to the sum of the parts' bytes times 8. ``nbits`` may be given
explicitly for any payload and must lie in ``[0, 8 * total bytes]``. The trace counts
payload bits only; length framing that a real transport adds is not counted.

A transport drives these generators: :class:`simdist.collectives.simulated.SimulatedTransport`
runs P virtual ranks in one process; a real transport (torch.distributed, MPI) runs one
rank per process and answers each request with a real send/recv through :func:`drive`.
Nothing simulator-specific appears in an algorithm (SimPy's relation between its
simulated and real-time environments).

References:
    R. Thakur, R. Rabenseifner, W. Gropp, "Optimization of Collective Communication
    Operations in MPICH", IJHPCA 19(1), 2005 (the algorithms written on this interface).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np

from .._validate import check_int

__all__ = ["Send", "Recv", "SendRecv", "Request", "Comm", "Transport", "payload_nbits", "copy_payload", "drive"]

_BYTES = (bytes, bytearray, memoryview)


def _part_nbytes(part) -> int:
    if isinstance(part, np.ndarray):
        return int(part.nbytes)
    if isinstance(part, _BYTES):
        return memoryview(part).nbytes
    raise TypeError(
        f"payload must be a numpy array, bytes/bytearray, or a tuple of them, got {type(part).__name__}"
    )


def payload_nbits(payload, nbits=None) -> int:
    """Exact length in bits of ``payload``: ``nbits`` if given (checked), else 8 x its bytes.

    Example:
        >>> payload_nbits(np.zeros(3, np.float32)), payload_nbits(b"ab", nbits=11)
        (96, 11)
        >>> payload_nbits((b"a", np.zeros(2, np.uint8)))
        24
    """
    parts = payload if isinstance(payload, tuple) else (payload,)
    total = 8 * sum(_part_nbytes(p) for p in parts)
    if nbits is None:
        return total
    return check_int("nbits", nbits, low=0, high=total)


def copy_payload(payload):
    """A copy of ``payload`` sharing no memory with it (bytes are immutable and kept)."""
    if isinstance(payload, tuple):
        return tuple(copy_payload(p) for p in payload)
    if isinstance(payload, np.ndarray):
        return payload.copy()
    if isinstance(payload, bytes):
        return payload
    return bytes(payload)


class Request:
    """Base class of the requests an algorithm yields (tiny, transport-neutral records)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, repr=False)
class Send(Request):
    """Send ``payload`` (``nbits`` exact bits) to rank ``dst``; the result is ``None``."""

    dst: int
    payload: object
    nbits: int

    def __repr__(self) -> str:
        return f"send(dst={self.dst}, nbits={self.nbits})"


@dataclass(frozen=True, slots=True, repr=False)
class Recv(Request):
    """Receive one message from rank ``src``; the result is its payload."""

    src: int

    def __repr__(self) -> str:
        return f"recv(src={self.src})"


@dataclass(frozen=True, slots=True, repr=False)
class SendRecv(Request):
    """Send to ``dst`` and receive from ``src`` (independently); the result is the received payload."""

    dst: int
    payload: object
    nbits: int
    src: int

    def __repr__(self) -> str:
        return f"sendrecv(dst={self.dst}, nbits={self.nbits}, src={self.src})"


class Comm:
    """One rank's handle: ``rank``, ``size`` and the request constructors.

    Transports subclass it only to implement :meth:`reduced` (where a reduction is
    recorded); the request constructors are shared, so every transport sees the same
    requests.

    Args:
        rank: this rank, in ``[0, size - 1]``.
        size: number of ranks (>= 1).

    Example:
        >>> c = Comm(0, 4)
        >>> c.sendrecv(dst=1, payload=np.zeros(2), src=3)
        sendrecv(dst=1, nbits=128, src=3)
    """

    __slots__ = ("_rank", "_size")

    def __init__(self, rank: int, size: int) -> None:
        self._size = check_int("size", size, low=1)
        self._rank = check_int("rank", rank, low=0, high=self._size - 1)

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def size(self) -> int:
        return self._size

    def _peer(self, name: str, peer) -> int:
        peer = check_int(name, peer, low=0, high=self._size - 1)
        if peer == self._rank:
            raise ValueError(f"{name} must differ from this rank ({self._rank}): a rank does not message itself")
        return peer

    def send(self, dst: int, payload, nbits: int | None = None) -> Send:
        """Request: send ``payload`` to ``dst``."""
        return Send(self._peer("dst", dst), payload, payload_nbits(payload, nbits))

    def recv(self, src: int) -> Recv:
        """Request: receive a payload from ``src``."""
        return Recv(self._peer("src", src))

    def sendrecv(self, dst: int, payload, src: int, nbits: int | None = None) -> SendRecv:
        """Request: send ``payload`` to ``dst`` and receive from ``src``."""
        return SendRecv(self._peer("dst", dst), payload, payload_nbits(payload, nbits), self._peer("src", src))

    def reduced(self, nbytes: int) -> None:
        """Record that this rank reduced ``nbytes`` bytes locally (gamma term)."""
        raise NotImplementedError


class Transport:
    """Runs a collective algorithm on ``size`` ranks: ``run(algo, inputs, **params) -> (outputs, trace)``."""

    def __init__(self, size: int) -> None:
        self.size = check_int("size", size, low=1)

    def run(self, algo: Callable, inputs: list, **params):
        raise NotImplementedError


def drive(gen: Generator, handle: Callable[[Request], object]):
    """Run one rank's algorithm generator to completion, answering each request with ``handle``.

    This is all a one-rank-per-process transport needs: ``handle`` performs the blocking
    send/recv of a request and returns its result.

    Args:
        gen: the generator ``algo(comm, data, **params)``.
        handle: ``request -> result``.

    Returns:
        The generator's return value.

    Example:
        >>> def one(comm, data):
        ...     got = yield comm.recv(1)
        ...     return data + got
        >>> drive(one(Comm(0, 2), 1), lambda req: 41)
        42
    """
    if not isinstance(gen, Generator):
        raise TypeError(f"a collective algorithm must be a generator function, got {type(gen).__name__}")
    result = None
    while True:
        try:
            req = gen.send(result)
        except StopIteration as stop:
            return stop.value
        if not isinstance(req, Request):
            raise TypeError(f"an algorithm must yield Comm requests, got {type(req).__name__}")
        result = handle(req)
