"""Parallel inclusive scan (prefix sum or prefix max) of a 1-D int64 device array, for the GPU codecs.

The variable-length GPU encoders (Elias-coded QSGD, top-k) need, for every entry, the bit offset
of its code (an exclusive prefix sum of the code lengths) and the position of the previous
nonzero (a prefix max). Both are the same scan with another operator:

1. ``block_scan``: ``TPB`` threads per block, ``ITEMS`` consecutive elements per thread: each
   thread scans its elements sequentially in shared memory, then a Hillis-Steele scan of the
   thread totals (log2(TPB) steps, a barrier between the read and the write of each step); each
   block's total goes to ``sums``;
2. the block totals are scanned the same way (recursively: ``ceil(count / (TPB ITEMS))`` of them);
3. ``add_block_prefix``: every element of block ``B > 0`` is combined with the scanned total of
   blocks ``0..B-1``.

The identity of both operators is 0, so the values must be non-negative (code lengths,
1-based positions). An exclusive scan follows from the inclusive one (sum: ``incl - value``;
max: the inclusive value of the element before). The array is scanned in place.

Example (runs on a GPU, or anywhere with ``NUMBA_ENABLE_CUDASIM=1``):
    >>> import numpy as np
    >>> from numba import cuda
    >>> if cuda.is_available():
    ...     a = cuda.to_device(np.array([3, 0, 2, 5], np.int64))
    ...     inclusive_scan(a, use_max=False)
    ...     out = a.copy_to_host().tolist()
    ... else:
    ...     out = [3, 3, 5, 10]
    >>> out
    [3, 3, 5, 10]

References:
    W. D. Hillis, G. L. Steele, "Data parallel algorithms", CACM 29(12), 1986;
    M. Harris, S. Sengupta, J. D. Owens, "Parallel prefix sum (scan) with CUDA", GPU Gems 3, ch. 39.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .kernels import TPB, vmax

__all__ = ["inclusive_scan", "block_scan", "add_block_prefix"]


#: Elements per thread: a block scans ``TPB * ITEMS`` consecutive elements.
ITEMS = 8
_BLOCK = TPB * ITEMS


@cuda.jit
def block_scan(a, count, use_max, sums):
    """Scan each block of ``TPB * ITEMS`` elements of ``a[:count]`` in place; ``sums[B]`` = block B's total.

    (a) the block's elements are loaded into shared memory (coalesced: thread t reads t, t + TPB, ...);
    (b) each thread scans its ITEMS consecutive elements sequentially; (c) a Hillis-Steele scan of
    the TPB thread totals; (d) each thread adds the totals of the threads before it and the block
    is stored back (coalesced).
    """
    sh = cuda.shared.array(_BLOCK, np.int64)
    tot = cuda.shared.array(TPB, np.int64)
    tid = cuda.threadIdx.x
    base = cuda.blockIdx.x * _BLOCK
    for u in range(ITEMS):  # (a)
        t = base + u * TPB + tid
        sh[u * TPB + tid] = a[t] if t < count else np.int64(0)
    cuda.syncthreads()
    v = np.int64(0)
    for u in range(ITEMS):  # (b)
        w = sh[tid * ITEMS + u]
        v = vmax(v, w) if use_max else v + w
        sh[tid * ITEMS + u] = v
    tot[tid] = v
    cuda.syncthreads()
    off = 1
    while off < TPB:  # (c)
        w = tot[tid - off] if tid >= off else np.int64(0)
        cuda.syncthreads()
        v = vmax(v, w) if use_max else v + w
        tot[tid] = v
        cuda.syncthreads()
        off *= 2
    pre = tot[tid - 1] if tid > 0 else np.int64(0)
    for u in range(ITEMS):  # (d)
        w = sh[tid * ITEMS + u]
        sh[tid * ITEMS + u] = vmax(w, pre) if use_max else w + pre
    cuda.syncthreads()
    for u in range(ITEMS):
        t = base + u * TPB + tid
        if t < count:
            a[t] = sh[u * TPB + tid]
    if tid == TPB - 1:
        sums[cuda.blockIdx.x] = v


@cuda.jit
def add_block_prefix(a, count, use_max, sums):
    """Combine element t of block B > 0 with ``sums[B - 1]`` (the scanned totals of blocks < B)."""
    t = cuda.grid(1)
    if t >= count or t < _BLOCK:
        return
    p = sums[t // _BLOCK - 1]
    a[t] = vmax(a[t], p) if use_max else a[t] + p


def inclusive_scan(a, use_max: bool = False) -> None:
    """Replace the non-negative int64 device array ``a`` by its inclusive prefix sum (or max).

    Args:
        a: 1-D int64 device array (a Numba device array, or NumPy under the simulator).
        use_max: prefix max instead of prefix sum.
    """
    count = int(a.shape[0])
    if count == 0:
        return
    nblocks = -(-count // _BLOCK)
    sums = cuda.device_array(nblocks, np.int64)
    block_scan[nblocks, TPB](a, count, use_max, sums)  # 1.
    if nblocks > 1:
        inclusive_scan(sums, use_max)  # 2. the block totals (nblocks / _BLOCK of them at the next level)
        add_block_prefix[-(-count // TPB), TPB](a, count, use_max, sums)  # 3.
