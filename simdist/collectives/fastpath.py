"""Analytic fast path for the simulator's hot loop: the dense collectives' result and exact
trace without running generators.

* :func:`allreduce_sum` ``(X (P, d), algorithm) -> (sum, trace)``: one Numba pass over X that
  adds the rows in exactly the order the executed algorithm does (ring: chunk c summed
  over ranks c, c+1, ..., c-1; recursive doubling: the non-power-of-two fold, then a tree
  pairing new ranks q and q XOR 1 first; Rabenseifner: the fold, then a tree pairing q and
  q + p'/2 first), so the sum is bit-identical to every rank's output of
  :mod:`simdist.collectives.dense` (float addition is commutative, so who adds to whom
  does not matter, only the tree). The trace depends only on (algorithm, P, d, itemsize)
  and is built once with numpy and cached; each call returns a copy.
* :func:`allgather_bits` ``(nbits (P,), algorithm) -> trace``: the trace of
  :func:`simdist.collectives.dense.allgather` for payloads of those exact lengths.

Rounds follow the simulated transport's schedule (:mod:`.simulated`): in a non-power-of-two
recursive doubling or Rabenseifner, a pair of ranks that did not take part in the extra
pre-step exchanges as soon as both are free; every other exchange happens at
max(ready(q), ready(partner)).

Tests check ``trace == executed trace`` (:meth:`Trace.__eq__`) and the sums for many P and d.

Example:
    >>> X = np.arange(8.0).reshape(4, 2)
    >>> s, t = allreduce_sum(X, "rabenseifner")
    >>> s.tolist(), t.nrounds, t.total_bits
    ([12.0, 16.0], 4, 768)

References:
    R. Thakur, R. Rabenseifner, W. Gropp, IJHPCA 19(1), 2005 (the algorithms); J. Bruck et
    al., IEEE TPDS 8(11), 1997 (allgather for non-power-of-two P).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

from .._validate import check_choice, check_int
from .dense import _pof2, available, chunk_bounds
from .trace import Trace

__all__ = ["allreduce_sum", "allgather_bits", "allreduce_trace"]

_TILE = 512


@njit(cache=True)
def _add(dst, a, b):  # pragma: no cover - compiled
    for j in range(dst.shape[0]):
        dst[j] = a[j] + b[j]


@njit(cache=True)
def _iadd(acc, b):  # pragma: no cover - compiled
    for j in range(acc.shape[0]):
        acc[j] += b[j]


@njit(cache=True)
def _ring_sum(X, bounds, out):  # pragma: no cover - compiled
    # chunk c = ((x_c + x_{c+1}) + x_{c+2}) + ... + x_{c-1}, as the ring's reduce-scatter adds it
    P = X.shape[0]
    for c in range(P):
        lo, hi = bounds[c], bounds[c + 1]
        acc = X[c, lo:hi].copy()
        for k in range(1, P):
            _iadd(acc, X[(c + k) % P, lo:hi])
        out[lo:hi] = acc


@njit(cache=True)
def _tree_sum(X, p2, rem, adjacent, out):  # pragma: no cover - compiled
    # per column tile: 1. fold (new rank i < rem holds x[2i+1] + x[2i], others x[i + rem]);
    # 2. the tree pairing (2i, 2i+1) (recursive doubling) or (i, i + h) (Rabenseifner).
    # Level one reads X directly; results overwrite slots no later pair still needs.
    d = X.shape[1]
    buf = np.empty((max(p2, 1), _TILE), X.dtype)
    for j0 in range(0, d, _TILE):
        j1 = min(j0 + _TILE, d)
        w = j1 - j0
        if p2 == 1:
            out[j0:j1] = X[0, j0:j1]
            continue
        n = p2
        first = True
        while n > 1:
            h = n // 2
            for i in range(h):
                a = 2 * i if adjacent else i
                b = 2 * i + 1 if adjacent else i + h
                if first:
                    ra = X[a + rem, j0:j1]
                    if a < rem:
                        _add(buf[a, :w], X[2 * a + 1, j0:j1], X[2 * a, j0:j1])
                        ra = buf[a, :w]
                    rb = X[b + rem, j0:j1]
                    if b < rem:
                        _add(buf[b, :w], X[2 * b + 1, j0:j1], X[2 * b, j0:j1])
                        rb = buf[b, :w]
                    _add(buf[i, :w], ra, rb)
                elif a == i:
                    _iadd(buf[i, :w], buf[b, :w])
                else:
                    _add(buf[i, :w], buf[a, :w], buf[b, :w])
            first = False
            n = h
        out[j0:j1] = buf[0, :w]


def _real(q: np.ndarray, rem: int) -> np.ndarray:
    return np.where(q < rem, 2 * q + 1, q + rem)


def _fold_events(rem: int, n: int):
    i = np.arange(rem)
    msgs = np.stack([np.zeros(rem, np.int64), 2 * i, 2 * i + 1, np.full(rem, 8 * n)], axis=1)
    reds = np.stack([np.zeros(rem, np.int64), 2 * i + 1, np.full(rem, n)], axis=1)
    return msgs, reds


def _ring_events(P: int, d: int, itemsize: int):
    sizes = np.diff(chunk_bounds(d, P)) * itemsize
    s, r = np.meshgrid(np.arange(P - 1), np.arange(P), indexing="ij")
    s, r = s.ravel(), r.ravel()
    right = (r + 1) % P
    rs = np.stack([s, r, right, 8 * sizes[(r - s) % P]], axis=1)
    ag = np.stack([s + P - 1, r, right, 8 * sizes[(r + 1 - s) % P]], axis=1)
    reds = np.stack([s, r, sizes[(r - s - 1) % P]], axis=1)
    return [rs, ag], [reds]


def _butterfly_events(P: int, d: int, itemsize: int, halving: bool):
    """Recursive doubling (halving=False) or Rabenseifner (True), with the fold for any P."""
    p2, rem = _pof2(P)
    n = d * itemsize
    msgs, reds = map(lambda a: [a], _fold_events(rem, n))
    q = np.arange(p2)
    real = _real(q, rem)
    ready = np.where(q < rem, 1, 0)

    def step(partner, send_bytes, red_bytes):
        nonlocal ready
        t = np.maximum(ready, ready[partner])
        msgs.append(np.stack([t, real, real[partner], 8 * send_bytes], axis=1))
        if red_bytes is not None:
            reds.append(np.stack([t, real, red_bytes], axis=1))
        ready = t + 1

    if not halving:
        mask = 1
        while mask < p2:
            step(q ^ mask, np.full(p2, n), np.full(p2, n))
            mask <<= 1
    elif p2 > 1:
        b = chunk_bounds(d, p2) * itemsize
        lo, hi = np.zeros(p2, np.int64), np.full(p2, p2)
        mask = p2 >> 1
        while mask >= 1:  # reduce-scatter by recursive halving
            mid = (lo + hi) // 2
            low = (q & mask) == 0
            klo, khi = np.where(low, lo, mid), np.where(low, mid, hi)
            slo, shi = np.where(low, mid, lo), np.where(low, hi, mid)
            step(q ^ mask, b[shi] - b[slo], b[khi] - b[klo])
            lo, hi = klo, khi
            mask >>= 1
        mask = 1
        while mask < p2:  # allgather by recursive doubling
            step(q ^ mask, b[hi] - b[lo], None)
            low = (q & mask) == 0
            lo, hi = np.where(low, lo, lo - mask), np.where(low, hi + mask, hi)
            mask <<= 1
    i = np.arange(rem)
    t = ready[:rem]
    msgs.append(np.stack([t, 2 * i + 1, 2 * i, np.full(rem, 8 * n)], axis=1))
    return msgs, reds


@lru_cache(maxsize=64)
def _cached_trace(algorithm: str, P: int, d: int, itemsize: int) -> Trace:
    if algorithm == "ring":
        msgs, reds = _ring_events(P, d, itemsize) if P > 1 else ([], [])
    else:
        msgs, reds = _butterfly_events(P, d, itemsize, halving=algorithm == "rabenseifner")
    cat = lambda parts, k: np.concatenate(parts) if parts else np.zeros((0, k), np.int64)  # noqa: E731
    return Trace.from_arrays(P, cat(msgs, 4), cat(reds, 3))


def allreduce_trace(algorithm: str, P: int, d: int, itemsize: int) -> Trace:
    """The exact trace of the dense allreduce ``algorithm`` on P ranks of d items of ``itemsize`` bytes.

    Example:
        >>> allreduce_trace("ring", 4, 8, 4).nrounds
        6
    """
    check_choice("algorithm", algorithm, available("allreduce"))
    P = check_int("P", P, low=1)
    d = check_int("d", d, low=1)
    itemsize = check_int("itemsize", itemsize, low=1)
    return _cached_trace(algorithm, P, d, itemsize).copy()


def allreduce_sum(X: np.ndarray, algorithm: str = "ring"):
    """Sum the P rows of X as the dense allreduce ``algorithm`` does, and its trace.

    Args:
        X: (P, d) float32 or float64 array, row i = rank i's vector.
        algorithm: "ring", "recursive_doubling" or "rabenseifner".

    Returns:
        ``(total, trace)``: the (d,) sum, bit-identical to the executed algorithm's output on
        every rank, and the :class:`Trace` equal to the executed one.
    """
    check_choice("algorithm", algorithm, available("allreduce"))
    if not isinstance(X, np.ndarray) or X.ndim != 2 or X.dtype not in (np.float32, np.float64):
        raise TypeError(f"X must be a 2-D float32 or float64 numpy array, got "
                        f"{getattr(X, 'dtype', type(X).__name__)} of shape {getattr(X, 'shape', None)}")
    P, d = X.shape
    if P < 1 or d < 1:
        raise ValueError(f"X must have at least one row (P >= 1) and one column (d >= 1), got shape {X.shape}")
    X = np.ascontiguousarray(X)
    out = np.empty(d, X.dtype)
    if P == 1:
        out[:] = X[0]
    elif algorithm == "ring":
        _ring_sum(X, chunk_bounds(d, P), out)
    else:
        p2, rem = _pof2(P)
        _tree_sum(X, p2, rem, algorithm == "recursive_doubling", out)
    return out, allreduce_trace(algorithm, P, d, X.dtype.itemsize)


def allgather_bits(nbits, algorithm: str = "allgather") -> Trace:
    """The trace of allgathering P payloads of ``nbits[i]`` exact bits (rank i's).

    Recursive doubling for power-of-two P (round k: rank r sends its aligned group of 2**k
    blocks to r XOR 2**k), Bruck otherwise (round k: rank r sends blocks r .. r+m-1 mod P,
    m = min(2**k, P - 2**k), to r - 2**k); a message's nbits is the sum of its blocks'.

    Example:
        >>> allgather_bits([8, 16, 24, 32]).messages()[:, 3].tolist()
        [8, 16, 24, 32, 24, 24, 56, 56]
    """
    check_choice("algorithm", algorithm, available("allgather"))
    nb = np.asarray(nbits)
    if nb.ndim != 1 or nb.size < 1 or not np.issubdtype(nb.dtype, np.integer) or np.any(nb < 0):
        raise ValueError(f"nbits must be a non-empty 1-D array of integers >= 0, got {nbits!r}")
    nb = nb.astype(np.int64)
    P = nb.size
    r = np.arange(P)
    msgs = []
    csum = np.concatenate(([0], np.cumsum(np.concatenate((nb, nb)))))
    k, dist = 0, 1
    pow2 = P & (P - 1) == 0
    while dist < P:
        if pow2:
            base = r & ~(dist - 1)
            dst, bits = r ^ dist, csum[base + dist] - csum[base]
        else:
            m = min(dist, P - dist)
            dst, bits = (r - dist) % P, csum[r + m] - csum[r]
        msgs.append(np.stack([np.full(P, k), r, dst, bits], axis=1))
        k, dist = k + 1, dist << 1
    return Trace.from_arrays(P, np.concatenate(msgs) if msgs else np.zeros((0, 4), np.int64))
