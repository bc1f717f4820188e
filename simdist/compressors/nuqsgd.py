"""NUQSGD: unbiased stochastic rounding of ``|v_i| / ||v||_2`` to exponentially spaced levels [M].

Levels ``{0, 2^-s, 2^-(s-1), ..., 1/2, 1}`` (s + 2 of them, index ``j = 0..s+1``; level ``j >= 1`` is
``2^(j-1-s)``). Per bucket B (``bucket`` consecutive entries; None = the whole vector, the last
bucket may be shorter) with ``r_i = |v_i| / ||v_B||_2`` in ``[l_i, u_i]`` (neighbouring levels),
``Q(v)_i = ||v_B|| sgn(v_i) u_i`` with probability ``(r_i - l_i) / (u_i - l_i)``, else with ``l_i``,
from one uint32 word per entry (the SplitMix64 stream of a per-row key, :mod:`simdist.rng`;
event ``w 2^-32 < p``). Unbiased; [D] exact variance ``||v||^2 sum_i (u_i - r_i)(r_i - l_i)`` and
[D] bound ``||v||^2 (1/8 + min(d 2^-2s / 4, sqrt(d) 2^-s))`` per bucket (d = bucket size).

The norm is sent as float32: computed in float64 (as ``max|v| sqrt(sum (v/max|v|)^2)``, which
neither overflows nor underflows), rounded to float32 and moved up one ulp if rounding lowered
it; the ratios ``r_i`` use the sent norm, so the receiver reconstructs exactly what was drawn.

Wire format (one row, MSB first; ``nb = ceil(d / b)`` buckets of ``b = min(bucket, d)`` entries):

1. ``nb`` float32 norms (32 IEEE-754 bits each, bucket order);
2. ``d`` codes in entry order, each ``c_i = sgn_i j_i + (s + 1)`` in [0, 2s + 2] (sgn = -1 iff
   v_i < 0; zero is always s + 1), written in ``W = ceil(log2(2s + 3))`` bits (3 bits for s = 1, 2;
   4 for s = 3..6; 5 for s = 7..14; 6 for s = 15..30).

Length ``32 nb + W d`` bits, ceil(./8) bytes zero padded. The decoder rejects non-finite or
negative norms and codes > 2s + 2.

References:
    A. Ramezani-Kebrya, F. Faghri, I. Markov, V. Aksenov, D. Alistarh, D. M. Roy, "NUQSGD: Provably
    Communication-efficient Data-parallel SGD via Nonuniform Quantization", JMLR 22 (2021),
    Section 3 (the nonuniform levels) and its variance bound (Theorem 4 there). [M]: the form of
    the bound used here is derived from the level geometry (THEORY.md section 2), not checked
    against the paper's constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validate import check_int
from ..errors import raise_decode_status
from ..kernels.nuqsgd import nuqsgd_decode, nuqsgd_encode, nuqsgd_nbits, nuqsgd_width
from ..rng import draw_keys
from .base import Compressor
from .registry import register
from .sign import scaled_scales_or_raise

__all__ = ["NUQSGD"]


def _bound(d: int, s: int, norm_sq: float) -> float:
    # Fallback of analysis.quantizers.nuqsgd_variance_bound [D].
    return norm_sq * (0.125 + min(d * 2.0 ** (-2 * s) / 4.0, math.sqrt(d) * 2.0**-s))


def _exact(v: np.ndarray, s: int, scale: float) -> float:
    # Fallback of analysis.quantizers.nuqsgd_exact_variance [D]: scale^2 sum (u - r)(r - l).
    if scale == 0.0:
        return 0.0
    levels = np.concatenate(([0.0], 2.0 ** -np.arange(s, -1, -1, dtype=np.float64)))
    r = np.minimum(np.abs(v) / scale, 1.0)
    j = np.clip(np.searchsorted(levels, r, side="right") - 1, 0, s)
    return float(scale**2 * np.sum((levels[j + 1] - r) * (r - levels[j])))


@register
@dataclass(frozen=True)
class NUQSGD(Compressor):
    """Nonuniform (exponential-level) unbiased quantizer [M].

    Args:
        s: number of nonzero levels below 1 (levels 2^-s .. 1/2, plus 0 and 1); int in [1, 30].
        bucket: bucket size (int >= 1) or None for one norm over the whole vector.

    Example:
        >>> import numpy as np
        >>> c = NUQSGD(s=2); p = c.compress(np.array([3.0, -4.0], np.float32), np.random.default_rng(0))
        >>> p.nbits, bool(np.all(np.isin(np.abs(c.decompress(p)), [0.0, 1.25, 2.5, 5.0])))
        (38, True)

    References:
        Ramezani-Kebrya et al., JMLR 2021, Section 3 and Theorem 4.
    """

    s: int = 4
    bucket: int | None = None

    name = "nuqsgd"
    unbiased = True
    needs_rng = True

    def __post_init__(self):
        object.__setattr__(self, "s", check_int("s", self.s, low=1, high=30))
        object.__setattr__(self, "bucket", check_int("bucket", self.bucket, low=1, allow_none=True))

    def _b(self, d: int) -> int:
        return d if self.bucket is None else min(self.bucket, d)

    def _encode_batch(self, X, rng):
        n, d = X.shape
        b = self._b(d)
        keys = draw_keys(rng, n)
        nbits = nuqsgd_nbits(d, b, self.s)
        rowbytes = (nbits + 7) >> 3
        buf = np.zeros(n * rowbytes, np.uint8)
        norms = np.zeros((n, -(-d // b)), np.float32)
        nuqsgd_encode(X, keys, b, self.s, nuqsgd_width(self.s), buf, rowbytes, norms)
        scaled_scales_or_raise(norms, "nuqsgd")
        offsets = np.arange(n + 1, dtype=np.int64) * rowbytes
        return buf, offsets, np.full(n, nbits, np.int64), None

    def _decode_batch(self, buffer, offsets, d, dtype, keys, out=None):
        n = offsets.shape[0] - 1
        Y = np.empty((n, d), dtype) if out is None else out  # every entry is written
        b = self._b(d)
        nbits = nuqsgd_nbits(d, b, self.s)
        status = nuqsgd_decode(buffer, offsets, b, self.s, nuqsgd_width(self.s), nbits, Y)
        raise_decode_status(status, self.name)
        return Y, np.full(n, nbits, np.int64)

    # -- theory hooks ---------------------------------------------------------------------------
    def _buckets(self, x):
        x = np.asarray(x, dtype=np.float64)
        b = self._b(x.size)
        return [x[j : j + b] for j in range(0, x.size, b)]

    def exact_variance(self, x):
        """Exact ``E||Q(x) - x||^2 = sum_B ||v_B||^2 sum_i (u_i - r_i)(r_i - l_i)`` [D].

        Uses the exact float64 norm ``||v_B||_2``; the float32 norm on the wire is at most one
        float32 ulp larger (relative change ~1e-7).
        """
        try:
            from analysis.quantizers import nuqsgd_exact_variance as f
        except ImportError:
            f = _exact
        return float(sum(f(v, self.s, float(np.linalg.norm(v))) for v in self._buckets(x)))

    def variance_bound(self, x):
        """``sum_B ||v_B||^2 (1/8 + min(|B| 2^-2s / 4, sqrt(|B|) 2^-s))`` [D]."""
        try:
            from analysis.quantizers import nuqsgd_variance_bound as f
        except ImportError:
            f = _bound
        return float(sum(f(v.size, self.s, float(np.dot(v, v))) for v in self._buckets(x)))
