"""Seeding and random streams.

One root seed, derived per node and per step with :class:`numpy.random.SeedSequence`,
so the same seed gives the same bits on every backend. Compressors never touch a
global RNG: randomness comes from the caller's :class:`numpy.random.Generator`.

Compressors that need uniforms draw them as raw 32-bit words (:func:`uniform_bits`):
a word ``w`` stands for the uniform ``u = w * 2**-32`` and an event of probability ``p``
is the test ``w * 2**-32 < p``, whose probability ceil(p * 2**32) / 2**32 lies in
[p, p + 2**-32). One PCG64 draw gives two words. Kernels and the NumPy references consume the same words,
so they agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._validate import check_generator, check_int

__all__ = ["node_step_rng", "shared_rng", "uniform_bits", "batch_uniform_bits", "UNIFORM_SCALE"]

#: 2**-32: a raw word w stands for the uniform w * UNIFORM_SCALE in [0, 1).
UNIFORM_SCALE = 2.0**-32


def node_step_rng(seed: int, node: int, step: int) -> np.random.Generator:
    """Generator for one node at one step, derived from the root seed.

    Args:
        seed: root seed (int >= 0).
        node: node rank (>= 0).
        step: step index (>= 0).

    Returns:
        A PCG64 generator whose stream depends only on (seed, node, step).

    Example:
        >>> a = node_step_rng(7, 1, 3).integers(1 << 30)
        >>> b = node_step_rng(7, 1, 3).integers(1 << 30)
        >>> bool(a == b)
        True
    """
    seed = check_int("seed", seed, low=0)
    node = check_int("node", node, low=0)
    step = check_int("step", step, low=0)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(1, node, step))))


def shared_rng(seed: int, step: int) -> np.random.Generator:
    """Generator that every replica derives identically at a step (shared masks, Rand-k keys)."""
    seed = check_int("seed", seed, low=0)
    step = check_int("step", step, low=0)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(2, step))))


def uniform_bits(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw ``n`` raw 32-bit words from ``rng`` (two per 64-bit PCG64 output).

    Args:
        rng: the caller's generator (advanced by ceil(n/2) raw draws).
        n: number of words (>= 0).

    Returns:
        uint32 array of shape (n,).
    """
    check_generator("rng", rng)
    n = check_int("n", n, low=0)
    raw = rng.bit_generator.random_raw((n + 1) // 2)
    return raw.view(np.uint32)[:n]


def batch_uniform_bits(rng, rows: int, cols: int) -> np.ndarray:
    """Raw words for a (rows, cols) batch.

    Args:
        rng: either one Generator (a derived stream: a single draw of rows*cols words,
            no loop over rows), or a sequence of ``rows`` Generators (row i uses
            ``rng[i]`` exactly as the single-vector ``compress(x_i, rng[i])`` would).

    Returns:
        uint32 array of shape (rows, cols).
    """
    if isinstance(rng, np.random.Generator):
        return uniform_bits(rng, rows * cols).reshape(rows, cols)
    if isinstance(rng, Sequence) and len(rng) == rows:
        out = np.empty((rows, cols), dtype=np.uint32)
        for i, g in enumerate(rng):
            out[i] = uniform_bits(g, cols)
        return out
    raise TypeError(
        f"rng must be a numpy.random.Generator or a sequence of {rows} Generators (one per row), "
        f"got {type(rng).__name__}"
    )
