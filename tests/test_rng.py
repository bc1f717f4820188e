"""Seed derivation and the SplitMix64 word streams."""

import numpy as np
import pytest
from numba import njit
from scipy import stats

from simdist.rng import batch_uniform_bits, draw_keys, node_step_rng, shared_rng, stream_words, uniform_word


@njit(cache=True)
def _inline_words(keys, n):
    out = np.empty((keys.shape[0], n), dtype=np.uint64)
    for i in range(keys.shape[0]):
        for j in range(n):
            out[i, j] = uniform_word(keys[i], j)
    return out


def test_inline_words_equal_vectorized():
    keys = np.array([0, 1, 2**63, 2**64 - 1, 12345], dtype=np.uint64)
    assert np.array_equal(_inline_words(keys, 100), stream_words(keys, 100))
    assert np.array_equal(stream_words(keys, 50, start=50), stream_words(keys, 100)[:, 50:])


def test_splitmix64_known_value():
    # SplitMix64 seeded with 0: first output 0xE220A8397B1DCDAF (reference implementation by Vigna).
    assert int(stream_words(np.array([0], np.uint64), 1)[0, 0]) == 0xE220A8397B1DCDAF >> 32


def test_keys_per_row_generators_match_single_vector_draws():
    gens = [np.random.default_rng(i) for i in range(4)]
    keys = draw_keys(gens, 4)
    for i in range(4):
        assert keys[i] == draw_keys([np.random.default_rng(i)], 1)[0]
    with pytest.raises(TypeError, match="rng must be"):
        draw_keys([np.random.default_rng(0)], 2)
    with pytest.raises(TypeError, match="rng must be"):
        draw_keys(42, 1)


def test_seed_derivation_is_deterministic_and_distinct():
    a = node_step_rng(7, 1, 3).integers(2**62, size=4)
    assert np.array_equal(a, node_step_rng(7, 1, 3).integers(2**62, size=4))
    others = [node_step_rng(7, 2, 3), node_step_rng(7, 1, 4), node_step_rng(8, 1, 3), shared_rng(7, 3)]
    for g in others:
        assert not np.array_equal(a, g.integers(2**62, size=4))
    with pytest.raises(ValueError, match="node must be in"):
        node_step_rng(7, -1, 0)


def test_words_are_uniform():
    # Chi-square goodness of fit of the top 4 bits over 16 cells: p-value > 1e-4 fails with prob 1e-4.
    w = batch_uniform_bits(np.random.default_rng(3), 4, 100_000).ravel()
    counts = np.bincount((w >> 28).astype(np.int64), minlength=16)
    assert stats.chisquare(counts).pvalue > 1e-4
    # Rows use independent streams: correlation of two rows' uniforms is ~N(0, 1/n); |z| < 4.5.
    u = batch_uniform_bits(np.random.default_rng(4), 2, 100_000) * 2.0**-32
    r = np.corrcoef(u[0], u[1])[0, 1]
    assert abs(r) * np.sqrt(100_000) < 4.5
