"""Real transports: one process per rank, running the simulator's collective algorithms.

* :class:`~simdist.transports.torch_dist.TorchTransport`: torch.distributed (gloo on CPU, NCCL on GPU).

torch is imported lazily: ``import simdist`` (and this package) works without it.
"""

__all__ = ["TorchTransport"]


def __getattr__(name):
    if name == "TorchTransport":
        from .torch_dist import TorchTransport

        return TorchTransport
    raise AttributeError(name)
