"""Network and time model: alpha-beta costs, presets for real fabrics, a compute-time model.

* :class:`AlphaBeta` prices a collective's :class:`~simdist.collectives.trace.Trace` in seconds.
* :mod:`simdist.network.presets` -- named fabrics (``"10gbe"``, ``"ib-hdr"``, ``"aries"``,
  ``"nvlink"``, ``"ec2-10g"``, ...), each documented with its sources.
* :mod:`simdist.network.compute` -- :class:`ComputeModel`: seconds of gradient work per step.

The simulated time of a step is ``compute.step_time(batch_size) + network.price(trace)``.

Example:
    >>> from simdist import network
    >>> net = network.make("ib-hdr")
    >>> network.make(net.get_config()) == net
    True
    >>> network.make({"name": "aries", "gamma": 0.0}).gamma
    0.0
"""

from __future__ import annotations

from . import compute, presets
from .alphabeta import AlphaBeta, nbytes_of
from .compute import ComputeModel

__all__ = ["AlphaBeta", "ComputeModel", "nbytes_of", "make", "available", "make_compute", "presets", "compute"]

_FIELDS = ("alpha", "beta", "gamma")


def available() -> list[str]:
    """Sorted names of the network presets."""
    return presets.available()


def make(spec, **overrides) -> AlphaBeta:
    """A network model from a preset name, a config dict or an :class:`AlphaBeta`.

    Args:
        spec: a preset name (``"10gbe"``); a dict: a full config (``{"alpha", "beta", "gamma",
            "name"}``, as :meth:`AlphaBeta.get_config` writes it) or a preset's ``name`` with some
            of alpha/beta/gamma overridden; or an :class:`AlphaBeta` (returned as is).
        **overrides: alpha, beta or gamma to change.

    Raises:
        ValueError: unknown preset (listing the available ones) or a bad parameter.
        TypeError: ``spec`` of another type.
    """
    if isinstance(spec, AlphaBeta):
        return spec.replace(**overrides) if overrides else spec
    if isinstance(spec, dict):
        spec = {**spec, **overrides}
        if "alpha" in spec and "beta" in spec:
            return AlphaBeta.from_config(spec)
        name = spec.pop("name", None)
        if name is None:
            raise ValueError("a network config needs 'alpha' and 'beta', or the 'name' of a preset")
        return presets.make(name, **spec)
    if isinstance(spec, str):
        return presets.make(spec, **overrides)
    raise TypeError(f"network must be a preset name, a config dict or an AlphaBeta, got {spec!r}")


def make_compute(spec, **overrides) -> ComputeModel:
    """A compute model from a preset name, a config dict or a :class:`ComputeModel` (see :func:`compute.make`)."""
    return compute.make(spec, **overrides)
