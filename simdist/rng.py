"""Seeding and random streams.

One root seed, derived per node and per step with :class:`numpy.random.SeedSequence`,
so the same seed gives the same bits on every backend. Compressors never touch a
global RNG: randomness comes from the caller's :class:`numpy.random.Generator`.

Compressors that need uniforms use a per-row 64-bit **key** drawn from the caller's
generator (:func:`draw_keys`) and the SplitMix64 stream of that key (Steele, Lea, Flood,
"Fast splittable pseudorandom number generators", OOPSLA 2014): the word for entry j is
``splitmix64(key + (j + 1) * 0x9E3779B97F4A7C15) >> 32``, a uint32 ``w`` that stands for the
uniform ``u = w * 2**-32``; an event of probability ``p`` is the test ``w * 2**-32 < p``,
whose probability ceil(p * 2**32) / 2**32 lies in [p, p + 2**-32). Because the word of
entry j is a pure function of (key, j), Numba kernels compute it inline
(:func:`uniform_word`, no array in memory, ~0.1 ns per entry) and the NumPy references
compute the same words vectorized (:func:`batch_uniform_bits`): they agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from ._validate import check_generator, check_int

__all__ = [
    "node_step_rng",
    "shared_rng",
    "attack_rng",
    "delay_rng",
    "draw_keys",
    "uniform_word",
    "stream_words",
    "batch_uniform_bits",
    "UNIFORM_SCALE",
]

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


#: SplitMix64's increment: word j of a stream is the mix of ``key + (j + 1) * GOLDEN``.
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_GOLDEN = GOLDEN
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, inline="always")
def mix_word(z):
    """SplitMix64's output function of the state ``z`` (uint64), its top 32 bits (Numba, for kernels).

    A kernel that walks j = 0, 1, ... keeps ``z = key + (j + 1) * GOLDEN`` as a running sum (one
    vector add per step instead of a 64-bit multiply) and calls this: the same words as
    :func:`uniform_word`."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return z >> np.uint64(32)


@njit(cache=True, inline="always")
def uniform_word(key, j):
    """Word j (uint64 in [0, 2**32)) of the SplitMix64 stream of ``key`` (Numba, for kernels)."""
    return mix_word(np.uint64(key) + np.uint64(j + 1) * np.uint64(0x9E3779B97F4A7C15))


def stream_words(keys: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Words ``start .. start+n-1`` of the stream of each key, vectorized: uint32 (len(keys), n).

    The plain NumPy twin of :func:`uniform_word` (used by the references and by simple kernels).
    """
    keys = np.asarray(keys, dtype=np.uint64).reshape(-1, 1)
    j = np.arange(start + 1, start + n + 1, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        z = keys + j * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(32)).astype(np.uint32)


def draw_keys(rng, rows: int) -> np.ndarray:
    """One uint64 stream key per row.

    Args:
        rng: one Generator (a derived stream: ``rows`` keys in one draw, no loop over rows),
            or a sequence of ``rows`` Generators (row i draws its key from ``rng[i]``, exactly as
            the single-vector ``compress(x_i, rng[i])`` does).
        rows: number of rows (>= 0).

    Returns:
        uint64 array of shape (rows,).
    """
    rows = check_int("rows", rows, low=0)
    if isinstance(rng, np.random.Generator):
        return rng.integers(0, 2**64, size=rows, dtype=np.uint64, endpoint=False)
    if isinstance(rng, Sequence) and len(rng) == rows:
        keys = np.empty(rows, dtype=np.uint64)
        for i, g in enumerate(rng):
            keys[i] = check_generator("rng", g).integers(0, 2**64, dtype=np.uint64, endpoint=False)
        return keys
    raise TypeError(
        f"rng must be a numpy.random.Generator or a sequence of {rows} Generators (one per row), "
        f"got {type(rng).__name__}"
    )


def batch_uniform_bits(rng, rows: int, cols: int) -> np.ndarray:
    """Raw uint32 words for a (rows, cols) batch: ``stream_words(draw_keys(rng, rows), cols)``.

    Kernels that compute the words inline with :func:`uniform_word` from the same keys give
    identical results.
    """
    cols = check_int("cols", cols, low=0)
    return stream_words(draw_keys(rng, rows), cols)


def attack_rng(seed: int, step: int) -> np.random.Generator:
    """Generator of the Byzantine nodes' forged vectors at a step (:mod:`simdist.robust.attacks`):
    a stream of its own (``spawn_key=(5, step)``), so an attack never shifts the honest nodes' streams."""
    seed = check_int("seed", seed, low=0)
    step = check_int("step", step, low=0)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(5, step))))


def delay_rng(seed: int, step: int) -> np.random.Generator:
    """Generator of the nodes' gradient delays at a step (bounded-staleness SGD,
    :mod:`simdist.engine.staleness`): ``spawn_key=(6, step)``."""
    seed = check_int("seed", seed, low=0)
    step = check_int("step", step, low=0)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(6, step))))
