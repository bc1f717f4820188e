"""Row reductions of a decoded (n, d) batch: the float64 mean of the rows, and with it the
error-feedback residual P - C, in one pass (used by the engine and by
:meth:`simdist.compressors.Compressor.decompress_batch_residual`).

Rows are added in order 0, 1, ..., n-1 into a float64 accumulator that starts at +0.0, exactly as
numpy's ``Y.astype(float64).mean(axis=0)`` adds them (then one division by n), so the mean is
bit-identical to it (tested, signed zeros included). Four rows per sweep over the columns: the
accumulator (8 d bytes) is read and written once per four rows instead of once per row; the order
of the additions is unchanged.

Example:
    >>> import numpy as np
    >>> Y = np.array([[1.0, 2.0], [3.0, -2.0]])
    >>> out = np.empty(2)
    >>> mean_rows(Y, out); out.tolist()
    [2.0, 0.0]
    >>> P = np.ones((2, 2))
    >>> mean_rows_and_residual(P, Y, out); Y.tolist()
    [[0.0, -1.0], [-2.0, 3.0]]
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["mean_rows", "mean_rows_and_residual", "add_rows"]


@njit(cache=True)
def mean_rows(Y, out):  # pragma: no cover - compiled
    """out[j] = (sum_i Y[i, j]) / n in float64, rows added in order (as numpy's axis-0 mean)."""
    out[:] = 0.0  # numpy's sum starts from +0.0 too (so -0.0 entries sum to +0.0)
    add_rows(Y, out)
    for j in range(Y.shape[1]):
        out[j] /= Y.shape[0]


@njit(cache=True)
def mean_rows_and_residual(Pm, Y, out):  # pragma: no cover - compiled
    """:func:`mean_rows` of Y (the decoded c) and, in the same pass, Y <- Pm - Y (the memory p - c)."""
    n, d = Y.shape
    out[:] = 0.0
    i = 0
    while i + 4 <= n:
        y0, y1, y2, y3 = Y[i], Y[i + 1], Y[i + 2], Y[i + 3]
        p0, p1, p2, p3 = Pm[i], Pm[i + 1], Pm[i + 2], Pm[i + 3]
        for j in range(d):
            c0, c1, c2, c3 = y0[j], y1[j], y2[j], y3[j]
            out[j] = (((out[j] + np.float64(c0)) + np.float64(c1)) + np.float64(c2)) + np.float64(c3)
            y0[j] = p0[j] - c0
            y1[j] = p1[j] - c1
            y2[j] = p2[j] - c2
            y3[j] = p3[j] - c3
        i += 4
    while i < n:
        y0, p0 = Y[i], Pm[i]
        for j in range(d):
            c0 = y0[j]
            out[j] += np.float64(c0)
            y0[j] = p0[j] - c0
        i += 1
    for j in range(d):
        out[j] /= n


@njit(cache=True)
def add_rows(Y, acc):  # pragma: no cover - compiled
    """acc[j] += Y[0, j] + Y[1, j] + ... in float64, rows added in order, one at a time, four rows
    per sweep: the additions :func:`mean_rows` makes, so that accumulating the rows of a matrix in
    chunks (each chunk after the previous) and dividing by n once gives its mean bit for bit."""
    n, d = Y.shape
    i = 0
    while i + 4 <= n:
        y0, y1, y2, y3 = Y[i], Y[i + 1], Y[i + 2], Y[i + 3]
        for j in range(d):
            acc[j] = (((acc[j] + np.float64(y0[j])) + np.float64(y1[j])) + np.float64(y2[j])) + np.float64(y3[j])
        i += 4
    while i < n:
        y0 = Y[i]
        for j in range(d):
            acc[j] += np.float64(y0[j])
        i += 1
