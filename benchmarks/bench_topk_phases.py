"""Phase breakdown: top-k round trip at d = 2**24 float32, ratio 0.01, one core.

Times (best of 5 after a warm-up): one read pass ``x.sum()``; the top-k round trip
(``compress`` = validate + select + encode, then ``decompress`` = decode into a dense array);
the selection kernel alone (no validation); ``np.argpartition`` on ``|x|`` (the usual NumPy way,
a stand-in for torch.topk, which is not installed), alone and as a NumPy round trip (select,
sort the indices, gather, scatter into zeros). Run with one core:
``taskset -c 0 python benchmarks/bench_topk_phases.py [log2 d]``.
"""

from __future__ import annotations

import math
import sys

import numpy as np
from _timing import best_of

from simdist.compressors.topk import TopK
from simdist.kernels.select import topk_select, workspace_sizes

REPEAT = 5  # timed runs (best of, after a warm-up)


def main(log2d: int = 24, ratio: float = 0.01) -> dict:
    d = 1 << log2d
    x = np.random.default_rng(0).standard_normal(d).astype(np.float32)
    c = TopK(ratio=ratio)
    k = c.k_for(d)
    holder = {}

    def roundtrip():
        p = c.compress(x)
        holder["y"] = c.decompress(p)
        holder["nbits"] = p.nbits

    t_sum = best_of(lambda: x.sum(), REPEAT)
    t_rt = best_of(roundtrip, REPEAT)
    t_comp = best_of(lambda: c.compress(x), REPEAT)
    p = c.compress(x)
    t_dec = best_of(lambda: c.decompress(p), REPEAT)
    out, vals = np.empty(k, np.int64), np.empty(k, x.dtype)
    n64, nv = workspace_sizes(d, k)
    ws, wsv = np.empty(n64, np.int64), np.empty(nv, x.dtype)
    t_sel = best_of(lambda: topk_select(x, k, out, vals, ws, wsv), REPEAT)
    t_np = best_of(lambda: np.argpartition(np.abs(x), d - k)[d - k :], REPEAT)

    def np_roundtrip():
        idx = np.sort(np.argpartition(np.abs(x), d - k)[d - k :])
        v = x[idx]
        y = np.zeros(d, x.dtype)
        y[idx] = v
        return y

    t_np_rt = best_of(np_roundtrip, REPEAT)
    res = {
        "d": d, "k": k, "nbits": holder["nbits"], "bits_per_kept": holder["nbits"] / k,
        "compression_vs_fp32": 32 * d / holder["nbits"], "d_over_k_log2d": d / (k * math.log2(d)),
        "sum_ms": 1e3 * t_sum, "roundtrip_ms": 1e3 * t_rt, "compress_ms": 1e3 * t_comp,
        "decompress_ms": 1e3 * t_dec, "select_ms": 1e3 * t_sel, "argpartition_ms": 1e3 * t_np,
        "argpartition_roundtrip_ms": 1e3 * t_np_rt,
    }
    res["roundtrip_over_sum"] = t_rt / t_sum
    res["select_over_sum"] = t_sel / t_sum
    res["argpartition_over_sum"] = t_np / t_sum
    res["argpartition_roundtrip_over_sum"] = t_np_rt / t_sum
    return res


if __name__ == "__main__":
    r = main(int(sys.argv[1]) if len(sys.argv) > 1 else 24)
    for key, v in r.items():
        print(f"{key:>22}: {v:.4g}" if isinstance(v, float) else f"{key:>22}: {v}")
