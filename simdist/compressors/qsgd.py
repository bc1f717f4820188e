"""QSGD: stochastic quantization to s levels of the bucket norm, with the paper's Elias code.

Quantizer (Alistarh et al. 2017, Sec. 3.1). Each bucket v of ``bucket`` consecutive entries
(the whole vector when ``bucket=None``; the last bucket may be shorter) is sent as

    Q_s(v)_i = scale * sgn(v_i) * level_i / s,   level_i in {l_i, l_i + 1},

where ``scale`` is ||v||_2 (``norm="l2"``) or max|v_i| (``norm="max"``) rounded *up* to float32,
r_i = |v_i| / scale <= 1, l_i = floor(s r_i) and level_i = l_i + 1 with probability
p_i = s r_i - l_i: the event ``w * 2**-32 < p_i`` for the entry's uint32 random word w (word j
of the row's SplitMix64 stream, i.e. ``simdist.rng.batch_uniform_bits(rng, n, d)``, computed
inline). Because the quantization uses the float32 scale that is sent, E[Q(v)] = v exactly
(in exact arithmetic). Q(0) = 0.

Wire format of one row (MSB first, buckets back to back, zero padding to a byte boundary).
For each bucket of length b:

* ``encoding="elias"`` (Sec. 3.2, Elias omega = the paper's recursive Elias code):
  32 bits: the float32 scale (IEEE binary32, big-endian bit order);
  omega(position of the first nonzero, 1-based; b + 1 when there is none);
  then for each nonzero, in order: 1 sign bit (1 = negative), omega(level) (1..s),
  omega(distance to the next nonzero, "next" being position b + 1 after the last one).
* ``encoding="fixed"``: 32 bits scale, then each entry's ``sgn * level + s`` in
  ceil(log2(2s + 1)) bits.

The decoder returns ``sgn * level * (scale / s)`` computed in float64, cast to the requested
dtype. It rejects (DecodeError) truncation, a level > s (fixed: a code > 2s), a position past
b + 1, a negative (sign bit set, including -0.0), infinite or NaN scale, a zero scale with
nonzero levels, and trailing bytes.

The float64 scale is ``max(sqrt(sum v_i^2), max|v_i|)`` with the sum taken over 8 lanes
(see :mod:`simdist.kernels.qsgd`), so its bits are reproducible; a bucket whose norm exceeds
the float32 range is refused with ValueError.

Speed notes: NaN/Inf inputs are found by the encode kernel itself (``checks_finite``: a
bucket's float64 sum of squares is non-finite iff the bucket holds NaN/Inf, or, for float64
input only, on overflow from huge finite values, which an exact check on that error path tells
apart), so ``compress`` makes no separate ``np.isfinite`` pass; ``decompress(p, out=y)``
decodes straight into ``y`` (zeros written as the decoder goes), with no fresh output pages.

References:
    D. Alistarh, D. Grubic, J. Li, R. Tomioka, M. Vojnovic, "QSGD: Communication-Efficient SGD
    via Gradient Quantization and Encoding", NeurIPS 2017: Lemma 3.1 (unbiasedness, variance,
    sparsity), Theorem 3.2 (code length), Corollary 3.3, Sec. 3.2 (encoding), Sec. 5 (bucketing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_choice, check_int, check_vector
from ..kernels import qsgd as _k
from ..rng import draw_keys
from .base import Compressor
from .registry import register

__all__ = ["QSGD"]

_MAX_S = 2**20
_MAX_DIM = 2**31 - 2


@register
@dataclass(frozen=True)
class QSGD(Compressor):
    """QSGD quantizer with s levels, L2 or max norm, optional bucketing, Elias or fixed code.

    Args:
        s: number of quantization levels, integer in [1, 2**20].
        norm: ``"l2"`` (the paper's quantizer) or ``"max"`` (scale by max|v_i|).
        bucket: None (one bucket: the whole vector) or the bucket length, integer >= 1.
        encoding: ``"elias"`` (Sec. 3.2) or ``"fixed"`` (ceil(log2(2s+1)) bits per entry).

    Returns:
        ``compress`` returns a Payload (see the module docstring for its wire format);
        ``decompress`` the unbiased estimate Q_s(x) in x's dtype.

    Example:
        >>> import numpy as np
        >>> c = QSGD(s=4, bucket=512)
        >>> x = np.random.default_rng(0).standard_normal(2048).astype(np.float32)
        >>> p = c.compress(x, np.random.default_rng(1))
        >>> y = c.decompress(p)
        >>> y.dtype, p.nbits < 32 * x.size, bool(c.exact_variance(x) <= c.variance_bound(x))
        (dtype('float32'), True, True)

    References:
        Alistarh et al., NeurIPS 2017, Lemma 3.1, Theorem 3.2, Sec. 3.2 and Sec. 5.
    """

    s: int = 4
    norm: str = "l2"
    bucket: int | None = None
    encoding: str = "elias"

    name = "qsgd"
    unbiased = True
    needs_rng = True
    checks_finite = True  # the kernel's per-bucket sum of squares is non-finite iff NaN/Inf

    def __post_init__(self):
        check_int("s", self.s, low=1, high=_MAX_S)
        check_choice("norm", self.norm, ("l2", "max"))
        check_int("bucket", self.bucket, low=1, high=_MAX_DIM, allow_none=True)
        check_choice("encoding", self.encoding, ("elias", "fixed"))
        object.__setattr__(self, "s", int(self.s))
        if self.bucket is not None:
            object.__setattr__(self, "bucket", int(self.bucket))

    def _check_dim(self, d: int) -> None:
        if d > _MAX_DIM:
            raise ValueError(f"x: qsgd needs dimension d <= {_MAX_DIM} (Elias positions), got {d}")

    # -- codec ------------------------------------------------------------------------------
    def _b(self, d: int) -> int:
        return d if self.bucket is None else min(self.bucket, d)

    @property
    def _width(self) -> int:
        return (2 * self.s).bit_length()

    def _encode_batch(self, X, rng):
        n, d = X.shape
        keys = draw_keys(rng, n)  # 1. one stream key per row (the words are computed inline)
        elias = self.encoding == "elias"  # 2. one kernel call: scales, levels, bits of every row
        buffer, offsets, nbits = _k.encode(X, keys, self.s, self._b(d), self.norm == "max", elias, self._width)
        return buffer, offsets, nbits, None

    fuses_error_feedback = True  # p = x + e and e = p - c bucket by bucket, inside the encoder

    def _encode_batch_ef(self, X, E, rng):
        """p = X + E and E = p - c fused into the encode kernel (c from the levels sent)."""
        n, d = X.shape
        keys = draw_keys(rng, n)
        elias = self.encoding == "elias"
        buffer, offsets, nbits = _k.encode(X, keys, self.s, self._b(d), self.norm == "max", elias, self._width, E=E)
        return buffer, offsets, nbits, None

    def _decode_batch(self, buffer, offsets, d, dtype, keys, out=None):
        return _k.decode(buffer, offsets, d, self.s, self._b(d), self.encoding == "elias", self._width, dtype, out)

    # -- theory hooks -----------------------------------------------------------------------
    def _buckets(self, x):
        """(bucket vector as float64, its float32 scale) for each bucket of x."""
        x = check_vector("x", x)
        b = self._b(x.size)
        scales = _k.bucket_scales(x.reshape(1, -1), b, self.norm == "max")[0]
        v = x.astype(np.float64)
        return [(v[lo : lo + b], float(sc)) for lo, sc in zip(range(0, v.size, b), scales)]

    def exact_variance(self, x) -> float:
        """[D] E||Q(x) - x||^2 = sum over buckets of (scale^2/s^2) sum_i p_i (1 - p_i), float32 scale."""
        f = _theory("qsgd_exact_variance")
        return float(sum(f(v, self.s, scale=sc) for v, sc in self._buckets(x)))

    def expected_nnz(self, x) -> float:
        """[D] E[nnz Q(x)] = sum over buckets of #{l_i >= 1} + sum_{l_i = 0} p_i."""
        f = _theory("qsgd_expected_nnz")
        return float(sum(f(v, self.s, scale=sc) for v, sc in self._buckets(x)))

    def variance_bound(self, x) -> float | None:
        """Lemma 3.1(ii) per bucket, min(b/s^2, sqrt(b)/s) scale^2, summed (l2 norm only, else None).

        The float32 scale actually sent (>= ||v||_2, by at most one float32 ulp) stands in for
        ||v||_2, which keeps the bound rigorous.
        """
        if self.norm != "l2":
            return None
        f = _theory("qsgd_variance_bound")
        return float(sum(f(v.size, self.s, sc * sc) for v, sc in self._buckets(x)))

    def nnz_bound(self, x) -> float | None:
        """Lemma 3.1(iii) per bucket, s(s + sqrt(b)), summed (l2 norm only, else None)."""
        if self.norm != "l2":
            return None
        f = _theory("qsgd_nnz_bound")
        return float(sum(f(v.size, self.s) for v, _ in self._buckets(x)))

    def bits_bound(self, x) -> float | None:
        """Theorem 3.2 per bucket (o(1) dropped), summed: Elias encoding, l2 norm, s >= 2; else None."""
        if self.norm != "l2" or self.encoding != "elias" or self.s < 2:
            return None
        f = _theory("qsgd_code_length_bound")
        return float(sum(f(v.size, self.s) for v, _ in self._buckets(x)))


def _theory(name):
    """The formula ``name`` of :mod:`analysis.qsgd` (imported lazily: a half-written analysis/
    never breaks this module's import)."""
    from analysis import qsgd

    return getattr(qsgd, name)
