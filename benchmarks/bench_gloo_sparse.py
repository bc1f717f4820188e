"""Gloo benchmark: SparCML sparse allreduce against torch's dense all_reduce (issue 4, item 5).

P local processes (default 4) join a gloo process group on 127.0.0.1 (a free port) and sum
d = 2**24 float32 gradients of density 1% (k = round(0.01 d) nonzeros per rank, supports drawn
uniformly without replacement from ``default_rng([seed, rank])``, standard normal values).

Measured, per algorithm:

* **wall ms**: best of ``--repeat`` timed runs after one warm-up run; each run starts after a
  ``dist.barrier()``, each rank times its own call, the run's time is the **max over ranks**,
  and the reported time is the least of the runs' times (other load only ever adds time).
* **bytes per rank**: for ``dense_all_reduce`` (``dist.all_reduce(SUM)`` on the full float32
  tensor) the ring allreduce's ``2 (P - 1) / P * 4 d`` bytes sent per rank (a model of gloo's
  traffic, not a measurement: gloo picks its own algorithm internally); for the simdist
  algorithms the exact payload bytes of the trace, ``sum of nbits / 8`` of the messages the rank
  sends (framing headers of :class:`~simdist.transports.TorchTransport` not counted). The
  table gives the max over ranks; the JSON keeps every rank's count.

The sparse algorithms (:func:`simdist.collectives.sparse.make`: ``sparse_recursive_doubling``,
``sparse_split_allgather``, ``sparse_dynamic`` without quantizer, i.e. lossless) run over
:class:`simdist.transports.TorchTransport` with the input ``(indices, values, N)`` and the
default dense output (a length-d float32 array, as all_reduce gives), so the timed region
covers encoding, the messages, decoding, merging and building the dense result.

Checked before anything is reported (the run fails otherwise):

* every rank's dense all_reduce result and every rank's sparse result equal the NumPy sum of the
  P inputs (each rank regenerates all P inputs from the seeds): **bit-exactly** at every index
  with at most 2 contributions (float addition is commutative, so the order cannot matter),
  and within ``2 (m - 1) 2**-24 sum_i |v_i|`` at an index with m >= 3 contributions (two
  summation orders each err by at most ``(m - 1) u sum |v_i|``, u = 2**-24); the number of
  such indices and the largest difference seen are reported;
* all P ranks hold bit-identical sparse results (SHA-256 of the output bytes).

Run (the table goes to stdout, the results atomically to benchmarks/results/gloo_sparse.json):

    python benchmarks/bench_gloo_sparse.py                       # P = 4, d = 2**24, 1%
    python benchmarks/bench_gloo_sparse.py --log2d 18 --repeat 2 # a quick smoke run

The P processes share the machine's cores (the dev VM has 2 cores for 4 ranks), so wall times
include time-slicing between ranks; each process runs with one intra-op thread.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gloo_sparse.json"
U32 = 2.0 ** -24  # unit roundoff of float32


def make_input(seed: int, rank: int, d: int, k: int):
    """Rank ``rank``'s sparse gradient: sorted int64 indices and float32 values."""
    rng = np.random.default_rng([seed, rank])
    idx = np.sort(rng.choice(d, size=k, replace=False, shuffle=False)).astype(np.int64)
    val = rng.standard_normal(k, dtype=np.float32)
    return idx, val


def reference(seed: int, P: int, d: int, k: int):
    """(float32 sum in rank order, contribution count per index, float64 sum of |v|)."""
    ref = np.zeros(d, np.float32)
    mult = np.zeros(d, np.int8)
    absum = np.zeros(d, np.float64)
    for r in range(P):
        idx, val = make_input(seed, r, d, k)
        ref[idx] += val
        mult[idx] += 1
        absum[idx] += np.abs(val.astype(np.float64))
    return ref, mult, absum


