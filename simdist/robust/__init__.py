"""Byzantine-robust data-parallel SGD: robust aggregation rules and the attacks they are tested against.

* :mod:`simdist.robust.aggregators`: mean, coordinate-wise median, trimmed mean, Krum / Multi-Krum,
  geometric median (registered by name).
* :mod:`simdist.robust.attacks`: sign flip, inner-product manipulation, "a little is enough", Gaussian.

In a run, ``TrainConfig(aggregator=..., byzantine=f, attack=...)`` makes the last f nodes Byzantine
and every node aggregate the allgathered vectors with the rule (see :mod:`simdist.engine.comm`).
The theory (THEORY.md 9) is in :mod:`analysis.robust`.

Example:
    >>> import simdist
    >>> h = simdist.train("mean_estimation", nodes=8, steps=30, lr=0.5, aggregator="median",
    ...                   byzantine=2, attack="sign_flip")
    >>> bool(h.loss[-1] < h.loss[0])
    True
"""

from . import aggregators, attacks

__all__ = ["aggregators", "attacks"]
