"""Linear-time top-k selection by magnitude (no full sort).

:func:`topk_select` writes the indices of the k entries of largest ``|a_i|``, in increasing
index order, with ties at the k-th magnitude broken by the lowest index; it equals
``np.sort(np.argsort(-np.abs(a), kind="stable")[:k])`` exactly (the reference), in O(d) time.

Algorithm (steps numbered as in the code):

1. Estimate a threshold from a deterministic strided sample of m = min(d, 16384) magnitudes:
   the sample entry of descending rank r = mu + 4 sqrt(mu) + 8, with mu = m k / d the expected
   number of sample entries among the top k. So about (r + 1) d / m >= k entries of the vector
   are expected to reach it (a few standard deviations of margin). For d <= m every entry is
   a candidate (t = -1).
2. One pass over the vector collects the candidates ``|a_i| >= t`` (index and value) in
   index order (64 comparisons packed into a bit mask, set bits extracted branch-free). If
   fewer than k, lower t (rank 4r + 64, and finally t = -1: every entry) and retry; if more
   than the buffer holds, grow it to the exact count and retry.
3. The k-th largest candidate magnitude T is found by a radix select on the bit patterns of
   the candidate magnitudes (16 bits per pass): O(#candidates). Every entry with
   ``|a_i| >= T`` is a candidate (T >= t because at least k candidates reach t).
4. One pass over the candidates, in index order, keeps those with magnitude > T and the
   lowest-index ones equal to T until k are kept.

Expected cost: one read of the vector (step 2) plus O(m + #candidates). Retries only happen
for inputs that defeat the strided sample (e.g. periodic ones); each costs one more pass, and
there are at most about log4(m) + 1 of them, so the worst case stays O(d log m).

Scratch buffers come from a per-thread :func:`workspace` (reused between calls, so repeated
calls do not pay page faults for fresh memory).

Example:
    >>> import numpy as np
    >>> topk_indices(np.array([0.5, -3.0, 1.0, 3.0, -1.0]), 3).tolist()
    [1, 2, 3]

References:
    R. W. Floyd, R. L. Rivest, "Expected time bounds for selection", CACM 1975 (sample-based
    selection, the idea behind steps 1-2).
"""

from __future__ import annotations

import math
import threading

import numpy as np
from numba import njit

from .._validate import check_int, check_vector

try:  # LLVM cttz (a single instruction); pure-Numba fallback for other Numba versions
    from numba.cpython.unsafe.numbers import trailing_zeros as _ctz
except ImportError:  # pragma: no cover

    @njit(cache=True, inline="always")
    def _ctz(v):
        v = np.uint64(v)
        if v == np.uint64(0):
            return 64
        n = 0
        while (v & np.uint64(1)) == np.uint64(0):
            v >>= np.uint64(1)
            n += 1
        return n

__all__ = [
    "topk_select",
    "topk_indices",
    "candidate_capacity",
    "workspace_sizes",
    "workspace",
    "clear_workspace",
    "WORKSPACE_MAX_BYTES",
    "SAMPLE_SIZE",
]

#: Size of the deterministic sample used to estimate the threshold.
SAMPLE_SIZE = 16384


@njit(cache=True)
def _sample_threshold(a, r, m, stride):
    """Magnitude (in a's dtype) of descending rank r (0-based) in the strided sample; -1 when r >= m."""
    s = np.empty(max(m, 1), dtype=a.dtype)
    if r >= m:
        s[0] = -1.0
        return s[0]
    for j in range(m):
        s[j] = abs(a[j * stride])
    return np.partition(s, m - 1 - r)[m - 1 - r]


