"""History.reprice and `simdist reprice`: a recorded run priced on another network (or compute
model) equals a fresh run there, bit for bit; everything but sim_time is unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest

import simdist
from simdist.cli.main import main
from simdist.engine.history import History

KW = dict(nodes=6, steps=12, lr=0.05, batch_size=4, seed=2)


@pytest.mark.parametrize("comp,collective", [
    (None, "auto"), (None, "rabenseifner"), ("sign", "auto"), ({"name": "qsgd", "s": 4}, "allgather"),
    ({"name": "topk", "ratio": 0.1}, "sparse_split_allgather"), ({"name": "randk", "k": 3}, "sparse_recursive_doubling"),
])
def test_reprice_equals_a_run_on_that_network(comp, collective):
    h = simdist.train("least_squares", comp, network="10gbe", collective=collective, **KW)
    assert len(h.comm_profile) == h.steps_run
    assert np.array_equal(h.reprice("10gbe").sim_time, h.sim_time)  # its own network: unchanged
    for net in ("aries", "ib-hdr", {"alpha": 3e-6, "beta": 2e-10, "gamma": 1e-11}):
        r = h.reprice(net)
        fresh = simdist.train("least_squares", comp, network=net, collective=collective, **KW)
        np.testing.assert_array_equal(r.sim_time, fresh.sim_time)
        for f in ("loss", "grad_norm", "bits", "wire_bits"):
            np.testing.assert_array_equal(getattr(r, f), getattr(h, f))
        assert r.config["network"] == fresh.config["network"]
        assert r.extra["repriced_from"]["network"] == "10gbe"


def test_reprice_with_another_compute_model():
    h = simdist.train("mlp_digits", "sign", network="10gbe", compute="v100", **KW)
    for compute in ("a100", None):
        fresh = simdist.train("mlp_digits", "sign", network="aries", compute=compute, **KW)
        np.testing.assert_array_equal(h.reprice("aries", compute=compute).sim_time, fresh.sim_time)


def test_profiles_survive_json_and_old_files_say_what_is_missing(tmp_path):
    h = simdist.train("least_squares", "sign", network="10gbe", **KW)
    path = h.save_json(tmp_path / "run.json")
    g = History.load_json(path)
    assert all(np.array_equal(a, b) for a, b in zip(g.comm_profile, h.comm_profile))
    np.testing.assert_array_equal(g.reprice("aries").sim_time, h.reprice("aries").sim_time)
    data = json.loads(path.read_text())
    assert len(data["comm_profile"]["step"]) == 12 and len(data["comm_profile"]["profiles"]) <= 12
    old = {k: v for k, v in data.items() if k != "comm_profile"}
    with pytest.raises(ValueError, match="comm_profile"):
        History.from_dict(old).reprice("aries")
    short = {"profiles": data["comm_profile"]["profiles"], "step": data["comm_profile"]["step"][:-1]}
    with pytest.raises(ValueError, match="comm_profile has 11 steps"):
        History.from_dict({**data, "comm_profile": short})
    with pytest.raises(ValueError, match="malformed comm_profile"):
        History.from_dict({**data, "comm_profile": {"profiles": [], "step": [0] * 12}})
    # a list of per-step profiles is read too
    listed = History.from_dict({**data, "comm_profile": [p.tolist() for p in h.comm_profile]})
    np.testing.assert_array_equal(listed.reprice("aries").sim_time, h.reprice("aries").sim_time)


def test_a_full_precision_run_stores_its_profile_once(tmp_path):
    h = simdist.train("least_squares", None, network="10gbe", **KW)
    data = json.loads(h.save_json(tmp_path / "fp.json").read_text())
    assert len(data["comm_profile"]["profiles"]) == 1 and data["comm_profile"]["step"] == [0] * 12


def test_cli_reprice(tmp_path, capsys):
    h = simdist.train("least_squares", "sign", network="10gbe", **KW)
    run = h.save_json(tmp_path / "run.json")
    assert main(["reprice", str(run), "--network", "aries", "--network", "ib-edr"]) == 0
    out = capsys.readouterr().out
    assert "aries" in out and "ib-edr" in out and "recorded on '10gbe'" in out
    dst = tmp_path / "aries.json"
    assert main(["reprice", str(run), "--network", "aries", "--out", str(dst)]) == 0
    np.testing.assert_array_equal(History.load_json(dst).sim_time, h.reprice("aries").sim_time)
    assert main(["reprice", str(run), "--network", "aries", "--network", "10gbe", "--out", str(dst)]) == 2
    assert main(["reprice", str(tmp_path / "missing.json"), "--network", "aries"]) == 2
    assert main(["reprice", str(run), "--network", "nope"]) == 2
    err = capsys.readouterr().err
    assert "exactly one --network" in err and "not found" in err and "unknown network preset" in err
