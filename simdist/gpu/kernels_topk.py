"""CUDA kernels (Numba's CUDA target) of top-k sparsification, bit-identical to the CPU path.

Selection semantics (:mod:`simdist.kernels.select`): the k entries of largest ``|x_i|``, ties at
the k-th magnitude going to the lowest indices, sent in index order. The wire format is that of
:mod:`simdist.compressors.topk` / :mod:`simdist.coding.indices`: ``omega(k + 1)``, a mode bit,
the indices (``delta(gap)`` each, or ``ceil(log2 d)`` bits each, whichever is shorter; fixed on
a tie), ``delta(d - last index)``, then the k float32 bit patterns.

Steps (as numbered in :func:`simdist.gpu.codecs_topk.compress_topk`):

1. **radix select** of the k-th largest magnitude per row: the magnitude's key is the input's
   bit pattern with the sign cleared (``Xb``: X viewed as uint32/uint64; for non-negative IEEE
   floats the bit patterns order like the values, and -0.0 ties with +0.0). One pass per 8-bit
   digit, most significant first: ``radix_hist`` counts the digit of the entries whose higher
   digits equal the prefix found so far (a shared-memory histogram per block of one row, added
   to the row's global histogram), and ``radix_pick`` (one thread per row) walks the bins from
   the top to find the digit holding rank ``krem``. After the last pass, ``prefix[i]`` is the
   k-th largest key T and ``krem[i]`` the number of entries equal to T that are kept. The first
   pass also flags NaN/Inf (exponent all ones).
2. **stream compaction**: ``keep_marks`` marks ``key > T`` (low 32 bits) and ``key == T`` (high
   bits) in one int64; one prefix sum (:mod:`simdist.gpu.scan`) gives for every entry the number
   of each kind before it, so ``gather_kept`` places each kept entry (``key > T``, or ``key == T``
   among the first ``krem`` of them) at its rank in index order, with its float32 value (a value
   beyond the float32 range sets the flag).
3. **lengths**: ``gap_lengths`` (the delta code length of each index gap) and a prefix sum;
   ``row_layout`` (one thread per row) picks the mode and the row's length.
4. **writing**: ``write_items`` (one thread per kept entry: its index code and its value) and
   ``write_headers`` (one per row: count, mode bit, end gap) OR their bits into the word stream
   of :mod:`simdist.gpu.bitstream`.

Decoding (``decode_rows``) is one thread per row, with every check of the CPU decoder: in gap
mode an index is known only after the gaps before it, so a row is sequential. It is the slow part
(O(k) steps of one thread per row).

Example (runs on a GPU, or anywhere with ``NUMBA_ENABLE_CUDASIM=1``):
    >>> import numpy as np
    >>> from numba import cuda
    >>> if cuda.is_available():
    ...     idx = np.array([[0, 3, 4]], np.int64)
    ...     G = np.zeros(3, np.int64)
    ...     gap_lengths[1, 3](idx, G)
    ...     lens = G.tolist()
    ... else:
    ...     lens = [1, 4, 1]
    >>> lens  # |delta(1)|, |delta(3)|, |delta(1)|
    [1, 4, 1]

References:
    Stich, Cordonnier, Jaggi, NeurIPS 2018 (top-k); D. Alcantara et al. / T. Alabi et al., "Fast
    k-selection algorithms for graphics processing units", JEA 2012 (radix select on GPUs).
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda

from .bitstream import delta_code, exact_length, get_bits_checked, get_delta, get_omega, omega_code, put_bits
from .kernels import TPB, f32_value, vmin

__all__ = [
    "HIST_TPB", "ITEMS", "radix_hist", "radix_pick", "keep_marks", "gather_kept", "gap_lengths",
    "row_layout", "write_items", "write_headers", "decode_rows",
]

#: Threads per block of the histogram kernel (fewer under the simulator, whose threads are Python threads).
HIST_TPB = 32 if config.ENABLE_CUDASIM else TPB
#: Entries per histogram thread: a block counts ``HIST_TPB * ITEMS`` entries of one row.
ITEMS = 64
_BINS = 256
_LOW32 = 0xFFFFFFFF


@cuda.jit
def radix_hist(Xb, keybits, shift, prefix, hist, flag):
    """1a. hist[i, digit] += the entries of row i whose key matches ``prefix[i]`` above bit
    ``shift + 8``, by their digit at ``shift``; flag[0] = 1 on NaN/Inf (first pass)."""
    sh = cuda.shared.array(_BINS, np.int32)
    n, d = Xb.shape
    chunks = (d + HIST_TPB * ITEMS - 1) // (HIST_TPB * ITEMS)
    i = cuda.blockIdx.x // chunks
    lo = (cuda.blockIdx.x - i * chunks) * HIST_TPB * ITEMS
    tid = cuda.threadIdx.x
    for q in range(tid, _BINS, HIST_TPB):
        sh[q] = 0
    cuda.syncthreads()
    absmask = (np.uint64(1) << np.uint64(keybits - 1)) - np.uint64(1)
    expmask = np.uint64(0x7F800000) if keybits == 32 else np.uint64(0x7FF0000000000000)
    hi = shift + 8
    top = prefix[i] >> np.uint64(hi) if hi < keybits else np.uint64(0)
    for j in range(lo + tid, vmin(d, lo + HIST_TPB * ITEMS), HIST_TPB):
        key = np.uint64(Xb[i, j]) & absmask
        if hi >= keybits:
            if key & expmask == expmask:
                flag[0] = 1
            cuda.atomic.add(sh, (key >> np.uint64(shift)) & np.uint64(_BINS - 1), 1)
        elif key >> np.uint64(hi) == top:
            cuda.atomic.add(sh, (key >> np.uint64(shift)) & np.uint64(_BINS - 1), 1)
    cuda.syncthreads()
    for q in range(tid, _BINS, HIST_TPB):
        if sh[q] != 0:
            cuda.atomic.add(hist, (i, q), sh[q])


@cuda.jit
def radix_pick(hist, shift, prefix, krem):
    """1b. One thread per row: the digit at ``shift`` of the krem-th largest matching key goes
    into prefix[i]; krem[i] drops by the count of the higher digits; the histogram is cleared."""
    i = cuda.grid(1)
    if i >= hist.shape[0]:
        return
    r = krem[i]
    found = False
    for q in range(_BINS - 1, -1, -1):
        c = np.int64(hist[i, q])
        hist[i, q] = 0
        if found:
            continue
        if r <= c:
            prefix[i] |= np.uint64(q) << np.uint64(shift)
            found = True
        else:
            r -= c
    krem[i] = r


@cuda.jit
def keep_marks(Xb, keybits, prefix, K):
    """2a. K[t] = 1 if key > T, 2**32 if key == T, else 0 (t = i d + j; T = prefix[i])."""
    t = cuda.grid(1)
    n, d = Xb.shape
    if t >= n * d:
        return
    i = t // d
    key = np.uint64(Xb[i, t - i * d]) & ((np.uint64(1) << np.uint64(keybits - 1)) - np.uint64(1))
    K[t] = np.int64(1) if key > prefix[i] else (np.int64(1) << 32 if key == prefix[i] else np.int64(0))


@cuda.jit
def gather_kept(X, K, krem, idx, vals, flag):
    """2b. Kept entry (i, j) goes to slot (#greater before it) + min(#equal before it, krem[i]) - 1
    of idx/vals (index order); flag[0] = 2 when its float32 value overflows. K: scanned marks."""
    t = cuda.grid(1)
    n, d = X.shape
    if t >= n * d:
        return
    i = t // d
    c = K[t] - (K[i * d - 1] if i > 0 else np.int64(0))
    g = c & _LOW32
    q = c >> 32
    own = K[t] - (K[t - 1] if t > 0 else np.int64(0))  # this entry's own mark
    if own == 0 or (own != 1 and q > krem[i]):
        return
    slot = g + vmin(q, krem[i]) - 1
    v = np.float32(X[i, t - i * d])
    if math.isinf(v):
        flag[0] = 2
    idx[i, slot] = t - i * d
    vals[i, slot] = v


@cuda.jit
def gap_lengths(idx, G):
    """3a. G[i k + j] = |delta(idx[i, j] - idx[i, j-1])| (idx[i, -1] = -1)."""
    t = cuda.grid(1)
    n, k = idx.shape
    if t < n * k:
        i = t // k
        j = t - i * k
        G[t] = delta_code(idx[i, j] - (idx[i, j - 1] if j > 0 else -1))[1]


@cuda.jit
def row_layout(idx, G, d, w, modes, blen, nbits):
    """3b. One thread per row: mode (0 gaps if strictly shorter, else 1 fixed), index block length
    and row length (block + 32 k). G: scanned gap lengths."""
    i = cuda.grid(1)
    n, k = idx.shape
    if i >= n:
        return
    gap = G[(i + 1) * k - 1] - (G[i * k - 1] if i > 0 else np.int64(0))
    fixed = k * w
    modes[i] = 0 if gap < fixed else 1
    b = omega_code(k + 1)[1] + 1 + vmin(gap, fixed) + delta_code(d - idx[i, k - 1])[1]
    blen[i] = b
    nbits[i] = b + 32 * k


@cuda.jit
def write_items(idx, vbits, G, modes, blen, offsets, w, words):
    """4a. One thread per kept entry: its index code (gap or fixed) and its 32-bit value."""
    t = cuda.grid(1)
    n, k = idx.shape
    if t >= n * k:
        return
    i = t // k
    j = t - i * k
    row = offsets[i] * 8
    head = row + omega_code(k + 1)[1] + 1
    if modes[i] == 0:
        c, ln = delta_code(idx[i, j] - (idx[i, j - 1] if j > 0 else -1))
        put_bits(words, head + G[t] - ln - (G[i * k - 1] if i > 0 else np.int64(0)), c, ln)
    else:
        put_bits(words, head + j * w, idx[i, j], w)
    put_bits(words, row + blen[i] + 32 * j, vbits[i, j], 32)


@cuda.jit
def write_headers(idx, d, modes, blen, offsets, words):
    """4b. One thread per row: omega(k + 1), the mode bit, and the end gap delta(d - last index)."""
    i = cuda.grid(1)
    n, k = idx.shape
    if i >= n:
        return
    c, ln = omega_code(k + 1)
    pos = put_bits(words, offsets[i] * 8, c, ln)
    put_bits(words, pos, modes[i], 1)
    c, ln = delta_code(d - idx[i, k - 1])
    put_bits(words, offsets[i] * 8 + blen[i] - ln, c, ln)


@cuda.jit
def decode_rows(buf, offsets, d, k, w, scratch, Y, nbits, status):
    """One thread per row (Y zeroed first; scratch: (n, k) int64 for the indices): the CPU
    decoder's checks and status codes, then the trailing-data check (-4)."""
    i = cuda.grid(1)
    n = Y.shape[0]
    if i >= n:
        return
    start = offsets[i] * 8
    limit = offsets[i + 1] * 8
    status[i] = 0
    v, pos = get_omega(buf, limit, start)  # count
    if pos < 0:
        status[i] = pos
        return
    if v - 1 > d or v - 1 != k:
        status[i] = -5
        return
    mode, pos = get_bits_checked(buf, limit, pos, 1)
    if pos < 0 or pos + 32 * k > limit:
        status[i] = -1
        return
    prev = np.int64(-1)
    if mode == 0:
        for j in range(k):
            g, pos = get_delta(buf, limit, pos)
            if pos < 0:
                status[i] = pos
                return
            if g >= d - prev:
                status[i] = -3
                return
            prev += g
            scratch[i, j] = prev
    else:
        if pos + k * w > limit:
            status[i] = -1
            return
        for j in range(k):
            u, pos = get_bits_checked(buf, limit, pos, w)
            if u >= d or u <= prev:
                status[i] = -3
                return
            scratch[i, j] = u
            prev = u
    g, pos = get_delta(buf, limit, pos)  # end gap
    if pos < 0:
        status[i] = pos
        return
    if g != d - prev:
        status[i] = -5
        return
    if pos + 32 * k > limit:
        status[i] = -1
        return
    for j in range(k):
        u, pos = get_bits_checked(buf, limit, pos, 32)
        if (u >> 23) & 0xFF == 0xFF:
            status[i] = -6
            return
        val = f32_value(u & 0x7FFFFFFF)
        Y[i, scratch[i, j]] = -val if u >> 31 else val
    nbits[i] = pos - start
    if not exact_length(buf, start, limit, pos):
        status[i] = -4  # trailing bytes or nonzero padding bits (the base class's check on the CPU)
