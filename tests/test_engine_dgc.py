"""Deep Gradient Compression in the simulator (TrainConfig.dgc): steps against an independent drive
of DGC.compress_batch, the identity with top-k + error feedback, the warm-up in the history, the
config round trip and the refusals."""

import json
import math

import numpy as np
import pytest

from simdist import problems
from simdist.collectives.fastpath import allgather_bits
from simdist.compressors.dgc import DGC
from simdist.engine.comm import Diverged, _sampling_rng, communicate, init_comm
from simdist.engine.config import TrainConfig
from simdist.engine.distributed import run_rank
from simdist.engine.loop import train
from simdist.problems.partition import sample_minibatch

KEYS = ("loss", "grad_norm", "bits", "wire_bits", "sim_time")


def _run_captured(prob, dgc, **kw):
    """The run's history and, per step, (x_t it was computed at, the aggregate it applied)."""
    seen = []
    h = train(prob, dgc=dgc, callback=lambda t, x, agg: seen.append((np.array(x), np.array(agg))), **kw)
    xs = [np.array(prob.x0, np.float64)] + [x for x, _ in seen[:-1]]
    return h, xs, [agg for _, agg in seen]


def _grads(prob, parts, x, B, seed, t):
    """Step t's (P, d) gradient matrix at x, as the loop samples and casts it."""
    G = prob.grads(x, sample_minibatch(parts, B, _sampling_rng(seed, t)))
    return np.array(G, dtype=getattr(prob, "dtype", np.float64), order="C")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cfg", [
    {"momentum": 0.9, "sparsity": 0.99, "warmup_steps": 6, "clip_norm": 2.0, "momentum_masking": True},
    {"momentum": 0.5, "sparsity": 0.9, "warmup_steps": 0, "clip_norm": None, "momentum_masking": False},
])
def test_steps_equal_an_independent_drive_of_dgc(cfg, dtype):
    prob = problems.make("least_squares", d=40, n=200, dtype=dtype)
    P, B, seed, T, lr = 5, 3, 7, 9, 0.05
    h, xs, aggs = _run_captured(prob, cfg, nodes=P, batch_size=B, seed=seed, steps=T, lr=lr)
    assert h.stop_reason is None and h.steps_run == T
    dgc = DGC.from_config({"name": "dgc", **cfg})
    parts = prob.partition(P, "iid", seed)
    state = dgc.init((P, prob.dim), prob.dtype)
    for t in range(T):
        batch, state = dgc.compress_batch(_grads(prob, parts, xs[t], B, seed, t), state, t)
        C = dgc.decompress_batch(batch)
        want = np.zeros(prob.dim)
        for i in range(P):  # rows in order, in float64, from +0.0
            want += C[i].astype(np.float64)
        want /= P
        np.testing.assert_array_equal(aggs[t], want, err_msg=f"step {t}")
        assert h.bits[t] == batch.nbits.mean()
        assert h.wire_bits[t] == allgather_bits(batch.nbits).total_bits / P
        if t + 1 < T:  # the engine's update, with no momentum of its own
            np.testing.assert_array_equal(xs[t + 1], xs[t] - lr * want)


@pytest.mark.parametrize("problem,sparsity", [("least_squares", 0.9), ("logistic", 0.75), ("mean_estimation", 0.5)])
def test_dgc_without_momentum_clipping_and_warmup_is_topk_with_error_feedback(problem, sparsity):
    # Exact on float64 problems (every built-in problem's default): the engine's error-feedback
    # memory is in the gradients' dtype, so for float64 it does DGC's float64 steps (p = g + e,
    # e = p - c) bit for bit. For float32 gradients the engine keeps a float32 memory while DGC's
    # accumulation stays float64 (it carries the rounding of g + v), so the runs differ there.
    prob = problems.make(problem)
    dgc = DGC(momentum=0.0, sparsity=sparsity, warmup_steps=0, clip_norm=None)
    k = dgc.k_at(0, prob.dim)
    kw = dict(nodes=4, steps=30, lr=0.1, batch_size=2, seed=3)
    a = train(prob, dgc=dgc, **kw)
    b = train(prob, {"name": "topk", "k": k}, error_feedback=True, **kw)
    assert a.stop_reason is None and a.steps_run == 30
    for key in KEYS:
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)


def test_the_warmup_shows_in_the_bits():
    prob = problems.make("least_squares", d=512, n=200)
    dgc = DGC(momentum=0.9, sparsity=0.999, warmup_steps=8)  # 4 stages of 2 steps: k = 128, 32, 8, 2, then 1
    d, T = prob.dim, 12
    h = train(prob, dgc=dgc, nodes=3, steps=T, lr=0.01, seed=1)
    ks = [dgc.k_at(t, d) for t in range(T)]
    assert ks == [128, 128, 32, 32, 8, 8, 2, 2, 1, 1, 1, 1]
    index_bits = math.ceil(math.log2(d))
    for t, k in enumerate(ks):  # k float32 values, at most k fixed-width indices and a small header
        assert 32 * k < h.bits[t] < 32 * k + k * index_bits + 64, (t, k, h.bits[t])
    stages = [h.bits[2 * j: 2 * j + 2] for j in range(4)] + [h.bits[8:]]
    for hi, lo in zip(stages, stages[1:]):  # every step of a stage sends less than every step before it
        assert lo.max() < hi.min()