@njit(cache=True, inline="always")
def _popcount(v):
    """Number of set bits of the uint64 v (SWAR)."""
    v = v - ((v >> np.uint64(1)) & np.uint64(0x5555555555555555))
    v = (v & np.uint64(0x3333333333333333)) + ((v >> np.uint64(2)) & np.uint64(0x3333333333333333))
    v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((v * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True)
def _collect(a, t, cidx, cval):
    """Store the indices/values with |a_i| >= t in index order (up to the buffer size).

    ``t`` has a's dtype. Each block of 64 comparisons is packed into a bit mask (a loop the
    compiler vectorizes); the first three set bits are then extracted without branches
    (writes past the count are overwritten later), the rare others in a loop. Returns the
    full count, also when it exceeds the buffer.
    """
    cap = cidx.shape[0]
    d = a.shape[0]
    nb = d >> 6
    c = 0
    for b in range(nb):
        base = b << 6
        mask = np.uint64(0)
        for j in range(64):
            mask |= np.uint64(abs(a[base + j]) >= t) << np.uint64(j)
        pc = _popcount(mask)
        m = mask
        if c + 64 <= cap:
            for s in range(3):
                i = base + (_ctz(m) & 63)  # _ctz(0) = 64: a harmless write at c + s >= c + pc
                cidx[c + s] = i
                cval[c + s] = a[i]
                m &= m - np.uint64(1)
            cc = c + 3
        else:
            cc = c
        while m != np.uint64(0):
            i = base + _ctz(m)
            m &= m - np.uint64(1)
            if cc < cap:
                cidx[cc] = i
                cval[cc] = a[i]
            cc += 1
        c += pc
    for i in range(nb << 6, d):
        if abs(a[i]) >= t:
            if c < cap:
                cidx[c] = i
                cval[c] = a[i]
            c += 1
    return c


@njit(cache=True)
def _kth_largest(val, c, k, hist, cur):
    """The k-th largest of ``|val[:c]|``, as float64, by radix select.

    For non-negative IEEE floats the order of the values is the order of their bit patterns,
    so the float64 magnitudes are viewed as int64 keys and selected 16 bits at a time, from the
    top: histogram the digit, find the bucket holding the k-th largest, keep only that bucket.
    The first pass reads ``val`` directly; later passes work on the (few) survivors. At most
    four passes. ``hist`` (65536 int64) and ``cur`` (int64, >= the survivors of the first pass,
    else a new array is allocated) are scratch.
    """
    hist[:] = 0
    one = np.empty(1, dtype=np.float64)
    keys = one.view(np.int64)
    for i in range(c):
        keys[0] = 0
        one[0] = abs(val[i])
        hist[keys[0] >> 48] += 1
    acc = 0
    b = 65535
    while acc + hist[b] < k:
        acc += hist[b]
        b -= 1
    k -= acc
    cnt = hist[b]
    if cur.shape[0] < cnt:
        cur = np.empty(cnt, dtype=np.int64)
    w = 0
    for i in range(c):
        one[0] = abs(val[i])
        if (keys[0] >> 48) == b:
            cur[w] = keys[0]
            w += 1
    shift = 32
    while cnt > 1 and k < cnt:
        hist[:] = 0
        for i in range(cnt):
            hist[(cur[i] >> shift) & 0xFFFF] += 1
        acc = 0
        b = 65535
        while acc + hist[b] < k:
            acc += hist[b]
            b -= 1
        k -= acc
        w = 0
        for i in range(cnt):
            if ((cur[i] >> shift) & 0xFFFF) == b:
                cur[w] = cur[i]
                w += 1
        cnt = w
        shift -= 16
        if shift < 0:
            break
    # cnt == 1, or k == cnt (the smallest survivor), or all 64 bits equal
    mn = cur[0]
    for i in range(1, cnt):
        mn = min(mn, cur[i])
    keys[0] = mn
    return one[0]


@njit(cache=True)
def candidate_capacity(d, k):
    """Candidate buffer size that step 2 normally needs (``d`` when no sampling is done)."""
    m = min(d, SAMPLE_SIZE)
    if k >= d or m == d:
        return d
    mu = m * (k / d)
    r = int(mu + 4.0 * math.sqrt(mu) + 8.0)
    return min(d, int((r + 1) * (d / m) * 1.25) + 1024)


@njit(cache=True)
def workspace_sizes(d, k):
    """``(int64 entries, value entries)`` of the scratch :func:`topk_select` uses without allocating."""
    cap = candidate_capacity(d, k)
    return 2 * cap + 65536, cap


@njit(cache=True)
def topk_select(a, k, out, vals, ws, wsv):
    """Write the sorted indices of the k largest ``|a_i|`` (ties: lowest index) into ``out[:k]``
    and the entries themselves, ``a[out[j]]``, into ``vals[:k]`` (gathered during the scan).

    Args:
        a: 1-D float32/float64 array (finite), length d >= 1.
        k: 1 <= k <= d.
        out: int64 array with at least k entries.
        vals: array of a's dtype with at least k entries.
        ws, wsv: scratch (int64 and a's dtype) of the sizes :func:`workspace_sizes` gives;
            smaller ones work too (the kernel then allocates).
    """
    d = a.shape[0]
    if k >= d:
        for i in range(d):
            out[i] = i
            vals[i] = a[i]
        return
    # 1. threshold from a deterministic strided sample
    m = min(d, SAMPLE_SIZE)
    stride = d // m
    mu = m * (k / d)
    r = int(mu + 4.0 * math.sqrt(mu) + 8.0)
    t = _sample_threshold(a, m if m == d else r, m, stride)
    cap = candidate_capacity(d, k)
    if ws.shape[0] >= 2 * cap + 65536 and wsv.shape[0] >= cap:
        cidx = ws[:cap]
        cval = wsv[:cap]
        hist = ws[cap : cap + 65536]
        cur = ws[cap + 65536 :]
    else:
        cidx = np.empty(cap, dtype=np.int64)
        cval = np.empty(cap, dtype=a.dtype)
        hist = np.empty(65536, dtype=np.int64)
        cur = np.empty(cap, dtype=np.int64)
    # 2. collect the candidates |a_i| >= t (retry lower / larger when needed)
    while True:
        c = _collect(a, t, cidx, cval)
        if c < k:
            r = 4 * r + 64
            t = _sample_threshold(a, r, m, stride)
        elif c > cap:
            cap = c
            cidx = np.empty(cap, dtype=np.int64)
            cval = np.empty(cap, dtype=a.dtype)
            cur = np.empty(cap, dtype=np.int64)
        else:
            break
    # 3. exact k-th largest magnitude among the candidates (radix select)
    T = _kth_largest(cval, c, k, hist, cur)
    n_gt = 0
    for j in range(c):
        if abs(cval[j]) > T:
            n_gt += 1
    # 4. keep > T, and the lowest-index entries == T until k are kept
    eq_left = k - n_gt
    o = 0
    for j in range(c):
        v = abs(cval[j])
        if v > T or (v == T and eq_left > 0):
            if v == T:
                eq_left -= 1
            out[o] = cidx[j]
            vals[o] = cval[j]
            o += 1


def topk_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Sorted indices of the k entries of largest magnitude (ties: lowest index).

    Args:
        x: 1-D finite float32/float64 array.
        k: number of entries, 1 <= k <= x.size.

    Returns:
        int64 array of k increasing indices.
    """
    x = check_vector("x", x)
    k = check_int("k", k, low=1, high=x.size)
    out = np.empty(k, dtype=np.int64)
    n64, nv = workspace_sizes(x.size, k)
    ws, wsv = workspace("select64", n64, np.int64), workspace("selectv", nv, x.dtype)
    topk_select(x, k, out, np.empty(k, dtype=x.dtype), ws, wsv)
    return out


_local = threading.local()

#: Scratch arrays larger than this (bytes) are not kept between calls.
WORKSPACE_MAX_BYTES = 1 << 26


def workspace(name: str, size: int, dtype, zero: bool = False, keep_large: bool = False) -> np.ndarray:
    """A reusable scratch array of at least ``size`` entries (per thread, per name and dtype).

    The kernels' internal buffers come from here so that repeated calls do not pay fresh-page
    faults (about 1 us per 4 KiB page on a VM, as much as processing a thousand candidates).
    Arrays up to :data:`WORKSPACE_MAX_BYTES` are kept (at their largest size) until
    :func:`clear_workspace`; larger ones are allocated per call. Never return them to a caller.
    With ``zero=True`` a new array starts zeroed (for kernels that keep it all zero on exit).
    ``keep_large=True`` keeps the array whatever its size (batch scratch of the simulator's hot
    loop, reused every step; :func:`clear_workspace` frees it).
    """
    dtype = np.dtype(dtype)
    size = max(int(size), 1)
    alloc = np.zeros if zero else np.empty
    if size * dtype.itemsize > WORKSPACE_MAX_BYTES and not keep_large:
        return alloc(size, dtype=dtype)
    cache = _local.__dict__.setdefault("arrays", {})
    key = (name, dtype.str)
    a = cache.get(key)
    if a is None or a.shape[0] < size:
        a = alloc(size, dtype=dtype)
        cache[key] = a
    return a


def clear_workspace() -> None:
    """Free the scratch arrays of this thread."""
    _local.__dict__.pop("arrays", None)
