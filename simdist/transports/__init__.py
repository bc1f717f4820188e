"""Real transports: one process per rank, running the simulator's collective algorithms.

* :class:`~simdist.transports.torch_dist.TorchTransport`: torch.distributed (gloo on CPU, NCCL on GPU).
* :class:`~simdist.transports.mpi.MPITransport`: MPI through mpi4py (buffer-based, no pickle).
* :mod:`~simdist.transports.ddp_hook`: any simdist compressor (with or without error feedback) as a
  PyTorch DDP comm hook: ``model.register_comm_hook(SimdistHookState(c), simdist_hook)``.

torch and mpi4py are imported lazily: ``import simdist`` (and this package) works without them.
"""

__all__ = ["TorchTransport", "MPITransport", "SimdistHookState", "simdist_hook"]

_LAZY = {
    "TorchTransport": "torch_dist",
    "MPITransport": "mpi",
    "SimdistHookState": "ddp_hook",
    "simdist_hook": "ddp_hook",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(name)
