"""Batch encode/decode kernels of the sparsifiers (top-k, threshold, rand-k).

Message of top-k and threshold (one row; MSB-first bits):
    index block (:mod:`simdist.coding.indices`: omega(k+1), mode bit, indices, end gap)
    then k values, each the 32-bit IEEE-754 binary32 pattern of the kept entry, MSB first
    (big-endian), in index order; zero padding only at the end of the row.
Message of rand-k: only the k binary32 values (k*32 bits; the indices come from the key).

Rand-k index sampler (shared randomness, documented so any node can reproduce it):
    state = key mod 2**64; each draw is splitmix64: state += 0x9E3779B97F4A7C15,
    z = state; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9; z = (z ^ z>>27) * 0x94D049BB133111EB;
    z ^= z>>31 (all mod 2**64). A uniform integer in [0, b): r = z >> 1 (63 bits); reject and
    redraw while r > 2**63 - 1 - rem with rem = 2**63 mod b; return r mod b.
    Floyd's algorithm: S = {}; for j = d-k .. d-1: t = uniform in [0, j]; add j if t in S else t.
    The indices are S in increasing order.

Kernels never raise: encoders return ``status`` 0 or -7 (a kept value is outside the range of
float32, or of the output dtype once scaled) with the row; decoders return the status codes of
:data:`simdist.errors.DECODE_ERRORS` and the row. Every read is bounds-checked against the row's
bit limit, and a row's declared byte range is checked against the buffer first.

References:
    Stich, Cordonnier, Jaggi, "Sparsified SGD with Memory", NeurIPS 2018 (top_k, rand_k).
    Strom, "Scalable distributed DNN training using commodity GPU cloud computing", Interspeech
    2015 (threshold sparsification). Steele, Lea, Flood, "Fast splittable pseudorandom number
    generators", OOPSLA 2014 (splitmix64). Bentley, Floyd, "Programming pearls: a sample of
    brilliance", CACM 30(9), 1987 (Floyd's sampling).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..coding.indices import (
    choose_mode,
    fast_delta_len,
    get_index_body,
    get_index_header,
    index_block_len,
    put_index_block,
    sink_close,
    sink_open,
    sink_put,
    source_get,
    source_open,
)
from .select import topk_select, workspace, workspace_sizes

__all__ = [
    "topk_encode",
    "sparse_decode",
    "randk_encode",
    "randk_decode",
    "ENCODE_OVERFLOW",
    "splitmix64",
    "uniform_below",
    "randk_indices",
    "topk_encode_batch",
    "threshold_encode_batch",
    "sparse_decode_batch",
    "randk_encode_batch",
    "randk_decode_batch",
]

#: Encoder status: a kept value does not fit in float32 (or in the output dtype after scaling).
ENCODE_OVERFLOW = -7

_MAX63 = (1 << 63) - 1


@njit(cache=True)
def _row_offsets(nbits):
    n = nbits.shape[0]
    offsets = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        offsets[i + 1] = offsets[i] + ((nbits[i] + 7) >> 3)
    return offsets


@njit(cache=True)
def _row_range(buffer, offsets, i):
    """Bit range ``(start, limit)`` of row i; ``limit`` is -5 when the offsets are inconsistent."""
    a = offsets[i]
    b = offsets[i + 1]
    if a < 0 or b < a or b > buffer.shape[0]:
        return 0, -5
    return a * 8, b * 8


# --- top-k and threshold --------------------------------------------------------------------


@njit(cache=True)
def _put_values(buf, pos, vals, k, f, u):
    """Write float32(vals[j]) for j < k as 32-bit patterns; return the position (-7 on overflow)."""
    bp, acc, nacc = sink_open(buf, pos)
    for j in range(k):
        f[0] = vals[j]
        if not np.isfinite(f[0]):
            return ENCODE_OVERFLOW
        bp, acc, nacc = sink_put(buf, bp, acc, nacc, u[0], 32)
    return sink_close(buf, bp, acc, nacc)


@njit(cache=True)
def _write_rows(d, idx, vals, counts, modes, nbits):
    """Write every row's index block and values; return ``(buffer, offsets, status, row)``."""
    n = nbits.shape[0]
    offsets = _row_offsets(nbits)
    buf = np.zeros(offsets[n], dtype=np.uint8)
    f = np.empty(1, dtype=np.float32)
    u = f.view(np.uint32)
    for i in range(n):
        pos = put_index_block(buf, offsets[i] * 8, idx[i], counts[i], d, modes[i])
        pos = _put_values(buf, pos, vals[i], counts[i], f, u)
        if pos < 0:
            return buf, offsets, pos, i
    return buf, offsets, 0, -1


