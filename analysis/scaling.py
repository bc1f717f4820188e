"""The step-time model of data-parallel SGD in the alpha-beta model, as plain functions [M].

One synchronous step on P nodes takes ``compute + communication`` seconds (no overlap of the
two: an upper bound on a real step, and the convention of simdist's simulated time):

* compute: ``batch_per_node * seconds_per_sample`` (the node's minibatch);
* communication: the allreduce (or allgather) of the gradient, priced in the alpha-beta model
  (alpha s per message, beta s per byte; gamma, the reduction time, is left out here so that
  dense and sparse collectives are compared on the same terms -- the SparCML forms of
  :mod:`analysis.collectives` carry no gamma either).

Collectives of a gradient of N entries (``lg`` = log2, ``q`` = bits per entry on the wire):

* :func:`dense_allreduce_time` -- the cheapest of ring, recursive doubling and Rabenseifner
  (:mod:`analysis.collectives`, Thakur-Rabenseifner-Gropp 2005 [V]) for ``n = 4 N`` bytes;
* :func:`quantized_allreduce_time` -- a quantized reduce-scatter + allgather (how SparCML's
  DSAR sends a dense, QSGD-quantized gradient): each rank sends block j of N/P entries,
  quantized, straight to its owner (``(P-1)(alpha + N/P q/8 beta)``), the owner decodes, adds
  and re-quantizes its block, and the blocks are allgathered (``ceil(lg P) alpha + (P-1)/P N q/8
  beta``) [M];
* :func:`allgather_time` -- every rank's compressed message (b bytes) to every rank, recursive
  doubling / Bruck: ``ceil(lg P) alpha + (P-1) b beta`` (the collective for compressors whose
  messages cannot be summed in compressed form) [V];
* :func:`sparcml_costs` -- the three SparCML allreduces for k random nonzeros per rank
  (:func:`simdist.collectives.sparse.estimate_costs`), the dynamic one optionally sending its
  dense reduced blocks quantized to ``dense_bits`` bits per entry [M].

Time to train on ``total_samples`` samples with a fixed per-node batch B (weak scaling: the
global batch is B P, the number of steps ``total_samples / (B P)``):
:func:`time_to_train` ``= total_samples / (B P) * (B t_sample + comm(P))``; with comm = 0 this
is the ideal linear scaling ``T_1 / P`` (:func:`ideal_time`).

Example:
    >>> from simdist.network import AlphaBeta
    >>> net = AlphaBeta(alpha=1e-6, beta=1e-9)
    >>> round(allgather_time(4, 1000, net) * 1e6, 6)           # 2 us + 3000 bytes * 1 ns
    5.0
    >>> speedup(0.01, 0.03, 0.002)                              # (10 + 30) / (10 + 2) ms
    3.3333333333333335
    >>> time_to_train(1000, 1, 10, 0.5, 123.0) == 1000 * 0.5    # one node: no communication
    True

References:
    R. Thakur, R. Rabenseifner, W. Gropp, IJHPCA 19(1), 2005 (dense allreduce costs).
    C. Renggli, S. Ashkboos, M. Aghagolzadeh, D. Alistarh, T. Hoefler, "SparCML", SC19 (sparse
    allreduces, the quantized dense phase). THEORY.md sections 6 and 11.
"""

from __future__ import annotations

import math

from simdist._validate import check_choice

from ._args import check_float, check_int, check_nonneg
from .collectives import (
    rabenseifner_allreduce_cost,
    recursive_doubling_allreduce_cost,
    ring_allreduce_cost,
)

__all__ = [
    "dense_allreduce_time",
    "quantized_allreduce_time",
    "allgather_time",
    "sparcml_costs",
    "speedup",
    "compute_for_speedup",
    "step_time",
    "time_to_train",
    "ideal_time",
]

_DENSE = {
    "ring": ring_allreduce_cost,
    "recursive_doubling": recursive_doubling_allreduce_cost,
    "rabenseifner": rabenseifner_allreduce_cost,
}


def _ab(network) -> tuple[float, float]:
    return check_nonneg("alpha", network.alpha), check_nonneg("beta", network.beta)


def dense_allreduce_time(P: int, n_bytes: float, network, algorithm: str = "best") -> float:
    """Seconds of a dense allreduce of ``n_bytes`` bytes per rank (gamma = 0).

    Args:
        P: ranks (>= 1).
        n_bytes: bytes of each rank's vector (>= 0).
        network: anything with ``alpha`` and ``beta`` (an :class:`simdist.network.AlphaBeta`).
        algorithm: "ring", "recursive_doubling", "rabenseifner" or "best" (the cheapest).

    Example:
        >>> from simdist.network import AlphaBeta
        >>> dense_allreduce_time(4, 1000, AlphaBeta(1.0, 0.001), "ring")   # 6 + 2 * 0.75
        7.5
    """
    check_choice("algorithm", algorithm, ("best", *_DENSE))
    a, b = _ab(network)
    if algorithm != "best":
        return _DENSE[algorithm](P, n_bytes, a, b, 0.0)
    return min(f(P, n_bytes, a, b, 0.0) for f in _DENSE.values())


def quantized_allreduce_time(P: int, N: int, bits_per_entry: float, network) -> float:
    """Quantized reduce-scatter + allgather of N entries at ``bits_per_entry`` bits each [M].

    ``(P-1)(alpha + N/P q/8 beta) + ceil(lg P) alpha + (P-1)/P N q/8 beta`` (module docstring).

    Example:
        >>> from simdist.network import AlphaBeta
        >>> quantized_allreduce_time(4, 1000, 8.0, AlphaBeta(1.0, 0.001))  # 3 + 0.75 + 2 + 0.75
        6.5
    """
    P = check_int("P", P, low=1)
    N = check_int("N", N, low=0)
    q = check_nonneg("bits_per_entry", bits_per_entry)
    a, b = _ab(network)
    if P == 1:
        return 0.0
    nbytes = N * q / 8.0
    return (P - 1) * (a + nbytes / P * b) + math.ceil(math.log2(P)) * a + (P - 1) / P * nbytes * b


