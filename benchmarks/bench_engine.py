"""Engine benchmark: the communication part of one simulated step (issue 3, item 7).

What is timed: :func:`simdist.engine.loop.communicate` on a (P, d) float32 gradient matrix with
QSGD (s = 16, bucket = 512, Elias code) and error feedback, i.e. everything a step does after the
gradients exist: the nodes' generators ``node_step_rng(seed, i, t)``, ``compress_batch_ef`` (one
kernel call: p = G + e, the messages, and the sender's new memory e = p - c from the levels it
sends), ``decompress_batch_mean`` (the receivers decode every message, a few rows at a time, and
average them), the allgather trace and its alpha-beta price. The gradient computation is excluded
(the problems compute float64 gradients with NumPy; here G is float32 standard normal, refilled
before each step outside the timer, since the step consumes G).

Reported per size:

* ``step ms``: best of ``--repeat`` steps (``--headline-repeat`` at the headline size) after one
  warm-up step (Numba compilation, first-touch pages of the memory), each at a new step index t
  (best of: other processes on a shared machine only ever add time; the JSON keeps every step's
  time and the load average);
* ``read ms``: one read pass over the same (P, d) float32 matrix, ``G.sum()``, best of ``--repeat``;
  ``ratio`` = step / read (target: <= 15 at P = 256, d = 2**20);
* ``ns/entry`` = step / (P d); the **slope** of log(step) against log(P d) over the sweep (linear
  cost: slope ~ 1) is fitted by least squares;
* ``peak/matrix``: the peak memory of a step, G and the memory E included, over the matrix's
  P d 4 bytes (target: <= 3): from tracemalloc (NumPy registers its buffers with it) and from the
  kernel's resident-set high-water mark (VmHWM after resetting it through /proc/self/clear_refs,
  where Linux allows it), as (VmHWM - VmRSS before the step + G + E) / matrix;
* for the headline size, a breakdown of the step into its phases, each timed alone on the same data.

Run (results go atomically to benchmarks/results/engine.json, and a markdown table to stdout):

    python benchmarks/bench_engine.py                 # headline P=256, d=2**20, and the 3 x 3 sweep
    python benchmarks/bench_engine.py --quick         # P in {4, 16}, d in {2**14, 2**16}: a smoke run

The machine matters (single core: NUMBA_NUM_THREADS=1; memory bandwidth; transparent huge pages,
see NUMPY_MADVISE_HUGEPAGE below): the JSON records it.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc
from pathlib import Path

from _timing import best_of, single_thread

single_thread()
# NumPy madvises MADV_HUGEPAGE on every large array. With the common kernel setting
# transparent_hugepage/defrag = madvise, first-touching a fresh multi-hundred-MiB allocation can then
# stall in direct compaction; the QSGD encoder allocates its (P x row capacity) scratch, ~0.44x the
# matrix, afresh every call, and on the 2-core dev VM that stall cost up to ~1 s of a 1.3 s step at
# P = 256, d = 2**20. Off by default here (documented in the JSON); NUMPY_MADVISE_HUGEPAGE=1 measures
# NumPy's default.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

import numpy as np  # noqa: E402

from simdist.collectives.fastpath import allgather_bits  # noqa: E402
from simdist.compressors import make  # noqa: E402
from simdist.engine.comm import _node_rngs, communicate, init_comm  # noqa: E402
from simdist.kernels.rows import mean_rows_and_residual as _mean_rows_and_residual  # noqa: E402
from simdist.io import atomic_write_json  # noqa: E402

COMPRESSOR = {"name": "qsgd", "s": 16, "bucket": 512}
NETWORK = "10gbe"


def _fill(G: np.ndarray, rng: np.random.Generator) -> None:
    """Standard normal float32 rows, written in place (no (P, d) temporary)."""
    for i in range(G.shape[0]):
        rng.standard_normal(dtype=np.float32, out=G[i])


def _proc_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set size (Linux >= 4.0)
        return True
    except OSError:
        return False


def measure(P: int, d: int, repeat: int, *, seed: int = 0, breakdown: bool = False) -> dict:
    """Time and measure one (P, d) size; see the module docstring."""
    rng = np.random.default_rng(seed)
    G = np.empty((P, d), np.float32)
    state = init_comm(COMPRESSOR, P, d, dtype=np.float32, error_feedback=True, network=NETWORK, seed=seed)
    matrix = G.nbytes
    t = 0
    # warm-up step: compilation, first touch of E
    _fill(G, rng)
    communicate(G, state, t)
    t += 1
    _fill(G, rng)
    read = best_of(lambda: G.sum(), repeat, warmup=False)
    steps, bits = [], []
    for _ in range(repeat):
        _fill(G, rng)
        t0 = time.perf_counter()
        _, b, _, _ = communicate(G, state, t)
        steps.append(time.perf_counter() - t0)
        bits.append(b)
        t += 1
    step = min(steps)
    # peak memory of one more step: tracemalloc (G and E already exist: add them) and the RSS high-water mark
    _fill(G, rng)
    rss0 = _proc_kib("VmRSS")
    hwm_ok = _reset_hwm()
    tracemalloc.start()
    tracemalloc.reset_peak()
    communicate(G, state, t)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    hwm = _proc_kib("VmHWM")
    t += 1
    row = {
        "P": P, "d": d, "entries": P * d, "matrix_MiB": matrix / 2**20,
        "step_ms": 1e3 * step, "read_ms": 1e3 * read, "ratio": step / read,
        "ns_per_entry": 1e9 * step / (P * d), "bits_per_entry": float(np.mean(bits)) / d,
        "peak_over_matrix_tracemalloc": (traced_peak + G.nbytes + state.memory.nbytes) / matrix,
        "peak_over_matrix_rss": ((hwm - rss0) * 1024 + G.nbytes + state.memory.nbytes) / matrix
        if (hwm_ok and hwm is not None and rss0 is not None) else None,
        "steps_ms": [1e3 * s for s in steps],
    }
    if breakdown:
        row["breakdown_ms"] = _breakdown(G, state, rng, t, repeat)
    return row


def _breakdown(G, state, rng, t, repeat) -> dict:
    """The step's phases, each timed alone (best of ``repeat``) on the same kind of data."""
    comp, E, P = state.compressor, state.memory, state.nodes
    _fill(G, rng)
    out = {}
    out["generators (P x node_step_rng)"] = best_of(lambda: _node_rngs(comp, state.seed, t, P), repeat, warmup=False)
    efs = []
    for _ in range(repeat):  # it changes G and E: refill G outside the timer
        _fill(G, rng)
        t0 = time.perf_counter()
        batch = comp.compress_batch_ef(G, E, _node_rngs(comp, state.seed, t, P))
        efs.append(time.perf_counter() - t0)
    out["compress_batch_ef (p = G + E, E = p - c: the encoder)"] = min(efs)
    agg = np.empty(G.shape[1])
    out["decompress_batch_mean (the receivers: decode, mean)"] = best_of(
        lambda: comp.decompress_batch_mean(batch, agg), repeat, warmup=False)
    out["  of which decompress_batch alone (out=G)"] = best_of(lambda: comp.decompress_batch(batch, out=G), repeat, warmup=False)
    out["  unfused, for comparison: np.add(G, E, out=G)"] = best_of(lambda: np.add(G, E, out=G), 1, warmup=False)
    out["  unfused: compress_batch"] = best_of(lambda: comp.compress_batch(G, _node_rngs(comp, state.seed, t, P)), repeat, warmup=False)
    out["  unfused: decompress_batch(out=E)"] = best_of(lambda: comp.decompress_batch(batch, out=E), repeat, warmup=False)
    out["  unfused: mean + memory pass"] = best_of(lambda: _mean_rows_and_residual(G, E, agg), repeat, warmup=False)
    out["allgather trace + price"] = best_of(lambda: state.network.price(allgather_bits(batch.nbits)), repeat, warmup=False)
    return {k: 1e3 * v for k, v in out.items()}


