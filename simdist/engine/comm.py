"""The communication part of one simulated step: compression (with error feedback), aggregation,
measurement and pricing, on the (P, d) gradient matrix; and the per-node random streams.

:func:`init_comm` builds the reusable state of a run (buffers, cached dense trace and price);
:func:`communicate` runs steps 3-4 of the loop (see :mod:`simdist.engine.loop`) in place. The
benchmark ``benchmarks/bench_engine.py`` times exactly this function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import compressors
from .._validate import FLOAT_DTYPES, check_int
from ..collectives import sparse
from ..collectives.fastpath import allgather_bits, allreduce_sum, allreduce_trace
from ..collectives.simulated import SimulatedTransport
from ..network import AlphaBeta
from ..network import make as make_network
from ..network.profile import cost_profile, price_profile
from ..rng import node_step_rng, shared_rng
from .config import check_dgc, dgc_config

#: Dense allreduce algorithms usable for full precision.
DENSE = ("ring", "recursive_doubling", "rabenseifner")
#: SparCML sparse allreduces (:mod:`simdist.collectives.sparse`) usable for compressed runs: they sum
#: the nodes' decoded vectors on the way, which pays off when those are sparse (top-k, rand-k, ...).
SPARSE = tuple(sparse.available())

class Diverged(ArithmeticError):
    """A step produced values the run cannot go on with (the message is the stop reason)."""


def _node_rng(comp, seed: int, t: int, i: int):
    """Node i's generator at step t (None for a deterministic compressor); shared by the simulator
    and the one-process-per-node loop (:mod:`simdist.engine.distributed`)."""
    if getattr(comp, "needs_key", False):  # shared randomness: every node derives the same stream
        return shared_rng(seed, t)
    if not comp.needs_rng:  # deterministic compressors ignore the generators
        return None
    return node_step_rng(seed, i, t)


def _node_rngs(comp, seed: int, t: int, P: int):
    if not (comp.needs_rng or getattr(comp, "needs_key", False)):
        return None
    return [_node_rng(comp, seed, t, i) for i in range(P)]


def _sampling_rng(seed: int, t: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(4, t))))


def _collective(name: str, compressed: bool) -> str:
    if name == "auto":
        return "allgather" if compressed else "ring"
    if compressed and name != "allgather" and name not in SPARSE:
        raise ValueError(f"collective={name!r} cannot aggregate compressed payloads; use 'auto', 'allgather' "
                         f"(the payloads' bytes) or a sparse allreduce of the decoded vectors: {list(SPARSE)}")
    if not compressed and name not in DENSE:
        raise ValueError(f"collective must be 'auto' or one of {list(DENSE)} for full precision, got {name!r}")
    return name


def robust_rule(aggregator, P: int, collective: str):
    """The robust aggregation rule of a run (None: the mean), checked for P nodes and the collective: a rule
    needs every node's vector, so only "auto" or "allgather" (then the allgather) can carry it."""
    if aggregator is None:
        return None
    from ..robust import aggregators

    rule = aggregators.make(aggregator)
    rule.check_nodes(P)
    if collective not in ("auto", "allgather"):
        raise ValueError(f"aggregator={rule.name!r} needs every node's vector: collective must be 'auto' or "
                         f"'allgather', got {collective!r} (an allreduce only delivers the sum)")
    return rule


