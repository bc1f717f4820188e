"""The transport interface and the simulated transport: requests, lockstep rounds, copies,
deadlock detection, and transport neutrality (the same generators on a threaded transport)."""

from __future__ import annotations

import queue
import threading

import numpy as np
import pytest

from simdist.collectives import make
from simdist.collectives.simulated import SimulatedTransport
from simdist.collectives.transport import Comm, Recv, Send, SendRecv, copy_payload, drive, payload_nbits


# -- payloads and requests -------------------------------------------------------------------------


def test_payload_nbits_defaults_and_explicit():
    assert payload_nbits(np.zeros(5, np.float64)) == 320
    assert payload_nbits(b"abc") == 24
    assert payload_nbits(bytearray(2), nbits=9) == 9
    assert payload_nbits(np.zeros(3, np.uint8), nbits=0) == 0
    assert payload_nbits((np.zeros(2, np.int64), b"x"), nbits=130) == 130
    assert payload_nbits((np.zeros(2, np.int64), b"x")) == 136
    assert payload_nbits(()) == 0


@pytest.mark.parametrize("nbits", [-1, 25])
def test_payload_nbits_out_of_range_names_nbits(nbits):
    with pytest.raises(ValueError, match="nbits"):
        payload_nbits(b"abc", nbits=nbits)


def test_payload_of_wrong_type_is_type_error():
    with pytest.raises(TypeError, match="payload"):
        payload_nbits([1, 2, 3])
    with pytest.raises(TypeError, match="nbits"):
        payload_nbits(b"a", nbits=2.0)


def test_copy_payload_shares_no_memory():
    a = np.arange(4.0)
    ba = bytearray(b"xy")
    c = copy_payload((a, ba, b"z"))
    assert not np.shares_memory(c[0], a) and isinstance(c[1], bytes) and c[2] == b"z"
    a[0] = 99.0
    ba[0] = 0
    assert c[0][0] == 0.0 and c[1] == b"xy"


def test_comm_builds_transport_neutral_requests():
    c = Comm(1, 4)
    assert (c.rank, c.size) == (1, 4)
    s = c.send(2, b"ab", nbits=12)
    assert isinstance(s, Send) and (s.dst, s.nbits) == (2, 12)
    assert c.recv(0) == Recv(0)
    sr = c.sendrecv(dst=2, payload=np.zeros(1, np.float32), src=0)
    assert isinstance(sr, SendRecv) and (sr.dst, sr.src, sr.nbits) == (2, 0, 32)
    assert repr(sr) == "sendrecv(dst=2, nbits=32, src=0)"
    with pytest.raises(NotImplementedError):
        c.reduced(8)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda c: c.send(1, b"a"), "dst"),  # itself
        (lambda c: c.send(4, b"a"), "dst"),
        (lambda c: c.recv(-1), "src"),
        (lambda c: c.sendrecv(dst=0, payload=b"a", src=1), "src"),
    ],
)
def test_comm_rejects_bad_peers_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call(Comm(1, 4))


def test_comm_rejects_bad_rank_and_size():
    with pytest.raises(ValueError, match="size"):
        Comm(0, 0)
    with pytest.raises(ValueError, match="rank"):
        Comm(3, 3)


# -- the simulated transport ---------------------------------------------------------------------


def _swap(comm, data):
    peer = comm.size - 1 - comm.rank
    return (yield comm.sendrecv(dst=peer, payload=data, src=peer))


def test_swap_delivers_and_records_one_round():
    out, trace = SimulatedTransport(2).run(_swap, [np.array([1.0, 2.0]), np.array([3.0, 4.0])])
    assert out[0].tolist() == [3.0, 4.0] and out[1].tolist() == [1.0, 2.0]
    assert sorted(trace.messages().tolist()) == [[0, 0, 1, 128], [0, 1, 0, 128]]
    assert trace.nrounds == 1


def test_delivered_data_are_copies():
    def algo(comm, data):
        if comm.rank == 0:
            yield comm.send(1, data)
            data[0] = -1.0  # the sender reuses its buffer after the send
            return data
        got = yield comm.recv(0)
        return got

    x = np.array([5.0, 6.0])
    out, _ = SimulatedTransport(2).run(algo, [x, None])
    assert out[1].tolist() == [5.0, 6.0]
    assert not np.shares_memory(out[1], x)


def test_chain_rounds_and_partial_sendrecv():
    """A pipeline 0 -> 1 -> 2: rank 1's sendrecv receives in round 0 but can only send in round 1."""

    def algo(comm, data):
        if comm.rank == 0:
            yield comm.send(1, data)
        elif comm.rank == 1:
            got = yield comm.recv(0)
            comm.reduced(got.nbytes)
            yield comm.send(2, got + data)
        else:
            return (yield comm.recv(1))

    out, trace = SimulatedTransport(3).run(algo, [np.ones(2), np.ones(2), None])
    assert out[2].tolist() == [2.0, 2.0]
    assert trace.messages().tolist() == [[0, 0, 1, 128], [1, 1, 2, 128]]
    assert trace.reductions().tolist() == [[0, 1, 16]]  # at the round the data arrived


