"""The synchronous data-parallel SGD loop of P simulated nodes, vectorized across nodes.

Steps of one iteration t (numbered as in the code):

1. Every node i samples a minibatch of ``batch_size`` indices from its partition D_i
   (one generator call for all nodes).
2. The problem computes the (P, d) matrix of the nodes' stochastic gradients in one call (at x_t,
   or with ``staleness`` at each node's x_{t - delay_i}: :mod:`simdist.engine.staleness`).
   2b. With ``byzantine = f`` the last f rows are replaced by the attack's vectors, forged from
   the honest rows (:mod:`simdist.robust.attacks`).
3. Each node compresses its gradient (plus its error-feedback memory when asked) with its own
   generator ``node_step_rng(seed, i, t)`` (Rand-k: a generator every node derives identically,
   so the nodes share the mask); all rows in one kernel call.
4. The collective aggregates: full precision is summed by a dense allreduce (ring by default) in
   fp32, in the algorithm's own summation order (bit-identical to executing it, then / P);
   compressed payloads are allgathered (they cannot be summed on the way) and every node
   decodes them all, or (``collective="sparse_..."``) every node decodes its own payload and a
   SparCML sparse allreduce sums the decoded vectors; with a robust ``aggregator`` every node
   receives every vector (allgather) and applies the rule instead of the mean
   (:mod:`simdist.robust.aggregators`). The collective's trace gives the bits on
   the wire and, priced by the network model, the communication time.
5. Every node applies the same update: v = momentum * v + mean; x = x - lr(t) * v.
6. The loss is evaluated; a NaN/Inf gradient or loss, or a compressed input beyond what the
   compressor can encode (e.g. a QSGD scale beyond float32), stops the run with the step and
   reason recorded.

Steps 3-4 are :func:`simdist.engine.comm.communicate` ``(G, state, t)``, with the per-run state from
:func:`init_comm`; ``benchmarks/bench_engine.py`` times exactly that function.

With ``dgc`` (:class:`TrainConfig`) steps 3-4 are Deep Gradient Compression's: each node runs
``DGC.compress_batch`` on its row (momentum correction, clipping, masking, warm-up, its own
accumulation: the run's momentum is 0 and there is no error-feedback memory) and the top-k
payloads are allgathered and averaged as above (:func:`simdist.engine.comm.communicate`).

``device="cuda"`` (:class:`TrainConfig`) runs the same loop with the iterate, the gradient matrix and
the memory on the GPU (``xp = cupy``) and the compressors' GPU codecs: see :mod:`simdist.engine.device`.

Error feedback keeps one memory per node in gradient units (EF-SGD, Karimireddy et al. 2019, with
the step size outside the compressor; identical to their form for a constant step):
p_i = g_i + e_i, c_i = C(p_i), e_i <- p_i - c_i, and the update averages the c_i.

Memory of a compressed step (:func:`communicate`): the error-feedback memory E is one (P, d)
array in the gradients' dtype, allocated once and reused every step, and the step works in place.
For compressors whose encoder forms the sender's new memory itself (``fuses_error_feedback``:
QSGD), in one pass over G and E:

    a+b. batch = C(p) for p = G + E, and E = p - c, bucket by bucket in the encoder, with c the
         values the receivers decode (``Compressor.compress_batch_ef``; G is only read);
    c.   the receivers decode every message, a few rows at a time, and add them in float64, rows in
         order 0..P-1, then divide by P (``decompress_batch_mean``: as ``c.astype(float64).mean(axis=0)``).

For the others: a. p = G + E into G's storage; b. batch = C(p); c. decode into E's storage (E = c);
d. one fused pass: mean += c and E = p - c (``decompress_batch_residual``). Either way G is
consumed (scratch) and a step holds G, E, the payloads and small buffers: at most 3x the (P, d)
matrix (measured by the benchmark). Without error feedback, step c alone (and G is left untouched).

Precision of the memory: for float64 gradients (every built-in problem) these are exactly the
float64 operations of :class:`~simdist.compressors.error_feedback.ErrorFeedback` (step 1 adds,
step 4 subtracts, in float64), so payloads, memory and history are bit-identical to it (tested).
For float32 gradients the engine keeps the memory in float32 (ErrorFeedback keeps float64, which
carries the rounding of the sum instead of losing it), to stay within 3x the matrix. Then
p = fl32(g + e_old) is one float32 rounding of g + e_old, and c + e_new == p holds exactly, entry by
entry, for the compressors whose decoded entries are dropped or equal to the input entry rounded to
float32/float16 (identity, fp16, top-k, unscaled rand-k, threshold: e_new = fl32(p - c) is exact by
the Sterbenz lemma, see ErrorFeedback's docstring), and within one float32 rounding of
e_new = fl32(p - c), |c + e_new - p| <= 2**-24 |p - c|, otherwise (QSGD, sign, 1BitSGD, TernGrad, ...).
Both are tested.
"""

