"""1BitSGD: quantize at threshold 0, reconstruct with the bucket's mean positive / mean negative value.

Per bucket B (``bucket`` consecutive entries; None = the whole vector, the last bucket may be
shorter): ``avg+ = mean{v_i : v_i >= 0}``, ``avg- = mean{v_i : v_i < 0}`` (0.0 when a side is
empty); entry i is reconstructed as ``avg+`` if ``v_i >= 0`` else ``avg-``. Deterministic and
biased; in the paper the quantization error is carried into the next minibatch (error feedback,
a separate wrapper in simdist), without which it can diverge.

Wire format (one row, MSB first; ``nb = ceil(d / b)`` buckets of ``b = min(bucket, d)`` entries):

1. ``nb`` pairs of float32 (avg+, avg-), bucket order, each the 32 IEEE-754 bits of the float64
   mean (sum in index order) rounded to the nearest float32; an empty side is +0.0;
2. ``d`` sign bits, entry order, 1 where ``v_i < 0``: the bytes of ``np.packbits(v < 0)``.

Length ``64 nb + d`` bits, ceil(./8) bytes zero padded: about 32x smaller than fp32 for large
buckets. The decoder rejects non-finite averages, a negative avg+ (sign bit set), a positive
avg-, and a nonzero average for an empty side.

Example (the slide of Seide et al.): ``[0.1, -0.3, 0.5, -0.1, 0]`` -> signs ``+ - + - +``,
avg+ = 0.2, avg- = -0.2, a 64 + 5 = 69-bit message.

References:
    F. Seide, H. Fu, J. Droppo, G. Li, D. Yu, "1-Bit Stochastic Gradient Descent and its Application
    to Data-Parallel Distributed Training of Speech DNNs", Interspeech 2014 (Section 3: quantization
    with error feedback; reconstruction values per column).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_int
from ..errors import raise_decode_status
from ..kernels.onebit import onebit_decode, onebit_encode
from .base import Compressor
from .registry import register
from .sign import scaled_scales_or_raise

__all__ = ["OneBit"]


@register
@dataclass(frozen=True)
class OneBit(Compressor):
    """1BitSGD quantizer with per-bucket (avg+, avg-) reconstruction values.

    Args:
        bucket: bucket size (int >= 1) or None for one bucket over the whole vector.

    Example:
        >>> import numpy as np
        >>> c = OneBit(); p = c.compress(np.array([0.1, -0.3, 0.5, -0.1, 0.0], np.float32))
        >>> p.nbits, [round(float(v), 6) for v in c.decompress(p)]
        (69, [0.2, -0.2, 0.2, -0.2, 0.2])

    References:
        Seide et al., Interspeech 2014, Section 3.
    """

    bucket: int | None = None

    name = "onebit"
    unbiased = False
    needs_rng = False

    def __post_init__(self):
        object.__setattr__(self, "bucket", check_int("bucket", self.bucket, low=1, allow_none=True))

    def _b(self, d: int) -> int:
        return d if self.bucket is None else min(self.bucket, d)

    def _nbits(self, d: int) -> int:
        return 64 * -(-d // self._b(d)) + d

    def _encode_batch(self, X, rng):
        n, d = X.shape
        b = self._b(d)
        nbits = self._nbits(d)
        rowbytes = (nbits + 7) >> 3
        buf = np.zeros(n * rowbytes, np.uint8)
        avgs = np.zeros((n, -(-d // b), 2), np.float32)
        onebit_encode(X, b, buf, rowbytes, avgs)
        scaled_scales_or_raise(avgs, "onebit")
        offsets = np.arange(n + 1, dtype=np.int64) * rowbytes
        return buf, offsets, np.full(n, nbits, np.int64), None

    def _decode_batch(self, buffer, offsets, d, dtype, keys, out=None):
        n = offsets.shape[0] - 1
        Y = np.empty((n, d), dtype) if out is None else out  # every entry is written
        nbits = self._nbits(d)
        raise_decode_status(onebit_decode(buffer, offsets, self._b(d), nbits, Y), self.name)
        return Y, np.full(n, nbits, np.int64)

    def exact_variance(self, x):
        """Exact ``||C(x) - x||^2`` (deterministic), with the averages in exact arithmetic [D].

        Per bucket it is the within-side sum of squares: ``sum_{v_i>=0} (v_i - avg+)^2 +
        sum_{v_i<0} (v_i - avg-)^2`` (the float32 rounding of the averages adds a few ulps).
        """
        x = np.asarray(x, dtype=np.float64)
        b = self._b(x.size)
        total = 0.0
        for j in range(0, x.size, b):
            v = x[j : j + b]
            for side in (v[v >= 0], v[v < 0]):
                if side.size:
                    total += float(np.sum((side - side.mean()) ** 2))
        return total
