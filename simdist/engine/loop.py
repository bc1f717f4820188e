"""The synchronous data-parallel SGD loop of P simulated nodes, vectorized across nodes.

Steps of one iteration t (numbered as in the code):

1. Every node i samples a minibatch of ``batch_size`` indices from its partition D_i
   (one generator call for all nodes).
2. The problem computes the (P, d) matrix of the nodes' stochastic gradients in one call.
3. Each node compresses its gradient (plus its error-feedback memory when asked) with its own
   generator ``node_step_rng(seed, i, t)`` (Rand-k: a generator every node derives identically,
   so the nodes share the mask); all rows in one kernel call.
4. The collective aggregates: full precision is summed by a dense allreduce (ring by default);
   compressed payloads are allgathered (they cannot be summed on the way) and every node
   decodes them all. The collective's trace gives the bits on the wire and, priced by the
   network model, the communication time.
5. Every node applies the same update: v = momentum * v + mean; x = x - lr(t) * v.
6. The loss is evaluated; a NaN/Inf gradient or loss stops the run with the step and reason
   recorded.

Error feedback keeps one memory per node in gradient units (EF-SGD, Karimireddy et al. 2019, with
the step size outside the compressor; identical to their form for a constant step):
p_i = g_i + e_i, c_i = C(p_i), e_i <- p_i - c_i, and the update averages the c_i.
"""

from __future__ import annotations

import time

import numpy as np

from .. import compressors, network, problems
from ..collectives.fastpath import allgather_bits, allreduce_trace
from ..compressors.error_feedback import ErrorFeedback
from ..rng import node_step_rng, shared_rng
from . import schedules
from .config import TrainConfig
from .history import History

__all__ = ["train", "run"]

#: Dense allreduce algorithms usable for full precision.
DENSE = ("ring", "recursive_doubling", "rabenseifner")


def _node_rngs(comp, seed: int, t: int, P: int):
    if getattr(comp, "needs_key", False):  # shared randomness: every node derives the same stream
        return [shared_rng(seed, t) for _ in range(P)]
    return [node_step_rng(seed, i, t) for i in range(P)]


def _sampling_rng(seed: int, t: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(4, t))))


def _collective(name: str, compressed: bool) -> str:
    if name == "auto":
        return "allgather" if compressed else "ring"
    if compressed and name != "allgather":
        raise ValueError(f"collective={name!r} cannot aggregate compressed payloads; use 'allgather' or 'auto'")
    if not compressed and name not in DENSE:
        raise ValueError(f"collective must be 'auto' or one of {list(DENSE)} for full precision, got {name!r}")
    return name


def run(config: TrainConfig, *, progress: bool = False, problem=None) -> History:
    """Run one training from a :class:`TrainConfig` and return its :class:`History`.

    Args:
        config: the run's configuration (everything, the seed included).
        progress: show a progress bar (tqdm, on stderr).
        problem: an already-built problem object to use instead of building ``config.problem``
            (its config must be ``config.problem``).
    """
    cfg = config
    prob = problem if problem is not None else problems.make(cfg.problem)
    d, P, B, T = prob.dim, cfg.nodes, cfg.batch_size, cfg.steps
    comp = None if cfg.compressor is None else compressors.make(cfg.compressor)
    if comp is not None:
        try:
            comp._check_dim(d)
        except ValueError as exc:
            raise ValueError(f"compressor {comp} does not fit the problem's dimension d={d}: {exc}") from None
    if P > prob.n_samples:
        raise ValueError(f"nodes must be in [1, {prob.n_samples}] (the problem's number of samples), got {P}")
    lr = schedules.make(cfg.lr)
    net = network.make(cfg.network)
    compute_s = 0.0
    if cfg.compute is not None:
        cm = network.make_compute(cfg.compute)
        compute_s = cm.step_time(B, None if cm.seconds_per_sample is not None else prob.flops_per_sample)
    algo = _collective(cfg.collective, comp is not None)
    ef = ErrorFeedback(comp) if (cfg.error_feedback and comp is not None) else None
    if cfg.error_feedback and comp is None:
        raise ValueError("error_feedback needs a compressor (full precision has no compression error)")

    parts = prob.partition(P, cfg.partition, cfg.seed)
    from ..problems.partition import sample_minibatch

    x = np.array(prob.x0, dtype=np.float64)
    v = np.zeros_like(x)
    state = ef.init((P, d)) if ef is not None else None
    if comp is None:
        dense_trace = allreduce_trace(algo, P, d, 4)  # fp32 on the wire
        dense_time = net.price(dense_trace)
        dense_wire = dense_trace.total_bits / P

    hist = {k: np.zeros(T) for k in ("loss", "grad_norm", "bits", "wire_bits", "sim_time", "wall_time")}
    stop_reason, stopped_at, last_loss = None, None, float("nan")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=T, desc=f"{prob.name} P={P}", unit="step", leave=False)
    t_run = 0
    for t in range(T):
        t0 = time.perf_counter()
        # 1. minibatches  2. gradients
        idx = sample_minibatch(parts, B, _sampling_rng(cfg.seed, t))
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is detected explicitly below
            G = prob.grads(x, idx)
        if not np.all(np.isfinite(G)):
            stop_reason, stopped_at = f"non-finite gradient at step {t}", t
            break
        # 3. compression  4. aggregation
        if comp is None:
            with np.errstate(over="ignore"):
                G32 = G.astype(np.float32)  # fp32 on the wire, as the allreduce sends it
            if not np.all(np.isfinite(G32)):
                stop_reason, stopped_at = f"gradient beyond the float32 range of the wire at step {t} (diverged)", t
                break
            agg = G32.astype(np.float64).mean(axis=0)
            bits, wire, comm_s = 32.0 * d, dense_wire, dense_time
        else:
            rngs = _node_rngs(comp, cfg.seed, t, P)
            if ef is not None:
                batch, state = ef.compress_batch(G, state, rngs)
            else:
                batch = comp.compress_batch(G, rngs)
            Y = comp.decompress_batch(batch)
            agg = Y.astype(np.float64).mean(axis=0)
            trace = allgather_bits(batch.nbits, algo)
            bits, wire, comm_s = float(batch.nbits.mean()), trace.total_bits / P, net.price(trace)
        # 5. update
        v = cfg.momentum * v + agg
        x = x - lr(t) * v
        # 6. loss, divergence
        if t % cfg.eval_every == 0 or t == T - 1:
            with np.errstate(over="ignore", invalid="ignore"):
                last_loss = prob.loss(x)
        if not np.isfinite(last_loss):
            stop_reason, stopped_at = f"non-finite loss at step {t} (diverged)", t
            break
        hist["loss"][t] = last_loss
        hist["grad_norm"][t] = float(np.linalg.norm(G.mean(axis=0)))
        hist["bits"][t], hist["wire_bits"][t] = bits, wire
        hist["sim_time"][t] = compute_s + comm_s
        hist["wall_time"][t] = time.perf_counter() - t0
        t_run = t + 1
        if bar is not None:
            bar.update(1)
            if t % 10 == 0:
                bar.set_postfix(loss=f"{last_loss:.4g}")
    if bar is not None:
        bar.close()
    h = History(config=cfg.to_dict(), seed=cfg.seed, stop_reason=stop_reason, stopped_at=stopped_at,
                extra={"x_final": x.tolist() if d <= 64 else None, "problem_constants": prob.constants()})
    for k, arr in hist.items():
        setattr(h, k, arr[:t_run].copy())
    return h


