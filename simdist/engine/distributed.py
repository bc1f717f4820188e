"""The training loop of :func:`simdist.engine.run`, one process per node over a real transport.

Every process runs :func:`run_rank` with the same :class:`TrainConfig`; rank i is node i.
Steps of iteration t (numbered as in :mod:`simdist.engine.loop`):

1. Every rank draws the same global (P, B) minibatch index matrix from the per-step sampling
   generator and keeps row i.
2. Rank i computes its own gradient row g_i = grads(x, idx[i:i+1]) (bit-identical to row i of
   the simulator's matrix: the problems' gradients are row-wise), at x_{t - delay_i} with
   staleness (every rank keeps the last tau + 1 iterates and draws the step's delays from the
   same generator as the simulator). 2b. A Byzantine rank (one of the last ``byzantine``) computes
   the honest ranks' gradients itself (it has the problem and the global index matrix: the
   omniscient attacker) and sends its row of the attack's vectors instead of its gradient.
3. Rank i compresses p_i = g_i + e_i (error feedback) with its own generator (the simulator's
   ``_node_rng``: ``node_step_rng(seed, i, t)``, Rand-k: the shared one).
   Control (untraced, to rank 0): a status (finite gradient, encodable) and g_i,
   from which rank 0 computes grad_norm exactly as the simulator does; rank 0 broadcasts
   go/stop, so every rank stops at the same step.
4. Aggregation over the transport, with the simulator's algorithms: compressed payload bytes
   are allgathered (:func:`simdist.collectives.dense.allgather`), every rank decodes all P
   payloads and takes their mean with the simulator's kernel (:func:`simdist.kernels.rows.mean_rows`: rows in rank
   order, float64), or applies the run's robust aggregation rule to them, so every rank holds the
   simulator's aggregate bit for bit; e_i <- p_i - c_i. With a robust rule at full precision the fp32
   rows are allgathered and the rule applied to them.
   With a sparse allreduce (``collective="sparse_..."``) rank i decodes only its own payload c_i
   and the ranks run that SparCML algorithm on the decoded vectors (the sum in the algorithm's
   order and dtype, as in the simulator), then divide by P; the payload lengths go to rank 0
   (untraced) for ``bits``. Full precision: the dense allreduce (ring by default) of the fp32
   rows; its sum is the fp32 sum in the algorithm's order (see "Exactness" below).
5. Every rank applies the same update: v = momentum v + mean; x = x - lr(t) v.
6. Rank 0 evaluates the loss; the ranks' traces of step t (messages and reductions) are gathered to rank 0 (untraced),
   which prices their union with the network model (``sim_time``), counts ``wire_bits`` =
   total / P, and ``bits`` = the mean of the P payload lengths (known to every rank after the
   allgather; full precision: 32 d).

Rank 0 returns the :class:`History` (the same format as the simulator's); other ranks return None.

Exactness: with the same seed, the loss, grad_norm, bits, wire_bits and sim_time per step equal the
simulator's exactly, for compressed runs (deterministic or seeded) and for full precision, whose
aggregate is the fp32 sum in the executed algorithm's order on both sides (the simulator's
``fastpath.allreduce_sum`` is bit-identical to the executed collective), divided by P.

Example (under ``simdist launch --nodes 4 --backend gloo CONFIG.toml --out run.json``):

        from simdist.transports import TorchTransport
        h = run_rank(TrainConfig.from_toml("run.toml"), TorchTransport())   # rank 0 gets the History

References:
    The data-parallel SGD of the seed talk; Karimireddy et al., EF-SGD (2019) for the memory.
"""

from __future__ import annotations

import struct
import time

import numpy as np

from ..collectives import dense, sparse
from ..collectives.trace import Trace
from ..compressors.payload import PayloadBatch
from ..kernels.rows import mean_rows
from ..network.profile import cost_profile, price_profile
from ..problems.partition import sample_minibatch
from .config import TrainConfig
from .history import History
from .comm import SPARSE, _collective, _node_rng, _sampling_rng, robust_rule
from .loop import _prepare
from .staleness import Staleness

__all__ = ["run_rank"]

_STATUS = struct.Struct("<BBI")  # finite gradient, encodable, length of the error message


def _control(transport, g: np.ndarray, finite: bool, err: str | None, force: bool = False):
    """Gather (status, g) to rank 0, which decides go/stop (``force``: a stop it already knows of,
    a non-finite loss) and broadcasts it; returns (stop, reason on rank 0, the (P, d) G on rank 0)."""
    msg = (err or "").encode()
    body = np.frombuffer(_STATUS.pack(int(finite), int(err is None), len(msg)) + msg + g.tobytes(),
                         np.uint8)
    got = transport.gather_bytes(body, root=0)
    reason, G = None, None
    if got is not None:
        rows, fin, errs = [], [], []
        for b in got:
            f, ok, n = _STATUS.unpack_from(b.tobytes(), 0)
            fin.append(bool(f))
            errs.append(None if ok else bytes(b[_STATUS.size:_STATUS.size + n]).decode())
            rows.append(np.frombuffer(b[_STATUS.size + n:].tobytes(), g.dtype))
        G = np.stack(rows)
        if not all(fin):
            reason = "nonfinite"
        else:
            reason = next((e for e in errs if e is not None), None)
        if force and reason is None:
            reason = "known"
    flag = transport.bcast_bytes(np.array([reason is not None], np.uint8) if got is not None else None, root=0)
    return bool(flag[0]), reason, G