@njit(cache=True)
def topk_encode_batch(X, k, idx, vals, ws, wsv):
    """Top-k messages of every row of X: ``(buffer, offsets, nbits, status, row)``.

    ``idx`` (n, k) int64 and ``vals`` (n, k) of X's dtype receive the selection; ``ws``/``wsv``
    are the scratch of :func:`simdist.kernels.select.topk_select`.

    Steps: 1. select each row's k indices (linear time); 2. exact bits per row (index block in
    the shorter mode + 32 k); 3. allocate the exact buffer; 4. write the rows.
    """
    n, d = X.shape
    # 1-2. selection and exact lengths
    counts = np.full(n, k, dtype=np.int64)
    modes = np.empty(n, dtype=np.int64)
    nbits = np.empty(n, dtype=np.int64)
    for i in range(n):
        topk_select(X[i], k, idx[i], vals[i], ws, wsv)
        nb, mode = index_block_len(idx[i], k, d)
        modes[i] = mode
        nbits[i] = nb + 32 * k
    # 3-4. buffer and bits
    buf, offsets, status, row = _write_rows(d, idx, vals, counts, modes, nbits)
    return buf, offsets, nbits, status, row


@njit(cache=True)
def threshold_encode_batch(X, tau):
    """Threshold messages (keep ``|x_i| >= tau``): ``(buffer, offsets, nbits, status, row)``.

    Steps: 1. per row, count the kept entries and the delta-code length of their gaps (one
    pass), hence the exact bits; 2. gather the kept indices; 3. allocate and write.
    """
    n, d = X.shape
    counts = np.zeros(n, dtype=np.int64)
    modes = np.empty(n, dtype=np.int64)
    nbits = np.empty(n, dtype=np.int64)
    # 1. counts and exact lengths
    for i in range(n):
        prev = -1
        gap_bits = 0
        c = 0
        for j in range(d):
            if abs(X[i, j]) >= tau:
                gap_bits += fast_delta_len(j - prev)
                prev = j
                c += 1
        counts[i] = c
        nb, mode = choose_mode(c, gap_bits, prev, d)
        modes[i] = mode
        nbits[i] = nb + 32 * c
    # 2. kept indices and values
    idx = np.empty((n, max(1, counts.max())), dtype=np.int64)
    vals = np.empty((n, max(1, counts.max())), dtype=X.dtype)
    for i in range(n):
        c = 0
        for j in range(d):
            if abs(X[i, j]) >= tau:
                idx[i, c] = j
                vals[i, c] = X[i, j]
                c += 1
    # 3. buffer and bits
    buf, offsets, status, row = _write_rows(d, idx, vals, counts, modes, nbits)
    return buf, offsets, nbits, status, row


