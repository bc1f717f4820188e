"""The MPI transport (mpi4py) and ``simdist launch --backend mpi`` (4 processes under mpirun):
real histories equal the simulated ones exactly, traces and outputs equal the simulator's,
a dead or stalled rank makes the others fail within the timeout, the launcher's exit code.

Skipped only where mpi4py or mpirun is missing (CI installs both: openmpi-bin, pip mpi4py)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

P = 4
ENV = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
MPIRUN = shutil.which("mpirun") or shutil.which("mpiexec")
_missing = [what for what, ok in (("mpi4py", importlib.util.find_spec("mpi4py") is not None),
                                  ("mpirun/mpiexec", MPIRUN is not None)) if not ok]
needs_mpi = pytest.mark.skipif(bool(_missing), reason=f"{' and '.join(_missing)} not installed "
                               "(CI installs them: apt-get install openmpi-bin libopenmpi-dev; pip install mpi4py)")


def _mpirun_cmd(n=P):
    cmd = [MPIRUN, "-np", str(n)]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    return cmd + ["--oversubscribe"]


BASE = """\
seed = 5
nodes = 4
steps = 25
batch_size = 4
lr = 0.05
[problem]
name = "least_squares"
"""
TOPK_EF = BASE.replace("lr = 0.05\n", "lr = 0.05\nerror_feedback = true\n") + '[compressor]\nname = "topk"\nk = 3\n'


def _simulate(cfg, sim):
    r = subprocess.run([sys.executable, "-m", "simdist", "train", str(cfg), "--out", str(sim), "--no-progress",
                        "--set", f"nodes={P}"], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(sim.read_text())


def _assert_same_history(real, sim):
    a, b = json.loads(real.read_text()), json.loads(sim.read_text())
    assert len(a["loss"]) == 25 and a["stop_reason"] is None
    for key in ("loss", "grad_norm", "bits", "wire_bits", "sim_time"):
        assert a[key] == b[key], key  # bit-exact: the same floats
    assert a["config"] == b["config"]


@needs_mpi
@pytest.mark.parametrize("toml", [BASE, TOPK_EF], ids=["full_precision", "topk_ef"])
def test_launch_mpi_history_equals_simulation_exactly(tmp_path, toml):
    cfg = tmp_path / "run.toml"
    cfg.write_text(textwrap.dedent(toml))
    real, sim = tmp_path / "real.json", tmp_path / "sim.json"
    r = subprocess.run([sys.executable, "-m", "simdist", "launch", "--nodes", str(P), "--backend", "mpi", str(cfg),
                        "--out", str(real), "--timeout", "20"], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "over 4 processes (mpi)" in r.stdout
    _simulate(cfg, sim)
    _assert_same_history(real, sim)


@needs_mpi
def test_launch_under_an_existing_mpirun_runs_the_worker(tmp_path):
    # mpirun ... python -m simdist launch --backend mpi (no --worker): detected from the MPI env
    cfg = tmp_path / "run.toml"
    cfg.write_text(TOPK_EF.replace('"topk"\nk = 3', '"sign"'))
    real, sim = tmp_path / "real.json", tmp_path / "sim.json"
    r = subprocess.run(_mpirun_cmd() + [sys.executable, "-m", "simdist", "launch", "--backend", "mpi", str(cfg),
                                        "--out", str(real), "--timeout", "20"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    _simulate(cfg, sim)
    _assert_same_history(real, sim)


WORKER = """\
import os, sys, time, json
import numpy as np
from simdist.collectives import dense
from simdist.transports.mpi import MPITransport
mode, out = sys.argv[1], sys.argv[2]
tr = MPITransport(timeout=float(os.environ["TO"]))
rank = tr.rank
res = {}
if mode == "trace":
    for name, data in (("ring", np.arange(10, dtype=np.float32) * (rank + 1)),
                       ("recursive_doubling", np.arange(6, dtype=np.float64) + rank),
                       ("rabenseifner", np.arange(7, dtype=np.float32) - rank),
                       ("allgather", (bytes([rank] * (rank + 1)), 8 * rank + 3))):
        o, t = tr.run(dense.make(name), data)
        res[name] = {"out": [[list(bytes(b)), int(n)] for b, n in o] if name == "allgather" else o.tolist(),
                     "messages": t.messages().tolist(), "reductions": t.reductions().tolist()}
    got = tr.gather_bytes(np.full(rank + 1, rank, np.uint8), root=1)
    res["gather"] = None if got is None else [g.tolist() for g in got]
    res["bcast"] = tr.bcast_bytes(np.arange(5, dtype=np.uint8) if rank == 3 else None, root=3).tolist()
else:
    tr.run(dense.make("ring"), np.ones(8, np.float32))
    if rank == 2:
        if mode == "die":
            os._exit(7)
        time.sleep(120)
    t0 = time.perf_counter()
    try:
        tr.run(dense.make("ring"), np.ones(8, np.float32), context="after the failure")
        res = {"error": None}
    except TimeoutError as exc:
        res = {"error": str(exc), "seconds": time.perf_counter() - t0}
with open(f"{out}.{rank}.tmp", "w") as f:
    json.dump(res, f)
os.replace(f"{out}.{rank}.tmp", f"{out}.{rank}")
if mode == "stall":
    # wait (bounded) for the other survivors to write theirs, then abort the job as documented
    t1 = time.time()
    while time.time() - t1 < 20 and not all(os.path.exists(f"{out}.{r}") for r in (0, 1, 3)):
        time.sleep(0.05)
    tr.abort(3)
