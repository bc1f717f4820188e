"""Splitting the samples across nodes (iid or label-sorted) and drawing node minibatches.

``partition(n_samples, nodes, kind, seed, labels)`` returns a (P, m) array of sample indices,
row i = node i's data D_i, disjoint, m = n_samples // P for every node. The remainder
``n_samples - P*m`` samples are dropped (chosen at random by the seed, the same samples for
both kinds), so every node holds exactly m samples.

Steps:
    1. Draw a seeded permutation of the samples and keep its first P*m entries.
    2. ``"iid"``: cut that permutation into P consecutive blocks (a uniformly random split).
       ``"skewed"``: sort the kept samples by ``labels`` (stable sort, so ties stay in random
       order) and cut the sorted order into P blocks: node 0 gets the smallest labels. This
       is the label-sorted (pathological non-iid) split of the federated-learning literature
       (McMahan et al., "Communication-efficient learning of deep networks from
       decentralized data", AISTATS 2017, Section 3). For classifiers ``labels`` are the
       classes; regression problems expose their target (least squares), the first
       coordinate of the sample (mean estimation), or the sample index (sign counterexample)
       as ``Problem.labels``.

``sample_minibatch(parts, batch_size, rng)`` draws B indices per node from its own partition
in one generator call, uniformly with replacement by default (so each node's minibatch
gradient is an average of B iid single-sample gradients of its D_i), or without replacement.

The permutation's generator is ``SeedSequence(seed, spawn_key=(3,))``: a stream of its own,
independent of the per-node/per-step streams of :mod:`simdist.rng` (spawn keys 1 and 2).

Example:
    >>> import numpy as np
    >>> parts = partition(10, 3, kind="skewed", seed=0, labels=np.arange(10) % 2)
    >>> parts.shape                                 # 10 // 3 = 3 samples per node, 1 dropped
    (3, 3)
    >>> idx = sample_minibatch(parts, 5, np.random.default_rng(0))
    >>> idx.shape, bool(all(np.isin(idx[i], parts[i]).all() for i in range(3)))
    ((3, 5), True)
"""

from __future__ import annotations

import numpy as np

from .._validate import check_choice, check_generator, check_int

__all__ = ["partition", "sample_minibatch", "PARTITION_KINDS"]

#: The kinds of split.
PARTITION_KINDS = ("iid", "skewed")


def partition(n_samples: int, nodes: int, kind: str = "iid", seed: int = 0, labels=None) -> np.ndarray:
    """Split ``n_samples`` samples into ``nodes`` disjoint, equal-size parts.

    Args:
        n_samples: number of samples n (>= 1).
        nodes: number of nodes P, 1 <= P <= n_samples.
        kind: ``"iid"`` (random split) or ``"skewed"`` (label-sorted split).
        seed: seed of the permutation (>= 0).
        labels: one finite sortable value per sample; required for ``"skewed"``.

    Returns:
        int64 array (P, n_samples // P); row i holds node i's sample indices.

    Raises:
        ValueError: nodes outside [1, n_samples], an unknown kind, missing or misshaped labels.

    Example:
        >>> partition(6, 2, kind="iid", seed=0).shape
        (2, 3)

    References:
        McMahan et al., AISTATS 2017 (label-sorted non-iid split).
    """
    n_samples = check_int("n_samples", n_samples, low=1)
    nodes = check_int("nodes", nodes, low=1, high=n_samples)
    check_choice("kind", kind, PARTITION_KINDS)
    seed = check_int("seed", seed, low=0)
    m = n_samples // nodes
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n_samples,):
            raise ValueError(f"labels must have shape ({n_samples},) (one per sample), got {labels.shape}")
        if labels.dtype.kind not in "biuf":
            raise TypeError(f"labels must be numeric, got dtype {labels.dtype}")
        if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
            raise ValueError("labels must be finite (no NaN or Inf)")
    elif kind == "skewed":
        raise ValueError("labels are required for kind='skewed' (one value per sample to sort by)")
    # 1. a seeded permutation; the first P*m samples are kept
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(3,))))
    keep = rng.permutation(n_samples)[: nodes * m].astype(np.int64)
    # 2. iid: consecutive blocks of the permutation; skewed: blocks of the label-sorted order
    if kind == "skewed":
        keep = keep[np.argsort(labels[keep], kind="stable")]
    return keep.reshape(nodes, m)


def sample_minibatch(parts, batch_size: int, rng: np.random.Generator, *, replace: bool = True) -> np.ndarray:
    """Draw each node's minibatch from its own partition, for every node in one generator call.

    Args:
        parts: (P, m) integer array from :func:`partition`.
        batch_size: samples per node B (>= 1; <= m when ``replace`` is False).
        rng: the caller's generator.
        replace: draw uniformly with replacement (default) or without.

    Returns:
        int64 array (P, B); row i holds indices taken from ``parts[i]``.

    Example:
        >>> parts = partition(8, 2, seed=0)
        >>> idx = sample_minibatch(parts, 4, np.random.default_rng(1), replace=False)
        >>> bool(np.array_equal(np.sort(idx, axis=1), np.sort(parts, axis=1)))
        True
    """
    parts = np.asarray(parts)
    if parts.dtype.kind not in "iu" or parts.ndim != 2 or parts.size == 0:
        raise ValueError(f"parts must be a non-empty 2-D integer array (nodes, m), got {parts.dtype} {parts.shape}")
    P, m = parts.shape
    check_generator("rng", rng)
    if not isinstance(replace, bool):
        raise TypeError(f"replace must be True or False, got {replace!r}")
    batch_size = check_int("batch_size", batch_size, low=1, high=None if replace else m)
    if replace:
        cols = rng.integers(0, m, size=(P, batch_size))
    else:
        # the B smallest of m iid uniform keys per row are a uniformly random B-subset
        keys = rng.random((P, m))
        if batch_size < m:
            cols = np.argpartition(keys, batch_size - 1, axis=1)[:, :batch_size]
        else:
            cols = np.argsort(keys, axis=1)
    return np.take_along_axis(parts, cols, axis=1).astype(np.int64, copy=False)
