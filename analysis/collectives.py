"""Collective costs in the alpha-beta model (THEORY.md section 6) as plain functions.

Model: a message of b bytes costs ``alpha + beta b``; reducing b bytes costs ``gamma b``; ranks
work in synchronous rounds, a round lasts as long as its slowest rank, a rank's time in a round is
the sum of the messages it sends there plus what it reduces there (full duplex: receiving is
free). This is exactly how :meth:`simdist.network.AlphaBeta.price` prices a
:class:`~simdist.collectives.trace.Trace`, so the functions below are test oracles for the
algorithms of :mod:`simdist.collectives.dense` run on the simulated transport.

Dense collectives on p ranks, n bytes per rank. Write ``lg`` for log2, ``p' = 2^floor(lg p)``,
``r = p - p'``. For p a power of two these are the formulas of Thakur, Rabenseifner and Gropp
(2005) [V]; for other p they are derived from the algorithms [D] (see below):

* ring allreduce (any p) -- :func:`ring_allreduce_cost`:
  ``2(p-1) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma`` (chunks of n/p bytes; the exact cost of
  unequal chunks with ``elem_bytes``);
* recursive doubling allreduce -- :func:`recursive_doubling_allreduce_cost`:
  ``lg p (alpha + n beta + n gamma)`` for p = 2^k;
  ``R0 + lg p' (alpha + n beta + n gamma) + (alpha + n beta)`` otherwise;
* Rabenseifner allreduce -- :func:`rabenseifner_allreduce_cost`:
  ``2 lg p alpha + 2 (p-1)/p n beta + (p-1)/p n gamma`` for p = 2^k;
  ``R0 + 2 lg p' alpha + 2 (p'-1)/p' n beta + (p'-1)/p' n gamma + (alpha + n beta)`` otherwise;
* allgather, n = bytes of the gathered result (n/p per rank):
  :func:`recursive_doubling_allgather_cost` ``ceil(lg p) alpha + (p-1)/p n beta`` (recursive doubling
  for p = 2^k [V]; Bruck's algorithm, which simdist's allgather runs for other p, costs the same [V]);
  ring ``(p-1) alpha + (p-1)/p n beta`` -- :func:`ring_allgather_cost`;
  Bruck -- :func:`bruck_allgather_cost`.

Non-power-of-two p (Thakur et al. 2005, Section 4) [D]: (1) among the first 2r ranks each even
rank sends its whole vector to the odd rank above it (``alpha + n beta``) and drops out, and the
odd rank adds it (``n gamma``); (2) the odd ranks < 2r and the ranks >= 2r (new ranks 0..p'-1,
the odd rank 2i + 1 being new rank i) run the power-of-two algorithm; (3) each odd rank < 2r sends
the result back (``alpha + n beta``). A rank records a reduction in the round in which it received
the data, and ranks that are free go ahead (the simulated transport's schedule), so in round 0 the
sender of step (1) and its reducer are different ranks, and ranks >= 2r whose first partner is
also >= 2r already do their first exchange of step (2). Hence the first round costs

* recursive doubling: ``R0 = alpha + n (beta + gamma)`` if some even new rank q >= r has
  q + 1 < p' (i.e. r <= p' - 2), else ``R0 = max(alpha + n beta, n gamma)``;
* Rabenseifner (first partner at distance p'/2):
  ``R0 = max(alpha + n beta, n gamma, alpha + (n/2)(beta + gamma))``, the last term only if
  r <= p'/2 - 1;

and every later round is led by new rank 0, which starts step (2) in round 1. Thakur et al.
charge the whole pre-step ``alpha + n beta + n gamma``, an upper bound on R0 that is reached for
recursive doubling when r <= p' - 2: then the totals are their
``(lg p' + 2) alpha + (lg p' + 2) n beta + (lg p' + 1) n gamma``.

SparCML sparse allreduces (Renggli et al., SC19) [M], for issue 4; P a power of two, k nonzeros
per rank, K nonzeros in the result, N the dimension, an item = (index, value):

* sparse recursive doubling -- :func:`sparse_recursive_doubling_cost`:
  ``lg P alpha + items beta item_bytes`` with items between ``lg P k`` (identical supports,
  ``case="best"``) and ``(P-1) k`` (disjoint supports, ``case="worst"``);
* split allgather -- :func:`split_allgather_cost`:
  ``(P - 1 + lg P) alpha + (k + K)(P-1)/P item_bytes beta``;
* dynamic dense (DSAR) -- :func:`dynamic_dense_cost`:
  ``(P - 1 + lg P) alpha + ((P-1)/P k item_bytes + (P-1)/P N value_bytes) beta``;
* switch rule [V, from the library's code] -- :func:`sparcml_switch_density`: a stream becomes
  dense at density ``value_bytes / (index_bytes + value_bytes)``.

The SparCML forms carry no gamma term (the reduction of sparse streams is not modelled).

Example:
    >>> ring_allreduce_cost(4, 1000, alpha=1.0, beta=0.001, gamma=0.0)   # 6 + 2 * 0.75
    7.5
    >>> recursive_doubling_allreduce_cost(8, 100, 1.0, 0.01, 0.0)         # 3 (1 + 1)
    6.0

References:
    R. Thakur, R. Rabenseifner, W. Gropp, "Optimization of Collective Communication Operations in
    MPICH", Int. J. High Performance Computing Applications 19(1), 2005 (Sections 2, 4.1, 4.4).
    C. Renggli, S. Ashkboos, M. Aghagolzadeh, D. Alistarh, T. Hoefler, "SparCML: High-Performance
    Sparse Communication for Machine Learning", SC19.
"""

