"""SparCML sparse allreduce (sum), written once per rank over the transport interface [M].

Three algorithms of Renggli et al. (SC19), as generator functions ``algo(comm, data, ...)``
(see :mod:`simdist.collectives.transport`); the wire format of their messages is
:mod:`simdist.collectives.sparse_format` (uint32 index + value items, dense blocks of values).

Input per rank: a 1-D float32/float64 array of length N (its nonzeros are the sparse vector),
or a tuple ``(indices, values, N)`` with strictly increasing int indices in ``[0, N)``. All
ranks must use the same N and dtype. Output: the dense sum (a new length-N array of the dtype),
the same bits on every rank; ``output="sparse"`` returns ``(indices, values)`` instead.

Notation: P ranks, k nonzeros per rank, K nonzeros of the sum, ``ib = 4`` index bytes, ``vb`` value
bytes, an item = ``ib + vb`` bytes, ``P' = 2**floor(lg P)``. Costs are the alpha-beta prices of the
traces (:meth:`simdist.network.AlphaBeta.price`, gamma = 0); for P a power of two they equal the
closed forms of :mod:`analysis.collectives` on the stated inputs (tested):

* ``sparse_recursive_doubling`` (SSAR_Recursive_double, latency-dominated): lg P rounds; in
  round i each rank swaps its current sparse partial sum with rank XOR 2**i and merges (adds on
  common indices). ``lg P alpha + items ib_item beta``, items = ``lg P k`` (identical supports)
  to ``(P - 1) k`` (disjoint supports). Other P: the pre- and post-step of the dense recursive
  doubling (:mod:`.dense`): even ranks < 2(P - P') send their vector to rank + 1 first, and
  receive the result from it at the end.
* ``sparse_split_allgather`` (SSAR_Split_allgather, bandwidth-dominated): the index space is
  cut into P blocks (:func:`~simdist.collectives.dense.chunk_bounds`); in P - 1 rounds each rank
  sends block ``(rank + s) mod P`` of its vector to that block's owner (its P - 1 messages; in
  the alpha-beta pricing this costs as one round of P - 1 messages); owners add the P
  contributions in rank order, then the reduced sparse blocks are allgathered
  (:func:`~simdist.collectives.dense.allgather`: recursive doubling, Bruck for other P).
  ``(P - 1 + lg P) alpha + (k + K)(P - 1)/P item_bytes beta`` when every rank has k/P entries
  in every block and each reduced block has K/P.
* ``sparse_dynamic`` (DSAR_Split_allgather): as the split allgather, but any block (local in
  the first phase, reduced in the second) goes dense once ``nnz (ib + vb) >= L vb`` (the switch
  rule). With ``quantize=`` a compressor (e.g. ``simdist.compressors.make("qsgd", s=255,
  bucket=1024)``), dense reduced blocks are sent as that compressor's payload (tagged; its exact
  bits counted) and every rank, owner included, uses the decoded values -- lossy by design.
  With dense reduced blocks: ``(P - 1 + lg P) alpha + ((P-1)/P k item_bytes + (P-1)/P N vb) beta``.

:func:`choose_sparse_algorithm` picks one from the alpha-beta parameters, N, k and P using the
expected sizes for uniformly random supports (:func:`estimate_costs`).

Example:
    >>> from simdist.collectives.simulated import SimulatedTransport
    >>> X = np.zeros((4, 8)); X[0, 1] = 1.0; X[1, 1] = 2.0; X[2, 6] = 3.0
    >>> out, tr = SimulatedTransport(4).run(sparse_recursive_doubling, list(X))
    >>> out[3].tolist(), tr.nrounds
    ([0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0], 2)

References:
    C. Renggli, S. Ashkboos, M. Aghagolzadeh, D. Alistarh, T. Hoefler, "SparCML: High-Performance
    Sparse Communication for Machine Learning", SC19 (Sections 4-5: SSAR and DSAR algorithms);
    THEORY.md section 6 (the [M] cost forms derived from how the algorithms run).
"""

