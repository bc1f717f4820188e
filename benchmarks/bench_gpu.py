"""GPU round-trip speed (issue 5, item 4): QSGD and top-k at d = 2**26 on the device, against a copy.

For each compressor: ``c.compress(x_dev, rng)`` then ``c.decompress(payload)`` on a device array
(the data never leaves the GPU; the payload's buffer is a device array), timed with CUDA events
after a warm-up (kernel compilation excluded), best of ``--repeat``. The yardstick is one
device-to-device copy of the same array (``y[...] = x`` on the device: a read and a write of
d floats), so the ratio says how many "copies" a round trip costs (target: <= 4x).

The rows also give the bytes (exact, from the payload) and a check that the device bytes equal the
CPU path's for the same input and generator seed (the GPU path's contract).

Run on a machine with a CUDA GPU (CuPy installed: ``pip install -e ".[gpu]"``)::

    python benchmarks/bench_gpu.py                      # d = 2**26, float32, results/gpu.json
    python benchmarks/bench_gpu.py --log2d 20 --repeat 3

``--smoke`` runs a tiny size with Numba device arrays, so that the script itself is exercised under
the CUDA simulator on machines without a GPU (``NUMBA_ENABLE_CUDASIM=1``; the tests do this); its
times mean nothing there and are not written unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from simdist import compressors
from simdist.io import atomic_write_json

CASES = [
    ("qsgd(s=16, bucket=512), Elias code", {"name": "qsgd", "s": 16, "bucket": 512}),
    ("qsgd(s=16, bucket=512), fixed width", {"name": "qsgd", "s": 16, "bucket": 512, "encoding": "fixed"}),
    ("topk(ratio=0.01)", {"name": "topk", "ratio": 0.01}),
    ("sign", {"name": "sign"}),
]


class _Timer:
    """CUDA-event timing on a real GPU; wall-clock timing under the simulator (no events there)."""

    def __init__(self, cuda):
        from numba import config

        self.cuda = cuda
        self.events = not config.ENABLE_CUDASIM

    def best_ms(self, fn, repeat: int) -> float:
        fn()  # warm-up: compilation, allocations
        self.cuda.synchronize()
        best = float("inf")
        for _ in range(repeat):
            if self.events:
                start, stop = self.cuda.event(), self.cuda.event()
                start.record()
                fn()
                stop.record()
                stop.synchronize()
                best = min(best, self.cuda.event_elapsed_time(start, stop))
            else:
                t0 = time.perf_counter()
                fn()
                best = min(best, 1e3 * (time.perf_counter() - t0))
        return best


def _device_array(x: np.ndarray, use_cupy: bool):
    if use_cupy:
        import cupy

        return cupy.asarray(x)
    from numba import cuda

    return cuda.to_device(x)


def _copy_fn(x_dev, use_cupy: bool):
    if use_cupy:
        import cupy

        y = cupy.empty_like(x_dev)
        return lambda: y.__setitem__(Ellipsis, x_dev)
    from numba import cuda

    y = cuda.device_array_like(x_dev)
    return lambda: y.copy_to_device(x_dev)


def measure(log2d: int, repeat: int, use_cupy: bool, dtype=np.float32) -> dict:
    """Time every case at d = 2**log2d; returns the JSON-ready results."""
    from numba import cuda

    timer = _Timer(cuda)
    d = 1 << log2d
    x = np.random.default_rng(0).standard_normal(d).astype(dtype)
    x_dev = _device_array(x, use_cupy)
    t_copy = timer.best_ms(_copy_fn(x_dev, use_cupy), repeat)
    rows = []
    for label, cfg in CASES:
        c = compressors.make(cfg)
        gen = (lambda: np.random.default_rng(1)) if c.needs_rng else (lambda: None)
        payload = c.compress(x_dev, gen())
        same = payload.to_bytes() == c.compress(x, gen()).to_bytes()
        t_c = timer.best_ms(lambda: c.compress(x_dev, gen()), repeat)
        t_d = timer.best_ms(lambda: c.decompress(payload), repeat)
        rows.append({"compressor": label, "config": cfg, "compress_ms": t_c, "decompress_ms": t_d,
                     "round_trip_ms": t_c + t_d, "x_copy": (t_c + t_d) / t_copy,
                     "bits_per_entry": payload.nbits / d, "bytes_equal_cpu": bool(same)})
    return {"meta": {"d": d, "dtype": np.dtype(dtype).name, "repeat": repeat, "copy_ms": t_copy,
                     "arrays": "cupy" if use_cupy else "numba", "python": platform.python_version(),
                     "device": _device_name(cuda)},
            "rows": rows}


def _device_name(cuda) -> str:
    try:
        name = cuda.get_current_device().name
    except Exception:  # noqa: BLE001 (the simulator's fake device, or no context: a label only)
        return "unknown"
    return name.decode() if isinstance(name, bytes) else str(name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--log2d", type=int, default=26)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--smoke", action="store_true", help="tiny size, Numba device arrays (runs under the simulator)")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/gpu.json; none with --smoke)")
    a = ap.parse_args(argv)
    if a.smoke:
        np.seterr(over="ignore")  # the simulator runs the uint64 hash in NumPy scalars
        res = measure(min(a.log2d, 8), 1, use_cupy=False)
    else:
        res = measure(a.log2d, a.repeat, use_cupy=True)
    print(f"d=2^{a.log2d if not a.smoke else min(a.log2d, 8)} {res['meta']['dtype']} on {res['meta']['device']}; "
          f"device-to-device copy {res['meta']['copy_ms']:.3f} ms")
    print("| compressor | compress | decompress | round trip | x copy | bits/entry | bytes = CPU |")
    print("|---|---:|---:|---:|---:|---:|:---:|")
    for r in res["rows"]:
        print(f"| {r['compressor']} | {r['compress_ms']:.3f} ms | {r['decompress_ms']:.3f} ms | "
              f"{r['round_trip_ms']:.3f} ms | {r['x_copy']:.1f}x | {r['bits_per_entry']:.3f} | "
              f"{'yes' if r['bytes_equal_cpu'] else 'NO'} |")
    out = a.out or (None if a.smoke else "benchmarks/results/gpu.json")
    if out:
        atomic_write_json(out, res)
        print(f"written: {out}")
    return 0 if all(r["bytes_equal_cpu"] for r in res["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
