"""Shared scaffolding of the real-transport tests (test_torch_transport.py, test_mpi_transport.py).

Both run ``simdist launch`` over P = 4 processes and compare with the simulator, and both start
worker scripts that run the dense collectives (``trace`` mode) or lose rank 2 (``die``: it exits;
``stall``: it sleeps) and record what each surviving rank saw. The transport-specific parts (how a
worker builds its transport and learns its rank, how the processes are started) stay in the test
modules; the worker side of this file runs inside those scripts (they put tests/ on sys.path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

P = 4
ENV = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
BASE = """\
seed = 5
nodes = 4
steps = 25
batch_size = 4
lr = 0.05
[problem]
name = "least_squares"
"""
_HEADER = f"""\
import os, sys, time
import numpy as np
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from _launch import after_failure, run_collectives, write_result
mode, out = sys.argv[1], sys.argv[2]
"""


# --- the test side ---------------------------------------------------------------------------------


def simulate(cfg, sim) -> dict:
    """Run ``simdist train`` on ``cfg`` with P nodes, writing the history to ``sim``; return it."""
    r = subprocess.run([sys.executable, "-m", "simdist", "train", str(cfg), "--out", str(sim), "--no-progress",
                        "--set", f"nodes={P}"], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(sim.read_text())


def assert_same_history(real, cfg, sim):
    """The launched run's history (file ``real``) equals the simulated one of ``cfg``, float for float."""
    a, b = json.loads(real.read_text()), simulate(cfg, sim)
    assert len(a["loss"]) == 25 and a["stop_reason"] is None
    for key in ("loss", "grad_norm", "bits", "wire_bits", "sim_time", "comm_profile"):
        assert a[key] == b[key], key  # bit-exact: the same floats (and the same cost profiles)
    assert a["config"] == b["config"]


def write_worker(tmp_path, body: str) -> Path:
    """Write a worker script: the shared header (``mode``, ``out``, the helpers below), then ``body``."""
    script = tmp_path / "worker.py"
    script.write_text(_HEADER + body)
    return script


def read_results(tmp_path) -> dict:
    """{rank: the JSON result the rank wrote} for the ranks that wrote one."""
    return {r: json.loads((tmp_path / f"res.{r}").read_text()) for r in range(P) if (tmp_path / f"res.{r}").exists()}


def assert_collectives_equal_simulator(res):
    """The ``trace`` results of every rank: outputs and traces equal the simulated transport's."""
    from simdist.collectives import dense
    from simdist.collectives.simulated import SimulatedTransport
    from simdist.collectives.trace import Trace

    for name in _INPUTS:
        outs, trace = SimulatedTransport(P).run(dense.make(name), [_INPUTS[name](q) for q in range(P)])
        real = Trace.from_arrays(P, np.concatenate([np.array(res[q][name]["messages"]).reshape(-1, 4) for q in range(P)]),
                                 np.concatenate([np.array(res[q][name]["reductions"]).reshape(-1, 3) for q in range(P)]))
        assert real == trace, name  # same (round, src, dst, nbits) and reductions (P a power of two)
        for q in range(P):
            assert res[q][name]["out"] == _jsonable(name, outs[q]), name  # bit-identical sums


# --- the worker side -------------------------------------------------------------------------------

_INPUTS = {  # rank -> input of each collective
    "ring": lambda rank: np.arange(10, dtype=np.float32) * (rank + 1),
    "recursive_doubling": lambda rank: np.arange(6, dtype=np.float64) + rank,
    "rabenseifner": lambda rank: np.arange(7, dtype=np.float32) - rank,
    "allgather": lambda rank: (bytes([rank] * (rank + 1)), 8 * rank + 3),
}


def _jsonable(name, out):
    return [[list(bytes(b)), int(n)] for b, n in out] if name == "allgather" else out.tolist()


def run_collectives(tr, rank) -> dict:
    """``trace`` mode: run each dense collective; {name: {"out", "messages", "reductions"}}."""
    from simdist.collectives import dense

    res = {}
    for name, data in _INPUTS.items():
        o, t = tr.run(dense.make(name), data(rank))
        res[name] = {"out": _jsonable(name, o), "messages": t.messages().tolist(),
                     "reductions": t.reductions().tolist()}
    return res


def after_failure(tr, rank, mode, sleep_s) -> dict:
    """``die`` / ``stall`` mode: one ring, then rank 2 exits (7) or sleeps ``sleep_s``; the others run
    a second ring and report {"error": the TimeoutError's message or None, "seconds": time to it}."""
    from simdist.collectives import dense

    tr.run(dense.make("ring"), np.ones(8, np.float32))
    if rank == 2:
        if mode == "die":
            os._exit(7)
        time.sleep(sleep_s)
    t0 = time.perf_counter()
    try:
        tr.run(dense.make("ring"), np.ones(8, np.float32), context="after the failure")
        return {"error": None}
    except TimeoutError as exc:
        return {"error": str(exc), "seconds": time.perf_counter() - t0}


def write_result(out, rank, res):
    """Write ``res`` to ``{out}.{rank}`` atomically (a reader never sees half a file)."""
    with open(f"{out}.{rank}.tmp", "w") as f:
        json.dump(res, f)
    os.replace(f"{out}.{rank}.tmp", f"{out}.{rank}")