from __future__ import annotations

import math

import numpy as np

from .dense import Algorithm, _pof2, _real, allgather, chunk_bounds
from .sparse_format import INDEX_BYTES, decode_block, encode_block, encode_quantized, encode_sparse

__all__ = [
    "sparse_recursive_doubling",
    "split_allgather",
    "dynamic_split_allgather",
    "merge",
    "estimate_costs",
    "choose_sparse_algorithm",
    "available",
    "make",
]


def _parse(data):
    """(indices int64, values, N, dtype) from a dense vector or an (indices, values, N) tuple."""
    if isinstance(data, np.ndarray):
        if data.ndim != 1 or data.dtype not in (np.float32, np.float64):
            raise TypeError(f"sparse allreduce data must be a 1-D float32/float64 array, got {data.dtype} "
                            f"of shape {data.shape}")
        idx = np.flatnonzero(data).astype(np.int64)
        return idx, data[idx].copy(), data.shape[0], data.dtype
    if not (isinstance(data, tuple) and len(data) == 3):
        raise TypeError(f"sparse allreduce data must be an array or (indices, values, N), got {type(data).__name__}")
    idx, val, n = data
    idx, val, n = np.asarray(idx, dtype=np.int64).reshape(-1), np.asarray(val), int(n)
    if val.dtype not in (np.float32, np.float64) or val.shape != idx.shape:
        raise TypeError("values must be a float32/float64 array of the indices' length")
    if idx.size and (idx[0] < 0 or idx[-1] >= n or np.any(np.diff(idx) <= 0)):
        raise ValueError(f"indices must be strictly increasing in [0, {n - 1}]")
    if n > 2 ** 32:
        raise ValueError(f"N must be <= 2**32 (32-bit indices on the wire), got {n}")
    return idx.copy(), val.copy(), n, val.dtype


def merge(ia, va, ib, vb):
    """Sum of two sparse vectors (sorted unique indices): ``(union indices, va + vb on them)``.

    The sum is commutative bit for bit, so two partners that merge each other's vectors hold the
    same result.

    Example:
        >>> i, v = merge(np.array([1, 4]), np.array([1.0, 2.0]), np.array([4, 7]), np.array([3.0, 5.0]))
        >>> i.tolist(), v.tolist()
        ([1, 4, 7], [1.0, 5.0, 5.0])
    """
    c = np.concatenate([ia, ib])
    c.sort(kind="stable")  # two sorted runs: timsort merges them in linear time
    u = c[np.concatenate(([True], c[1:] != c[:-1]))] if c.size else c
    out = np.zeros(u.size, dtype=va.dtype)
    out[np.searchsorted(u, ia)] += va
    out[np.searchsorted(u, ib)] += vb
    return u, out


def _finish(idx, val, n, dtype, output):
    if output == "sparse":
        return idx, val
    x = np.zeros(n, dtype=dtype)
    x[idx] = val
    return x


def _check_output(output):
    if output not in ("dense", "sparse"):
        raise ValueError(f"output must be 'dense' or 'sparse', got {output!r}")


