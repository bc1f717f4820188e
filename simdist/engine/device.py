"""Where a simulated run's arrays live: ``device="cpu"`` (NumPy) or ``device="cuda"`` (CuPy on a GPU).

With ``device="cuda"`` the iterate, the momentum, the (P, d) gradient matrix, the error-feedback
memory and the decoded messages stay on the GPU as CuPy arrays (``xp = cupy``): the problems
compute their gradients with ``xp`` (:attr:`simdist.problems.base.Problem.runs_on_device`), the
compressors encode and decode with their device codecs (:mod:`simdist.gpu.dispatch`), and the
mean of the decoded rows is taken on the device in the CPU kernel's order. What the host sees
per step: the minibatch indices (drawn on the host, P x B integers), the payload lengths, and
the scalars of the history.

Placements (:func:`placement`):

* ``"cpu"``: NumPy, the engine's CPU path (unchanged).
* ``"cuda"`` on a machine with a CUDA GPU and CuPy: ``xp = cupy``.
* ``"cuda"`` under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, how CI tests this path):
  ``xp = numpy``, and the matrix handed to the compressors is the simulator's device array, so the
  same code runs the device codecs' kernels; the histories are bit-identical to the CPU run's.
* ``"cuda"`` otherwise: ValueError ("device='cuda' needs a CUDA GPU and CuPy").

Steps of :func:`communicate_device` (steps 3-4 of :mod:`simdist.engine.loop` on the device):

1. p = G + E (error feedback), in G's storage;
2. the payloads of the P rows, one device-codec call (exact CPU bytes, lengths on the host);
3. C = the decoded rows (a device array);
4. agg = mean of C's rows in float64, rows added in order 0..P-1 from +0.0, then / P (the order
   of :func:`simdist.kernels.rows.mean_rows`, so bit-identical to it); E = p - C;
5. the trace of the allgather of the payload lengths and its price (host, as on the CPU).

Full precision (no compressor) takes the dense matrix to the host for the exact fp32 sum of the
executed allreduce (:func:`simdist.collectives.fastpath.allreduce_sum`): a host round trip of
the (P, d) matrix per step, stated here because it is the one.

Example:
    >>> placement("cpu").xp.__name__
    'numpy'

References:
    Karimireddy et al., EF-SGD (ICML 2019) for the memory; the CPU engine, :mod:`simdist.engine.comm`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .._validate import check_choice
from .config import DEVICES

__all__ = ["Placement", "placement", "check_run", "communicate_device", "mean_rows", "gpu_missing"]


def _same(a):
    return a


@dataclass(frozen=True)
class Placement:
    """Where a run's arrays live.

    Attributes:
        name: ``"cpu"``, ``"cuda"`` or ``"cuda-simulator"``.
        xp: the array namespace of the run's arrays (numpy or cupy).
        to_codec: the (P, d) matrix as the compressors' device input.
        from_codec: a decoded device array as an ``xp`` array.
        to_host: an ``xp`` array as a NumPy array.
    """

    name: str
    xp: Any
    to_codec: Callable = _same
    from_codec: Callable = _same
    to_host: Callable = _same

    @property
    def on_device(self) -> bool:
        return self.name != "cpu"


def _simulator() -> Placement:
    from numba import cuda

    return Placement("cuda-simulator", np, to_codec=cuda.to_device, from_codec=lambda y: y.copy_to_host())


def _cupy() -> Placement:
    import cupy

    return Placement("cuda", cupy, to_host=cupy.asnumpy)


def gpu_missing() -> str | None:
    """None when CuPy sees a CUDA GPU, else what is missing (the real-GPU tests skip on it)."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install 'simdist[gpu]')"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 (no driver / no device: CuPy raises its runtime errors)
        return f"CuPy finds no CUDA device ({type(exc).__name__}: {exc})"
    return None if count > 0 else "CuPy finds no CUDA device"


def placement(device: str) -> Placement:
    """The :class:`Placement` of ``device`` (``"cpu"`` or ``"cuda"``, see the module docstring).

    Raises:
        ValueError: an unknown device, or ``"cuda"`` without a GPU and CuPy (and without the
            CUDA simulator): the parameter's allowed values on this machine are ``"cpu"`` only.
    """
    check_choice("device", device, DEVICES)
    if device == "cpu":
        return Placement("cpu", np)
    from numba import config

    if config.ENABLE_CUDASIM:
        return _simulator()
    missing = gpu_missing()
    if missing is not None:
        raise ValueError(f"device='cuda' needs a CUDA GPU and CuPy: {missing}. Use device='cpu'")
    return _cupy()


def check_run(problem, compressor, where: Placement) -> None:
    """Raise a clear error when the problem or the compressor cannot run on ``where``'s device."""
    if not where.on_device:
        return
    if not getattr(problem, "runs_on_device", False):
        from ..problems import available, get

        ok = [n for n in available() if getattr(get(n), "runs_on_device", False)]
        raise ValueError(f"problem {problem.name!r} does not run with device='cuda'; problems that do: "
                         f"{', '.join(sorted(ok))} (or use device='cpu')")
    if compressor is not None:
        from ..gpu import dispatch

        dispatch.require_codec(compressor)


def mean_rows(C, xp):
    """(d,) float64 mean of C's rows, added in order 0..P-1 from +0.0, then / P (as ``kernels.rows.mean_rows``)."""
    P, d = C.shape
    acc = xp.zeros(d, np.float64)
    for i in range(P):
        acc += C[i]  # float32 rows: widened exactly, then one float64 addition (the CPU kernel's)
    acc /= P
    return acc


def communicate_device(G, state, t: int):
    """:func:`simdist.engine.comm.communicate` for a run on the device (``state.placement`` set).

    Args:
        G: the (P, d) gradient matrix (an ``xp`` array of ``state.dtype``; consumed with error feedback).
        state: the run's :class:`~simdist.engine.comm.CommState`.
        t: the step.

    Returns:
        ``(agg, bits, wire_bits, seconds)`` with ``agg`` a (d,) float64 ``xp`` array.
    """
    from .comm import _dense, _diverged, _measure, _node_rngs

    where, comp, P, d = state.placement, state.compressor, state.nodes, state.dim
    xp = where.xp
    if tuple(G.shape) != (P, d) or G.dtype != state.dtype:
        raise ValueError(f"G must be a ({P}, {d}) {state.dtype} array, got {G.dtype} {tuple(G.shape)}")
    if comp is None:  # the exact fp32 sum of the executed allreduce, on the host (see the module docstring)
        agg, *rest = _dense(np.ascontiguousarray(where.to_host(G)), state, t)
        return (xp.asarray(agg), *rest)
    E = state.memory
    if E is not None:
        xp.add(G, E, out=G)  # 1. p = G + e_old
    try:
        batch = comp.compress_batch(where.to_codec(G), _node_rngs(comp, state.seed, t, P))  # 2.
    except ValueError as exc:
        raise _diverged(comp, E, t, exc) from None
    C = where.from_codec(comp.decompress_batch(batch))  # 3. C = c
    agg = mean_rows(C, xp)  # 4.
    if E is not None:
        xp.subtract(G, C, out=E)  # e_new = p - c
    return (agg, *_measure(batch, state))  # 5.