def test_config_round_trip(tmp_path):
    spec = {"momentum": 0.9, "sparsity": 0.999, "warmup_steps": 100, "clip_norm": None, "momentum_masking": True}
    cfg = TrainConfig(problem="least_squares", dgc=spec)
    assert cfg.dgc == {"name": "dgc", **spec}
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert TrainConfig(problem="least_squares", dgc=DGC(**spec)) == cfg
    assert TrainConfig(problem="least_squares", dgc="dgc").dgc == DGC().get_config()
    toml = tmp_path / "run.toml"
    toml.write_text('steps = 5\n[problem]\nname = "least_squares"\n[dgc]\nmomentum = 0.9\nsparsity = 0.999\n'
                    'warmup_steps = 100\n')
    assert TrainConfig.from_toml(toml) == TrainConfig(problem="least_squares", steps=5, dgc=spec)
    assert train(toml).config["dgc"] == cfg.dgc
    assert TrainConfig(problem="least_squares").dgc is None


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"compressor": "topk"}, ValueError, r"compressor must be None with dgc: DGC sends its own top-k payloads"),
    ({"error_feedback": True}, ValueError, r"error_feedback must be false with dgc: DGC keeps its own accumulation"),
    ({"momentum": 0.9}, ValueError, r"momentum must be 0 with dgc: DGC's momentum correction .* replaces"),
    ({"collective": "ring"}, ValueError, r"collective must be 'auto' or 'allgather' with dgc"),
    ({"collective": "sparse_dynamic"}, ValueError, r"collective must be 'auto' or 'allgather' with dgc"),
    ({"device": "cuda"}, ValueError, r"device='cuda' does not run dgc: DGC's state and codec are on the host"),
    ({"aggregator": "median"}, ValueError, r"aggregator must be None with dgc"),
    ({"dgc": {"sparsity": 0.9, "k": 3}}, ValueError, r"unknown parameter\(s\) \['k'\] for stateful wrapper 'dgc'"),
    ({"dgc": {"name": "topk"}}, ValueError, r"unknown stateful wrapper"),
    ({"dgc": {"sparsity": 1.0}}, ValueError, r"sparsity must be in \[0.0, 1.0\)"),
    ({"dgc": 0.9}, TypeError, r"dgc must be None, a DGC config dict or a DGC object"),
])
def test_refusals_name_the_parameter(kwargs, exc, match):
    kwargs = {"dgc": {"sparsity": 0.9}, **kwargs}
    with pytest.raises(exc, match=match):
        TrainConfig(problem="least_squares", **kwargs)
    with pytest.raises(exc, match=match):
        train("least_squares", steps=1, **kwargs)


def test_init_comm_refusals_and_the_distributed_loop():
    with pytest.raises(ValueError, match="compressor must be None with dgc"):
        init_comm("topk", 4, 8, dgc=DGC())
    with pytest.raises(ValueError, match="error_feedback must be false with dgc"):
        init_comm(None, 4, 8, dgc=DGC(), error_feedback=True)
    with pytest.raises(ValueError, match="collective must be 'auto' or 'allgather' with dgc"):
        init_comm(None, 4, 8, dgc=DGC(), collective="sparse_recursive_doubling")
    with pytest.raises(ValueError, match="device='cuda' does not run dgc"):
        init_comm(None, 4, 8, dgc=DGC(), device="cuda")
    with pytest.raises(ValueError, match="aggregator must be None with dgc"):
        init_comm(None, 4, 8, dgc=DGC(), aggregator="median")
    with pytest.raises(ValueError, match="dgc runs in the simulator only"):
        run_rank(TrainConfig(problem="least_squares", nodes=2, dgc={"sparsity": 0.9}), None)


def test_an_accumulation_beyond_what_topk_sends_is_divergence():
    st = init_comm(None, 2, 4, dgc={"momentum": 0.0, "sparsity": 0.5})
    with pytest.raises(Diverged, match=r"dgc cannot encode the gradient \+ DGC accumulation at step 0 \(diverged\)"):
        communicate(np.full((2, 4), 1e300), st, 0)  # beyond the float32 values of a top-k message
    st = init_comm(None, 2, 4, dtype=np.float32, dgc={"momentum": 0.0, "sparsity": 0.5})
    G = np.full((2, 4), 3e38, np.float32)
    communicate(G.copy(), st, 0)  # v = 3e38 on the 2 unsent entries of each row
    with pytest.raises(Diverged, match=r"at step 1 \(diverged\).*overflows float32"):
        communicate(G.copy(), st, 1)
    h = train("mean_estimation", nodes=2, steps=50, lr=1e20, dgc={"momentum": 0.0, "sparsity": 0.5})
    assert h.stopped_at == 2 and h.stop_reason.startswith("dgc cannot encode the gradient + DGC accumulation at step 2")
    assert h.steps_run == 2  # the run stops as with any compressor, keeping the steps before
