"""Cost profiles: what of a collective's trace the alpha-beta price depends on, small enough to keep.

In the alpha-beta-gamma model (:mod:`simdist.network.alphabeta`) a rank's time in a round is
``alpha * n + beta * B + gamma * R`` (n messages sent, B bytes sent, R bytes reduced), a round
lasts as long as its slowest rank, and the collective as long as its rounds together. So the
price of a trace under *any* network depends only on, per round, the ranks' (n, B, R) triples, and
of those only on the Pareto-maximal ones (a triple another one dominates in every coordinate can
never be the slowest, whatever alpha, beta, gamma >= 0 are). :func:`cost_profile` keeps exactly
those: typically one row per round (every rank does the same), at most a few. A history that keeps
the profile of every step can be priced again on another network, exactly as a run on that
network would have been (:meth:`simdist.engine.history.History.reprice`).

Example:
    >>> from simdist.collectives.trace import Trace
    >>> from simdist.network import AlphaBeta
    >>> t = Trace(3)
    >>> t.add_message(0, 0, 1, 800); t.add_message(0, 1, 2, 8000); t.add_message(0, 2, 0, 80)
    >>> cost_profile(t).tolist()        # rank 0's (1, 100, 0) is dominated by rank 1's (1, 1000, 0)
    [[0, 1, 1000, 0]]
    >>> net = AlphaBeta(alpha=1e-6, beta=1e-9)
    >>> price_profile(cost_profile(t), net) == net.price(t)
    True

References:
    R. Thakur, R. Rabenseifner, W. Gropp, "Optimization of Collective Communication Operations in
    MPICH", IJHPCA 19(1), 2005, Section 2 (the cost model).
"""

from __future__ import annotations

import numpy as np

__all__ = ["rank_round_totals", "cost_profile", "price_profile", "check_profile"]


def rank_round_totals(trace) -> np.ndarray:
    """``(nrounds, size, 3)`` int64: per round and rank the messages sent, the bytes sent
    (``ceil(nbits / 8)`` each) and the bytes reduced."""
    msg = np.asarray(trace.messages(), dtype=np.int64).reshape(-1, 4)
    red = np.asarray(trace.reductions(), dtype=np.int64).reshape(-1, 3)
    size = int(trace.size)
    last = max(int(msg[:, 0].max()) if msg.shape[0] else -1, int(red[:, 0].max()) if red.shape[0] else -1)
    cells = (last + 1) * size
    out = np.zeros((cells, 3), np.int64)
    if msg.shape[0]:
        cell = msg[:, 0] * size + msg[:, 1]
        out[:, 0] = np.bincount(cell, minlength=cells)
        np.add.at(out[:, 1], cell, (msg[:, 3] + 7) // 8)
    if red.shape[0]:
        np.add.at(out[:, 2], red[:, 0] * size + red[:, 1], red[:, 2])
    return out.reshape(last + 1, size, 3)


def cost_profile(trace) -> np.ndarray:
    """``(k, 4)`` int64 rows ``(round, messages, bytes, reduced bytes)``: per round, the distinct
    Pareto-maximal (n, B, R) triples of its ranks, rounds in order (a round where no rank does
    anything keeps one all-zero row, so rounds stay numbered)."""
    tot = rank_round_totals(trace)
    nr = tot.shape[0]
    if nr == 0:
        return np.zeros((0, 4), np.int64)
    mx = tot.max(axis=1)  # (nrounds, 3); where one rank reaches it everywhere it is the only row
    single = np.all(tot == mx[:, None, :], axis=2).any(axis=1)
    rows = [np.column_stack([np.arange(nr, dtype=np.int64), mx])[single]]
    for r in np.flatnonzero(~single):
        u = np.unique(tot[r], axis=0)  # drop the dominated triples: some other one is >= everywhere
        ge = np.all(u[None, :, :] >= u[:, None, :], axis=2)  # ge[i, j]: u[j] >= u[i]
        np.fill_diagonal(ge, False)
        u = u[~ge.any(axis=1)]
        rows.append(np.column_stack([np.full(u.shape[0], r, np.int64), u]))
    out = np.concatenate(rows)
    return out[np.argsort(out[:, 0], kind="stable")]


def check_profile(profile) -> np.ndarray:
    """The profile as a ``(k, 4)`` int64 array (from a list of rows, e.g. read from JSON); a
    ValueError for a wrong shape, negative entries or rounds out of order."""
    p = np.asarray(profile, dtype=np.int64).reshape(-1, 4) if len(profile) else np.zeros((0, 4), np.int64)
    if np.any(p < 0) or np.any(np.diff(p[:, 0]) < 0):
        raise ValueError("a cost profile has rows (round, messages, bytes, reduced bytes) >= 0, rounds in order")
    return p


def price_profile(profile, network) -> float:
    """Seconds of the collective whose :func:`cost_profile` is ``profile`` on ``network`` (an
    :class:`~simdist.network.AlphaBeta`): the sum over rounds of the largest
    ``alpha n + beta B + gamma R`` -- :meth:`AlphaBeta.price` of the trace, to the last bit."""
    p = check_profile(profile)
    if p.shape[0] == 0:
        return 0.0
    cost = network.alpha * p[:, 1].astype(np.float64) + network.beta * p[:, 2].astype(np.float64) \
        + network.gamma * p[:, 3].astype(np.float64)
    per_round = np.full(int(p[-1, 0]) + 1, -np.inf)
    np.maximum.at(per_round, p[:, 0], cost)
    return float(np.sum(per_round[np.isfinite(per_round)]))