from __future__ import annotations

import time

import numpy as np

from .. import compressors, problems
from ..network import make_compute
from ..network import make as make_network
from . import schedules
from .comm import Diverged, _sampling_rng, communicate, init_comm
from .device import check_run, placement
from .config import TrainConfig
from .history import History
from .staleness import Staleness

__all__ = ["train", "run"]

def _prepare(cfg: TrainConfig, problem=None):
    """The validated parts of a run: ``(problem, compressor or None, lr schedule, network, compute
    seconds per step)``; shared by :func:`run` and :func:`simdist.engine.distributed.run_rank`."""
    prob = problem if problem is not None else problems.make(cfg.problem)
    d, P, B = prob.dim, cfg.nodes, cfg.batch_size
    comp = None if cfg.compressor is None else compressors.make(cfg.compressor)
    if P > prob.n_samples:
        raise ValueError(f"nodes must be in [1, {prob.n_samples}] (the problem's number of samples), got {P}")
    lr = schedules.make(cfg.lr)
    if comp is not None:
        try:
            comp._check_dim(d)
        except ValueError as exc:
            raise ValueError(f"compressor {comp} does not fit the problem's dimension d={d}: {exc}") from None
    net = make_network(cfg.network)
    return prob, comp, lr, net, compute_seconds(cfg, prob)


def _adversary(cfg: TrainConfig):
    """None, or ``apply(G, t)`` replacing the last ``cfg.byzantine`` rows of G by the attack's vectors
    (forged from the honest rows; a random attack draws from ``attack_rng(seed, t)``)."""
    if not cfg.byzantine:
        return None
    from ..robust import attacks

    atk = attacks.make(cfg.attack)

    def apply(G, t: int) -> None:
        attacks.inject(G, cfg.byzantine, atk, atk.step_rng(cfg.seed, t))

    return apply


def compute_seconds(cfg, problem=None) -> float:
    """Simulated compute seconds per step of a config (a :class:`TrainConfig` or its dict): the
    compute model's time for ``batch_size`` samples (0 without a compute model); the problem is
    built from the config only when the model needs its flops per sample."""
    get = cfg.get if isinstance(cfg, dict) else (lambda k, default=None: getattr(cfg, k, default))
    if get("compute") is None:
        return 0.0
    cm = make_compute(get("compute"))
    if cm.seconds_per_sample is not None:
        return cm.step_time(get("batch_size", 1), None)
    prob = problem if problem is not None else problems.make(get("problem"))
    return cm.step_time(get("batch_size", 1), prob.flops_per_sample)


def run(config: TrainConfig, *, progress: bool = False, problem=None, callback=None) -> History:
    """Run one training from a :class:`TrainConfig` and return its :class:`History`.

    Args:
        config: the run's configuration (everything, the seed included).
        progress: show a progress bar (tqdm, on stderr).
        problem: an already-built problem object to use instead of building ``config.problem``
            (its config must be ``config.problem``).
        callback: called as ``callback(t, x, agg)`` after the update of every step, with the new
            iterate x_{t+1} and the aggregated gradient every node applied (read-only views: copy
            them to keep them). For measurements the history does not hold (iterate averages, ...).
    """
    cfg = config
    prob, comp, lr, net, compute_s = _prepare(cfg, problem)
    d, P, B, T = prob.dim, cfg.nodes, cfg.batch_size, cfg.steps
    where = placement(cfg.device)  # NumPy, or the GPU (xp = cupy; see simdist.engine.device)
    check_run(prob, comp, where)
    xp = where.xp
    if where.on_device and (cfg.byzantine or cfg.staleness):
        raise ValueError("byzantine nodes and staleness run on the host: use device='cpu' "
                         f"(got byzantine={cfg.byzantine}, staleness={cfg.staleness})")
    comm = init_comm(comp, P, d, dtype=getattr(prob, "dtype", np.float64), error_feedback=cfg.error_feedback,
                     network=net, collective=cfg.collective, seed=cfg.seed, device=cfg.device,
                     aggregator=cfg.aggregator, dgc=cfg.dgc)
    adversary = _adversary(cfg)
    stale = Staleness(cfg.staleness, cfg.delays, cfg.seed, P)

    parts = prob.partition(P, cfg.partition, cfg.seed)
    from ..problems.partition import sample_minibatch

    x = xp.array(prob.x0, dtype=np.float64)
    v = xp.zeros_like(x)

    hist = {k: np.zeros(T) for k in ("loss", "grad_norm", "bits", "wire_bits", "sim_time", "wall_time")}
    profiles = []  # the cost profile of each recorded step's collective (History.reprice)
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
            G = prob.grads(stale.points(x, t), idx)  # x itself unless some node reads an older iterate
        if not xp.all(xp.isfinite(G)):
            stop_reason, stopped_at = f"non-finite gradient at step {t}", t
            break
        grad_norm = float(xp.linalg.norm(G.mean(axis=0)))  # before communicate consumes G
        if xp is not np:  # CuPy arrays are writable; make G contiguous in the run's dtype
            G = xp.ascontiguousarray(G, dtype=comm.dtype)
        elif G.dtype != comm.dtype or not (G.flags.c_contiguous and G.flags.writeable):
            G = np.array(G, dtype=comm.dtype, order="C")
        if adversary is not None:  # 2b. the last f nodes' rows become the attack's vectors
            adversary(G, t)
        # 3. compression  4. aggregation
        try:
            agg, bits, wire, comm_s = communicate(G, comm, t)
        except Diverged as exc:
            stop_reason, stopped_at = str(exc), t
            break
        # 5. update
        v = cfg.momentum * v + agg
        x = x - lr(t) * v
        if callback is not None:
            if xp is np:
                x.setflags(write=False)
                agg.setflags(write=False)
            callback(t, x, agg)
        # 6. loss, divergence
        if t % cfg.eval_every == 0 or t == T - 1:
            with np.errstate(over="ignore", invalid="ignore"):
                last_loss = prob.loss(x)
        if not np.isfinite(last_loss):
            stop_reason, stopped_at = f"non-finite loss at step {t} (diverged)", t
            break
        hist["loss"][t] = last_loss
        hist["grad_norm"][t] = grad_norm
        hist["bits"][t], hist["wire_bits"][t] = bits, wire
        hist["sim_time"][t] = compute_s + comm_s
        hist["wall_time"][t] = time.perf_counter() - t0
        profiles.append(comm.profile)
        t_run = t + 1
        if bar is not None:
            bar.update(1)
            if t % 10 == 0:
                bar.set_postfix(loss=f"{last_loss:.4g}")
    if bar is not None:
        bar.close()
    h = History(config=cfg.to_dict(), seed=cfg.seed, stop_reason=stop_reason, stopped_at=stopped_at,
                extra={"x_final": where.to_host(x).tolist() if d <= 64 else None, "problem_constants": prob.constants()})
    for k, arr in hist.items():
        setattr(h, k, arr[:t_run].copy())
    h.comm_profile = profiles[:t_run]
    return h