def _gather_trace(transport, trace: Trace, P: int) -> Trace | None:
    m, r = trace.messages(), trace.reductions()
    rows = np.concatenate(([m.shape[0]], m.reshape(-1), r.reshape(-1))).astype(np.int64)
    got = transport.gather_bytes(rows.view(np.uint8), root=0)
    if got is None:
        return None
    msgs, reds = [], []
    for b in got:
        a = np.frombuffer(b.tobytes(), np.int64)
        n = int(a[0])
        msgs.append(a[1:1 + 4 * n].reshape(-1, 4))
        reds.append(a[1 + 4 * n:].reshape(-1, 3))
    return Trace.from_arrays(P, np.concatenate(msgs), np.concatenate(reds))


def _forge(prob, attack, X, idx, dtype, f: int, seed: int, t: int) -> np.ndarray:
    """The f forged rows of step t, as the simulator's :func:`simdist.robust.attacks.inject` makes them
    (None when an honest gradient is not finite: the simulator stops before forging)."""
    with np.errstate(over="ignore", invalid="ignore"):
        H = np.asarray(prob.grads(X, idx), dtype=dtype)
    if not np.all(np.isfinite(H)):
        return None
    forged = attack.forge(H, f, attack.step_rng(seed, t))
    with np.errstate(over="ignore"):
        return forged.astype(dtype)


