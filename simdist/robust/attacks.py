"""Byzantine attacks: the vectors that f colluding nodes send in place of their gradients.

The attackers are omniscient (the standard threat model of the robust-aggregation papers): they
see every honest node's gradient of the step before choosing theirs. In a run
(``TrainConfig.byzantine = f``) the Byzantine nodes are the **last f** nodes; their true gradients
are computed and discarded, and the forged rows go through compression, error feedback and the
collective like any other node's (so their bits are counted).

* ``sign_flip``: every attacker sends -scale * (the honest mean).
* ``ipm``: inner-product manipulation, -epsilon * (the honest mean) with a small epsilon, so that
  the aggregate's inner product with the true gradient turns negative while the forged vectors stay
  close to the honest ones (Xie, Koyejo, Gupta, UAI 2019).
* ``alie``: "A little is enough" (Baruch, Baruch, Goldberg, NeurIPS 2019): mu - z * sigma per
  coordinate, mu and sigma the honest mean and (population) standard deviation; by default
  z = Phi^-1((n - s)/n) with s = floor(n/2 + 1) - f, the largest shift that still leaves the
  attackers within the honest majority's spread (:func:`analysis.robust.alie_z`).
* ``gaussian``: independent N(0, sigma^2 I) vectors (random, from the step's attack generator).

Each attack is a frozen config registered by name; :meth:`Attack.forge` maps the (h, d) honest
matrix to the (f, d) float64 forged one. :func:`inject` puts them into a step's (P, d) gradient matrix.

Example:
    >>> import numpy as np
    >>> H = np.array([[1.0, 3.0], [3.0, 5.0]])
    >>> make("sign_flip", scale=2.0).forge(H, 2, None).tolist()
    [[-4.0, -8.0], [-4.0, -8.0]]

References:
    C. Xie, O. Koyejo, I. Gupta, "Fall of Empires: Breaking Byzantine-tolerant SGD by Inner Product
    Manipulation", UAI 2019. G. Baruch, M. Baruch, Y. Goldberg, "A Little Is Enough: Circumventing
    Defenses For Distributed Learning", NeurIPS 2019. Blanchard et al., NeurIPS 2017 (the model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_float, check_int, check_matrix
from ..registry import Registry
from ._base import Named

__all__ = ["Attack", "SignFlip", "IPM", "ALIE", "Gaussian", "make", "available", "register", "inject"]

REGISTRY = Registry("attack", "simdist.robust", ("attacks",))
register = REGISTRY.register
available = REGISTRY.available


def make(spec, **params) -> "Attack":
    """Build an attack from a name and parameters, a config dict, or return an Attack as is."""
    return REGISTRY.build(spec, params, Attack)


class Attack(Named):
    """Base class: subclasses are frozen dataclasses with a class attribute ``name`` and ``_forge``."""

    name = ""
    #: whether :meth:`forge` draws from its generator
    needs_rng = False

    def forge(self, H, f: int, rng) -> np.ndarray:
        """The (f, d) float64 vectors the f attackers send, given the (h, d) honest matrix ``H`` (h >= 1).

        Args:
            H: the honest nodes' vectors of the step (finite float32/float64, h >= 1 rows).
            f: the number of attackers, >= 1.
            rng: a numpy Generator (only for attacks with ``needs_rng``; may be None otherwise).
        """
        H = check_matrix("honest", H)
        f = check_int("f", f, low=1)
        if self.needs_rng and not isinstance(rng, np.random.Generator):
            raise TypeError(f"attack {self.name} needs a numpy.random.Generator, got {type(rng).__name__}")
        return self._forge(H.astype(np.float64), f, rng)

    def _forge(self, H, f, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def step_rng(self, seed: int, t: int):
        """The generator :meth:`forge` gets at step t of a run: ``attack_rng(seed, t)``, or None when
        the attack draws nothing (the simulator and every Byzantine rank of a launched run use this)."""
        from ..rng import attack_rng

        return attack_rng(seed, t) if self.needs_rng else None


def _same(row: np.ndarray, f: int) -> np.ndarray:
    return np.broadcast_to(row, (f, row.size)).copy()


@register
@dataclass(frozen=True)
class SignFlip(Attack):
    """-scale times the honest mean, from every attacker. Args: scale > 0."""

    name = "sign_flip"
    scale: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "scale", check_float("scale", self.scale, low=0.0, low_open=True))

    def _forge(self, H, f, rng):
        return _same(-self.scale * H.mean(axis=0), f)


@register
@dataclass(frozen=True)
class IPM(Attack):
    """Inner-product manipulation: -epsilon times the honest mean. Args: epsilon > 0."""

    name = "ipm"
    epsilon: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "epsilon", check_float("epsilon", self.epsilon, low=0.0, low_open=True))

    def _forge(self, H, f, rng):
        return _same(-self.epsilon * H.mean(axis=0), f)


@register
@dataclass(frozen=True)
class ALIE(Attack):
    """A little is enough: mu - z sigma per coordinate. Args: z > 0, or None for Baruch et al.'s z_max(n, f)."""

    name = "alie"
    z: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "z", check_float("z", self.z, low=0.0, low_open=True, allow_none=True))

    def _forge(self, H, f, rng):
        from analysis.robust import alie_z

        z = alie_z(H.shape[0] + f, f) if self.z is None else self.z
        return _same(H.mean(axis=0) - z * H.std(axis=0), f)


@register
@dataclass(frozen=True)
class Gaussian(Attack):
    """Independent N(0, sigma^2 I) vectors. Args: sigma > 0."""

    name = "gaussian"
    needs_rng = True
    sigma: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "sigma", check_float("sigma", self.sigma, low=0.0, low_open=True))

    def _forge(self, H, f, rng):
        return rng.normal(0.0, self.sigma, size=(f, H.shape[1]))


def inject(G, f: int, attack: Attack, rng) -> None:
    """Replace the last ``f`` rows of the (P, d) gradient matrix ``G`` (in place) by ``attack``'s vectors
    forged from the first P - f rows, cast to G's dtype (values beyond its range become +-inf, which the
    step's checks then report as a divergence)."""
    P = G.shape[0]
    f = check_int("byzantine", f, low=0, high=P - 1)
    if f == 0:
        return
    forged = attack.forge(G[: P - f], f, rng)
    with np.errstate(over="ignore"):
        G[P - f:] = forged.astype(G.dtype)