# -- the communication part of a step -----------------------------------------------------------
@dataclass
class CommState:
    """What the communication of a run keeps between steps (built by :func:`init_comm`).

    Attributes:
        compressor: the compressor, or None (full precision, fp32 on the wire).
        nodes, dim, dtype: the (P, d) shape and dtype of the gradient matrices.
        algorithm: the collective: "allgather" of the payloads or a sparse allreduce of the decoded
            vectors (compressed runs), a dense allreduce (full precision).
        network: the :class:`~simdist.network.AlphaBeta` model that prices the traces.
        seed: the run's root seed (node i's generator at step t is ``node_step_rng(seed, i, t)``).
        memory: the (P, d) error-feedback memory in ``dtype`` (None without error feedback).
        dgc: the :class:`~simdist.compressors.dgc.DGC` wrapper of a DGC run (then ``compressor`` is
            None), or None.
        dgc_state: the nodes' :class:`~simdist.compressors.dgc.DGCState` ((P, d) float64 velocity and
            accumulation), replaced after every step; None without DGC.
    """

    compressor: object
    nodes: int
    dim: int
    dtype: np.dtype
    algorithm: str
    network: object
    seed: int
    memory: np.ndarray | None = field(default=None, repr=False)
    #: full precision: (bits per node, wire bits per node, seconds), the same every step
    dense: tuple | None = field(default=None, repr=False)
    #: where the arrays live for ``device="cuda"`` (:class:`simdist.engine.device.Placement`); None: NumPy
    placement: object = field(default=None, repr=False)
    #: the :func:`~simdist.network.profile.cost_profile` of the last step's trace (what its price
    #: depends on: a history keeps it per step, so a run can be priced again on another network)
    profile: np.ndarray | None = field(default=None, repr=False)
    _dense_profile: np.ndarray | None = field(default=None, repr=False)
    #: a robust aggregation rule (:mod:`simdist.robust.aggregators`) applied to the allgathered
    #: vectors instead of the mean; None: the mean
    aggregator: object = None
    dgc: object = None
    dgc_state: object = field(default=None, repr=False)

    @property
    def error_feedback(self) -> bool:
        return self.memory is not None


def init_comm(compressor, nodes: int, dim: int, *, dtype=np.float64, error_feedback: bool = False,
              network="10gbe", collective: str = "auto", seed: int = 0, device: str = "cpu",
              aggregator=None, dgc=None) -> CommState:
    """The communication state of a run: validated parameters, the collective, zero EF memory.

    Args:
        compressor: a compressor (name, config or object) or None for full precision.
        nodes: P >= 1. dim: d >= 1. dtype: float32 or float64, the gradients' dtype.
        error_feedback: keep a per-node memory (needs a compressor).
        network: a network preset name, config or :class:`~simdist.network.AlphaBeta`.
        collective: "auto"; for compressed runs "allgather" (every node receives every payload and
            decodes it) or a SparCML sparse allreduce of the decoded vectors (:data:`SPARSE`:
            each node decodes its own payload, the sparse sum travels as index/value items; the
            algorithm is executed rank by rank on the simulated transport, so it costs more wall
            time than the allgather's fast path: measured, top-k 1% at d = 2^16, 0.14-0.16 s a step
            at P = 64 and 1.7-2.1 s at P = 256, against 0.02 and 0.07 s);
            for full precision a dense allreduce (:data:`DENSE`).
        seed: the run's root seed.
        device: ``"cpu"`` or ``"cuda"`` (the matrices on the GPU, see :mod:`simdist.engine.device`).
        aggregator: None (the mean) or a robust rule (a name, config or
            :class:`~simdist.robust.aggregators.Aggregator`): then every node allgathers every vector
            (the payloads, or fp32 rows at full precision) and applies the rule (collective "auto" or
            "allgather" only).
        dgc: None, or Deep Gradient Compression (a :class:`~simdist.compressors.dgc.DGC` or its config,
            see ``TrainConfig.dgc``) in place of a compressor: every node runs DGC's step on its row
            and the payloads (top-k messages) are allgathered. Needs ``compressor=None``, no error
            feedback, collective "auto" or "allgather", ``device="cpu"`` and no aggregator.

    Returns:
        A :class:`CommState` for :func:`communicate`.

    Example:
        >>> st = init_comm("qsgd", 4, 8, error_feedback=True, seed=1)
        >>> G = np.arange(32.0).reshape(4, 8)
        >>> agg, bits, wire, seconds = communicate(G.copy(), st, 0)
        >>> agg.shape, bool(bits > 0), bool(wire >= bits), bool(seconds > 0)
        ((8,), True, True, True)
    """
    P = check_int("nodes", nodes, low=1)
    d = check_int("dim", dim, low=1)
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    if dgc is not None:
        return _init_dgc(dgc, compressor, P, d, dtype, error_feedback=error_feedback, network=network,
                         collective=collective, seed=seed, device=device, aggregator=aggregator)
    comp = None if compressor is None else (
        compressor if isinstance(compressor, compressors.Compressor) else compressors.make(compressor))
    if comp is not None:
        try:
            comp._check_dim(d)
        except ValueError as exc:
            raise ValueError(f"compressor {comp} does not fit the problem's dimension d={d}: {exc}") from None
    net = network if isinstance(network, AlphaBeta) else make_network(network)
    rule = robust_rule(aggregator, P, collective)
    algo = "allgather" if rule is not None else _collective(collective, comp is not None)
    if error_feedback and comp is None:
        raise ValueError("error_feedback needs a compressor (full precision has no compression error)")
    st = CommState(comp, P, d, dtype, algo, net, int(seed), aggregator=rule)
    xp = np
    if device != "cpu":
        if rule is not None:
            raise ValueError(f"aggregator={rule.name!r} runs on the host: robust aggregation is not on the device "
                             f"path (device='cuda' averages)")
        if algo in SPARSE:
            raise ValueError(f"collective={algo!r} runs on the host: the sparse allreduces are not on the device "
                             f"path (device='cuda' supports 'auto' and 'allgather')")
        from .device import placement

        st.placement = placement(device)
        xp = st.placement.xp
    if error_feedback:
        st.memory = xp.zeros((P, d), dtype)
    if comp is None:  # fp32 on the wire: allreduced, or allgathered for a robust rule; the same every step
        trace = allgather_bits(np.full(P, 32 * d, np.int64)) if rule is not None else allreduce_trace(algo, P, d, 4)
        st._dense_profile = cost_profile(trace)
        st.dense = (32.0 * d, trace.total_bits / P, price_profile(st._dense_profile, net))
    return st


