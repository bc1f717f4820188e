"""Quantizer benchmark (sign, TernGrad, NUQSGD, 1-bit): round trip at d = 2**24 float32, bucket None and 512.

Prints, for bucket None and 512, the best-of-N wall time of the simdist round trip, and its ratio
to ``x.sum()`` (a memory-bound floor) and to a straightforward vectorized NumPy version of the same
quantizer (same maths, no bit-exact wire format guarantees beyond packbits / base-3 bytes).

Run: ``python benchmarks/bench_quantizers.py [--log2d 24] [--repeat 5]``
"""

from __future__ import annotations

import argparse

import numpy as np
from _timing import best_of

from simdist import compressors
from simdist.rng import batch_uniform_bits

_POW = np.array([81, 27, 9, 3, 1], np.uint8)
_DIGITS = np.array([[(v // 3 ** (4 - j)) % 3 for j in range(5)] for v in range(243)], np.int8)


def numpy_sign(x, b):
    xb = x.reshape(-1, b)
    scales = np.abs(xb).mean(axis=1, dtype=np.float64).astype(np.float32)
    msg = scales.tobytes() + np.packbits(x < 0).tobytes()
    # receiver
    sc = np.frombuffer(msg[: 4 * scales.size], np.float32)
    bits = np.unpackbits(np.frombuffer(msg[4 * scales.size :], np.uint8))[: x.size].reshape(-1, b)
    return np.where(bits, -sc[:, None], sc[:, None]).reshape(-1)


def numpy_terngrad(x, b, rng):
    xb = x.reshape(-1, b)
    s = np.abs(xb).max(axis=1)
    u = batch_uniform_bits(rng, 1, x.size)[0].reshape(-1, b) * 2.0**-32
    with np.errstate(invalid="ignore", divide="ignore"):
        keep = u < np.abs(xb) / s[:, None]
    t = (1 + np.sign(xb).astype(np.int8) * keep).reshape(-1).astype(np.uint8)
    pad = -t.size % 5
    groups = (np.concatenate([t, np.ones(pad, np.uint8)]).reshape(-1, 5) * _POW).sum(axis=1, dtype=np.uint8)
    msg = s.astype(np.float32).tobytes() + groups.tobytes()
    # receiver
    sc = np.frombuffer(msg[: 4 * s.size], np.float32)
    sym = _DIGITS[np.frombuffer(msg[4 * s.size :], np.uint8)].reshape(-1)[: x.size]
    return ((sym - 1).reshape(-1, b) * sc[:, None]).reshape(-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log2d", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    d = 1 << a.log2d
    x = np.random.default_rng(0).standard_normal(d).astype(np.float32)
    t_sum = best_of(lambda: x.sum(), a.repeat)
    print(f"d = 2**{a.log2d} float32; x.sum(): {t_sum * 1e3:.2f} ms")
    print(f"{'compressor':28s} {'simdist ms':>11s} {'/x.sum()':>9s} {'numpy ms':>9s} {'simdist/numpy':>14s}")
    for name, bucket in [("sign", None), ("sign", 512), ("terngrad", None), ("terngrad", 512)]:
        c = compressors.make(name, bucket=bucket)
        rng = np.random.default_rng(1)
        t_sd = best_of(lambda: c.decompress(c.compress(x, rng)), a.repeat)
        b = d if bucket is None else bucket
        if name == "sign":
            t_np = best_of(lambda: numpy_sign(x, b), a.repeat)
        else:
            t_np = best_of(lambda: numpy_terngrad(x, b, rng), a.repeat)
        label = f"{name}(bucket={bucket})"
        print(f"{label:28s} {t_sd * 1e3:11.2f} {t_sd / t_sum:9.1f} {t_np * 1e3:9.2f} {t_sd / t_np:14.2f}")


if __name__ == "__main__":
    main()
