"""QSGD phase breakdown at d = 2**24 float32 on one core (the headline row is in bench_compressors.py).

Times (best of --repeat after a warm-up): compress+encode, decode+decompress, their sum as a
ratio to one read pass over x (``x.sum()``) and to a plain vectorized NumPy QSGD (no bit
encoding), plus the kernel phases (pass 1 quantize, pass 2 write) and bits per entry.

Run:  python benchmarks/bench_qsgd_phases.py [--log2d 24] [--repeat 5] [--s 16] [--bucket 512]

Measured on the 2-core AMD EPYC (Zen 5) dev VM, d = 2**24 float32, qsgd(s=16, bucket=512),
best of 5-9 (x.sum() = 2.6-2.9 ms in the same process; the VM is shared, the better runs):

    ============================  ======  =========  ==========================  ===========
    ms                            before  round 2    round 3 (out=, fused check)  round 4 SIMD
    ============================  ======  =========  ==========================  ===========
    compress (encode kernel)      52 (48) 24 (21.5)  22.2-22.9 (22.0)            13.1-13.9
    decompress, fresh output      37.5    17         17.1-17.3                   14.5-15.6
    decompress(out=) (kernel)     -       -          13.2 (12.7-13.4)            10.9-11.7
    round trip (with out=)        89.6    41-43      35.9-36.2                   24.1-25.7
    ratio to x.sum()              31.8x   ~15x       12.7-13.9x                  7.8-9.4x
    ============================  ======  =========  ==========================  ===========

Where the round-3 time goes (knock-out variants of the kernels): encode 22 ms = read pass and
8-lane scale ~2.1, rounding ~4 (float64 maths, vectorized 8-wide) + SplitMix64 words ~1.7,
nonzero masks ~1.2, codes ~12.2 (1.4 ns per nonzero, 8.63M nonzeros: one table lookup and a
64-bit accumulator append each; tried and slower: a code per 4-entry group with a pext-indexed
table, a popcount-driven loop, a word store per code, one packed code|length table);
decode ~13 ms = ~11.5 table decoding (13-bit multi-nonzero table, 1.3 ns per nonzero, its
latency chain is load -> shift -> next load) + ~1.7 writing the output's zeros.

Round 4 (AVX-512 hosts; the scalar kernels stay for others: 32.6-32.9 ms = 11.5-11.7x): encode
13.3 ms = scale ~2.4 (the read of x), rounding ~5.0 (the SplitMix64 state now a running sum: two
64-bit multiplies fewer per entry), compaction + codes + units ~3.4 (16 nonzeros per step,
simdist/kernels/qsgd_simd.py; ~100 ns a bucket of 262 nonzeros), appending ~66 units a bucket
~2.4; decode ~11 ms (a lookup's values and zeros by one vexpandps: ~25 fewer instructions a
lookup; the decoder was bound by instruction throughput, not by its ~8-cycle table chain).
Tried and slower in round 4: merging units across 128-bit lanes (eight codes a unit: the
shuffles cost more than the stores saved), two interleaved append chains, the memory form of
vpcompress (microcoded on Zen), a 14-bit or 12-bit decode table, floor-based rounding.
"""

from __future__ import annotations

import argparse

from _timing import best_of, single_thread

single_thread()

import numpy as np  # noqa: E402

from bench_compressors import numpy_qsgd  # noqa: E402  (the headline table's NumPy baseline)

from simdist.compressors.qsgd import QSGD  # noqa: E402
from simdist.kernels import qsgd as K  # noqa: E402
from simdist.kernels import qsgd_decode as D  # noqa: E402
from simdist.kernels.qsgd_simd import AVAILABLE  # noqa: E402
from simdist.kernels.qsgd_simd_decode import expand_table  # noqa: E402
from simdist.rng import draw_keys  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log2d", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--s", type=int, default=16)
    ap.add_argument("--bucket", type=int, default=512)
    ap.add_argument("--encoding", default="elias")
    a = ap.parse_args()
    d = 1 << a.log2d
    x = np.random.default_rng(0).standard_normal(d).astype(np.float32)
    c = QSGD(s=a.s, bucket=a.bucket, encoding=a.encoding)
    g = np.random.default_rng(1)
    p = c.compress(x, g)
    t_read = best_of(lambda: x.sum(), a.repeat)
    t_c = best_of(lambda: c.compress(x, g), a.repeat)
    y = np.empty_like(x)
    t_d = best_of(lambda: c.decompress(p, out=y), a.repeat)
    t_fresh = best_of(lambda: c.decompress(p), a.repeat)
    t_np = best_of(lambda: numpy_qsgd(x, g, a.s, a.bucket), a.repeat)
    X = x[None, :]
    keys = draw_keys(g, 1)
    elias = a.encoding == "elias"
    w = (2 * a.s).bit_length()
    t_enc = best_of(lambda: K.encode(X, keys, a.s, a.bucket, False, elias, w), a.repeat)
    t_keys = best_of(lambda: draw_keys(g, 1), a.repeat)
    Y = np.zeros((1, d), x.dtype)
    nb = np.zeros(1, np.int64)
    buf, offs = p.data, np.array([0, p.nbytes], np.int64)
    cap = min(a.s, 31)
    dec_args = (buf, offs, a.s, a.bucket, elias, w, D.DEC_VAL, D.DEC_LEN, D.TRIPLE, D.multi_table(cap),
                D.chain_table(cap), expand_table(cap), Y, nb)
    kernel = D._decode_kernel_simd if AVAILABLE else D._decode_kernel
    t_dec = best_of(lambda: kernel(*dec_args), a.repeat)
    t_alloc = best_of(lambda: np.zeros((1, d), x.dtype)[0, ::1024].fill(1), a.repeat)
    rt = t_c + t_d
    print(f"{c} d=2^{a.log2d} float32, one core")
    print(f"read pass x.sum()    {t_read * 1e3:8.2f} ms")
    print(f"compress+encode      {t_c * 1e3:8.2f} ms  (kernel {t_enc * 1e3:.2f}, keys {t_keys * 1e3:.3f})")
    print(f"decode+decompress    {t_d * 1e3:8.2f} ms  into out= (kernel {t_dec * 1e3:.2f}); "
          f"{t_fresh * 1e3:.2f} ms into a fresh output (its pages {t_alloc * 1e3:.2f})")
    print(f"round trip (out=)    {rt * 1e3:8.2f} ms  = {rt / t_read:.1f}x read pass, "
          f"{rt / t_np:.2f}x numpy ({t_np * 1e3:.1f} ms)")
    print(f"bits per entry       {p.nbits / d:8.3f}")


if __name__ == "__main__":
    main()
