"""Run config, lr schedules and the history files."""

import json

import numpy as np
import pytest

from simdist.engine import schedules
from simdist.engine.config import TrainConfig
from simdist.engine.history import FIELDS, History


def test_config_roundtrips_and_normalises_specs(tmp_path):
    c = TrainConfig(problem="least_squares", compressor="qsgd", nodes=8, lr={"name": "inverse_time", "lr0": 0.5})
    assert c.problem == {"name": "least_squares"} and c.compressor == {"name": "qsgd"}
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    toml = tmp_path / "run.toml"
    toml.write_text('nodes = 3\nsteps = 7\nlr = 0.2\n[problem]\nname = "mean_estimation"\nd = 5\n'
                    '[compressor]\nname = "topk"\nk = 2\n')
    t = TrainConfig.from_toml(toml)
    assert (t.nodes, t.steps, t.lr, t.problem, t.compressor) == (3, 7, 0.2, {"name": "mean_estimation", "d": 5},
                                                                  {"name": "topk", "k": 2})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"nodes": 0}, r"nodes must be in \[1, inf\]"),
        ({"steps": 0}, r"steps must be in \[1, inf\]"),
        ({"lr": 0.0}, r"lr must be in \(0.0, inf\]"),
        ({"lr": -1}, r"lr must be in"),
        ({"batch_size": 0}, r"batch_size must be in"),
        ({"momentum": 1.0}, r"momentum must be in \[0.0, 1.0\)"),
        ({"partition": "random"}, r"partition must be one of"),
        ({"compressor": 3}, r"compressor must be a registered name"),
        ({"error_feedback": "yes"}, r"error_feedback must be true or false"),
    ],
)
def test_config_errors_name_the_parameter(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TrainConfig(problem="least_squares", **kwargs)


def test_config_unknown_keys():
    with pytest.raises(ValueError, match="unknown config key"):
        TrainConfig.from_dict({"problem": "least_squares", "nodez": 3})
    with pytest.raises(ValueError, match="needs a 'problem'"):
        TrainConfig.from_dict({"nodes": 3})


def test_schedules():
    assert schedules.make(0.3)(100) == 0.3
    inv = schedules.make({"name": "inverse_time", "lr0": 1.0, "t0": 4})
    assert [inv(t) for t in (0, 4, 12)] == [1.0, 0.5, 0.25]
    b = schedules.make({"name": "bubeck", "L": 2.0, "R": 1.0, "sigma2": 4.0, "T": 8})
    gamma = 1.0 / 2.0 * np.sqrt(2.0 / 8)  # (R / sigma) sqrt(2/T)
    assert b(3) == pytest.approx(1.0 / (2.0 + 1.0 / gamma))
    assert schedules.make({"name": "bubeck", "L": 4.0, "sigma2": 0.0})(0) == 0.25
    with pytest.raises(ValueError, match="unknown lr schedule"):
        schedules.make("cosine")
    with pytest.raises(ValueError, match="lr0 must be in"):
        schedules.make({"name": "inverse_time", "lr0": -1})


def _history():
    h = History(config={"problem": {"name": "x"}}, seed=3)
    h.loss = np.array([2.0, 1.0, 0.5])
    h.grad_norm = np.array([3.0, 2.0, 1.0])
    h.bits = np.array([100.0, 100.0, 90.0])
    h.wire_bits = np.array([300.0, 300.0, 270.0])
    h.sim_time = np.array([1e-3, 1e-3, 1e-3])
    h.wall_time = np.array([0.1, 0.1, 0.1])
    return h


def test_history_json_and_csv_roundtrip(tmp_path):
    h = _history()
    h.save_json(tmp_path / "h.json")
    data = json.loads((tmp_path / "h.json").read_text())
    assert {"config", "seed", *FIELDS} <= set(data) and data["seed"] == 3
    g = History.load_json(tmp_path / "h.json")
    for f in FIELDS:
        assert np.array_equal(getattr(g, f), getattr(h, f))
    assert g.summary() == h.summary() and h.summary()["total_bits_per_node"] == 290.0
    h.save_csv(tmp_path / "h.csv")
    lines = (tmp_path / "h.csv").read_text().splitlines()
    assert lines[0] == "step," + ",".join(FIELDS) and len(lines) == 4
    c = History.load_csv(tmp_path / "h.csv")
    assert np.array_equal(c.loss, h.loss)


def test_history_rejects_foreign_json():
    with pytest.raises(ValueError, match="missing keys"):
        History.from_dict({"config": {}, "loss": []})