def allgather_time(P: int, bytes_per_rank: float, network) -> float:
    """Allgather of ``bytes_per_rank`` bytes from every rank: ``ceil(lg P) alpha + (P-1) b beta`` [V].

    Example:
        >>> from simdist.network import AlphaBeta
        >>> allgather_time(8, 10, AlphaBeta(1.0, 0.1))    # 3 + 70 * 0.1
        10.0
    """
    P = check_int("P", P, low=1)
    nb = check_nonneg("bytes_per_rank", bytes_per_rank)
    a, b = _ab(network)
    return (P - 1).bit_length() * a + (P - 1) * nb * b


def sparcml_costs(P: int, N: int, k: int, network, dense_bits: float = 32.0, value_bytes: int = 4,
                  index_bytes: int = 4) -> dict:
    """Expected seconds of the SparCML allreduces for k uniformly random nonzeros per rank [M].

    ``sparse_recursive_doubling`` and ``sparse_split_allgather`` are
    :func:`simdist.collectives.sparse.estimate_costs`; ``sparse_dynamic`` is its dynamic form
    with the dense reduced blocks sent at ``dense_bits`` bits per entry (32: fp32, equal to
    ``estimate_costs``; 8.03: 8-bit QSGD with buckets of 1024), i.e. the second phase moves
    ``(P-1)/P min(K (index_bytes + value_bytes), N dense_bits / 8)`` bytes, K = N (1 - (1 - k/N)^P).

    Returns:
        ``{"sparse_recursive_doubling", "sparse_split_allgather", "sparse_dynamic"}`` -> seconds.

    Example:
        >>> from simdist.network import AlphaBeta
        >>> c = sparcml_costs(8, 10**6, 10, AlphaBeta(1e-5, 1e-10))
        >>> min(c, key=c.get)
        'sparse_recursive_doubling'
    """
    from simdist.collectives.sparse import estimate_costs

    P = check_int("P", P, low=1)
    N = check_int("N", N, low=1)
    k = check_int("k", k, low=0, high=N)
    q = check_float("dense_bits", dense_bits, low=0.0, low_open=True)
    costs = dict(estimate_costs(P, N, k, network, value_bytes=value_bytes, index_bytes=index_bytes))
    if P > 1:
        a, b = _ab(network)
        it = index_bytes + value_bytes
        K = N * (1.0 - (1.0 - k / N) ** P)
        phase1 = (P - 1) * (a + k / P * it * b)
        costs["sparse_dynamic"] = phase1 + math.ceil(math.log2(P)) * a + (P - 1) / P * min(K * it, N * q / 8) * b
    return costs


def speedup(compute_s: float, baseline_comm_s: float, new_comm_s: float) -> float:
    """End-to-end step speedup ``(compute + baseline comm) / (compute + new comm)``.

    Example:
        >>> speedup(1.0, 3.0, 1.0)
        2.0
    """
    c = check_nonneg("compute_s", compute_s)
    base = check_nonneg("baseline_comm_s", baseline_comm_s)
    new = check_nonneg("new_comm_s", new_comm_s)
    if c + new == 0:
        raise ValueError("compute_s + new_comm_s must be > 0")
    return (c + base) / (c + new)


def compute_for_speedup(target: float, baseline_comm_s: float, new_comm_s: float) -> float:
    """The compute time per step at which :func:`speedup` equals ``target`` (nan if none >= 0).

    Solves ``(C + T_base) / (C + T_new) = S`` for ``C = (T_base - S T_new) / (S - 1)``.

    Example:
        >>> compute_for_speedup(2.0, 3.0, 1.0)
        1.0
    """
    s = check_float("target", target, low=1.0, low_open=True)
    c = (check_nonneg("baseline_comm_s", baseline_comm_s) - s * check_nonneg("new_comm_s", new_comm_s)) / (s - 1.0)
    return c if c >= 0 else math.nan


def step_time(batch_per_node: int, seconds_per_sample: float, comm_s: float) -> float:
    """One step: ``batch_per_node * seconds_per_sample + comm_s`` (no overlap).

    Example:
        >>> step_time(32, 0.01, 0.05)
        0.37
    """
    b = check_int("batch_per_node", batch_per_node, low=1)
    return b * check_nonneg("seconds_per_sample", seconds_per_sample) + check_nonneg("comm_s", comm_s)


def time_to_train(total_samples: float, P: int, batch_per_node: int, seconds_per_sample: float,
                  comm_s: float) -> float:
    """Seconds to process ``total_samples`` on P nodes: ``total / (B P) * step_time`` (comm 0 for P = 1).

    Example:
        >>> round(time_to_train(6400, 2, 32, 0.01, 0.1), 9)    # 100 steps of 0.32 + 0.1 s
        42.0
    """
    n = check_nonneg("total_samples", total_samples)
    P = check_int("P", P, low=1)
    comm = 0.0 if P == 1 else comm_s
    return n / (batch_per_node * P) * step_time(batch_per_node, seconds_per_sample, comm)


def ideal_time(single_node_s: float, P: int) -> float:
    """Linear scaling: ``single_node_s / P``.

    Example:
        >>> ideal_time(19 * 86400, 1024) / 60        # the seed's 19 days on 1024 nodes, minutes
        26.71875
    """
    return check_nonneg("single_node_s", single_node_s) / check_int("P", P, low=1)