def sparse_recursive_doubling(comm, data, *, output: str = "dense"):
    """SSAR_Recursive_double: fold in, lg P' sparse exchanges with merge, fold out."""
    _check_output(output)
    idx, val, n, dt = _parse(data)
    p2, rem = _pof2(comm.size)
    rank = comm.rank

    def swap(dst, src, i, v):
        got = yield comm.sendrecv(dst=dst, payload=encode_sparse(i, v), src=src)
        return decode_block(got, 0, n, dt, "sparse")

    # 1. non-power-of-two pre-step: even ranks < 2 rem hand their vector to rank + 1
    newrank = rank - rem
    if rank < 2 * rem:
        if rank % 2 == 0:
            yield comm.send(rank + 1, encode_sparse(idx, val))
            newrank = -1
        else:
            gi, gv = decode_block((yield comm.recv(rank - 1)), 0, n, dt, "sparse")
            comm.reduced(gv.nbytes)
            idx, val = merge(gi, gv, idx, val)
            newrank = rank // 2
    # 2. recursive doubling among the P' remaining ranks
    if newrank >= 0:
        mask = 1
        while mask < p2:
            dst = _real(newrank ^ mask, rem)
            gi, gv = yield from swap(dst, dst, idx, val)
            comm.reduced(gv.nbytes)
            idx, val = merge(idx, val, gi, gv)
            mask <<= 1
    # 3. post-step: odd ranks < 2 rem send the result back to rank - 1
    if rank < 2 * rem:
        if rank % 2 == 1:
            yield comm.send(rank - 1, encode_sparse(idx, val))
        else:
            idx, val = decode_block((yield comm.recv(rank + 1)), 0, n, dt, "sparse")
    return _finish(idx, val, n, dt, output)