def check(out: np.ndarray, ref: np.ndarray, mult: np.ndarray, absum: np.ndarray, what: str) -> dict:
    """Exact where <= 2 contributions, within the summation-order bound elsewhere; raises on failure."""
    if out.dtype != np.float32 or out.shape != ref.shape:
        raise AssertionError(f"{what}: got {out.dtype} {out.shape}, expected float32 {ref.shape}")
    low = mult <= 2
    bad = np.flatnonzero(low & (out.view(np.uint32) != ref.view(np.uint32)))
    if bad.size:
        i = int(bad[0])
        raise AssertionError(f"{what}: {bad.size} entries with <= 2 contributions differ, e.g. [{i}] "
                             f"{out[i]!r} != {ref[i]!r}")
    hi = np.flatnonzero(~low)
    diff = np.abs(out[hi].astype(np.float64) - ref[hi].astype(np.float64))
    bound = 2.0 * (mult[hi].astype(np.float64) - 1.0) * U32 * absum[hi]
    if np.any(diff > bound):
        j = int(np.argmax(diff - bound))
        raise AssertionError(f"{what}: entry {int(hi[j])} with {int(mult[hi[j]])} contributions differs by "
                             f"{diff[j]:.3g} > bound {bound[j]:.3g}")
    return {"exact_entries": int(low.sum()), "entries_3plus": int(hi.size),
            "entries_3plus_not_bitwise_equal": int(np.count_nonzero(diff)),
            "max_abs_diff_3plus": float(diff.max()) if diff.size else 0.0}


# -- one rank ------------------------------------------------------------------------------------


def worker(args) -> None:
    import torch
    import torch.distributed as dist

    from simdist.collectives import sparse
    from simdist.transports import TorchTransport

    # TorchTransport wraps read-only header arrays with torch.from_numpy (harmless for sends: the
    # warning is about writes); silence it so the benchmark output stays readable.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    torch.set_num_threads(1)
    P, rank, d = args.nodes, args.rank, 1 << args.log2d
    k = int(round(args.density * d))
    t = TorchTransport(rank, P, backend="gloo", addr="127.0.0.1", port=args.port, timeout=args.timeout)

    def max_over_ranks(values: list[float]) -> list[float]:
        x = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
        return x.tolist()

    idx, val = make_input(args.seed, rank, d, k)
    ref, mult, absum = reference(args.seed, P, d, k)
    dense_in = np.zeros(d, np.float32)
    dense_in[idx] = val
    results, checks, names = [], {}, ["dense_all_reduce"] + sparse.available()
    nruns = 1 + args.repeat

    # (a) torch's dense all_reduce on the full float32 tensor
    src = torch.from_numpy(dense_in)
    buf = torch.empty_like(src)
    times = []
    for _ in range(nruns):
        buf.copy_(src)
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        times.append(time.perf_counter() - t0)
    out = buf.numpy()
    checks["dense_all_reduce"] = check(out, ref, mult, absum, f"rank {rank} dense_all_reduce")
    ring_bytes = 2 * (P - 1) / P * 4 * d
    per_run = max_over_ranks(times)[1:]
    results.append({"algorithm": "dense_all_reduce", "runs_s": per_run, "best_s": min(per_run),
                    "bytes_per_rank": [ring_bytes] * P, "bytes_source": "model: ring 2(P-1)/P * 4d"})
    dense_out = out.copy()
    del buf, src

    # (b) the simdist sparse allreduces over TorchTransport
    for name in names[1:]:
        algo = sparse.make(name)
        times = []
        for _ in range(nruns):
            dist.barrier()
            t0 = time.perf_counter()
            out, trace = t.run(algo, (idx, val, d), context=name)
            times.append(time.perf_counter() - t0)
        checks[name] = check(out, ref, mult, absum, f"rank {rank} {name}")
        checks[name]["vs_dense_all_reduce_bitwise_equal_entries"] = int(
            np.count_nonzero(out.view(np.uint32) == dense_out.view(np.uint32)))
        sent = int(trace.bits_sent_by_rank()[rank])
        if sent % 8:
            raise AssertionError(f"{name}: rank {rank} sent {sent} bits, not whole bytes")
        digest = np.frombuffer(hashlib.sha256(out.tobytes()).digest(), np.uint8)
        bytes_all = np.zeros(P, np.float64)
        bytes_all[rank] = sent / 8
        bt = torch.from_numpy(bytes_all)
        dist.all_reduce(bt, op=dist.ReduceOp.SUM)
        digests = t.gather_bytes(digest, root=0)
        if rank == 0 and any(bytes(g) != bytes(digests[0]) for g in digests):
            raise AssertionError(f"{name}: the ranks' results are not bit-identical")
        per_run = max_over_ranks(times)[1:]
        results.append({"algorithm": name, "runs_s": per_run, "best_s": min(per_run),
                        "bytes_per_rank": bt.tolist(), "bytes_source": "trace: sum nbits/8 of sends"})
        del out, trace

    all_checks = t.gather_bytes(np.frombuffer(json.dumps(checks).encode(), np.uint8), root=0)
    dist.barrier()
    t.close()
    if rank == 0:
        report = {
            "benchmark": "gloo_sparse", "nodes": P, "d": d, "log2d": args.log2d, "density": args.density,
            "k_per_rank": k, "dtype": "float32", "seed": args.seed, "warmup": 1, "repeat": args.repeat,
            "timing": "per run: max over ranks of each rank's time after a barrier; reported: best run",
            "dense_bytes_formula": "2 (P - 1) / P * 4 d (ring allreduce, bytes sent per rank; modeled)",
            "sparse_bytes": "trace payload bytes sent per rank (sum nbits/8), framing headers excluded",
            "nnz_of_sum": int(np.count_nonzero(mult)),
            "results": results,
            "checks_per_rank": [json.loads(bytes(c).decode()) for c in all_checks],
            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "torch": torch.__version__, "cpu_count": os.cpu_count(),
                        "loadavg": list(os.getloadavg()),
                        "note": f"{P} processes share {os.cpu_count()} cores; 1 intra-op thread each"},
        }
        Path(args.result_file).write_text(json.dumps(report))