def _init_dgc(dgc, compressor, P: int, d: int, dtype, *, error_feedback, network, collective, seed, device,
              aggregator) -> CommState:
    """:func:`init_comm` of a DGC run: the wrapper, its zero (P, d) state, the allgather."""
    from ..compressors.dgc import DGC

    check_dgc(compressor=compressor, error_feedback=error_feedback, momentum=0.0, collective=collective,
              device=device, aggregator=aggregator)
    wrapper = DGC.from_config(dgc_config(dgc))
    net = network if isinstance(network, AlphaBeta) else make_network(network)
    st = CommState(None, P, d, dtype, "allgather", net, int(seed), dgc=wrapper)
    try:
        st.dgc_state = wrapper.init((P, d), dtype)
    except ValueError as exc:
        raise ValueError(f"dgc {wrapper} does not fit the problem's dimension d={d}: {exc}") from None
    return st


def communicate(G: np.ndarray, state: CommState, t: int):
    """Steps 3-4 of a step: compress (with error feedback), aggregate, measure and price.

    Args:
        G: the (P, d) finite gradient matrix, C-contiguous, writable, of ``state.dtype``. With error
            feedback it is **consumed** (used as scratch: its contents afterwards are unspecified).
        state: the run's :class:`CommState` (its memory is updated in place).
        t: the step index (seeds the nodes' generators).

    Returns:
        ``(agg, bits, wire_bits, seconds)``: the (d,) float64 mean of the decoded gradients (what every
        node applies), bits sent per node (mean over nodes, exact payload sizes), bits on the wire
        per node (from the collective's trace), and the network model's price of the trace.

    Raises:
        Diverged: the values cannot be sent (beyond the float32 range of the wire, or an
            error-feedback sum that overflows or exceeds what the compressor can encode).
    """
    if state.placement is not None:  # a run on the device (simdist.engine.device)
        from .device import communicate_device

        return communicate_device(G, state, t)
    comp, P, d = state.compressor, state.nodes, state.dim
    if G.shape != (P, d) or G.dtype != state.dtype or not (G.flags.c_contiguous and G.flags.writeable):
        raise ValueError(f"G must be a writable C-contiguous ({P}, {d}) {state.dtype} array, got "
                         f"{G.dtype} {G.shape}")
    if state.dgc is not None:  # DGC: its own step per row (state in state.dgc_state), then the allgather
        return _dgc(G, state, t)
    if comp is None:  # full precision: the allreduce sends fp32 and sums in fp32, in its own order
        return _dense(G, state, t)  # (or, with a robust rule, allgathers the fp32 rows)
    agg = np.empty(d, np.float64)
    E = state.memory
    rngs = _node_rngs(comp, state.seed, t, P)
    fused = E is not None and comp.fuses_error_feedback
    try:  # a. p = G + e_old, b. compress p (with a fused sender side: E = p - c in the same pass)
        if E is None:
            batch = comp.compress_batch(G, rngs)
        elif fused:
            batch = comp.compress_batch_ef(G, E, rngs)
        else:
            np.add(G, E, out=G)
            batch = comp.compress_batch(G, rngs)
    except ValueError as exc:  # G is finite, of the right shape and dtype: the values are out of range
        raise _diverged(comp, E, t, exc) from None
    if state.algorithm in SPARSE:
        agg, wire_bits, seconds = _sparse(batch, G, E, fused, state)
        return agg, float(batch.nbits.mean()), wire_bits, seconds
    if state.aggregator is not None:  # c. every node decodes every payload and applies the rule
        C = comp.decompress_batch(batch)
        if E is not None and not fused:
            np.subtract(G, C, out=E)  # G holds p = g + e_old
        return (state.aggregator.aggregate(C), *_measure(batch, state))
    if E is not None and not fused:  # c. agg = mean(c) and E = p - c in one pass after the decode
        comp.decompress_batch_residual(batch, G, E, agg)
    else:  # c. the receivers decode the bytes (a few rows at a time, in cache) and average them
        comp.decompress_batch_mean(batch, agg)
    return (agg, *_measure(batch, state))


