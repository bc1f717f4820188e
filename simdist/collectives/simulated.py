"""The simulated transport: P virtual ranks in one process, advanced in lockstep rounds.

Scheduling (one *round* per iteration):

1. Every rank whose previous request completed runs (its generator resumes with the
   result) until it yields its next request or returns.
2. Matching: a send part ``src -> dst`` completes in this round when ``dst`` has a pending
   receive part from ``src`` (a ``send`` or the send half of a ``sendrecv`` against a
   ``recv`` or the receive half of a ``sendrecv``). Each completed transfer is recorded in
   the trace as ``(round, src, dst, nbits)`` and delivers a *copy* of the payload.
3. A request whose parts have all completed completes in this round; ``comm.reduced``
   calls the rank makes before its next request are recorded at this round (so a rank
   that receives and then reduces does both in the same round). A rank with an
   unmatched part waits for a later round.
4. A round in which nothing matches while some rank still waits is a deadlock: a
   ``RuntimeError`` names every waiting rank and its request.

Ranks that can proceed do so: a rank whose partner is free runs ahead of ranks stalled
elsewhere (e.g. the high ranks of a non-power-of-two recursive doubling in the extra
pre-step round). The trace therefore shows when each message could go at the earliest
under synchronous rounds, which is what the alpha-beta pricing of
:mod:`simdist.collectives.trace` charges.

Example:
    >>> def swap(comm, data):
    ...     peer = comm.size - 1 - comm.rank
    ...     return (yield comm.sendrecv(dst=peer, payload=data, src=peer))
    >>> out, trace = SimulatedTransport(2).run(swap, [np.array([1.0]), np.array([2.0])])
    >>> [o.tolist() for o in out], trace.messages().tolist()
    ([[2.0], [1.0]], [[0, 0, 1, 64], [0, 1, 0, 64]])
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np

from .._validate import check_int
from .trace import Trace
from .transport import Comm, Recv, Request, Send, SendRecv, Transport, copy_payload

__all__ = ["SimulatedTransport"]


class _SimComm(Comm):
    """A virtual rank's handle: reductions go to the shared trace at the rank's current round."""

    __slots__ = ("_trace", "_round")

    def __init__(self, rank: int, size: int, trace: Trace) -> None:
        super().__init__(rank, size)
        self._trace = trace
        self._round = 0

    def reduced(self, nbytes: int) -> None:
        self._trace.add_reduction(self._round, self._rank, check_int("nbytes", nbytes, low=0))


class _Pending:
    """A rank's outstanding request and which of its parts are still open."""

    __slots__ = ("req", "send_open", "recv_open", "result")

    def __init__(self, req: Request) -> None:
        self.req = req
        self.send_open = isinstance(req, (Send, SendRecv))
        self.recv_open = isinstance(req, (Recv, SendRecv))
        self.result = None


class SimulatedTransport(Transport):
    """Runs a collective on ``size`` virtual ranks in one process and records its trace.

    Args:
        size: number of virtual ranks P (>= 1).
    """

    def run(self, algo: Callable, inputs: list, **params):
        """Run ``algo(comm, inputs[rank], **params)`` on every rank.

        Args:
            algo: a generator function written per rank (see :mod:`.transport`).
            inputs: one input per rank (``len(inputs) == size``).
            **params: passed to every rank's ``algo``.

        Returns:
            ``(outputs, trace)``: the ranks' return values in rank order and the
            :class:`~simdist.collectives.trace.Trace` of the run.

        Raises:
            RuntimeError: deadlock (names the waiting ranks and their requests).
            TypeError: ``algo`` is not a generator function or yields a non-request.
        """
        P = self.size
        if len(inputs) != P:
            raise ValueError(f"inputs must hold one entry per rank ({P}), got {len(inputs)}")
        trace = Trace(P)
        comms = [_SimComm(r, P, trace) for r in range(P)]
        gens = []
        for r in range(P):
            g = algo(comms[r], inputs[r], **params)
            if not isinstance(g, Generator):
                raise TypeError(f"algo must be a generator function (yielding comm requests), got {type(g).__name__}")
            gens.append(g)
        pending: list[_Pending | None] = [None] * P
        done = [False] * P
        outputs = [None] * P

        def advance(r: int, value) -> None:
            # 1. run rank r until its next request (or its return)
            try:
                req = gens[r].send(value)
            except StopIteration as stop:
                done[r], outputs[r], pending[r] = True, stop.value, None
                return
            except Exception as exc:
                exc.add_note(f"raised by virtual rank {r} of {P}")
                raise
            if not isinstance(req, Request):
                raise TypeError(f"rank {r} yielded {type(req).__name__}; an algorithm must yield comm requests")
            pending[r] = _Pending(req)

        for r in range(P):
            advance(r, None)
        rnd = 0
        while not all(done):
            # 2. match open send parts against open receive parts
            matched = [
                (r, p.req.dst)
                for r, p in enumerate(pending)
                if p is not None and p.send_open
                and (q := pending[p.req.dst]) is not None and q.recv_open and q.req.src == r
            ]
            if not matched:
                raise RuntimeError(self._deadlock_message(rnd, pending, done))
            for src, dst in matched:
                ps, pd = pending[src], pending[dst]
                trace.add_message(rnd, src, dst, ps.req.nbits)
                pd.result = copy_payload(ps.req.payload)
                ps.send_open = pd.recv_open = False
            # 3. complete the requests whose parts are all done; their ranks run on
            finished = sorted({r for pair in matched for r in pair})
            for r in finished:
                p = pending[r]
                if not (p.send_open or p.recv_open):
                    comms[r]._round = rnd
                    advance(r, p.result)
            rnd += 1
        return outputs, trace

    @staticmethod
    def _deadlock_message(rnd: int, pending, done) -> str:
        waiting = [f"rank {r} waits on {p.req!r}" for r, p in enumerate(pending) if p is not None]
        finished = [r for r, d in enumerate(done) if d]
        return (
            f"deadlock in round {rnd}: no request can complete; " + "; ".join(waiting)
            + (f"; finished ranks: {finished}" if finished else "")
        )
