"""TernGrad: ternary gradients ``s_t * sign(g) * b`` with ``P(b_k = 1) = |g_k| / s_t`` [M].

Per bucket B (``bucket`` consecutive entries; None = the whole vector, the last bucket may be
shorter): ``s_t = max_{k in B} |g_k|`` and ``b_k ~ Bernoulli(|g_k| / s_t)`` drawn from one uint32
word per entry (the SplitMix64 stream of a per-row key drawn from the caller's generator,
:mod:`simdist.rng`; the event is ``w 2^-32 < p``). Unbiased without clipping. With ``clip = c``,
``|g_k|`` is first clipped at ``c * std(g_B)`` (population standard deviation of the bucket;
c = 2.5 in the paper), which makes it biased; a constant bucket (std = 0) is not clipped.

The scale is sent as float32: ``s_t`` is computed in float64, rounded to float32 and moved up one
ulp if rounding lowered it, so that ``|g_k| <= s_t`` holds on the wire (probabilities stay <= 1).

Wire format (one row, MSB first; ``nb = ceil(d / b)`` buckets of ``b = min(bucket, d)`` entries):

1. ``nb`` float32 scales ``s_t`` (32 IEEE-754 bits each, bucket order);
2. the ``d`` ternary symbols ``t_k = 1 + sign(g_k) b_k`` in {0, 1, 2} (0 = -s_t, 1 = 0, 2 = +s_t),
   in entry order, grouped 5 at a time: each full group is one byte holding the base-3 number
   ``t_0 81 + t_1 27 + t_2 9 + t_3 3 + t_4`` (< 243 = 3^5; 1.6 bits per entry against
   log2(3) = 1.585); a final group of ``m = d mod 5`` symbols is the base-3 number in
   ceil(log2(3^m)) = 2, 4, 5, 7 bits for m = 1..4.

Length ``32 nb + 8 floor(d/5) + [0, 2, 4, 5, 7][d mod 5]`` bits, ceil(./8) bytes zero padded.
The decoder rejects non-finite or negative scales and group values ``>= 3^m``.

References:
    W. Wen, C. Xu, F. Yan, C. Wu, Y. Wang, Y. Chen, H. Li, "TernGrad: Ternary Gradients to Reduce
    Communication in Distributed Deep Learning", NeurIPS 2017 (Section 3: the ternarization, its
    unbiasedness and its variance; Section 3.2: per-layer scaling and gradient clipping). [M]: the
    constants are the standard form, not checked against the paper's text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_float, check_int
from ..errors import raise_decode_status
from ..kernels.terngrad import terngrad_decode, terngrad_encode, terngrad_nbits
from ..rng import draw_keys
from .base import Compressor
from .registry import register
from .sign import scaled_scales_or_raise

__all__ = ["TernGrad"]


def _second_moment(v: np.ndarray) -> float:
    # Fallback of analysis.quantizers.terngrad_second_moment: ||v||_inf ||v||_1  [D].
    a = np.abs(v)
    return float(a.max() * a.sum())


@register
@dataclass(frozen=True)
class TernGrad(Compressor):
    """TernGrad quantizer with per-bucket scale and optional clipping [M].

    Args:
        clip: None (no clipping, unbiased) or a finite float > 0: clip ``|g_k|`` at ``clip * std``
            of its bucket before ternarizing (biased; the paper uses 2.5).
        bucket: bucket size (int >= 1) or None for one scale over the whole vector.

    Example:
        >>> import numpy as np
        >>> c = TernGrad(); p = c.compress(np.array([0.5, -1.0, 0.0], np.float32), np.random.default_rng(0))
        >>> p.nbits, set(c.decompress(p).tolist()) <= {-1.0, 0.0, 1.0}
        (37, True)

    References:
        Wen et al., NeurIPS 2017, Section 3.
    """

    clip: float | None = None
    bucket: int | None = None

    name = "terngrad"
    needs_rng = True

    def __post_init__(self):
        clip = check_float("clip", self.clip, low=0.0, low_open=True, allow_none=True)
        object.__setattr__(self, "clip", clip)
        object.__setattr__(self, "bucket", check_int("bucket", self.bucket, low=1, allow_none=True))

    @property
    def unbiased(self) -> bool:  # type: ignore[override]
        """True iff ``clip`` is None (clipping biases the estimate)."""
        return self.clip is None

    def _b(self, d: int) -> int:
        return d if self.bucket is None else min(self.bucket, d)

    def _encode_batch(self, X, rng):
        n, d = X.shape
        b = self._b(d)
        keys = draw_keys(rng, n)
        nbits = terngrad_nbits(d, b)
        rowbytes = (nbits + 7) >> 3
        buf = np.zeros(n * rowbytes, np.uint8)
        scales = np.zeros((n, -(-d // b)), np.float32)
        terngrad_encode(X, keys, b, 0.0 if self.clip is None else self.clip, buf, rowbytes, scales)
        scaled_scales_or_raise(scales, "terngrad")
        offsets = np.arange(n + 1, dtype=np.int64) * rowbytes
        return buf, offsets, np.full(n, nbits, np.int64), None

    def _decode_batch(self, buffer, offsets, d, dtype, keys, out=None):
        n = offsets.shape[0] - 1
        Y = np.empty((n, d), dtype) if out is None else out  # every entry is written
        b = self._b(d)
        nbits = terngrad_nbits(d, b)
        raise_decode_status(terngrad_decode(buffer, offsets, b, nbits, Y), self.name)
        return Y, np.full(n, nbits, np.int64)

    # -- theory hooks (no clipping) ------------------------------------------------------------
    def _per_bucket(self, x, which: str) -> float | None:
        if self.clip is not None:
            return None
        x = np.asarray(x, dtype=np.float64)
        try:
            from analysis import quantizers as q

            second, var = q.terngrad_second_moment, q.terngrad_exact_variance
        except ImportError:  # analysis/ not importable: the same formulas, kept here
            second = _second_moment

            def var(v):
                return max(0.0, _second_moment(v) - float(np.dot(v, v)))

        f = second if which == "second" else var
        b = self._b(x.size)
        return float(sum(f(x[j : j + b]) for j in range(0, x.size, b)))

    def second_moment(self, x) -> float | None:
        """Exact ``E||g_hat||^2 = sum_B ||g_B||_inf ||g_B||_1`` [D] (None with clipping)."""
        return self._per_bucket(x, "second")

    def exact_variance(self, x):
        """Exact ``E||g_hat - g||^2 = sum_B (||g_B||_inf ||g_B||_1 - ||g_B||^2)`` [D] (None with clipping)."""
        return self._per_bucket(x, "var")

    def variance_bound(self, x):
        """The exact variance (it is its own tightest bound); None with clipping."""
        return self.exact_variance(x)