@njit(cache=True)
def sparse_decode_batch(buffer, offsets, d, expect_k, Y, scratch):
    """Decode top-k/threshold rows into the zeroed (n, d) array Y: ``(nbits, status, row)``.

    ``scratch`` (int64) holds a row's indices when it is large enough (else one is allocated).

    ``expect_k`` >= 0 requires that count in every row (top-k); -1 accepts any count <= d.
    Rejects (status): truncation (-1), malformed codes (-2), an index >= d or not increasing
    (-3), a count above d or different from ``expect_k`` or bad offsets (-5), NaN/Inf values (-6).
    """
    n = offsets.shape[0] - 1
    nbits = np.zeros(n, dtype=np.int64)
    f = np.empty(1, dtype=np.float32)
    u = f.view(np.uint32)
    for i in range(n):
        start, limit = _row_range(buffer, offsets, i)
        if limit < 0:
            return nbits, limit, i
        k, mode, pos = get_index_header(buffer, limit, start, d)
        if pos < 0:
            return nbits, pos, i
        if expect_k >= 0 and k != expect_k:
            return nbits, -5, i
        if pos + 32 * k > limit:  # checked before allocating: k <= (row bits) / 32
            return nbits, -1, i
        idx = scratch if scratch.shape[0] >= k else np.empty(k, dtype=np.int64)
        pos = get_index_body(buffer, limit, pos, d, k, mode, idx)
        if pos < 0:
            return nbits, pos, i
        if pos + 32 * k > limit:
            return nbits, -1, i
        lim = limit >> 3
        bp, acc, nacc = source_open(buffer, pos, lim)
        for j in range(k):
            v, bp, acc, nacc = source_get(buffer, bp, acc, nacc, lim, 32)
            u[0] = np.uint32(v)
            if not np.isfinite(f[0]):
                return nbits, -6, i
            Y[i, idx[j]] = f[0]
        pos = bp * 8 - nacc
        nbits[i] = pos - start
    return nbits, 0, -1


# --- rand-k ---------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def splitmix64(state):
    """One splitmix64 step: ``(new_state, output)`` (uint64, arithmetic mod 2**64)."""
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def uniform_below(state, bound):
    """Uniform integer in [0, bound) (1 <= bound < 2**63) by rejection: ``(new_state, value)``."""
    rem = ((_MAX63 % bound) + 1) % bound  # 2**63 mod bound
    while True:
        state, z = splitmix64(state)
        r = np.int64(z >> np.uint64(1))
        if r <= _MAX63 - rem:
            return state, r % bound


@njit(cache=True)
def randk_indices(key, d, k, mask, out):
    """Write the k sorted indices that ``key`` selects in [0, d) into ``out[:k]`` (Floyd).

    ``mask`` is a zeroed uint8 array of length d (scratch; left zeroed on return).
    """
    state = np.uint64(key)
    c = 0
    for j in range(d - k, d):
        state, t = uniform_below(state, j + 1)
        if mask[t]:
            t = j
        mask[t] = 1
        out[c] = t
        c += 1
    if 64 * k >= d:  # dense: scan the mask (O(d) bytes)
        c = 0
        for i in range(d):
            if mask[i]:
                mask[i] = 0
                out[c] = i
                c += 1
    else:  # sparse: sort the k draws
        for c in range(k):
            mask[out[c]] = 0
        out[:k].sort()


@njit(cache=True)
def randk_encode_batch(X, keys, k, scale, mask, idx):
    """Rand-k messages: ``(buffer, nbits, status, row)``; row i holds 4 k bytes at 4 k i.

    ``scale`` (d/k or 1) is applied by the decoder; the encoder only checks that the scaled
    values stay finite in X's dtype (status -7 otherwise). ``mask`` (uint8, d, all zero; left
    zero) and ``idx`` (int64, k) are scratch.
    """
    n, d = X.shape
    buf = np.zeros(n * 4 * k, dtype=np.uint8)
    f = np.empty(1, dtype=np.float32)
    u = f.view(np.uint32)
    y = np.empty(1, dtype=X.dtype)
    for i in range(n):
        randk_indices(keys[i], d, k, mask, idx)
        bp, acc, nacc = sink_open(buf, i * 32 * k)
        for j in range(k):
            f[0] = X[i, idx[j]]
            y[0] = np.float64(f[0]) * scale
            if not (np.isfinite(f[0]) and np.isfinite(y[0])):
                return buf, np.full(n, 32 * k, dtype=np.int64), ENCODE_OVERFLOW, i
            bp, acc, nacc = sink_put(buf, bp, acc, nacc, u[0], 32)
    return buf, np.full(n, 32 * k, dtype=np.int64), 0, -1