def run_rank(config: TrainConfig, transport, *, problem=None) -> History | None:
    """Run this process's node of the training ``config`` over ``transport``.

    Args:
        config: the run's configuration (``config.nodes`` must equal the transport's size).
        transport: a real transport (e.g. :class:`~simdist.transports.torch_dist.TorchTransport`)
            with ``rank``, ``size``, ``run(algo, data, context=...)``, ``gather_bytes`` and ``bcast_bytes``.
        problem: an already-built problem object (its config must be ``config.problem``).

    Returns:
        The :class:`History` on rank 0 (same format and, see the module docstring, the same values
        as :func:`simdist.engine.run`); None on the other ranks.

    Raises:
        TimeoutError: a peer died or stalled (from the transport).
    """
    cfg = config
    if cfg.dgc is not None:
        raise ValueError("dgc runs in the simulator only (simdist.engine.run / simdist train): one process per "
                         "node does not implement DGC; use the simulator or a compressor with error_feedback")
    prob, comp, lr, net, compute_s = _prepare(cfg, problem)
    d, P, B, T = prob.dim, cfg.nodes, cfg.batch_size, cfg.steps
    if transport.size != P:
        raise ValueError(f"nodes must equal the transport's world size {transport.size}, got {P}")
    if cfg.device != "cpu":
        raise ValueError(f"device={cfg.device!r} applies to the simulator (simdist train); one process per node keeps "
                         f"its row on the host (--backend nccl moves the messages through the GPUs): use device='cpu'")
    i, root = transport.rank, transport.rank == 0
    rule = robust_rule(cfg.aggregator, P, cfg.collective)
    name = "allgather" if rule is not None else _collective(cfg.collective, comp is not None)
    algo = sparse.make(name) if name in SPARSE else dense.make(name)
    dtype = np.dtype(getattr(prob, "dtype", np.float64))
    if cfg.error_feedback and comp is None:
        raise ValueError("error_feedback needs a compressor (full precision has no compression error)")
    mem = np.zeros(d, dtype) if cfg.error_feedback else None
    decoded = np.empty((P, d), dtype) if comp is not None else None
    stale = Staleness(cfg.staleness, cfg.delays, cfg.seed, P)
    f = cfg.byzantine
    attack = None
    if i >= P - f:  # a Byzantine rank: it forges its row from the honest ranks' gradients
        from ..robust import attacks

        attack = attacks.make(cfg.attack)
    parts = prob.partition(P, cfg.partition, cfg.seed)
    x = np.array(prob.x0, dtype=np.float64)
    v = np.zeros_like(x)
    hist = {k: np.zeros(T) for k in ("loss", "grad_norm", "bits", "wire_bits", "sim_time", "wall_time")}
    profiles = []  # rank 0: the cost profile of each recorded step's collective
    stop_reason, stopped_at, last_loss, t_run = None, None, float("nan"), 0
    for t in range(T):
        t0 = time.perf_counter()
        # 1. minibatch (the global matrix, this rank's row)  2. this rank's gradient
        idx = sample_minibatch(parts, B, _sampling_rng(cfg.seed, t))
        # this rank's (possibly older) iterate; a Byzantine rank needs every honest node's too
        X = stale.points(x, t) if attack is not None else stale.point(x, t, i)
        xi = X if X.ndim == 1 else X[i]
        with np.errstate(over="ignore", invalid="ignore"):
            g = np.array(prob.grads(xi, idx[i:i + 1])[0], dtype=dtype, order="C")
        finite = bool(np.all(np.isfinite(g)))
        g_sent = g.copy()
        if attack is not None and finite:  # 2b. the simulator's inject(), this rank's row of it
            forged = _forge(prob, attack, X if X.ndim == 1 else X[:P - f], idx[:P - f], dtype, f, cfg.seed, t)
            if forged is not None:  # (else an honest rank's gradient is not finite: the run stops below)
                g = forged[i - (P - f)].copy()
        # 3. compression (or the fp32 row), then the go/stop decision on rank 0
        err, msg = None, None
        if finite and comp is None:
            with np.errstate(over="ignore"):
                msg = g.astype(np.float32)
            if not np.all(np.isfinite(msg)):
                err = f"gradient beyond the float32 range of the wire at step {t} (diverged)"
        elif finite:
            if mem is not None:
                np.add(g, mem, out=g)  # p = g + e_old
            rng = _node_rng(comp, cfg.seed, t, i)
            try:
                batch = comp.compress_batch(g[None, :], None if rng is None else [rng])
            except ValueError as exc:
                what = "gradient + error-feedback memory" if mem is not None else "gradient"
                err = f"{comp.name} cannot encode the {what} at step {t} (diverged): {exc}"
        stop, reason, G = _control(transport, g_sent, finite, err, force=root and stop_reason is not None)
        if stop:
            if root and stop_reason is None:
                stop_reason = f"non-finite gradient at step {t}" if reason == "nonfinite" else reason
                stopped_at = t
            break
        grad_norm = float(np.linalg.norm(G.mean(axis=0))) if root else 0.0
        # 4. aggregation over the transport
        agg = np.empty(d, np.float64)
        ctx = f"step {t}"
        if comp is None and rule is not None:  # the fp32 rows allgathered, the rule applied to them
            blocks, trace = transport.run(algo, (msg.view(np.uint8), 32 * d), context=ctx)
            agg[:] = rule.aggregate(np.stack([np.frombuffer(bytes(b), np.float32) for b, _ in blocks]))
            bits = 32.0 * d
        elif comp is None:
            s, trace = transport.run(algo, msg, context=ctx)
            agg[:] = s.astype(np.float64) / P  # the fp32 sum of the executed algorithm, averaged
            bits = 32.0 * d
        elif name in SPARSE:  # a sparse allreduce of the decoded vectors; the lengths to rank 0 (untraced)
            c = comp.decompress_batch(batch)[0]
            s, trace = transport.run(algo, c, context=ctx)
            agg[:] = s.astype(np.float64) / P  # the sum every rank holds, as the simulator's
            if mem is not None:
                np.subtract(g, c, out=mem)  # e_new = p - c
            got = transport.gather_bytes(np.array([batch.nbits[0]], np.int64).view(np.uint8), root=0)
            bits = float(np.concatenate([np.frombuffer(b.tobytes(), np.int64) for b in got]).mean()) if root else 0.0
        else:
            own = batch[0]
            blocks, trace = transport.run(algo, (own.data, own.nbits), context=ctx)
            nbits = np.array([nb for _, nb in blocks], np.int64)
            keys = None if batch.keys is None else np.full(P, batch.keys[0], np.int64)
            allb = PayloadBatch.from_rows([b for b, _ in blocks], nbits, d, dtype, comp.name, keys)
            comp.decompress_batch(allb, out=decoded)
            if rule is not None:
                agg[:] = rule.aggregate(decoded)
            else:
                mean_rows(decoded, agg)  # rows in rank order, as the simulator's mean
            if mem is not None:
                np.subtract(g, decoded[i], out=mem)  # e_new = p - c
            bits = float(nbits.mean())
        full = _gather_trace(transport, trace, P)
        # 5. update
        v = cfg.momentum * v + agg
        x = x - lr(t) * v
        if not root:
            continue
        # 6. loss, divergence (rank 0 records; a stop reaches the others at the next control)
        if t % cfg.eval_every == 0 or t == T - 1:
            with np.errstate(over="ignore", invalid="ignore"):
                last_loss = prob.loss(x)
        if not np.isfinite(last_loss):
            stop_reason, stopped_at = f"non-finite loss at step {t} (diverged)", t
            continue
        hist["loss"][t], hist["grad_norm"][t] = last_loss, grad_norm
        hist["bits"][t], hist["wire_bits"][t] = bits, full.total_bits / P
        profiles.append(cost_profile(full))
        hist["sim_time"][t] = compute_s + price_profile(profiles[-1], net)
        hist["wall_time"][t] = time.perf_counter() - t0
        t_run = t + 1
    if not root:
        return None
    h = History(config=cfg.to_dict(), seed=cfg.seed, stop_reason=stop_reason, stopped_at=stopped_at,
                extra={"x_final": x.tolist() if d <= 64 else None, "problem_constants": prob.constants(),
                       "transport": type(transport).__name__, "world_size": P})
    for k, arr in hist.items():
        setattr(h, k, arr[:t_run].copy())
    h.comm_profile = profiles[:t_run]
    return h