def _dgc(G: np.ndarray, state: CommState, t: int):
    """a-b. ``DGC.compress_batch`` of every row (velocity and accumulation in ``state.dgc_state``,
    kept only when the step succeeds; G is only read); c. the receivers decode the allgathered top-k
    messages (k = ``dgc.k_at(t, d)``, the same for every row) and average them in float64, rows in order."""
    from ..compressors.topk import TopK

    dgc = state.dgc
    try:
        batch, state.dgc_state = dgc.compress_batch(G, state.dgc_state, t)
    except ValueError as exc:  # the accumulation overflows, or is beyond what top-k can send
        raise _diverged(dgc, None, t, exc, what="gradient + DGC accumulation") from None
    agg = np.empty(state.dim, np.float64)
    TopK(k=dgc.k_at(t, state.dim)).decompress_batch_mean(batch, agg)
    return (agg, *_measure(batch, state))


def _sparse(batch, G, E, fused: bool, state: CommState):
    """c. A SparCML sparse allreduce: every node decodes its own payload c_i (E = p - c_i), the P
    decoded vectors are summed by the executed algorithm on the simulated transport (the sum every
    rank holds, in the algorithm's order and dtype), then divided by P in float64. Returns
    ``(agg, wire bits per node, seconds)`` (the payload bits are the caller's)."""
    C = state.compressor.decompress_batch(batch)
    if E is not None and not fused:
        np.subtract(G, C, out=E)  # G holds p = g + e_old
    outs, trace = SimulatedTransport(state.nodes).run(sparse.make(state.algorithm), list(C))
    agg = outs[0].astype(np.float64) / state.nodes
    state.profile = cost_profile(trace)
    return agg, trace.total_bits / state.nodes, price_profile(state.profile, state.network)


def _dense(G: np.ndarray, state: CommState, t: int):
    """Full precision: the fp32 sum of the executed allreduce (bit-identical fast path), / P."""
    G32 = G
    if G.dtype != np.float32:
        with np.errstate(over="ignore"):
            G32 = G.astype(np.float32)
    if not np.all(np.isfinite(G32)):
        raise Diverged(f"gradient beyond the float32 range of the wire at step {t} (diverged)")
    state.profile = state._dense_profile
    if state.aggregator is not None:  # every node receives the P fp32 rows and applies the rule
        return (state.aggregator.aggregate(G32), *state.dense)
    with np.errstate(over="ignore"):
        total, _ = allreduce_sum(G32, state.algorithm)  # bit-identical to the executed algorithm
    if not np.all(np.isfinite(total)):
        raise Diverged(f"the fp32 sum of the gradients overflows at step {t} (diverged)")
    agg = np.empty(state.dim, np.float64)
    np.divide(total, state.nodes, out=agg, dtype=np.float64)
    return (agg, *state.dense)


def _diverged(comp, E, t: int, exc: Exception, what: str | None = None) -> Diverged:
    what = what or ("gradient + error-feedback memory" if E is not None else "gradient")
    return Diverged(f"{comp.name} cannot encode the {what} at step {t} (diverged): {exc}")


def _measure(batch, state: CommState):
    """(bits per node, wire bits per node, seconds) of the allgather of ``batch``'s payloads."""
    trace = allgather_bits(batch.nbits, state.algorithm)
    state.profile = cost_profile(trace)
    return float(batch.nbits.mean()), trace.total_bits / state.nodes, price_profile(state.profile, state.network)