def train(problem, compressor=None, *, nodes: int = 4, steps: int = 100, lr=0.1, batch_size: int = 1, seed: int = 0,
          network="10gbe", compute=None, collective: str = "auto", error_feedback: bool = False,
          momentum: float = 0.0, partition: str = "iid", eval_every: int = 1, progress: bool = False,
          callback=None, device: str = "cpu", aggregator=None, byzantine: int = 0, attack=None,
          staleness: int = 0, delays: str = "uniform", dgc=None) -> History:
    """Train with P simulated nodes and return the :class:`History`.

    Args:
        problem: a problem name, config dict or object (``simdist.problems``); or a whole run config
            (a :class:`TrainConfig`, a dict with a ``problem`` key, or the path of a TOML file), in which
            case the other arguments must be left at their defaults.
        compressor: a compressor name, config or object (``simdist.compressors``), or None (full precision).
        nodes, steps, lr, batch_size, seed, network, compute, collective, error_feedback, momentum,
            partition, eval_every, device: see :class:`TrainConfig` (``device="cuda"``: the run on the GPU,
            :mod:`simdist.engine.device`).
        aggregator, byzantine, attack: a robust aggregation rule, the number of Byzantine nodes (the
            last ones) and their attack (:mod:`simdist.robust`; see :class:`TrainConfig`).
        staleness, delays: bounded-staleness SGD, the largest gradient delay and how delays are drawn
            (:mod:`simdist.engine.staleness`).
        dgc: None, or Deep Gradient Compression (a DGC config dict or a
            :class:`~simdist.compressors.dgc.DGC`) instead of a compressor: leave ``compressor``,
            ``error_feedback`` and ``momentum`` at their defaults (see :class:`TrainConfig`).
        progress: show a progress bar.
        callback: ``callback(t, x, agg)`` after every step's update (see :func:`run`).

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
        return run(cfg, progress=progress, callback=callback)
    obj = problem if isinstance(problem, Problem) else None
    spec = problem.get_config() if obj is not None else problem
    if compressor is not None and not isinstance(compressor, (str, dict)):
        compressor = compressor.get_config()
    cfg = TrainConfig(problem=spec, compressor=compressor, nodes=nodes, steps=steps, lr=lr, batch_size=batch_size,
                      seed=seed, network=network, compute=compute, collective=collective,
                      error_feedback=error_feedback, momentum=momentum, partition=partition, eval_every=eval_every,
                      device=device, aggregator=aggregator, byzantine=byzantine, attack=attack, staleness=staleness,
                      delays=delays, dgc=dgc)
    return run(cfg, progress=progress, problem=obj, callback=callback)