def _thp() -> dict:
    out = {}
    for k in ("enabled", "defrag"):
        try:
            with open(f"/sys/kernel/mm/transparent_hugepage/{k}") as f:
                out[k] = f.read().strip()
        except OSError:
            out[k] = None
    return out


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--P", type=int, default=256, help="nodes of the headline size")
    ap.add_argument("--log2d", type=int, default=20, help="log2 of the headline dimension")
    ap.add_argument("--sweep-P", default="16,64,256")
    ap.add_argument("--sweep-log2d", default="16,18,20")
    ap.add_argument("--repeat", type=int, default=3, help="timed steps per sweep size (best of)")
    ap.add_argument("--headline-repeat", type=int, default=7,
                    help="timed steps at the headline size (best of; more, since a shared machine is noisy)")
    ap.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "engine.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.P, args.log2d, args.sweep_P, args.sweep_log2d = 16, 16, "4,16", "14,16"
    sweep = [(int(p), 1 << int(k)) for p in args.sweep_P.split(",") for k in args.sweep_log2d.split(",")]
    head = (args.P, 1 << args.log2d)
    rows = []
    load0 = os.getloadavg()[0]
    for P, d in sorted(set(sweep) | {head}, key=lambda s: s[0] * s[1]):
        row = measure(P, d, args.headline_repeat if (P, d) == head else args.repeat, breakdown=(P, d) == head)
        row["headline"] = (P, d) == head
        rows.append(row)
        print(f"P={P:4d} d=2^{d.bit_length() - 1:<2d} step {row['step_ms']:9.2f} ms  read {row['read_ms']:7.2f} ms  "
              f"ratio {row['ratio']:5.1f}  peak/matrix {row['peak_over_matrix_tracemalloc']:.2f}", flush=True)
    pts = [r for r in rows if (r["P"], r["d"]) in set(sweep)]
    x = np.log([r["entries"] for r in pts])
    slope = float(np.polyfit(x, np.log([r["step_ms"] for r in pts]), 1)[0]) if len(pts) >= 2 else None
    read_slope = float(np.polyfit(x, np.log([r["read_ms"] for r in pts]), 1)[0]) if len(pts) >= 2 else None
    meta = {
        "what": "simdist.engine.loop.communicate: QSGD + error feedback on a float32 (P, d) matrix, one step",
        "compressor": COMPRESSOR, "network": NETWORK, "error_feedback": True, "dtype": "float32",
        "repeat": args.repeat, "headline_repeat": args.headline_repeat, "cpu": _cpu(), "cores_visible": os.cpu_count(), "python": platform.python_version(),
        "numpy": np.__version__, "numba_threads": os.environ.get("NUMBA_NUM_THREADS"),
        "numpy_madvise_hugepage": os.environ.get("NUMPY_MADVISE_HUGEPAGE"),
        "transparent_hugepage": _thp(),
        "slope_step_vs_entries": slope, "slope_read_vs_entries": read_slope,
        "load_average_1min_before_after": [load0, os.getloadavg()[0]],
    }
    atomic_write_json(args.out, {"meta": meta, "rows": rows})
    print()
    print("| P | d | P*d | step ms | read ms | ratio | ns/entry | bits/entry | peak/matrix (tracemalloc) "
          "| peak/matrix (RSS) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        rss = "n/a" if r["peak_over_matrix_rss"] is None else f"{r['peak_over_matrix_rss']:.2f}"
        print(f"| {r['P']} | 2^{r['d'].bit_length() - 1} | 2^{r['entries'].bit_length() - 1} | {r['step_ms']:.1f} "
              f"| {r['read_ms']:.2f} | {r['ratio']:.1f} | {r['ns_per_entry']:.2f} | {r['bits_per_entry']:.2f} "
              f"| {r['peak_over_matrix_tracemalloc']:.2f} | {rss} |")
    if slope is not None:
        print(f"\nslope of log(step) vs log(P*d) over the sweep: {slope:.3f} (read pass: {read_slope:.3f})")
    for r in rows:
        if "breakdown_ms" in r:
            print(f"\nbreakdown at P={r['P']}, d=2^{r['d'].bit_length() - 1} (each phase alone, ms; "
                  f"read pass {r['read_ms']:.1f} ms):")
            for k, v in r["breakdown_ms"].items():
                print(f"  {k:34s} {v:9.2f}  ({v / r['read_ms']:.1f}x read)")
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
