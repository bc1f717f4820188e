"""Compressor round-trip speed at d = 2**24 float32 on one core (issue: core compressors, item 9).

For each compressor: the time of compress+encode (``c.compress``) and decode+decompress into a
preallocated output (``c.decompress(p, out=y)``, as a training loop that reuses its buffer does;
the column "fresh ms" is ``c.decompress(p)`` with a new output array, whose first-touch page
faults cost ~3-4 ms at d = 2**24 float32), best of ``--repeat`` runs after a warm-up (Numba
compilation excluded). The round trip is compress + decompress(out=), given as a ratio to one
read pass over x (``x.sum()``) and to a straightforward vectorized NumPy version of the same
maths without the bit-exact encoding.

Run:  python benchmarks/bench_compressors.py [--log2d 24] [--repeat 5] [--out benchmarks/results/compressors.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from _timing import best_of, single_thread

single_thread()

import numpy as np  # noqa: E402

from simdist import compressors  # noqa: E402


# --- plain vectorized NumPy versions (no bit encoding) --------------------------------------


def numpy_qsgd(x, rng, s=16, bucket=512):
    """Straightforward vectorized QSGD (quantize and dequantize, no bit encoding); also bench_qsgd_phases's."""
    d = x.size
    pad = (-d) % bucket
    v = np.concatenate([x, np.zeros(pad, x.dtype)]).reshape(-1, bucket)
    norms = np.sqrt(np.einsum("ij,ij->i", v, v, dtype=np.float64)).astype(np.float32)[:, None]
    safe = np.where(norms > 0, norms, 1)
    r = np.abs(v) / safe * s
    levels = np.floor(r + rng.random(v.shape, dtype=np.float32)).astype(np.int8)
    signs = np.signbit(v)
    return (levels * np.where(signs, -1, 1).astype(np.int8) * (norms / s)).reshape(-1)[:d]


def numpy_topk(x, k):
    idx = np.argpartition(np.abs(x), x.size - k)[-k:]
    vals = x[idx]
    out = np.zeros_like(x)
    out[idx] = vals
    return out


def numpy_sign(x):
    scale = np.abs(x).sum(dtype=np.float64) / x.size
    bits = np.packbits(x < 0)
    neg = np.unpackbits(bits, count=x.size).astype(bool)
    return np.where(neg, -scale, scale).astype(x.dtype)


def numpy_terngrad(x, rng):
    s = np.abs(x).max()
    b = rng.random(x.size, dtype=np.float32) < np.abs(x) / s
    return (s * np.sign(x) * b).astype(x.dtype)


CASES = {
    "qsgd(s=16, bucket=512)": ({"name": "qsgd", "s": 16, "bucket": 512}, lambda x, g: numpy_qsgd(x, g)),
    "topk(ratio=0.01)": ({"name": "topk", "ratio": 0.01}, lambda x, g: numpy_topk(x, int(np.ceil(0.01 * x.size)))),
    "sign": ({"name": "sign"}, lambda x, g: numpy_sign(x)),
    "terngrad": ({"name": "terngrad"}, lambda x, g: numpy_terngrad(x, g)),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log2d", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "compressors.json"))
    args = ap.parse_args()
    d = 1 << args.log2d
    x = np.random.default_rng(0).standard_normal(d).astype(np.float32)
    t_read = best_of(lambda: x.sum(), args.repeat)
    rows = []
    print(f"d = 2^{args.log2d} float32, one core; read pass x.sum() = {t_read * 1e3:.2f} ms")
    print(f"{'compressor':26s} {'compress ms':>11s} {'decomp ms':>10s} {'fresh ms':>9s} {'round trip':>10s} "
          f"{'x read':>7s} {'x numpy':>8s} {'bits/entry':>10s}")
    for label, (cfg, plain) in CASES.items():
        c = compressors.make(cfg)
        g = np.random.default_rng(1)
        p = c.compress(x, g)
        t_c = best_of(lambda: c.compress(x, g), args.repeat)
        y = np.empty_like(x)
        t_d = best_of(lambda: c.decompress(p, out=y), args.repeat)
        t_fresh = best_of(lambda: c.decompress(p), args.repeat)
        t_np = best_of(lambda: plain(x, g), args.repeat)
        rt = t_c + t_d
        row = {
            "compressor": label, "config": cfg, "compress_ms": t_c * 1e3, "decompress_ms": t_d * 1e3,
            "decompress_fresh_output_ms": t_fresh * 1e3,
            "roundtrip_ms": rt * 1e3, "ratio_to_read_pass": rt / t_read, "numpy_ms": t_np * 1e3,
            "ratio_to_numpy": rt / t_np, "bits_per_entry": p.nbits / d,
        }
        rows.append(row)
        print(f"{label:26s} {t_c * 1e3:11.1f} {t_d * 1e3:10.1f} {t_fresh * 1e3:9.1f} {rt * 1e3:10.1f} "
              f"{rt / t_read:6.1f}x {rt / t_np:7.2f}x {p.nbits / d:10.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"d": d, "dtype": "float32", "read_pass_ms": t_read * 1e3, "repeat": args.repeat,
            "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
            "numpy": np.__version__}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