@njit(cache=True)
def randk_decode_batch(buffer, offsets, d, k, keys, scale, Y, mask, idx):
    """Decode rand-k rows into the zeroed (n, d) array Y: ``(nbits, status, row)``.

    Entry ``idx[j]`` of row i becomes ``float64(value_j) * scale`` rounded to Y's dtype;
    NaN/Inf values, or values that overflow once scaled, are rejected (-6). ``mask`` and
    ``idx`` are scratch as in :func:`randk_encode_batch`.
    """
    n = offsets.shape[0] - 1
    nbits = np.zeros(n, dtype=np.int64)
    f = np.empty(1, dtype=np.float32)
    u = f.view(np.uint32)
    for i in range(n):
        start, limit = _row_range(buffer, offsets, i)
        if limit < 0:
            return nbits, limit, i
        if start + 32 * k > limit:
            return nbits, -1, i
        randk_indices(keys[i], d, k, mask, idx)
        lim = limit >> 3
        bp, acc, nacc = source_open(buffer, start, lim)
        for j in range(k):
            v, bp, acc, nacc = source_get(buffer, bp, acc, nacc, lim, 32)
            u[0] = np.uint32(v)
            Y[i, idx[j]] = np.float64(f[0]) * scale
            if not (np.isfinite(f[0]) and np.isfinite(Y[i, idx[j]])):
                return nbits, -6, i
        pos = bp * 8 - nacc
        nbits[i] = pos - start
    return nbits, 0, -1


# --- Python entry points (scratch from the per-thread workspace) ------------------------------


def topk_encode(X: np.ndarray, k: int):
    """:func:`topk_encode_batch` with reused scratch: ``(buffer, offsets, nbits, status, row)``."""
    n, d = X.shape
    n64, nv = workspace_sizes(d, k)
    idx = workspace("topk_idx", n * k, np.int64)[: n * k].reshape(n, k)
    vals = workspace("topk_val", n * k, X.dtype)[: n * k].reshape(n, k)
    return topk_encode_batch(
        X, k, idx, vals, workspace("select64", n64, np.int64), workspace("selectv", nv, X.dtype)
    )


def _zeroed_output(n: int, d: int, dtype, out):
    """``out`` zero-filled (a reused buffer: no page faults), or a fresh zero array."""
    if out is None:
        return np.zeros((n, d), dtype=dtype)
    out.fill(0)
    return out


def sparse_decode(buffer, offsets, d: int, expect_k: int, dtype, out=None):
    """Decode top-k/threshold rows (into ``out`` when given): ``(Y, nbits, status, row)``."""
    n = offsets.shape[0] - 1
    Y = _zeroed_output(n, d, dtype, out)
    longest = int(np.diff(offsets).max()) if n else 0
    scratch = workspace("sparse_idx", min(d, longest // 4 + 1), np.int64)
    nbits, status, row = sparse_decode_batch(buffer, offsets, d, expect_k, Y, scratch)
    return Y, nbits, status, row


def randk_encode(X: np.ndarray, keys: np.ndarray, k: int, scale: float):
    """:func:`randk_encode_batch` with reused scratch: ``(buffer, nbits, status, row)``."""
    d = X.shape[1]
    mask = workspace("randk_mask", d, np.uint8, zero=True)
    return randk_encode_batch(X, keys, k, scale, mask, workspace("randk_idx", k, np.int64))


def randk_decode(buffer, offsets, d: int, k: int, keys, scale: float, dtype, out=None):
    """Decode rand-k rows (into ``out`` when given): ``(Y, nbits, status, row)``."""
    Y = _zeroed_output(offsets.shape[0] - 1, d, dtype, out)
    mask = workspace("randk_mask", d, np.uint8, zero=True)
    nbits, status, row = randk_decode_batch(
        buffer, offsets, d, k, keys, scale, Y, mask, workspace("randk_idx", k, np.int64)
    )
    return Y, nbits, status, row