# -- the launcher --------------------------------------------------------------------------------


def table(report: dict) -> str:
    res = report["results"]
    base_t, base_b = res[0]["best_s"], max(res[0]["bytes_per_rank"])
    lines = ["| algorithm | wall ms | time / dense | bytes per rank | bytes / dense |",
             "|---|---:|---:|---:|---:|"]
    for r in res:
        b = max(r["bytes_per_rank"])
        lines.append(f"| {r['algorithm']} | {1e3 * r['best_s']:.1f} | {r['best_s'] / base_t:.3f} | "
                     f"{b:,.0f} | {b / base_b:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--log2d", type=int, default=24)
    ap.add_argument("--density", type=float, default=0.01)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds any wait may take before TimeoutError")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--result-file", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    from simdist.io import atomic_write_json
    from simdist.transports.torch_dist import free_port

    port = free_port("127.0.0.1")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result_file = os.path.join(tmp, "rank0.json")
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        base = [sys.executable, str(Path(__file__).resolve()), "--worker", "--port", str(port),
                "--nodes", str(args.nodes), "--log2d", str(args.log2d), "--density", str(args.density),
                "--repeat", str(args.repeat), "--seed", str(args.seed), "--timeout", str(args.timeout),
                "--result-file", result_file]
        procs = [subprocess.Popen(base + ["--rank", str(r)], env=env) for r in range(args.nodes)]
        rcs = []
        deadline = time.monotonic() + 10 * args.timeout
        for p in procs:
            try:
                rcs.append(p.wait(timeout=max(deadline - time.monotonic(), 1.0)))
            except subprocess.TimeoutExpired:
                rcs.append(None)
        for p, rc in zip(procs, rcs):
            if rc is None:
                p.kill()
                p.wait()
        if any(rc != 0 for rc in rcs):
            print(f"benchmark failed: worker exit codes {rcs}", file=sys.stderr)
            return 1
        report = json.loads(Path(result_file).read_text())
    report["total_wall_s"] = time.perf_counter() - t_start
    atomic_write_json(args.out, report)
    P, d = report["nodes"], report["d"]
    print(f"gloo, P = {P} processes on 127.0.0.1, d = 2**{report['log2d']} = {d:,} float32, "
          f"density {report['density']:g} (k = {report['k_per_rank']:,} per rank, {report['nnz_of_sum']:,} "
          f"nonzeros in the sum)")
    print(f"NOTE: the {P} processes share {report['machine']['cpu_count']} CPU cores "
          f"(time-sliced; 1 intra-op thread each). Wall: best of {report['repeat']} after 1 warm-up, "
          f"each run the max over ranks after a barrier.")
    print(f"dense bytes per rank = 2(P-1)/P * 4d = {2 * (P - 1) / P * 4 * d:,.0f} (ring model); sparse "
          f"bytes = trace payload (sum nbits/8 sent, max over ranks).")
    c = report["checks_per_rank"][0]
    print(f"verified on every rank: each result == NumPy sum, bit-exact on {c['dense_all_reduce']['exact_entries']:,} "
          f"entries with <= 2 contributions; {c['dense_all_reduce']['entries_3plus']} entries with >= 3 within "
          f"the summation-order bound; sparse results bit-identical across ranks.")
    print()
    print(table(report))
    print(f"\nresults: {args.out} ({report['total_wall_s']:.1f} s total)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
