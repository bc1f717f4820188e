"""Rand-k sparsification with shared randomness: k uniformly random entries, indices not sent.

The k indices are a function of a 63-bit key, the dimension and k only. The key is drawn from
the caller's generator (``rng.integers(2**63)``, one per row) and travels beside the message in
``Payload.key`` / ``PayloadBatch.keys``, like ``dim``: every node derives it from the shared
seed (e.g. :func:`simdist.rng.shared_rng`), so it is not counted. Decoding needs it:
``c.from_bytes(data, dim, key=key)``.

Wire format (one row): the k kept entries as IEEE-754 binary32 bit patterns, MSB first
(big-endian), in increasing index order: exactly ``32 k`` bits. float64 inputs are rounded to
nearest float32. With ``scaled=True`` the decoder multiplies each value by ``d/k`` (in float64,
then rounds to the output dtype), which makes the compressor unbiased.

Index sampler (:func:`simdist.kernels.sparse.randk_indices`, reference
:func:`simdist.reference.sparse.ref_randk_indices`): splitmix64 seeded with the key drives
Floyd's algorithm (for j = d-k .. d-1: t uniform in [0, j] by rejection; add j if t was already
chosen, else t); the indices are sent in increasing order.

Error (exact, [D]): ``E||C(x) - x||^2 = (1 - k/d) ||x||^2`` unscaled (a k-contraction [M]) and
``(d/k - 1) ||x||^2`` scaled.

References:
    Stich, Cordonnier, Jaggi, "Sparsified SGD with Memory", NeurIPS 2018, Definition 2.1 and
    Lemma A.1 (rand_k). Wangni et al., "Gradient Sparsification for Communication-Efficient
    Distributed Optimization", NeurIPS 2018 (unbiased rescaling).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_int
from ..errors import raise_decode_status
from ..kernels.sparse import randk_decode, randk_encode
from .base import Compressor
from .registry import register
from .topk import check_k_dim, check_k_ratio, effective_k

__all__ = ["RandK"]


@register
@dataclass(frozen=True)
class RandK(Compressor):
    """Keep k entries chosen by a shared key (k given, or ``max(1, ceil(ratio * d))``).

    Args:
        k: number of entries kept, an integer >= 1 (at most d).
        ratio: fraction kept, a float in (0, 1]. Exactly one of k / ratio.
        scaled: multiply the kept entries by d/k (unbiased) when True.

    Example:
        >>> import numpy as np
        >>> c = RandK(k=2, scaled=True)
        >>> p = c.compress(np.arange(1.0, 5.0, dtype=np.float32), np.random.default_rng(0))
        >>> y = c.decompress(p)
        >>> p.nbits, int(np.count_nonzero(y)), c.unbiased
        (64, 2, True)
        >>> np.array_equal(c.decompress(c.from_bytes(p.to_bytes(), 4, key=p.key)), y)
        True

    References:
        Stich, Cordonnier, Jaggi, NeurIPS 2018, Definition 2.1 [M]; THEORY.md section 5.
    """

    k: int | None = None
    ratio: float | None = None
    scaled: bool = False

    name = "randk"
    needs_rng = True
    needs_key = True
    #: The message is k bare values: with k given, any dimension >= k decodes it.
    determines_dim = False

    def __post_init__(self):
        k, ratio = check_k_ratio(self.name, self.k, self.ratio)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "ratio", ratio)
        if not isinstance(self.scaled, (bool, np.bool_)):
            raise TypeError(f"scaled must be a bool (True or False), got {type(self.scaled).__name__} {self.scaled!r}")
        object.__setattr__(self, "scaled", bool(self.scaled))

    @property
    def unbiased(self) -> bool:  # type: ignore[override]
        """True when scaled: E[C(x)] = x."""
        return self.scaled

    def k_for(self, d: int) -> int:
        """The number of entries kept for dimension d."""
        return effective_k(self.k, self.ratio, d)

    def _scale(self, d: int) -> float:
        return d / self.k_for(d) if self.scaled else 1.0

    def _check_dim(self, d: int) -> None:
        check_int("d", d, low=1)
        check_k_dim(self.k, d)

    def _encode_batch(self, X, rng):
        n, d = X.shape
        # one key per row: the only Python loop draws the per-row keys
        if isinstance(rng, np.random.Generator):
            keys = rng.integers(2**63, size=n, dtype=np.int64)
        else:
            keys = np.array([g.integers(2**63, dtype=np.int64) for g in rng], dtype=np.int64)
        k = self.k_for(d)
        buf, nbits, status, row = randk_encode(X, keys, k, self._scale(d))
        if status < 0:
            raise ValueError(
                f"{self.name}: x has a kept value that does not fit in float32 (or overflows "
                f"{X.dtype} once scaled by d/k) in row {row}"
            )
        offsets = np.arange(n + 1, dtype=np.int64) * (4 * k)
        return buf, offsets, nbits, keys

    def _decode_batch(self, buffer, offsets, d, dtype, keys, out=None):
        n = offsets.shape[0] - 1
        keys = np.asarray(keys, dtype=np.int64)
        if keys.shape != (n,):
            raise ValueError(f"keys must hold one key per row ({n}), got shape {keys.shape}")
        Y, nbits, status, row = randk_decode(buffer, offsets, d, self.k_for(d), keys, self._scale(d), dtype, out)
        raise_decode_status(int(status), f"{self.name} (row {row})")
        return Y, nbits

    def variance_bound(self, x):
        """``(1 - k/d)||x||^2`` unscaled (k-contraction [M]); ``(d/k - 1)||x||^2`` scaled."""
        return self.exact_variance(x)

    def exact_variance(self, x):
        """[D] ``E||C(x) - x||^2``: ``(1 - k/d)||x||^2`` unscaled, ``(d/k - 1)||x||^2`` scaled."""
        from analysis.sparsification import randk_exact_error

        x = np.asarray(x, dtype=np.float64)
        return randk_exact_error(x, self.k_for(x.size), self.scaled)