from __future__ import annotations

from simdist._validate import check_choice

from ._args import check_int, check_nonneg

__all__ = [
    "pow2_split",
    "ring_allreduce_cost",
    "recursive_doubling_allreduce_cost",
    "rabenseifner_allreduce_cost",
    "recursive_doubling_allgather_cost",
    "ring_allgather_cost",
    "bruck_allgather_cost",
    "sparse_recursive_doubling_cost",
    "split_allgather_cost",
    "dynamic_dense_cost",
    "sparcml_switch_density",
]


def _args(p, n_bytes, alpha, beta, gamma):
    return (check_int("p", p, low=1), check_nonneg("n_bytes", n_bytes), check_nonneg("alpha", alpha),
            check_nonneg("beta", beta), check_nonneg("gamma", gamma))


def pow2_split(p: int) -> tuple[int, int]:
    """``(p', r)`` with ``p' = 2^floor(lg p)`` the largest power of two <= p and ``r = p - p'``.

    Example:
        >>> pow2_split(8), pow2_split(13), pow2_split(1)
        ((8, 0), (8, 5), (1, 0))
    """
    p = check_int("p", p, low=1)
    q = 1 << (p.bit_length() - 1)
    return q, p - q


def ring_allreduce_cost(p: int, n_bytes: float, alpha: float, beta: float, gamma: float = 0.0,
                        elem_bytes: int | None = None) -> float:
    """Ring allreduce: ``2(p-1) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma`` [V], any p.

    The vector is cut into p chunks; p - 1 reduce-scatter rounds (rank j sends chunk j - s to its
    successor and adds chunk j - s - 1, which it receives), then p - 1 allgather rounds (each rank
    forwards a chunk). With ``elem_bytes=None`` the chunks are n/p bytes each (exact when they are
    equal). With ``elem_bytes=e`` the n/e elements are cut as :func:`simdist.collectives.dense.chunk_bounds`
    does (``m = (n/e) mod p`` chunks of ``c+1`` elements first, then chunks of ``c``) and the cost
    is exact [D]: an allgather round costs ``alpha + beta e (c + [m > 0])``; a reduce-scatter round
    costs ``alpha + e c (beta + gamma)`` plus ``e (beta + gamma)`` if m >= 2 (two adjacent large
    chunks: one rank sends one and adds the other) or ``e max(beta, gamma)`` if m = 1.

    Args:
        p: ranks (>= 1).
        n_bytes: bytes of each rank's vector (>= 0; a multiple of ``elem_bytes`` when given).
        alpha, beta, gamma: seconds per message, per byte sent, per byte reduced (>= 0).
        elem_bytes: bytes per element (e.g. 4 for float32), or None for equal chunks of n/p bytes.

    Returns:
        Seconds (0 for p = 1).

    Example:
        >>> ring_allreduce_cost(3, 300, 1.0, 0.01, 0.001)    # 4 + 2*2*100*0.01 + 2*100*0.001
        8.2
        >>> ring_allreduce_cost(2, 12, 0.0, 1.0, 10.0, elem_bytes=4)   # chunks of 8 and 4 bytes
        92.0

        (reduce-scatter round: max(8 + 4 * 10, 4 + 8 * 10) = 84; allgather round: 8.)

    References:
        Thakur, Rabenseifner, Gropp 2005, Section 4.4 (bandwidth-optimal for long messages).
    """
    p, n, a, b, g = _args(p, n_bytes, alpha, beta, gamma)
    if p == 1:
        return 0.0
    if elem_bytes is None:
        c = n / p
        return 2 * (p - 1) * a + 2 * (p - 1) * c * b + (p - 1) * c * g
    e = check_int("elem_bytes", elem_bytes, low=1)
    if n != int(n) or int(n) % e:
        raise ValueError(f"n_bytes must be a whole multiple of elem_bytes={e}, got {n_bytes}")
    c, m = divmod(int(n) // e, p)
    rs = a + e * c * (b + g)
    if m >= 2:
        rs += e * (b + g)
    elif m == 1:
        rs += e * max(b, g)
    ag = a + b * e * (c + (m > 0))
    return (p - 1) * (rs + ag)


def recursive_doubling_allreduce_cost(p: int, n_bytes: float, alpha: float, beta: float, gamma: float = 0.0) -> float:
    """Recursive doubling allreduce: ``lg p (alpha + n beta + n gamma)`` [V] for p = 2^k.

    Round i = 0..lg p - 1: rank j exchanges its whole vector with rank ``j XOR 2^i`` and adds the
    one it receives. Other p [D] (module docstring): ``R0 + lg p' (alpha + n beta + n gamma) +
    (alpha + n beta)`` with ``R0 = alpha + n (beta + gamma)`` if r <= p' - 2, else
    ``max(alpha + n beta, n gamma)``.

    Args:
        p: ranks (>= 1).
        n_bytes: bytes of each rank's vector (>= 0).
        alpha, beta, gamma: seconds per message, per byte sent, per byte reduced (>= 0).

    Returns:
        Seconds (0 for p = 1).

    Example:
        >>> recursive_doubling_allreduce_cost(4, 10, 1.0, 0.1, 0.01)   # 2 (1 + 1 + 0.1)
        4.2
        >>> recursive_doubling_allreduce_cost(3, 10, 1.0, 0.1, 0.5)    # max(2, 5) + 7 + 2
        14.0
        >>> recursive_doubling_allreduce_cost(5, 10, 1.0, 0.1, 0.0)    # p'=4: 4 + 2 * 2
        8.0

    References:
        Thakur, Rabenseifner, Gropp 2005, Sections 4.4 and 4 (non-power-of-two).
    """
    p, n, a, b, g = _args(p, n_bytes, alpha, beta, gamma)
    q, r = pow2_split(p)
    k = q.bit_length() - 1
    step = a + n * b + n * g
    if r == 0:
        return k * step
    r0 = step if r <= q - 2 else max(a + n * b, n * g)
    return r0 + k * step + (a + n * b)


def rabenseifner_allreduce_cost(p: int, n_bytes: float, alpha: float, beta: float, gamma: float = 0.0) -> float:
    """Rabenseifner allreduce: ``2 lg p alpha + 2 (p-1)/p n beta + (p-1)/p n gamma`` [V] for p = 2^k.

    Reduce-scatter by recursive halving (partner distance p/2, ..., 1; round i exchanges and adds
    n / 2^(i+1) bytes), then allgather by recursive doubling (n/p, 2n/p, ..., n/2 bytes). Exact
    when the blocks are equal (n/e elements divisible by p'). Other p [D] (module docstring):
    ``R0 + 2 lg p' alpha + 2 (p'-1)/p' n beta + (p'-1)/p' n gamma + (alpha + n beta)`` with
    ``R0 = max(alpha + n beta, n gamma, alpha + (n/2)(beta + gamma))``, the last term only if
    r <= p'/2 - 1.

    Args:
        p: ranks (>= 1).
        n_bytes: bytes of each rank's vector (>= 0).
        alpha, beta, gamma: seconds per message, per byte sent, per byte reduced (>= 0).

    Returns:
        Seconds (0 for p = 1).

    Example:
        >>> rabenseifner_allreduce_cost(4, 400, 1.0, 0.01, 0.0)    # 4 + 2 * 300 * 0.01
        10.0
        >>> rabenseifner_allreduce_cost(3, 400, 1.0, 0.01, 0.0)    # R0 = 5, core 2 + 4, post 5
        16.0

    References:
        Thakur, Rabenseifner, Gropp 2005, Section 4.4; R. Rabenseifner, "Optimization of
        Collective Reduction Operations", ICCS 2004.
    """
    p, n, a, b, g = _args(p, n_bytes, alpha, beta, gamma)
    q, r = pow2_split(p)
    k = q.bit_length() - 1
    f = (q - 1) / q
    core = 2 * k * a + 2 * f * n * b + f * n * g
    if r == 0:
        return core
    r0 = max(a + n * b, n * g)
    if r <= q // 2 - 1:
        r0 = max(r0, a + n / 2 * (b + g))
    return r0 + core + (a + n * b)


def recursive_doubling_allgather_cost(p: int, n_bytes: float, alpha: float, beta: float, gamma: float = 0.0) -> float:
    """Allgather as simdist runs it: ``ceil(lg p) alpha + (p-1)/p n beta`` (n = gathered bytes).

    p a power of two: recursive doubling [V], round i exchanges ``2^i n/p`` bytes. Other p:
    simdist's allgather runs Bruck's algorithm (:func:`bruck_allgather_cost`), which has the same
    cost [V]. Each rank contributes n/p bytes (exact when they are equal whole bytes); there is no
    reduction (``gamma`` is accepted and unused).

    Example:
        >>> recursive_doubling_allgather_cost(8, 800, 1.0, 0.01)   # 3 + 700 * 0.01
        10.0

    References:
        Thakur, Rabenseifner, Gropp 2005, Section 4.1.
    """
    p, n, a, b, _ = _args(p, n_bytes, alpha, beta, gamma)
    return (p - 1).bit_length() * a + (p - 1) / p * n * b


def ring_allgather_cost(p: int, n_bytes: float, alpha: float, beta: float, gamma: float = 0.0) -> float:
    """Ring allgather: ``(p-1) alpha + (p-1)/p n beta`` [V], any p (n = gathered bytes).

    Example:
        >>> ring_allgather_cost(5, 500, 1.0, 0.01)    # 4 + 400 * 0.01
        8.0

    References:
        Thakur, Rabenseifner, Gropp 2005, Section 4.1.
    """
    p, n, a, b, _ = _args(p, n_bytes, alpha, beta, gamma)
    return (p - 1) * a + (p - 1) / p * n * b


def bruck_allgather_cost(p: int, n_bytes: float, alpha: float, beta: float, gamma: float = 0.0) -> float:
    """Bruck allgather: ``ceil(lg p) alpha + (p-1)/p n beta`` [V], any p (n = gathered bytes).

    Round i sends ``min(2^i, p - 2^i)`` blocks of n/p bytes, p - 1 blocks in all.

    Example:
        >>> bruck_allgather_cost(5, 500, 1.0, 0.01)   # 3 + 400 * 0.01
        7.0

    References:
        Thakur, Rabenseifner, Gropp 2005, Section 4.1; J. Bruck et al., IEEE TPDS 8(11), 1997.
    """
    p, n, a, b, _ = _args(p, n_bytes, alpha, beta, gamma)
    return (p - 1).bit_length() * a + (p - 1) / p * n * b


# -- SparCML [M] -----------------------------------------------------------------------------------


def _sparse_args(P, alpha, beta, item_bytes):
    P = check_int("P", P, low=1)
    if P & (P - 1):
        raise ValueError(f"P must be a power of two for the SparCML forms, got {P}")
    return P, P.bit_length() - 1, check_nonneg("alpha", alpha), check_nonneg("beta", beta), check_nonneg(
        "item_bytes", item_bytes)


def sparse_recursive_doubling_cost(P: int, k: int, alpha: float, beta: float, item_bytes: float = 8.0,
                                   case: str = "worst") -> float:
    """SparCML sparse recursive doubling: ``lg P alpha + items * item_bytes * beta`` [M].

    items = ``lg P * k`` when all supports are identical (``case="best"``), ``(P-1) k`` when they
    are disjoint (``case="worst"``: the set doubles every round).

    Args:
        P: ranks, a power of two.
        k: nonzeros per rank (>= 0).
        alpha, beta: seconds per message and per byte (>= 0).
        item_bytes: bytes per (index, value) item (default 8: 32-bit index and value).
        case: "best" or "worst".

    Example:
        >>> sparse_recursive_doubling_cost(8, 10, 1.0, 0.01, 8, "best")    # 3 + 30 * 0.08
        5.4
        >>> round(sparse_recursive_doubling_cost(8, 10, 1.0, 0.01, 8, "worst"), 12)   # 3 + 70 * 0.08
        8.6

    References:
        Renggli et al., SC19 (SSAR_Recursive_double), as summarised in THEORY.md section 6.
    """
    P, lg, a, b, ib = _sparse_args(P, alpha, beta, item_bytes)
    k = check_int("k", k, low=0)
    check_choice("case", case, ("best", "worst"))
    items = lg * k if case == "best" else (P - 1) * k
    return lg * a + items * ib * b


def split_allgather_cost(P: int, k: int, K: int, alpha: float, beta: float, item_bytes: float = 8.0) -> float:
    """SparCML split allgather: ``(P - 1 + lg P) alpha + (k + K)(P-1)/P item_bytes beta`` [M].

    Phase 1 sends each of P index blocks straight to its owner (``(P-1) alpha``, about
    ``k (P-1)/P`` items); phase 2 gathers the reduced blocks by recursive doubling
    (``lg P alpha``, about ``K (P-1)/P`` items, K = nonzeros of the result).

    Example:
        >>> split_allgather_cost(4, 100, 200, 1.0, 0.01, 8)    # 5 + 300 * 0.75 * 0.08
        23.0

    References:
        Renggli et al., SC19 (SSAR_Split_allgather), as summarised in THEORY.md section 6.
    """
    P, lg, a, b, ib = _sparse_args(P, alpha, beta, item_bytes)
    k = check_int("k", k, low=0)
    K = check_int("K", K, low=0)
    return (P - 1 + lg) * a + (k + K) * (P - 1) / P * ib * b


def dynamic_dense_cost(P: int, k: int, N: int, alpha: float, beta: float, item_bytes: float = 8.0,
                       value_bytes: float = 4.0) -> float:
    """SparCML dynamic (DSAR) split allgather with a dense second phase [M].

    ``(P - 1 + lg P) alpha + ((P-1)/P k item_bytes + (P-1)/P N value_bytes) beta``: the sparse
    split as in :func:`split_allgather_cost`, then the reduced blocks made dense (N/P values each)
    and allgathered. THEORY.md writes the bandwidth as "(k + N)(P-1)/P values' worth of bytes";
    here the sparse part is counted in items and the dense part in values.

    Example:
        >>> dynamic_dense_cost(4, 100, 1000, 1.0, 0.01, 8, 4)   # 5 + 0.75 (800 + 4000) 0.01
        41.0

    References:
        Renggli et al., SC19 (DSAR_Split_allgather), as summarised in THEORY.md section 6.
    """
    P, lg, a, b, ib = _sparse_args(P, alpha, beta, item_bytes)
    k = check_int("k", k, low=0)
    N = check_int("N", N, low=1)
    vb = check_nonneg("value_bytes", value_bytes)
    f = (P - 1) / P
    return (P - 1 + lg) * a + (f * k * ib + f * N * vb) * b


def sparcml_switch_density(index_bytes: float = 4.0, value_bytes: float = 4.0) -> float:
    """Density at which SparCML switches a sparse stream to dense: ``value_bytes / (index_bytes + value_bytes)``.

    A stream of nnz items is dense once ``nnz (index_bytes + value_bytes) >= N value_bytes`` [V,
    from the library's code].

    Example:
        >>> sparcml_switch_density(4, 4), sparcml_switch_density(4, 2)
        (0.5, 0.3333333333333333)

    References:
        Renggli et al., SC19, and the SparCML code, as summarised in THEORY.md section 6.
    """
    ib = check_nonneg("index_bytes", index_bytes)
    vb = check_nonneg("value_bytes", value_bytes)
    if ib + vb == 0:
        raise ValueError("index_bytes + value_bytes must be > 0")
    return vb / (ib + vb)
