"""CUDA kernels (Numba's CUDA target) for scaled sign and fixed-width QSGD.

The same source runs on a real GPU (on CuPy / Numba device arrays) and under Numba's CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``, NumPy arrays, pure Python), which is how CI tests the
logic on machines without a GPU. The host side is :mod:`simdist.gpu.codecs`; the wire formats
are those of :mod:`simdist.compressors.sign` and :mod:`simdist.compressors.qsgd`, and the bytes
are identical to the CPU kernels' for the same input and keys.

Kernels (one thread per output element; grid-stride free, launch with enough threads):

1. ``abs_lanes`` / ``sq_lanes``: one thread per (row, bucket, lane): lane ``l`` of a bucket adds
   its entries ``l, l+8, ...`` in order, in float64, exactly as the CPU kernels' 8 lanes do
   (the lane order is part of the format: it fixes the scale's bits). A bucket reduction is
   therefore at most 8-way parallel; buckets give the rest of the parallelism.
2. ``sign_scales`` / ``qsgd_scales``: one thread per (row, bucket): combine the lanes in the
   CPU order (sign: ``0.0 + l0 + ... + l7``; QSGD: ``((S0+S1)+(S2+S3))+((S4+S5)+(S6+S7))``)
   and produce the float32 scale's bit pattern (sign: round to nearest of the mean |x|;
   QSGD: ``max(sqrt(S), max|x|)`` rounded up to float32). A non-finite float64 sum (NaN/Inf
   input, or float64 overflow) or a scale beyond float32 sets ``flag[0]`` (1 resp. 2).
3. ``qsgd_levels``: one thread per entry: stochastic rounding with word j of the row's
   SplitMix64 stream (:func:`simdist.gpu.device_util.uniform_word`, compiled from the source of
   :func:`simdist.rng.uniform_word`).
4. ``sign_pack`` / ``qsgd_pack``: one thread per output byte; every byte of the message
   (padding included) is written, so the buffer needs no zeroing.
5. ``sign_unpack`` / ``qsgd_unpack``: decoders, one thread per entry; every read stays inside
   the row's bytes (the host checks that each row holds the format's fixed length first), and
   a bad scale or level code lowers ``status[0]`` by ``cuda.atomic.min`` to a code of
   :data:`simdist.errors.DECODE_ERRORS`.

Bit-exactness on real hardware: NVVM contracts ``a * b + c`` into a fused multiply-add unless
told otherwise, which would change the sums of squares and the rounding probabilities. The
products that feed an addition use ``libdevice.dmul_rn`` (an uncontractable, correctly rounded
multiply); float64 division and sqrt are IEEE on CUDA without ``fastmath``. The simulator runs
Python arithmetic (no contraction), so this part is checked only by the real-GPU tests
(``tests/test_gpu_device.py``).

The device helpers (``vmin``, ``f32_bits``, ``uniform_word``, ...) live in
:mod:`simdist.gpu.device_util` and are re-exported here.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .device_util import (
    F32_INF_BITS, UNIFORM, dmul_rn, f32_bits, f32_bits_up, f32_value, get_bits, lane_span, scale_error,
    uniform_word, vmax, vmin,
)

__all__ = [
    "TPB", "vmin", "vmax", "uniform_word", "f32_bits", "f32_value",
    "abs_lanes", "sign_scales", "sign_pack", "sign_unpack",
    "sq_lanes", "qsgd_scales", "qsgd_levels", "qsgd_pack", "qsgd_unpack",
]

#: Threads per block of every launch.
TPB = 128

_F32_INF_BITS = F32_INF_BITS  # (imported from here by kernels_qsgd_elias)


# --- scaled sign ----------------------------------------------------------------------------------


@cuda.jit
def abs_lanes(X, b, lanes):
    """lanes[i, k, l] = sum of |X[i, j]| over j = k*b + l, k*b + l + 8, ... < min(d, (k+1) b), in order."""
    t = cuda.grid(1)
    n, d = X.shape
    nb = lanes.shape[1]
    if t >= n * nb * 8:
        return
    i, k, l, lo, hi = lane_span(t, nb, b, d)
    acc = 0.0
    for j in range(lo + l, hi, 8):
        acc += abs(np.float64(X[i, j]))
    lanes[i, k, l] = acc


@cuda.jit
def sign_scales(lanes, b, d, bits, flag):
    """bits[i, k] = binary32 bits of float32(lane total / |B|) (round to nearest); flag on NaN/Inf/overflow."""
    t = cuda.grid(1)
    n, nb = bits.shape
    if t >= n * nb:
        return
    i = t // nb
    k = t - i * nb
    tot = 0.0
    for l in range(8):
        tot += lanes[i, k, l]
    lo = k * b
    m = vmin(d, lo + b) - lo
    if not math.isfinite(tot):
        cuda.atomic.max(flag, 0, 1)
        bits[i, k] = F32_INF_BITS
        return
    f = np.float64(np.float32(tot / m))
    bits[i, k] = f32_bits(f)
    if bits[i, k] >= F32_INF_BITS:
        cuda.atomic.max(flag, 0, 2)


@cuda.jit
def sign_pack(X, bits, scaled, buf, rowbytes):
    """One thread per byte of the (n, rowbytes) message block: scale bytes, then sign bits (1 = negative)."""
    t = cuda.grid(1)
    n, d = X.shape
    if t >= n * rowbytes:
        return
    i = t // rowbytes
    q = t - i * rowbytes
    hb = 4 * bits.shape[1] if scaled else 0
    if q < hb:
        buf[t] = (bits[i, q >> 2] >> (24 - 8 * (q & 3))) & 0xFF
        return
    k0 = (q - hb) * 8
    v = 0
    for u in range(8):
        k = k0 + u
        v = (v << 1) | (1 if (k < d and X[i, k] < 0) else 0)
    buf[t] = v


@cuda.jit
def sign_unpack(buf, offsets, b, scaled, Y, status):
    """Decode entry (i, k): Y[i, k] = +-scale (scale 1.0 unscaled); a NaN/Inf scale gives -6, a negative one -3."""
    t = cuda.grid(1)
    n, d = Y.shape
    if t >= n * d:
        return
    i = t // d
    k = t - i * d
    base = offsets[i]
    nb = (d + b - 1) // b
    sc = 1.0
    if scaled:
        j = k // b
        bits = get_bits(buf, base, 32 * j, 32)
        err = scale_error(bits)
        if err:
            cuda.atomic.min(status, 0, err)
            return
        sc = f32_value(bits)
        base += 4 * nb
    if (buf[base + (k >> 3)] >> (7 - (k & 7))) & 1:
        sc = -sc
    Y[i, k] = sc


# --- QSGD, fixed-width codes -----------------------------------------------------------------------


@cuda.jit
def sq_lanes(X, b, S, M):
    """S[i, k, l] = sum of |x|*|x| and M[i, k, l] = max |x| over lane l of bucket k of row i, in order."""
    t = cuda.grid(1)
    n, d = X.shape
    nb = S.shape[1]
    if t >= n * nb * 8:
        return
    i, k, l, lo, hi = lane_span(t, nb, b, d)
    s = 0.0
    mx = 0.0
    for j in range(lo + l, hi, 8):
        a = abs(np.float64(X[i, j]))
        s += dmul_rn(a, a)  # no fused multiply-add: the CPU lanes round the product
        if a > mx:
            mx = a
    S[i, k, l] = s
    M[i, k, l] = mx


@cuda.jit
def qsgd_scales(S, M, use_max, bits, scale, flag):
    """bits[i, k]: the float32 scale rounded up (bits), scale[i, k] its float64 value; flag 1 on a
    non-finite sum of squares (NaN/Inf input or float64 overflow), 2 on a scale beyond float32."""
    t = cuda.grid(1)
    n, nb = bits.shape
    if t >= n * nb:
        return
    i = t // nb
    k = t - i * nb
    mx = vmax(vmax(vmax(M[i, k, 0], M[i, k, 1]), vmax(M[i, k, 2], M[i, k, 3])),
             vmax(vmax(M[i, k, 4], M[i, k, 5]), vmax(M[i, k, 6], M[i, k, 7])))
    ss = ((S[i, k, 0] + S[i, k, 1]) + (S[i, k, 2] + S[i, k, 3])) + ((S[i, k, 4] + S[i, k, 5]) + (S[i, k, 6] + S[i, k, 7]))
    scale[i, k] = 0.0
    if not math.isfinite(ss):
        cuda.atomic.max(flag, 0, 1)
        bits[i, k] = F32_INF_BITS
        return
    if use_max:
        sc = mx
    else:
        sc = math.sqrt(ss)
        if sc < mx:
            sc = mx
    bb = f32_bits_up(sc)
    bits[i, k] = bb
    if bb >= F32_INF_BITS:
        cuda.atomic.max(flag, 0, 2)
        return
    scale[i, k] = f32_value(bb)


@cuda.jit
def qsgd_levels(X, keys, s, b, scale, lev):
    """lev[i, j] = the signed level of entry j of row i (stochastic rounding with word j of keys[i])."""
    t = cuda.grid(1)
    n, d = X.shape
    if t >= n * d:
        return
    i = t // d
    j = t - i * d
    sc = scale[i, j // b]
    v = np.float64(X[i, j])
    lv = np.int64(0)
    if sc != 0.0:
        ts = dmul_rn(np.float64(s), abs(v) / sc)  # rounded product, as on the CPU (no fma into ts - lv)
        lv = np.int64(ts)
        p = ts - lv
        if lv >= s:
            lv = np.int64(s)
            p = 0.0
        u = np.float64(np.int64(uniform_word(keys[i], j))) * UNIFORM
        if u < p:
            lv += 1
    lev[i, j] = -lv if v < 0 else lv


@cuda.jit
def qsgd_pack(lev, bits, s, b, width, rowbits, buf, rowbytes):
    """One thread per byte: per bucket the 32 scale bits, then each entry's ``level + s`` in ``width`` bits."""
    t = cuda.grid(1)
    n = lev.shape[0]
    if t >= n * rowbytes:
        return
    i = t // rowbytes
    pos = (t - i * rowbytes) * 8
    end = pos + 8
    blen = 32 + b * width  # bits of a full bucket
    acc = np.int64(0)
    while pos < end and pos < rowbits:
        k = pos // blen
        r = pos - k * blen
        if r < 32:
            field = bits[i, k]
            flen = 32
            off = r
        else:
            e = (r - 32) // width
            field = np.int64(lev[i, k * b + e]) + s
            flen = width
            off = r - 32 - e * width
        take = vmin(flen - off, end - pos)
        acc = (acc << take) | ((field >> (flen - off - take)) & ((1 << take) - 1))
        pos += take
    if pos < end:
        acc <<= end - pos
    buf[t] = acc


@cuda.jit
def qsgd_unpack(buf, offsets, s, b, width, Y, status):
    """Decode entry (i, j): ``(code - s) * (scale / s)``; -6 for a NaN/Inf scale, -3 for a negative
    scale, a code > 2s, or a zero scale with a nonzero level."""
    t = cuda.grid(1)
    n, d = Y.shape
    if t >= n * d:
        return
    i = t // d
    j = t - i * d
    k = j // b
    blen = 32 + b * width
    base = offsets[i]
    bits = get_bits(buf, base, k * blen, 32)
    err = scale_error(bits)
    if err:
        cuda.atomic.min(status, 0, err)
        return
    c = get_bits(buf, base, k * blen + 32 + (j - k * b) * width, width)
    if c > 2 * s or (bits == 0 and c != s):
        cuda.atomic.min(status, 0, -3)
        return
    Y[i, j] = np.float64(c - s) * (f32_value(bits) / s)
