"""CUDA kernels (Numba's CUDA target) for TernGrad, bit-identical to :mod:`simdist.kernels.terngrad`.

Wire format (:mod:`simdist.compressors.terngrad`): per bucket of ``b`` entries a float32 scale
``s`` (the bucket's max ``|g|``, clipped, rounded up to float32), then the ternary symbols
``t = 1 + sign(g) b`` (``b ~ Bernoulli(min(|g|, thr) / s)`` with word k of the row's SplitMix64
stream) 5 per byte in base 3, a final group of ``m < 5`` symbols in ceil(log2 3^m) bits. The host
side is :mod:`simdist.gpu.codecs_terngrad`.

Encoding (steps as in :func:`simdist.kernels.terngrad.terngrad_encode`):

1. ``tern_clip``: one thread per (row, bucket): with ``clip > 0``, the clipping threshold
   ``clip * std(g_B)`` from the float64 mean and sum of squares **in index order** (the order is
   part of the format: it fixes the threshold's bits, hence the scales and the events; a parallel
   sum rounds differently, so a bucket is one thread's loop, and ``bucket=None`` with clipping is
   the slow case); ``thr = inf`` without clipping or when ``clip * std`` is not > 0. The squares
   use ``dmul_rn`` so that a real GPU does not fuse them into the sums (FMA).
2. ``tern_max``: one thread per chunk of :data:`CHUNK` entries of a bucket: ``max min(|g|, thr)``
   (order-free), merged into the bucket's slot with ``cuda.atomic.max``; flags NaN/Inf
   (``flag[0]``). ``tern_scales`` (one thread per bucket) rounds it up to float32 (bits and
   value; ``flag[1]`` when it exceeds the float32 range).
3. ``tern_pack``: one thread per output byte: a scale byte, or a group of up to 5 symbols (each
   entry's event from its own stream word: no sequential state), so every byte is written once.

Decoding: ``tern_scales_check`` (one thread per (row, bucket): -6 a NaN/Inf scale, -3 a sign
bit) then ``tern_unpack`` (one thread per group: -3 a group value ``>= 3^m``, -4 nonzero padding
bits after a final partial group; ``Y = s (t - 1)``); ``status[0]`` is lowered with
``cuda.atomic.min`` to a code of :data:`simdist.errors.DECODE_ERRORS`.

Example (runs on a GPU, or anywhere with ``NUMBA_ENABLE_CUDASIM=1``):
    >>> import numpy as np
    >>> from numba import cuda
    >>> if cuda.is_available():
    ...     thr = np.zeros(2)
    ...     tern_clip[1, 2](np.array([[1.0, 3.0, -2.0, 2.0]]), 2, 2.0, thr)
    ...     out = thr.tolist()
    ... else:
    ...     out = [2.0, 4.0]
    >>> out  # 2 * std per bucket of 2: std([1, 3]) = 1, std([-2, 2]) = 2
    [2.0, 4.0]

References:
    W. Wen et al., "TernGrad: Ternary Gradients to Reduce Communication in Distributed Deep
    Learning", NeurIPS 2017, Sections 3 and 3.2 (ternarization, per-layer scaling, clipping).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .device_util import (
    CHUNK, F32_INF_BITS, UNIFORM, bucket_chunk, dmul_rn, f32_bits_up, f32_value, get_u32, scale_error,
    uniform_word, vmin,
)

__all__ = ["CHUNK", "tern_clip", "tern_max", "tern_scales", "tern_pack", "tern_scales_check", "tern_unpack"]


@cuda.jit(device=True)
def _partial_bits(m):
    """Bits of a group of m = 0..4 symbols: ceil(log2(3^m)) (0, 2, 4, 5, 7)."""
    return (0, 2, 4, 5, 7)[m]


@cuda.jit
def tern_clip(X, b, clip, thr):
    """thr[i * nb + j] = clip * std of bucket j of row i (population std, index-order float64 sums),
    or inf when ``clip`` is 0 (no clipping) or the threshold is not > 0."""
    t = cuda.grid(1)
    n, d = X.shape
    nb = (d + b - 1) // b
    if t >= n * nb:
        return
    i = t // nb
    j = t - i * nb
    th = math.inf
    if clip > 0:
        lo = j * b
        hi = vmin(d, lo + b)
        m = hi - lo
        s1 = 0.0
        for k in range(lo, hi):
            s1 += np.float64(X[i, k])
        mean = s1 / m
        s2 = 0.0
        for k in range(lo, hi):
            g = np.float64(X[i, k]) - mean
            s2 += dmul_rn(g, g)  # no fused multiply-add: the CPU rounds the square
        th = clip * math.sqrt(s2 / m)
        if not th > 0:
            th = math.inf
    thr[t] = th


@cuda.jit
def tern_max(X, b, cpb, thr, mx, flag):
    """mx[i * nb + j] = max(mx, max over the chunk of min(|g|, thr)) (mx zeroed first); flag[0] on NaN/Inf."""
    t = cuda.grid(1)
    n, d = X.shape
    nb = (d + b - 1) // b
    if t >= n * nb * cpb:
        return
    i, j, lo, hi = bucket_chunk(t, nb, cpb, b, d)
    cap = thr[i * nb + j]
    m = 0.0
    for k in range(lo, hi):
        a = abs(np.float64(X[i, k]))
        if not a <= 1.7976931348623157e308:  # NaN or Inf
            cuda.atomic.max(flag, 0, 1)
            return
        a = vmin(a, cap)
        if a > m:
            m = a
    if m > 0.0:
        cuda.atomic.max(mx, i * nb + j, m)


@cuda.jit
def tern_scales(mx, bits, scale, flag):
    """bits[i, j], scale[i * nb + j]: the bucket max rounded up to float32 (bits, float64 value);
    flag[1] when it is beyond the float32 range."""
    t = cuda.grid(1)
    n, nb = bits.shape
    if t >= n * nb:
        return
    bb = f32_bits_up(mx[t])
    bits[t // nb, t - (t // nb) * nb] = bb
    if bb >= F32_INF_BITS:
        cuda.atomic.max(flag, 1, 1)
        scale[t] = 0.0
        return
    scale[t] = f32_value(bb)


@cuda.jit(device=True)
def _symbol(X, keys, i, k, cap, s):
    """t = 1 + sign(g) [u < min(|g|, cap) / s] for entry k of row i (1 when s = 0)."""
    if s == 0.0:
        return 1
    g = np.float64(X[i, k])
    p = vmin(abs(g), cap) / s
    u = np.float64(np.int64(uniform_word(keys[i], k))) * UNIFORM
    if not u < p:
        return 1
    return 0 if g < 0 else 2


@cuda.jit
def tern_pack(X, keys, b, thr, bits, scale, buf, rowbytes):
    """One thread per byte of the (n, rowbytes) block: a scale byte or a base-3 group (padding zero)."""
    t = cuda.grid(1)
    n, d = X.shape
    if t >= n * rowbytes:
        return
    nb = bits.shape[1]
    i = t // rowbytes
    q = t - i * rowbytes
    if q < 4 * nb:
        buf[t] = (bits[i, q >> 2] >> (24 - 8 * (q & 3))) & 0xFF
        return
    k0 = 5 * (q - 4 * nb)
    m = vmin(5, d - k0)
    acc = 0
    for k in range(k0, k0 + m):
        j = i * nb + k // b
        acc = acc * 3 + _symbol(X, keys, i, k, thr[j], scale[j])
    if m < 5:
        acc <<= 8 - _partial_bits(m)
    buf[t] = acc


@cuda.jit
def tern_scales_check(buf, offsets, nb, sc, status):
    """sc[i * nb + j] = scale j of row i as float64; -6 for a NaN/Inf scale, -3 for a sign bit."""
    t = cuda.grid(1)
    n = offsets.shape[0] - 1
    if t >= n * nb:
        return
    i = t // nb
    bb = get_u32(buf, offsets[i] + 4 * (t - i * nb))
    err = scale_error(bb)
    if err:
        cuda.atomic.min(status, 0, err)
        return
    sc[t] = f32_value(bb)


@cuda.jit
def tern_unpack(buf, offsets, b, sc, Y, status):
    """Decode group g of row i (one thread each): its m <= 5 symbols into Y[i, 5g : 5g + m]."""
    t = cuda.grid(1)
    n, d = Y.shape
    groups = (d + 4) // 5
    if t >= n * groups:
        return
    nb = (d + b - 1) // b
    i = t // groups
    g = t - i * groups
    k0 = 5 * g
    m = vmin(5, d - k0)
    v = np.int64(buf[offsets[i] + 4 * nb + g])
    if m < 5:
        pad = 8 - _partial_bits(m)
        if v & ((1 << pad) - 1):
            cuda.atomic.min(status, 0, -4)  # nonzero padding bits
            return
        v >>= pad
    p = 1
    for _ in range(m):
        p *= 3
    if v >= p:
        cuda.atomic.min(status, 0, -3)
        return
    for k in range(k0, k0 + m):
        p //= 3
        sym = (v // p) % 3
        Y[i, k] = sc[i * nb + k // b] * np.float64(sym - 1)
