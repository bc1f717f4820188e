"""Data partitioning across nodes (iid, label-sorted) and vectorized minibatch sampling."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from simdist import problems
from simdist.problems import partition, sample_minibatch


def _check_split(parts, n, P):
    m = n // P
    assert parts.shape == (P, m) and parts.dtype == np.int64
    flat = parts.ravel()
    assert np.unique(flat).size == flat.size  # disjoint
    assert flat.min(initial=0) >= 0 and flat.max(initial=0) < n


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 500), st.data(), st.sampled_from(["iid", "skewed"]), st.integers(0, 2**32))
def test_partition_properties(n, data, kind, seed):
    P = data.draw(st.integers(1, n))
    labels = np.random.default_rng(seed).integers(0, data.draw(st.integers(1, 12)), n)
    parts = partition(n, P, kind=kind, seed=seed, labels=labels)
    _check_split(parts, n, P)
    # the remainder dropped is the same set of samples for both kinds
    other = partition(n, P, kind="iid" if kind == "skewed" else "skewed", seed=seed, labels=labels)
    assert np.array_equal(np.sort(parts.ravel()), np.sort(other.ravel()))
    if kind == "skewed":  # label-sorted: labels non-decreasing along nodes, then within a node
        lab = labels[parts]
        assert np.all(np.diff(np.sort(lab, axis=1).ravel()) >= 0)
        assert np.all(lab[:-1].max(axis=1) <= lab[1:].min(axis=1))
    assert np.array_equal(parts, partition(n, P, kind=kind, seed=seed, labels=labels))  # deterministic


def test_iid_is_a_seeded_random_split():
    a = partition(1000, 4, seed=0)
    assert np.array_equal(a, partition(1000, 4, seed=0))
    assert not np.array_equal(a, partition(1000, 4, seed=1))
    # iid: each node's share of the first half of the samples is Hypergeometric(1000, 500, 250);
    # |z| < 5 fails with probability < 1e-5 per node under the null.
    share = (a < 500).sum(axis=1)
    sd = np.sqrt(250 * 0.5 * 0.5 * (1000 - 250) / (1000 - 1))
    assert np.all(np.abs(share - 125) < 5 * sd)
    assert np.array_equal(np.sort(partition(12, 3, seed=5).ravel()), np.arange(12))  # nothing dropped


def test_skewed_classification_split_is_label_sorted():
    p = problems.make("mlp_digits", hidden=4)
    parts = p.partition(10, kind="skewed", seed=0)
    _check_split(parts, p.n_samples, 10)
    classes = p.labels[parts]
    # 10 nodes, about 180 samples per class: every node sees at most 3 classes (iid: all 10)
    assert max(np.unique(row).size for row in classes) <= 3
    assert all(np.unique(row).size == 10 for row in p.labels[p.partition(10, kind="iid", seed=0)])
    # regression: sorted by the target
    ls = problems.make("least_squares", n=101, d=3)
    tgt = ls.b[ls.partition(5, kind="skewed")]
    assert np.all(np.diff(tgt.ravel()) >= 0)


def test_remainder_dropped():
    parts = partition(10, 3, seed=0)
    assert parts.shape == (3, 3) and np.setdiff1d(np.arange(10), parts).size == 1
    assert partition(7, 7, seed=0).shape == (7, 1)


def test_sample_minibatch_with_replacement_is_uniform_on_own_partition():
    parts = partition(60, 3, seed=0)  # m = 20
    rng = np.random.default_rng(1)
    idx = sample_minibatch(parts, 40000, rng)
    assert idx.shape == (3, 40000) and idx.dtype == np.int64
    for i in range(3):
        vals, counts = np.unique(idx[i], return_counts=True)
        assert np.array_equal(np.sort(vals), np.sort(parts[i]))
        # chi-square goodness of fit to uniform over the 20 samples, 19 dof; p < 1e-6 fails
        assert stats.chisquare(counts).pvalue > 1e-6
    # determinism: the same generator state gives the same minibatches
    a, b = (sample_minibatch(parts, 5, np.random.default_rng(2)) for _ in range(2))
    assert np.array_equal(a, b)


def test_sample_minibatch_without_replacement():
    parts = partition(50, 5, seed=0)  # m = 10
    rng = np.random.default_rng(3)
    counts = np.zeros(50)
    for _ in range(2000):
        idx = sample_minibatch(parts, 4, rng, replace=False)
        for i in range(5):
            assert np.unique(idx[i]).size == 4 and np.isin(idx[i], parts[i]).all()
        counts[idx.ravel()] += 1
    # each sample is in its node's batch with probability 4/10: 2000 draws -> Binomial(2000, 0.4),
    # |z| < 5.5 for all 50 samples fails with probability < 50 * 4e-8
    assert np.all(np.abs(counts - 800) < 5.5 * np.sqrt(2000 * 0.4 * 0.6))
    full = sample_minibatch(parts, 10, rng, replace=False)
    assert np.array_equal(np.sort(full, axis=1), np.sort(parts, axis=1))


def test_minibatch_grads_of_a_problem():
    p = problems.make("least_squares", n=64, d=3)
    parts = p.partition(4, seed=0)
    idx = sample_minibatch(parts, 8, np.random.default_rng(0))
    G = p.grads(p.x0, idx)
    assert G.shape == (4, 3) and np.all(np.isfinite(G))


BAD_PARTITION = [
    (dict(n_samples=10, nodes=0), ValueError, "nodes must be in \\[1, 10\\]"),
    (dict(n_samples=10, nodes=11), ValueError, "nodes must be in \\[1, 10\\]"),
    (dict(n_samples=0, nodes=1), ValueError, "n_samples must be"),
    (dict(n_samples=10, nodes=2, kind="dirichlet"), ValueError, "kind must be one of"),
    (dict(n_samples=10, nodes=2, kind="skewed"), ValueError, "labels are required"),
    (dict(n_samples=10, nodes=2, labels=np.zeros(9)), ValueError, "labels must have shape \\(10,\\)"),
    (dict(n_samples=3, nodes=2, kind="skewed", labels=[0.0, np.nan, 1.0]), ValueError, "labels must be finite"),
    (dict(n_samples=3, nodes=2, kind="skewed", labels=["a", "b", "c"]), TypeError, "labels must be numeric"),
    (dict(n_samples=10, nodes=2.0), TypeError, "nodes must be an integer"),
    (dict(n_samples=10, nodes=2, seed=-1), ValueError, "seed must be"),
]


@pytest.mark.parametrize("kwargs,exc,match", BAD_PARTITION)
def test_partition_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        partition(**kwargs)


def test_sample_minibatch_errors():
    parts = partition(20, 2, seed=0)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="batch_size must be in \\[1, inf\\]"):
        sample_minibatch(parts, 0, rng)
    with pytest.raises(ValueError, match="batch_size must be in \\[1, 10\\]"):
        sample_minibatch(parts, 11, rng, replace=False)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        sample_minibatch(parts, 2, 0)
    with pytest.raises(ValueError, match="parts must be"):
        sample_minibatch(parts.ravel(), 2, rng)
    with pytest.raises(TypeError, match="replace must be"):
        sample_minibatch(parts, 2, rng, replace="no")