"""


def _run_workers(tmp_path, mode, timeout_s):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "res"
    t0 = time.perf_counter()
    r = subprocess.run(_mpirun_cmd() + [sys.executable, str(script), mode, str(out)],
                       env=dict(ENV, TO=str(timeout_s)), capture_output=True, text=True, timeout=90)
    elapsed = time.perf_counter() - t0
    res = {}
    for rank in range(P):
        path = tmp_path / f"res.{rank}"
        if path.exists():
            res[rank] = json.loads(path.read_text())
    return res, elapsed, r


@needs_mpi
def test_dense_collectives_over_mpi_equal_the_simulator(tmp_path):
    from simdist.collectives import dense
    from simdist.collectives.simulated import SimulatedTransport
    from simdist.collectives.trace import Trace

    res, _, r = _run_workers(tmp_path, "trace", 20)
    assert r.returncode == 0 and sorted(res) == list(range(P)), r.stderr[-3000:]
    inputs = {"ring": [np.arange(10, dtype=np.float32) * (q + 1) for q in range(P)],
              "recursive_doubling": [np.arange(6, dtype=np.float64) + q for q in range(P)],
              "rabenseifner": [np.arange(7, dtype=np.float32) - q for q in range(P)],
              "allgather": [(bytes([q] * (q + 1)), 8 * q + 3) for q in range(P)]}
    for name, data in inputs.items():
        outs, trace = SimulatedTransport(P).run(dense.make(name), data)
        real = Trace.from_arrays(P, np.concatenate([np.array(res[q][name]["messages"]).reshape(-1, 4) for q in range(P)]),
                                 np.concatenate([np.array(res[q][name]["reductions"]).reshape(-1, 3) for q in range(P)]))
        assert real == trace, name  # same (round, src, dst, nbits) and reductions (P a power of two)
        for q in range(P):
            if name == "allgather":
                assert res[q][name]["out"] == [[list(bytes(b)), int(n)] for b, n in outs[q]]
            else:
                assert res[q][name]["out"] == outs[q].tolist(), name  # bit-identical sums
    # the untraced control helpers
    assert res[1]["gather"] == [[q] * (q + 1) for q in range(P)]
    assert all(res[q]["gather"] is None for q in (0, 2, 3))
    assert all(res[q]["bcast"] == [0, 1, 2, 3, 4] for q in range(P))


@needs_mpi
def test_a_stalled_rank_makes_the_others_time_out_naming_it(tmp_path):
    timeout_s = 3.0
    res, elapsed, r = _run_workers(tmp_path, "stall", timeout_s)
    assert 2 not in res
    assert sorted(res) == [0, 1, 3], r.stderr[-3000:]
    for q in (0, 1, 3):
        err = res[q]["error"]
        assert err is not None and f"rank {q}:" in err and "timed out after 3 s" in err, err
        assert timeout_s - 0.1 < res[q]["seconds"] < timeout_s + 2.0  # the configured timeout (+ scheduling slack)
    assert "from rank 2" in res[3]["error"]  # rank 3 receives from rank 2 in the ring
    assert r.returncode != 0  # the abort stopped the job, the sleeping rank included
    assert elapsed < 45


@needs_mpi
def test_a_dead_rank_stops_the_job_promptly(tmp_path):
    res, elapsed, r = _run_workers(tmp_path, "die", 10.0)
    # mpirun sees rank 2 exit without finalizing and stops the others: non-zero, well within the timeout
    assert r.returncode != 0
    assert 2 not in res
    for q, v in res.items():  # a survivor that got this far timed out rather than finishing
        assert v["error"] is not None
    assert elapsed < 10.0  # the configured timeout: the job stopped before any survivor could time out


@needs_mpi
def test_launcher_exit_code_and_error_of_a_failed_rank(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(BASE.replace("steps = 25", "steps = 2") + '[compressor]\nname = "topk"\nk = 2\n')
    # rank 0 cannot write its history (the path's parent is a file): it aborts the job; exit 1, naming rank 0
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "simdist", "launch", "--nodes", str(P), "--backend", "mpi", str(cfg),
                        "--out", str(cfg / "h.json"), "--timeout", "10"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 1
    assert "[rank 0]" in r.stderr and "the MPI job of 4 ranks failed" in r.stderr
    assert time.perf_counter() - t0 < 60


def test_launcher_refuses_bad_config_and_missing_mpirun(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(BASE)
    env = {k: v for k, v in ENV.items() if not k.startswith(("OMPI_", "PMI", "PMIX_"))}
    r = subprocess.run([sys.executable, "-m", "simdist", "launch", "--nodes", "0", "--backend", "mpi", str(cfg),
                        "--out", str(tmp_path / "x.json")], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "nodes" in r.stderr
    r = subprocess.run([sys.executable, "-m", "simdist", "launch", "--backend", "mpi", str(cfg),
                        "--out", str(tmp_path / "x.json")], capture_output=True, text=True,
                       env=dict(env, PATH=str(tmp_path / "empty")), timeout=60)
    assert r.returncode == 2 and "mpirun" in r.stderr and not (tmp_path / "x.json").exists()


def test_under_mpirun_detects_the_launchers_env():
    from simdist.transports.mpi import under_mpirun

    assert under_mpirun({"OMPI_COMM_WORLD_RANK": "1"}) and under_mpirun({"PMI_RANK": "0"})
    assert under_mpirun({"PMIX_RANK": "3"}) and not under_mpirun({"RANK": "0", "WORLD_SIZE": "4"})
