"""The torch.distributed transport, the per-rank training loop and ``simdist launch`` (4 gloo
processes on loopback): real histories equal the simulated ones, traces equal the simulator's,
a dead or stalled rank raises TimeoutError within the timeout, the launcher's exit code."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from _launch import (
    BASE, ENV, P, assert_collectives_equal_simulator, assert_same_history, read_results, write_worker,
)

torch = pytest.importorskip("torch", reason="torch is not installed (CI installs it: pip install torch)")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

from simdist.transports.torch_dist import decode_payload, encode_payload, free_port  # noqa: E402


def _launch(tmp_path, toml: str, *extra, timeout=20):
    cfg = tmp_path / "run.toml"
    cfg.write_text(textwrap.dedent(toml))
    real, sim = tmp_path / "real.json", tmp_path / "sim.json"
    r = subprocess.run([sys.executable, "-m", "simdist", "launch", "--nodes", str(P), "--backend", "gloo", str(cfg),
                        "--out", str(real), "--timeout", str(timeout), *extra],
                       capture_output=True, text=True, env=ENV, timeout=120)
    return r, cfg, real, sim


@pytest.mark.parametrize("extra", [
    'error_feedback = true\n[compressor]\nname = "topk"\nk = 3\n',
    '[compressor]\nname = "sign"\n',
    'error_feedback = true\ncollective = "sparse_split_allgather"\n[compressor]\nname = "topk"\nk = 3\n',
    'collective = "sparse_recursive_doubling"\n[compressor]\nname = "randk"\nk = 4\n',
    'error_feedback = true\naggregator = "median"\nbyzantine = 1\nattack = "sign_flip"\nstaleness = 2\n'
    '[compressor]\nname = "qsgd"\ns = 4\n',
    'aggregator = {name = "krum", f = 0, m = 2}\nbyzantine = 1\nattack = {name = "gaussian", sigma = 0.5}\n'
    'staleness = 3\ndelays = "fixed"\n[compressor]\nname = "topk"\nk = 3\n',
], ids=["topk_ef", "sign", "topk_ef_sparse_split_allgather", "randk_sparse_recursive_doubling",
        "qsgd_ef_median_byzantine_stale", "topk_multikrum_gaussian_fixed_delay"])
def test_launch_history_equals_simulation_exactly(tmp_path, extra):
    toml = BASE.replace("lr = 0.05\n", "lr = 0.05\n" + extra.split("[compressor]")[0]) + (
        "[compressor]" + extra.split("[compressor]")[1])
    r, cfg, real, sim = _launch(tmp_path, toml)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_history(real, cfg, sim)


@pytest.mark.parametrize("extra", ["", 'aggregator = {name = "trimmed_mean", beta = 0.25}\nbyzantine = 1\n'
                                       'attack = {name = "sign_flip", scale = 3.0}\nstaleness = 2\n'],
                         ids=["ring", "allgather_trimmed_mean_byzantine_stale"])
def test_launch_full_precision_matches_simulation(tmp_path, extra):
    r, cfg, real, sim = _launch(tmp_path, BASE.replace("lr = 0.05\n", "lr = 0.05\n" + extra))
    assert r.returncode == 0, r.stderr[-3000:]
    # the simulator sums the fp32 rows in the ring's own order (fastpath.allreduce_sum): bit-exact; with a
    # robust rule both sides allgather the fp32 rows and apply it
    assert_same_history(real, cfg, sim)


WORKER = """\
from simdist.transports.torch_dist import TorchTransport
rank = int(os.environ["RANK"])
tr = TorchTransport(timeout=float(os.environ["TO"]))
write_result(out, rank, run_collectives(tr, rank) if mode == "trace" else after_failure(tr, rank, mode, sleep_s=60))
"""


def _run_workers(tmp_path, mode, timeout_s):
    """Start P worker processes; returns (results, elapsed seconds, each rank's output tail). Output
    goes to files, not pipes: a chatty rank can never block on a full pipe nobody reads."""
    script = write_worker(tmp_path, WORKER)
    port, out = free_port(), tmp_path / "res"
    logs = [tmp_path / f"rank{r}.log" for r in range(P)]
    procs = []
    for r in range(P):
        with open(logs[r], "wb") as f:  # the child keeps its own descriptor
            procs.append(subprocess.Popen([sys.executable, str(script), mode, str(out)],
                                          env=dict(ENV, RANK=str(r), WORLD_SIZE=str(P), MASTER_ADDR="127.0.0.1",
                                                   MASTER_PORT=str(port), TO=str(timeout_s)),
                                          stdout=f, stderr=subprocess.STDOUT))
    t0 = time.perf_counter()
    for r, p in enumerate(procs):
        if mode == "stall" and r == 2:
            continue
        p.wait(timeout=90)
    elapsed = time.perf_counter() - t0
    if mode == "stall":
        procs[2].kill()
        procs[2].wait()
    return read_results(tmp_path), elapsed, [log.read_text(errors="replace")[-2000:] for log in logs]


def test_dense_collectives_over_gloo_equal_the_simulator(tmp_path):
    res, _, logs = _run_workers(tmp_path, "trace", 20)
    assert sorted(res) == list(range(P)), logs
    assert_collectives_equal_simulator(res)


@pytest.mark.parametrize("mode", ["die", "stall"])
def test_a_dead_or_stalled_rank_makes_the_others_time_out(tmp_path, mode):
    timeout_s = 3.0
    res, elapsed, logs = _run_workers(tmp_path, mode, timeout_s)
    assert 2 not in res
    assert sorted(res) == [0, 1, 3], logs
    for r in (0, 1, 3):
        err = res[r]["error"]
        assert err is not None and f"rank {r}:" in err and "rank" in err.split(":", 1)[1], err
        assert res[r]["seconds"] < timeout_s + 2.0  # within the configured timeout (+ scheduling slack)
    # the neighbours of rank 2 in the ring name it (rank 3 receives from 2)
    assert "from rank 2" in res[3]["error"]
    assert elapsed < 60


def test_launcher_exit_code_and_error_of_a_failed_rank(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(BASE.replace("steps = 25", "steps = 2") + '[compressor]\nname = "topk"\nk = 2\n')
    # (success and its exit code 0 are covered above) rank 0 cannot write its history (the
    # path's parent is a file): non-zero, naming rank 0
    r = subprocess.run([sys.executable, "-m", "simdist", "launch", "--nodes", str(P), str(cfg), "--out",
                        str(cfg / "h.json"), "--timeout", "10"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 1
    assert "rank 0 of 4 failed" in r.stderr
    # a bad config is refused before anything starts
    r = subprocess.run([sys.executable, "-m", "simdist", "launch", "--nodes", "0", str(cfg), "--out",
                        str(tmp_path / "x.json")], capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 2 and "nodes" in r.stderr


def test_wire_body_round_trip_and_rejects_malformed():
    parts = (np.array([1, 2**40], np.int64), np.arange(3, dtype=np.float32), b"xyz", np.zeros(0, np.uint8))
    got = decode_payload(encode_payload(parts))
    assert got[0].tolist() == [1, 2**40] and got[1].dtype == np.float32 and got[2] == b"xyz" and got[3].size == 0
    single = decode_payload(encode_payload(np.array([1.5, -2.0])))
    assert single.dtype == np.float64 and single.tolist() == [1.5, -2.0]
    body = encode_payload(parts)
    for bad in (body[:-1], np.concatenate([body, [0]]), body[:5]):
        with pytest.raises(ValueError, match="malformed"):
            decode_payload(bad)
    with pytest.raises(TypeError):
        encode_payload([1, 2])