def test_sendrecv_parts_complete_independently():
    # rank 0: sendrecv(dst=1, src=2); rank 1 receives from 0 at once; rank 2 sends to 0 only after
    # hearing from 1, so rank 0's send goes in round 0 and its receive in round 2.
    def algo(comm, data):
        r = comm.rank
        if r == 0:
            return (yield comm.sendrecv(dst=1, payload=b"a", src=2, nbits=3))
        if r == 1:
            yield comm.recv(0)
            yield comm.send(2, b"b", nbits=5)
        else:
            yield comm.recv(1)
            yield comm.send(0, b"c", nbits=7)

    out, trace = SimulatedTransport(3).run(algo, [None] * 3)
    assert out[0] == b"c"
    assert trace.messages().tolist() == [[0, 0, 1, 3], [1, 1, 2, 5], [2, 2, 0, 7]]


def test_deadlock_names_waiting_ranks_and_requests():
    def algo(comm, data):
        return (yield comm.recv((comm.rank + 1) % comm.size))

    with pytest.raises(RuntimeError, match=r"deadlock in round 0.*rank 0 waits on recv\(src=1\).*rank 2"):
        SimulatedTransport(3).run(algo, [None] * 3)


def test_deadlock_when_partner_already_finished():
    def algo(comm, data):
        if comm.rank == 1:
            yield comm.send(0, b"x")
            return None
        yield comm.recv(1)
        yield comm.recv(1)  # nobody sends this one

    with pytest.raises(RuntimeError, match=r"deadlock in round 1: .*rank 0 waits on recv\(src=1\).*finished ranks: \[1\]"):
        SimulatedTransport(2).run(algo, [None, None])


def test_bad_algorithms_and_inputs():
    with pytest.raises(TypeError, match="generator"):
        SimulatedTransport(2).run(lambda comm, data: data, [1, 2])

    def yields_junk(comm, data):
        yield 42

    with pytest.raises(TypeError, match="rank 0 yielded int"):
        SimulatedTransport(2).run(yields_junk, [1, 2])
    with pytest.raises(ValueError, match="inputs"):
        SimulatedTransport(2).run(_swap, [1])
    with pytest.raises(ValueError, match="size"):
        SimulatedTransport(0)


def test_exception_in_a_rank_propagates_with_its_rank():
    def algo(comm, data):
        if comm.rank == 1:
            raise KeyError("boom")
        yield comm.recv(1)

    with pytest.raises(KeyError) as info:
        SimulatedTransport(2).run(algo, [None, None])
    assert "virtual rank 1 of 2" in "".join(getattr(info.value, "__notes__", []))


def test_params_are_passed_to_every_rank():
    def algo(comm, data, scale):
        if False:
            yield
        return data * scale

    out, trace = SimulatedTransport(3).run(algo, [1, 2, 3], scale=10)
    assert out == [10, 20, 30] and trace.nrounds == 0


# -- transport neutrality: a threaded one-rank-per-thread transport drives the same generators ------


class _ThreadComm(Comm):
    __slots__ = ("reductions",)

    def __init__(self, rank, size):
        super().__init__(rank, size)
        self.reductions = 0

    def reduced(self, nbytes):
        self.reductions += nbytes


def _run_threaded(algo, inputs):
    """Buffered point-to-point queues, one thread per rank, each rank driven by ``drive``."""
    P = len(inputs)
    boxes = {(s, d): queue.Queue() for s in range(P) for d in range(P) if s != d}
    outputs, errors = [None] * P, []

    def handle(rank, req):
        if isinstance(req, (Send, SendRecv)):
            boxes[(rank, req.dst)].put(copy_payload(req.payload))
        if isinstance(req, (Recv, SendRecv)):
            return boxes[(req.src, rank)].get(timeout=20)
        return None

    def worker(rank):
        try:
            comm = _ThreadComm(rank, P)
            outputs[rank] = drive(algo(comm, inputs[rank]), lambda req: handle(rank, req))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(P)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return outputs


@pytest.mark.parametrize("name", ["ring", "recursive_doubling", "rabenseifner"])
@pytest.mark.parametrize("P", [3, 4, 6])
def test_same_generators_run_on_a_threaded_transport(name, P):
    X = np.random.default_rng(P).standard_normal((P, 11))
    sim, _ = SimulatedTransport(P).run(make(name), list(X))
    real = _run_threaded(make(name), list(X))
    for a, b in zip(sim, real):
        assert np.array_equal(a, b)


def test_allgather_on_a_threaded_transport():
    data = [(bytes([r] * (r + 1)), 8 * r + 1) for r in range(5)]
    real = _run_threaded(make("allgather"), data)
    for out in real:
        assert [(b.tobytes(), n) for b, n in out] == data


def test_drive_refuses_non_generators_and_junk():
    with pytest.raises(TypeError, match="generator"):
        drive(123, lambda r: None)

    def junk(comm, data):
        yield "x"

    with pytest.raises(TypeError, match="requests"):
        drive(junk(Comm(0, 2), None), lambda r: None)
