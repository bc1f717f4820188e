"""The n-node engine: determinism, config equivalence, the recorded measurements, failures."""

import json

import numpy as np
import pytest

import simdist
from simdist.cli.main import main
from simdist.engine import TrainConfig, run
from simdist.network import make as make_net
from simdist.network import make_compute
from simdist.collectives.fastpath import allreduce_trace


def test_same_seed_same_history_and_config_forms_agree(tmp_path):
    kw = dict(nodes=4, steps=30, lr=0.1, batch_size=2, seed=7, error_feedback=True)
    a = simdist.train("least_squares", {"name": "qsgd", "s": 4}, **kw)
    b = simdist.train("least_squares", {"name": "qsgd", "s": 4}, **kw)
    assert np.array_equal(a.loss, b.loss) and np.array_equal(a.bits, b.bits)
    cfg = {"problem": "least_squares", "compressor": {"name": "qsgd", "s": 4}, **kw}
    c = simdist.train(cfg)
    toml = tmp_path / "r.toml"
    toml.write_text("nodes = 4\nsteps = 30\nlr = 0.1\nbatch_size = 2\nseed = 7\nerror_feedback = true\n"
                    '[problem]\nname = "least_squares"\n[compressor]\nname = "qsgd"\ns = 4\n')
    d = simdist.train(str(toml))
    for h in (c, d):
        assert np.array_equal(h.loss, a.loss) and np.array_equal(h.bits, a.bits)
    e = simdist.train("least_squares", {"name": "qsgd", "s": 4}, **{**kw, "seed": 8})
    assert not np.array_equal(e.loss, a.loss)


def test_full_precision_measurements_match_the_models():
    h = simdist.train("mean_estimation", None, nodes=8, steps=5, lr=0.5, network="10gbe", compute="cpu-core")
    d = 10
    assert np.all(h.bits == 32 * d)
    trace = allreduce_trace("ring", 8, d, 4)
    assert np.all(h.wire_bits == trace.total_bits / 8)
    comm = make_net("10gbe").price(trace)
    compute = make_compute("cpu-core").step_time(1, flops_per_sample=4 * d)  # linear model: ~4 d FLOPs per sample
    assert compute > 0 and np.allclose(h.sim_time, comm + compute, rtol=1e-12)


def test_bits_are_the_payloads_bits():
    h = simdist.train("least_squares", {"name": "topk", "k": 3}, nodes=4, steps=10, lr=0.05)
    # k = 3 float32 values plus the index block (count, mode bit, 3 indices, end gap) of d = 20
    assert np.all(h.bits > 3 * 32) and np.all(h.bits <= 3 * 32 + 3 + 1 + 3 * 5 + 9)
    assert np.all(h.wire_bits > h.bits)  # allgather forwards other nodes' payloads
    q = simdist.train("least_squares", {"name": "qsgd", "s": 2, "encoding": "fixed"}, nodes=4, steps=3, lr=0.05)
    assert np.all(q.bits == 32 + 20 * 3)  # fixed width: scale + d * ceil(log2(2s + 1)) bits, exactly


def test_training_reduces_loss_and_ef_converges_on_the_sign_counterexample():
    # batch_size 1: every compressed gradient is a single-sample one (a batch would average toward grad f).
    # Both samples' gradients vanish at x* = 0 (interpolation), so a constant step converges with EF.
    base = dict(nodes=1, steps=2000, lr=0.05, batch_size=1, seed=0)
    no_ef = simdist.train("sign_counterexample", "sign", **base)
    ef = simdist.train("sign_counterexample", "sign", error_feedback=True, **base)
    eps = 0.1
    assert np.all(no_ef.loss >= 8 * eps**2 * (1 - 1e-9))  # THEORY 4: f(x_t) >= 8 eps^2 forever
    assert ef.loss[-50:].max() < 1e-3 * 8 * eps**2


def test_divergence_stops_with_the_reason():
    h = simdist.train("least_squares", None, nodes=2, steps=200, lr=50.0)
    assert h.diverged and h.stopped_at is not None and h.stopped_at < 200
    assert "diverged" in h.stop_reason or "non-finite" in h.stop_reason
    assert h.steps_run == h.stopped_at and np.all(np.isfinite(h.loss))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"nodes": 0}, "nodes must be in"),
        ({"steps": 0}, "steps must be in"),
        ({"lr": -0.1}, "lr must be in"),
        ({"compressor": "nope"}, "unknown compressor 'nope'"),
        ({"network": "token-ring"}, "unknown network preset"),
        ({"compressor": {"name": "topk", "k": 1000}}, "does not fit the problem's dimension"),
        ({"error_feedback": True}, "error_feedback needs a compressor"),
        ({"collective": "ring", "compressor": "qsgd"}, "cannot aggregate compressed payloads"),
        ({"nodes": 100000}, "nodes must be in"),
    ],
)
def test_bad_runs_name_the_parameter(kwargs, match):
    args = {"steps": 2, **kwargs}
    comp = args.pop("compressor", None)
    with pytest.raises((ValueError, TypeError), match=match):
        simdist.train("least_squares", comp, **args)


def test_cli_train_writes_history(tmp_path, capsys):
    toml = tmp_path / "r.toml"
    toml.write_text('nodes = 2\nsteps = 5\nlr = 0.1\n[problem]\nname = "mean_estimation"\n[compressor]\nname = "qsgd"\n')
    out = tmp_path / "h.json"
    assert main(["train", str(toml), "--out", str(out), "--csv", str(tmp_path / "h.csv"), "--no-progress",
                 "--set", "seed=3"]) == 0
    data = json.loads(out.read_text())
    assert data["seed"] == 3 and data["config"]["nodes"] == 2 and len(data["loss"]) == 5
    assert "final loss" in capsys.readouterr().out
    assert (tmp_path / "h.csv").read_text().startswith("step,loss")
    h = simdist.History.load_json(out)
    assert TrainConfig.from_dict(h.config) == TrainConfig.from_dict(data["config"])
    assert run(TrainConfig.from_dict(h.config)).loss.tolist() == data["loss"]


def test_examples_are_valid_configs():
    from pathlib import Path

    examples = sorted(Path(__file__).parent.parent.joinpath("examples").glob("*.toml"))
    assert len(examples) >= 5
    names = set()
    for p in examples:
        cfg = TrainConfig.from_toml(p)
        names.add(cfg.problem["name"])
    assert names >= set(simdist.problems.available())


def test_callback_sees_every_iterate_and_the_applied_gradient():
    seen = []
    h = simdist.train("mean_estimation", None, nodes=2, steps=4, lr=0.5, callback=lambda t, x, g: seen.append((t, x.copy(), g.copy())))
    assert [t for t, _, _ in seen] == [0, 1, 2, 3]
    x0 = simdist.problems.make("mean_estimation").x0
    assert np.allclose(seen[0][1], x0 - 0.5 * seen[0][2])  # x_1 = x_0 - lr * agg_0 (momentum 0)
    assert np.array_equal(seen[-1][1], np.array(h.extra["x_final"]))