def train(problem, compressor=None, *, nodes: int = 4, steps: int = 100, lr=0.1, batch_size: int = 1, seed: int = 0,
          network="10gbe", compute=None, collective: str = "auto", error_feedback: bool = False,
          momentum: float = 0.0, partition: str = "iid", eval_every: int = 1, progress: bool = False) -> History:
    """Train with P simulated nodes and return the :class:`History`.

    Args:
        problem: a problem name, config dict or object (``simdist.problems``); or a whole run config
            (a :class:`TrainConfig`, a dict with a ``problem`` key, or the path of a TOML file), in which
            case the other arguments must be left at their defaults.
        compressor: a compressor name, config or object (``simdist.compressors``), or None (full precision).
        nodes, steps, lr, batch_size, seed, network, compute, collective, error_feedback, momentum,
            partition, eval_every: see :class:`TrainConfig`.
        progress: show a progress bar.

    Returns:
        The run's :class:`History` (per-step loss, grad_norm, bits, wire_bits, sim_time, wall_time).

    Example:
        >>> h = train("mean_estimation", "qsgd", nodes=4, steps=20, lr=0.5, seed=1)
        >>> h.steps_run, bool(h.loss[-1] < h.loss[0])
        (20, True)

    References:
        The data-parallel SGD of the seed talk; Bubeck (2015) Thm 6.3; Alistarh et al., QSGD (2017);
        Karimireddy et al., EF-SGD (2019).
    """
    import os

    from ..problems.base import Problem

    if isinstance(problem, TrainConfig) or (isinstance(problem, dict) and "problem" in problem) or (
        isinstance(problem, (str, os.PathLike)) and str(problem).endswith(".toml")
    ):
        if compressor is not None:
            raise TypeError("pass either a whole run config or a problem with keyword arguments, not both")
        if isinstance(problem, TrainConfig):
            cfg = problem
        elif isinstance(problem, dict):
            cfg = TrainConfig.from_dict(problem)
        else:
            cfg = TrainConfig.from_toml(problem)
        return run(cfg, progress=progress)
    obj = problem if isinstance(problem, Problem) else None
    spec = problem.get_config() if obj is not None else problem
    if compressor is not None and not isinstance(compressor, (str, dict)):
        compressor = compressor.get_config()
    cfg = TrainConfig(problem=spec, compressor=compressor, nodes=nodes, steps=steps, lr=lr, batch_size=batch_size,
                      seed=seed, network=network, compute=compute, collective=collective,
                      error_feedback=error_feedback, momentum=momentum, partition=partition, eval_every=eval_every)
    return run(cfg, progress=progress, problem=obj)
