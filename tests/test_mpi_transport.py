"""The MPI transport (mpi4py) and ``simdist launch --backend mpi`` (4 processes under mpirun):
real histories equal the simulated ones exactly, traces and outputs equal the simulator's,
a dead or stalled rank makes the others fail within the timeout, the launcher's exit code.

Skipped only where mpi4py or mpirun is missing (CI installs both: openmpi-bin, pip mpi4py)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
from _launch import (
    BASE, ENV, P, assert_collectives_equal_simulator, assert_same_history, read_results, write_worker,
)

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


TOPK_EF = BASE.replace("lr = 0.05\n", "lr = 0.05\nerror_feedback = true\n") + '[compressor]\nname = "topk"\nk = 3\n'


TOPK_EF_DYNAMIC = TOPK_EF.replace("error_feedback = true\n", 'error_feedback = true\ncollective = "sparse_dynamic"\n')
ROBUST_STALE = TOPK_EF.replace("error_feedback = true\n", 'error_feedback = true\naggregator = "geometric_median"\n'
                               'byzantine = 1\nattack = {name = "ipm", epsilon = 0.5}\nstaleness = 2\n')


@needs_mpi
@pytest.mark.parametrize("toml", [BASE, TOPK_EF, TOPK_EF_DYNAMIC, ROBUST_STALE],
                         ids=["full_precision", "topk_ef", "topk_ef_sparse_dynamic", "topk_ef_geomedian_ipm_stale"])
def test_launch_mpi_history_equals_simulation_exactly(tmp_path, toml):
    cfg = tmp_path / "run.toml"
    cfg.write_text(textwrap.dedent(toml))
    real, sim = tmp_path / "real.json", tmp_path / "sim.json"
    r = subprocess.run([sys.executable, "-m", "simdist", "launch", "--nodes", str(P), "--backend", "mpi", str(cfg),
                        "--out", str(real), "--timeout", "20"], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "over 4 processes (mpi)" in r.stdout
    assert_same_history(real, cfg, sim)


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
    assert_same_history(real, cfg, sim)


WORKER = """\
from simdist.transports.mpi import MPITransport
tr = MPITransport(timeout=float(os.environ["TO"]))
if mode == "trace":
    res = run_collectives(tr, tr.rank)
    got = tr.gather_bytes(np.full(tr.rank + 1, tr.rank, np.uint8), root=1)
    res["gather"] = None if got is None else [g.tolist() for g in got]
    res["bcast"] = tr.bcast_bytes(np.arange(5, dtype=np.uint8) if tr.rank == 3 else None, root=3).tolist()
else:
    res = after_failure(tr, tr.rank, mode, sleep_s=120)
write_result(out, tr.rank, res)
if mode == "stall":
    # wait (bounded) for the other survivors to write theirs, then abort the job as documented
    t1 = time.time()
    while time.time() - t1 < 20 and not all(os.path.exists(f"{out}.{r}") for r in (0, 1, 3)):
        time.sleep(0.05)
    tr.abort(3)
"""


def _run_workers(tmp_path, mode, timeout_s):
    script = write_worker(tmp_path, WORKER)
    t0 = time.perf_counter()
    r = subprocess.run(_mpirun_cmd() + [sys.executable, str(script), mode, str(tmp_path / "res")],
                       env=dict(ENV, TO=str(timeout_s)), capture_output=True, text=True, timeout=90)
    return read_results(tmp_path), time.perf_counter() - t0, r


@needs_mpi
def test_dense_collectives_over_mpi_equal_the_simulator(tmp_path):
    res, _, r = _run_workers(tmp_path, "trace", 20)
    assert r.returncode == 0 and sorted(res) == list(range(P)), r.stderr[-3000:]
    assert_collectives_equal_simulator(res)
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
