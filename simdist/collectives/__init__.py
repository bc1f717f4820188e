"""Collective algorithms (SPMD, written once per rank) over a transport interface, and their traces.

Example:
    >>> from simdist import collectives
    >>> collectives.available()
    ['allgather', 'rabenseifner', 'recursive_doubling', 'ring']
"""

from . import sparse  # SparCML sparse allreduces: sparse.available(), sparse.make(name)
from .dense import Algorithm, available, make
from .simulated import SimulatedTransport
from .trace import Trace

__all__ = ["Algorithm", "SimulatedTransport", "Trace", "available", "make"]
