"""Dense collectives written once per rank (SPMD): ring, recursive doubling and Rabenseifner
allreduce (sum), and allgather of exact-length byte payloads; a registry by name.

Each algorithm is a generator function ``algo(comm, data)`` over the transport interface
of :mod:`simdist.collectives.transport`; it never asks which transport runs it. Allreduce
inputs are 1-D numeric arrays of the same length ``d`` on every rank; every rank returns
the same new array (the input is not modified).

Notation: p ranks, n = bytes of one rank's vector, p' = 2**floor(lg p), r = p - p'.
Costs below are the alpha-beta prices of the traces these algorithms produce under the
convention of :mod:`simdist.collectives.trace` (a round costs its slowest rank; a rank's
time = its sends' alpha + beta*bytes + gamma*bytes it reduces), derived from the
algorithms [D]; for powers of two they are Thakur-Rabenseifner-Gropp 2005's formulas [V].

* ``ring``: reduce-scatter then allgather around the ring, p chunks as equal as possible
  (sizes ceil/floor(d/p), larger first; empty chunks when d < p are still sent, as
  0-bit messages). 2(p-1) rounds; cost 2(p-1)(alpha + c beta) + (p-1) c gamma with c the
  largest chunk's bytes (= n/p when p divides d): 2(p-1) alpha + 2 n (p-1)/p beta +
  n (p-1)/p gamma.
* ``recursive_doubling``: exchange whole vectors with rank XOR 2**k, k = 0..lg p - 1:
  lg p rounds, lg p (alpha + n beta + n gamma). Non-power-of-two (Thakur et al. Sec. 4):
  (1) among ranks < 2r the even ones send their vector to rank+1, which reduces;
  (2) the odd ranks < 2r and the ranks >= 2r (new ranks 0..p'-1) run the power-of-two
  algorithm; (3) the odd ranks send the result back to rank-1. lg p' + 2 rounds; cost
  R0 + lg p' (alpha + n beta + n gamma) + (alpha + n beta), where the first round costs
  R0 = alpha + n beta + n gamma if two ranks >= 2r are step-0 partners (then they do step
  (2)'s first exchange in round 0: some even new rank q >= r has q + 1 < p'), else
  R0 = max(alpha + n beta, n gamma) (sender and reducer are different ranks).
* ``rabenseifner``: recursive-halving reduce-scatter (partner distance p/2, p/4, ..., 1;
  the vector cut into p blocks as equal as possible, a rank keeps the half holding its
  block) then recursive-doubling allgather (distance 1, 2, ..., p/2). 2 lg p rounds; cost
  2 lg p alpha + 2 n (p-1)/p beta + n (p-1)/p gamma. Non-power-of-two: the same pre- and
  post-step as recursive doubling around the algorithm on p' ranks (p' blocks): 2 lg p' + 2
  rounds; cost R0 + 2 lg p' alpha + 2 n (p'-1)/p' beta + n (p'-1)/p' gamma + (alpha + n beta)
  with R0 = max(alpha + n beta, n gamma, [alpha + (n/2)(beta + gamma) if r <= p'/2 - 1]).
  (The bracket: new ranks r + p'/2 and r exist among the ranks >= 2r and do their first
  halving exchange in round 0.)
* ``allgather``: each rank contributes ``(buffer, nbits)`` (or a bare array/bytes:
  nbits = 8 x bytes) and every rank returns the list of all p contributions, in rank order,
  as ``(uint8 array, nbits)`` pairs. A message carrying several blocks has nbits = the sum
  of theirs (its parts are a small header of the blocks' lengths, framing that is not
  counted, then the blocks). Power of two: recursive doubling (exchange the held blocks with rank XOR 2**k),
  lg p rounds. Other p: Bruck et al. 1997 (round k: send the first min(2**k, p - 2**k) held
  blocks to rank - 2**k, receive from rank + 2**k), ceil(lg p) rounds. With blocks of
  n/p bytes both cost ceil(lg p) alpha + n (p-1)/p beta.

Example:
    >>> from simdist.collectives.simulated import SimulatedTransport
    >>> X = np.arange(12.0).reshape(3, 4)
    >>> out, trace = SimulatedTransport(3).run(make("ring"), list(X))
    >>> out[0].tolist(), trace.nrounds
    ([12.0, 15.0, 18.0, 21.0], 4)

References:
    R. Thakur, R. Rabenseifner, W. Gropp, "Optimization of Collective Communication
    Operations in MPICH", IJHPCA 19(1):49-66, 2005 (Sec. 4: allreduce; non-power-of-two).
    J. Bruck, C.-T. Ho, S. Kipnis, E. Upfal, D. Weathersby, "Efficient algorithms for
    all-to-all communications in multiport message-passing systems", IEEE TPDS 8(11), 1997.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ring_allreduce",
    "recursive_doubling_allreduce",
    "rabenseifner_allreduce",
    "allgather",
    "chunk_bounds",
    "Algorithm",
    "register",
    "make",
    "available",
]


def chunk_bounds(d: int, p: int) -> np.ndarray:
    """(p+1,) offsets cutting ``d`` entries into ``p`` chunks as equal as possible, larger first.

    Example:
        >>> chunk_bounds(10, 4).tolist()
        [0, 3, 6, 8, 10]
    """
    q, rem = divmod(int(d), int(p))
    sizes = np.full(p, q, dtype=np.int64)
    sizes[:rem] += 1
    return np.concatenate(([0], np.cumsum(sizes)))


def _vector(data) -> np.ndarray:
    if not isinstance(data, np.ndarray) or data.ndim != 1:
        raise TypeError(f"allreduce data must be a 1-D numpy array per rank, got {type(data).__name__}"
                        + (f" of shape {data.shape}" if isinstance(data, np.ndarray) else ""))
    return data.copy()


def _pof2(p: int) -> tuple[int, int]:
    """(p', r): the largest power of two <= p and the surplus p - p'."""
    p2 = 1 << (p.bit_length() - 1)
    return p2, p - p2


def _fold_in(comm, x):
    """Non-power-of-two pre-step (Thakur Sec. 4). Returns (x, new rank or -1, p', r)."""
    p2, rem = _pof2(comm.size)
    rank = comm.rank
    if rank < 2 * rem:
        if rank % 2 == 0:
            yield comm.send(rank + 1, x)
            return x, -1, p2, rem
        got = yield comm.recv(rank - 1)
        x += got
        comm.reduced(got.nbytes)
        return x, rank // 2, p2, rem
    return x, rank - rem, p2, rem


def _fold_out(comm, x, rem):
    """Non-power-of-two post-step: odd ranks < 2r send the result to rank - 1."""
    rank = comm.rank
    if rank < 2 * rem:
        if rank % 2 == 1:
            yield comm.send(rank - 1, x)
        else:
            x = yield comm.recv(rank + 1)
    return x


def _real(newrank: int, rem: int) -> int:
    return 2 * newrank + 1 if newrank < rem else newrank + rem


def ring_allreduce(comm, data):
    """Ring allreduce (sum): 1. reduce-scatter, 2. allgather, p-1 steps each."""
    x = _vector(data)
    p, rank = comm.size, comm.rank
    if p == 1:
        return x
    b = chunk_bounds(x.shape[0], p)
    right, left = (rank + 1) % p, (rank - 1) % p
    # 1. reduce-scatter: after step s, chunk (rank - s - 1) holds s + 2 contributions
    for s in range(p - 1):
        cs, cr = (rank - s) % p, (rank - s - 1) % p
        got = yield comm.sendrecv(dst=right, payload=x[b[cs]:b[cs + 1]], src=left)
        x[b[cr]:b[cr + 1]] += got
        comm.reduced(got.nbytes)
    # 2. allgather: rank holds the reduced chunk (rank + 1); pass the reduced chunks along
    for s in range(p - 1):
        cs, cr = (rank + 1 - s) % p, (rank - s) % p
        x[b[cr]:b[cr + 1]] = yield comm.sendrecv(dst=right, payload=x[b[cs]:b[cs + 1]], src=left)
    return x


def recursive_doubling_allreduce(comm, data):
    """Recursive-doubling allreduce (sum): 1. fold in, 2. lg p' exchanges, 3. fold out."""
    x = _vector(data)
    # 1. non-power-of-two pre-step
    x, newrank, p2, rem = yield from _fold_in(comm, x)
    # 2. exchange whole vectors with new rank XOR mask
    if newrank >= 0:
        mask = 1
        while mask < p2:
            dst = _real(newrank ^ mask, rem)
            got = yield comm.sendrecv(dst=dst, payload=x, src=dst)
            x += got
            comm.reduced(got.nbytes)
            mask <<= 1
    # 3. non-power-of-two post-step
    return (yield from _fold_out(comm, x, rem))


def rabenseifner_allreduce(comm, data):
    """Rabenseifner allreduce (sum): 1. fold in, 2. recursive-halving reduce-scatter,
    3. recursive-doubling allgather, 4. fold out."""
    x = _vector(data)
    # 1. non-power-of-two pre-step
    x, newrank, p2, rem = yield from _fold_in(comm, x)
    if newrank >= 0 and p2 > 1:
        b = chunk_bounds(x.shape[0], p2)
        lo, hi = 0, p2  # block range this rank is responsible for
        # 2. reduce-scatter: halve the block range, partner distance p'/2 .. 1
        mask = p2 >> 1
        while mask >= 1:
            dst = _real(newrank ^ mask, rem)
            mid = (lo + hi) // 2
            (klo, khi), (slo, shi) = ((lo, mid), (mid, hi)) if newrank & mask == 0 else ((mid, hi), (lo, mid))
            got = yield comm.sendrecv(dst=dst, payload=x[b[slo]:b[shi]], src=dst)
            x[b[klo]:b[khi]] += got
            comm.reduced(got.nbytes)
            lo, hi = klo, khi
            mask >>= 1
        # 3. allgather: double the block range, partner distance 1 .. p'/2
        mask = 1
        while mask < p2:
            dst = _real(newrank ^ mask, rem)
            olo, ohi = (hi, hi + mask) if newrank & mask == 0 else (lo - mask, lo)
            x[b[olo]:b[ohi]] = yield comm.sendrecv(dst=dst, payload=x[b[lo]:b[hi]], src=dst)
            lo, hi = min(lo, olo), max(hi, ohi)
            mask <<= 1
    # 4. non-power-of-two post-step
    return (yield from _fold_out(comm, x, rem))


def _block(data) -> tuple[np.ndarray, int]:
    from .transport import payload_nbits

    buf, nbits = data if isinstance(data, tuple) else (data, None)
    if isinstance(buf, np.ndarray):
        arr = np.ascontiguousarray(buf).reshape(-1).view(np.uint8).copy()
    elif isinstance(buf, (bytes, bytearray, memoryview)):
        arr = np.frombuffer(bytes(buf), dtype=np.uint8).copy()
    else:
        raise TypeError(f"allgather data must be (buffer, nbits), an array or bytes, got {type(buf).__name__}")
    return arr, payload_nbits(arr, nbits)


def allgather(comm, data):
    """Allgather of exact-length payloads: recursive doubling (p a power of two) or Bruck."""
    p, rank = comm.size, comm.rank
    buf, nbits = _block(data)
    blocks: dict[int, tuple[np.ndarray, int]] = {rank: (buf, nbits)}

    def message(ids):
        # parts: a header of the blocks' exact lengths (framing, not counted), then the blocks
        lens = np.array([blocks[i][1] for i in ids], dtype=np.int64)
        return (lens,) + tuple(blocks[i][0] for i in ids), int(lens.sum())

    if p & (p - 1) == 0:
        # recursive doubling: hold the aligned group of size mask; swap it with the partner's
        mask = 1
        while mask < p:
            dst = rank ^ mask
            mine = range(rank & ~(mask - 1), (rank & ~(mask - 1)) + mask)
            theirs = range(dst & ~(mask - 1), (dst & ~(mask - 1)) + mask)
            parts, nb = message(mine)
            got = yield comm.sendrecv(dst=dst, payload=parts, src=dst, nbits=nb)
            _store(blocks, theirs, got)
            mask <<= 1
    else:
        # Bruck: hold blocks rank, rank+1, ..., rank+cnt-1 (mod p)
        dist = 1
        while dist < p:
            m = min(dist, p - dist)
            parts, nb = message([(rank + i) % p for i in range(m)])
            got = yield comm.sendrecv(dst=(rank - dist) % p, payload=parts, src=(rank + dist) % p, nbits=nb)
            _store(blocks, [(rank + dist + i) % p for i in range(m)], got)
            dist <<= 1
    return [blocks[i] for i in range(p)]


def _store(blocks, ids, parts) -> None:
    lens = parts[0]
    for i, buf, nb in zip(ids, parts[1:], lens.tolist()):
        blocks[i] = (buf, nb)


@dataclass(frozen=True)
class Algorithm:
    """A registered collective: ``name``, ``kind`` ("allreduce" or "allgather") and its
    per-rank generator function; calling it calls the function."""

    name: str
    kind: str
    fn: Callable

    def __call__(self, comm, data, **params):
        return self.fn(comm, data, **params)


_REGISTRY: dict[str, Algorithm] = {}


def register(name: str, kind: str, fn: Callable) -> Algorithm:
    """Register ``fn`` under ``name``; a duplicate name is a ValueError."""
    if kind not in ("allreduce", "allgather"):
        raise ValueError(f"kind must be 'allreduce' or 'allgather', got {kind!r}")
    if name in _REGISTRY:
        raise ValueError(f"a collective named {name!r} is already registered")
    _REGISTRY[name] = alg = Algorithm(name, kind, fn)
    return alg


def available(kind: str | None = None) -> list[str]:
    """Sorted names of the registered collectives (of one ``kind`` if given)."""
    return sorted(n for n, a in _REGISTRY.items() if kind is None or a.kind == kind)


def make(name: str) -> Algorithm:
    """The collective registered as ``name``; an unknown name is a ValueError listing them."""
    if name not in _REGISTRY:
        raise ValueError(f"collective must be one of {available()}, got {name!r}")
    return _REGISTRY[name]


register("ring", "allreduce", ring_allreduce)
register("recursive_doubling", "allreduce", recursive_doubling_allreduce)
register("rabenseifner", "allreduce", rabenseifner_allreduce)
register("allgather", "allgather", allgather)