def _split(comm, data, dynamic: bool, quantize, seed: int, output: str):
    _check_output(output)
    idx, val, n, dt = _parse(data)
    P, rank = comm.size, comm.rank
    b = chunk_bounds(n, P)
    cut = np.searchsorted(idx, b)
    mode = "dynamic" if dynamic else "sparse"
    # 1. send each block to its owner; the owner keeps the contributions by source rank
    parts = {rank: (idx[cut[rank]:cut[rank + 1]], val[cut[rank]:cut[rank + 1]])}
    lo, hi = int(b[rank]), int(b[rank + 1])
    for s in range(1, P):
        dst, src = (rank + s) % P, (rank - s) % P
        sl = slice(cut[dst], cut[dst + 1])
        msg = encode_block(idx[sl], val[sl], int(b[dst]), int(b[dst + 1]), dynamic)
        got = yield comm.sendrecv(dst=dst, payload=msg, src=src)
        parts[src] = decode_block(got, lo, hi, dt, mode)
        comm.reduced(parts[src][1].nbytes)
    # 2. the owner adds the P contributions in rank order (the same bits whatever the schedule)
    ri, rv = parts[0]
    for j in range(1, P):
        ri, rv = merge(ri, rv, *parts[j])
    # 3. allgather the reduced blocks (sparse, dense, or quantized by the switch rule)
    if quantize is not None:
        rng = np.random.default_rng([int(seed), rank])
        buf, nbits = encode_quantized(ri, rv, lo, hi, quantize, rng)
        mode = "quantized"
    else:
        buf = encode_block(ri, rv, lo, hi, dynamic)
        nbits = 8 * buf.nbytes
    if P == 1:
        blocks = [(buf, nbits)]
    else:
        blocks = yield from allgather(comm, (buf, nbits))
    out_i, out_v = [], []
    for j, (bj, nb) in enumerate(blocks):
        # the owner decodes its own block too: with a quantizer every rank holds the same values
        bi, bv = decode_block(bj[: (nb + 7) // 8], int(b[j]), int(b[j + 1]), dt, mode, quantize, nb)
        out_i.append(bi)
        out_v.append(bv)
    return _finish(np.concatenate(out_i), np.concatenate(out_v).astype(dt, copy=False), n, dt, output)


def split_allgather(comm, data, *, output: str = "dense"):
    """SSAR_Split_allgather: P - 1 sends to the block owners, reduce, sparse allgather."""
    return (yield from _split(comm, data, False, None, 0, output))


def dynamic_split_allgather(comm, data, *, quantize=None, seed: int = 0, output: str = "dense"):
    """DSAR_Split_allgather: the split allgather with dense (optionally quantized) blocks past the switch.

    Args:
        quantize: None, or a compressor (e.g. ``make("qsgd", s=255, bucket=1024)``) for the
            dense reduced blocks.
        seed: with ``quantize``: the owner of block j draws from ``default_rng([seed, j])``.
    """
    return (yield from _split(comm, data, True, quantize, seed, output))


# -- choosing ------------------------------------------------------------------------------------


def _union(N: int, k: float, m: float) -> float:
    """Expected size of the union of m uniformly random k-subsets of [0, N)."""
    return N * (1.0 - (1.0 - k / N) ** m) if N else 0.0


def estimate_costs(P: int, N: int, k: int, network, value_bytes: int = 4, index_bytes: int = INDEX_BYTES) -> dict:
    """Expected alpha-beta seconds of each algorithm for uniformly random supports of k entries.

    Writes ``U(m) = N (1 - (1 - k/N)^m)`` (expected nonzeros of a sum of m vectors), ``K = U(P)``,
    ``it = index_bytes + value_bytes``, ``P' = 2^floor(lg P)``, ``r = P - P'`` (gamma ignored):

    * sparse_recursive_doubling: ``sum_{i < lg P'} (alpha + U(2^i P/P') it beta)``, plus
      ``2 alpha + (k + K) it beta`` when r > 0 (pre- and post-step);
    * sparse_split_allgather: ``(P-1)(alpha + k/P it beta) + ceil(lg P) alpha + (P-1)/P K it beta``;
    * sparse_dynamic: the same with ``K it`` replaced by ``N value_bytes`` once ``K it >= N value_bytes``.

    For P a power of two, k = K (identical supports) or K = P k (disjoint) these are the
    :mod:`analysis.collectives` forms.
    """
    a, b = network.alpha, network.beta
    it = index_bytes + value_bytes
    if P == 1:
        return {name: 0.0 for name in _ALGORITHMS}
    p2, r = _pof2(P)
    K = _union(N, k, P)
    srd = sum(a + _union(N, k, (2 ** i) * P / p2) * it * b for i in range(p2.bit_length() - 1))
    if r:
        srd += 2 * a + (k + K) * it * b
    phase1 = (P - 1) * (a + k / P * it * b)
    lg = math.ceil(math.log2(P))
    split = phase1 + lg * a + (P - 1) / P * K * it * b
    dyn = phase1 + lg * a + (P - 1) / P * min(K * it, N * value_bytes) * b
    return {"sparse_recursive_doubling": srd, "sparse_split_allgather": split, "sparse_dynamic": dyn}


def choose_sparse_algorithm(P: int, N: int, k: int, network, value_bytes: int = 4) -> str:
    """The algorithm with the least :func:`estimate_costs` (ties: the earlier of
    recursive doubling, split allgather, dynamic).

    Example:
        >>> from simdist.network import AlphaBeta
        >>> choose_sparse_algorithm(8, 10**6, 10, AlphaBeta(1e-5, 1e-10))      # latency-dominated
        'sparse_recursive_doubling'
        >>> choose_sparse_algorithm(8, 10**6, 10**5, AlphaBeta(1e-6, 1e-9))   # bandwidth-dominated
        'sparse_dynamic'
    """
    costs = estimate_costs(int(P), int(N), int(k), network, value_bytes)
    return min(costs, key=lambda name: (costs[name], list(costs).index(name)))


_ALGORITHMS = {
    "sparse_recursive_doubling": Algorithm("sparse_recursive_doubling", "allreduce", sparse_recursive_doubling),
    "sparse_split_allgather": Algorithm("sparse_split_allgather", "allreduce", split_allgather),
    "sparse_dynamic": Algorithm("sparse_dynamic", "allreduce", dynamic_split_allgather),
}


def available() -> list[str]:
    """Names of the sparse allreduces."""
    return sorted(_ALGORITHMS)


def make(name: str) -> Algorithm:
    """The sparse allreduce named ``name``; an unknown name is a ValueError listing them."""
    if name not in _ALGORITHMS:
        raise ValueError(f"sparse allreduce must be one of {available()}, got {name!r}")
    return _ALGORITHMS[name]
