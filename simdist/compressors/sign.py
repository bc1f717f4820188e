"""Sign compression: scaled sign (EF-SGD) and plain signSGD, one bit per entry.

Scaled sign (``scaled=True``): ``C(v) = (||v||_1 / d) sign(v)``, per bucket of ``bucket``
consecutive entries when ``bucket`` is an int (the last bucket may be shorter; ``None`` = the
whole vector is one bucket). ``sign(0)`` is taken as +1. Deterministic and biased; it is a
delta-approximate compressor, ``||C(v) - v||^2 = (1 - delta) ||v||^2`` with
``delta = ||v||_1^2 / (d ||v||_2^2)``, which is why it is used with error feedback.
Plain signSGD (``scaled=False``) sends only the signs and decodes to +-1.

Wire format (one row, MSB first; ``nb = ceil(d / b)`` buckets of ``b = min(bucket, d)`` entries):

1. if ``scaled``: ``nb`` float32 scales, bucket order, each the 32 IEEE-754 bits of
   ``round_to_nearest_f32(sum_{i in B} |v_i| / |B|)`` (the sum in float64, in 8 interleaved lanes:
   lane l adds entries l, l+8, ... of the bucket in order, then ``0.0 + lane_0 + ... + lane_7``;
   see :func:`simdist.kernels.sign.lane_sum_abs`);
2. ``d`` sign bits, entry order, 1 where ``v_i < 0`` (so +0.0 and -0.0 give 0): the bytes of
   ``np.packbits(v < 0)``.

Length: ``32 nb + d`` bits (scaled) or ``d`` bits; the message is ceil(bits / 8) bytes, zero padded.
With ``scaled=False`` the ``bucket`` parameter has no effect. The decoder rejects a scale that
is not finite (NaN/Inf) or has its sign bit set.

References:
    S. P. Karimireddy, Q. Rebjock, S. U. Stich, M. Jaggi, "Error Feedback Fixes SignSGD and other
    Gradient Compression Schemes", ICML 2019 (Section 3: scaled sign is delta-approximate; Theorem II
    for EF-SGD). J. Bernstein, Y.-X. Wang, K. Azizzadenesheli, A. Anandkumar, "signSGD", ICML 2018.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_int
from ..errors import raise_decode_status
from ..kernels.sign import sign_decode, sign_encode
from .base import Compressor
from .registry import register

__all__ = ["Sign", "scaled_scales_or_raise"]


def _buckets(x: np.ndarray, b: int):
    return [x[j : j + b] for j in range(0, x.size, b)]


def _scaled_sign_error(v: np.ndarray) -> float:
    # Fallback of analysis.sparsification.scaled_sign_error: ||v||^2 - ||v||_1^2 / d  [D].
    return max(0.0, float(np.dot(v, v) - np.sum(np.abs(v)) ** 2 / v.size))


def scaled_scales_or_raise(scales: np.ndarray, what: str) -> None:
    """Raise ValueError naming ``x`` when a float32 wire scale overflowed (float64 input too large)."""
    if not np.all(np.isfinite(scales)):
        raise ValueError(
            f"x is too large for {what}: a bucket scale exceeds the float32 range "
            f"(max {float(np.finfo(np.float32).max):.4g}) and cannot be sent"
        )


@register
@dataclass(frozen=True)
class Sign(Compressor):
    """Scaled sign ``(||v||_1/d) sign(v)`` per bucket, or plain signSGD (``scaled=False``).

    Args:
        scaled: send a float32 scale ``||v_B||_1 / |B|`` per bucket (True) or only the signs (False).
        bucket: bucket size (int >= 1) or None for one bucket over the whole vector.

    Example:
        >>> import numpy as np
        >>> c = Sign(); p = c.compress(np.array([1.0, -3.0, 0.0, 2.0], np.float32))
        >>> p.nbits, c.decompress(p).tolist()
        (36, [1.5, -1.5, 1.5, 1.5])

    References:
        Karimireddy et al., ICML 2019, Section 3 (scaled sign, delta-approximate); Bernstein et al.,
        ICML 2018 (signSGD).
    """

    scaled: bool = True
    bucket: int | None = None

    name = "sign"
    unbiased = False
    needs_rng = False

    def __post_init__(self):
        if not isinstance(self.scaled, (bool, np.bool_)):
            raise TypeError(f"scaled must be a bool (True or False), got {type(self.scaled).__name__} {self.scaled!r}")
        object.__setattr__(self, "scaled", bool(self.scaled))
        object.__setattr__(self, "bucket", check_int("bucket", self.bucket, low=1, allow_none=True))

    def _b(self, d: int) -> int:
        return d if (self.bucket is None or not self.scaled) else min(self.bucket, d)

    def _nbits(self, d: int) -> int:
        nb = -(-d // self._b(d))
        return (32 * nb if self.scaled else 0) + d

    def _encode_batch(self, X, rng):
        n, d = X.shape
        b = self._b(d)
        nbits = self._nbits(d)
        rowbytes = (nbits + 7) >> 3
        buf = np.zeros(n * rowbytes, np.uint8)
        scales = np.zeros((n, -(-d // b)), np.float32)
        sign_encode(X, b, self.scaled, buf, rowbytes, scales)
        scaled_scales_or_raise(scales, "sign")
        offsets = np.arange(n + 1, dtype=np.int64) * rowbytes
        return buf, offsets, np.full(n, nbits, np.int64), None

    def _decode_batch(self, buffer, offsets, d, dtype, keys, out=None):
        n = offsets.shape[0] - 1
        Y = np.empty((n, d), dtype) if out is None else out  # every entry is written
        nbits = self._nbits(d)
        status = sign_decode(buffer, offsets, self._b(d), self.scaled, nbits, Y)
        raise_decode_status(status, self.name)
        return Y, np.full(n, nbits, np.int64)

    # -- theory hooks -------------------------------------------------------------------------
    def exact_variance(self, x):
        """Exact ``||C(x) - x||^2`` (deterministic): sum over buckets of ``||v||^2 - ||v||_1^2/|B|`` [D].

        Computed with the exact (not float32-rounded) scales; for ``scaled=False`` it is
        ``||sign(x) - x||^2``.
        """
        x = np.asarray(x, dtype=np.float64)
        if not self.scaled:
            return float(np.sum((np.where(x < 0, -1.0, 1.0) - x) ** 2))
        try:
            from analysis.sparsification import scaled_sign_error
        except ImportError:  # analysis/ not importable: same formula, kept here
            scaled_sign_error = _scaled_sign_error
        return float(sum(scaled_sign_error(v) for v in _buckets(x, self._b(x.size))))

    def variance_bound(self, x):
        """The delta-contraction bound ``(1 - delta)||v||^2`` per bucket, attained with equality."""
        return self.exact_variance(x) if self.scaled else None

    def delta(self, x) -> float | None:
        """``delta = ||x||_1^2 / (d ||x||_2^2)`` of the whole vector (1.0 for x = 0) [D].

        Scaled sign is a delta-approximate compressor with this delta, bucketed too (by
        Cauchy-Schwarz, sum_b ||v_b||_1^2 / b >= ||v||_1^2 / d). Plain signSGD (``scaled=False``)
        is not a contraction at all (||sign(v) - v||^2 can exceed ||v||^2), so it returns None.
        """
        if not self.scaled:
            return None
        x = np.asarray(x, dtype=np.float64)
        try:
            from analysis.sparsification import scaled_sign_delta
        except ImportError:
            n2 = float(np.dot(x, x))
            return 1.0 if n2 == 0.0 else min(1.0, float(np.sum(np.abs(x))) ** 2 / (x.size * n2))
        return scaled_sign_delta(x)
