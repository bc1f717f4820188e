"""Chain: compose compressors (e.g. top-k, then quantize the survivors).

Semantics (numbered as in the code): for an input y_0 = x and stages C_1, ..., C_m (m >= 2),
    1. for j = 1 .. m-1: y_j = C_j.decompress(C_j.compress(y_{j-1}))  (never sent);
    2. the message is C_m.compress(y_{m-1}).
Decoding is C_m's decoder, so ``decompress`` returns y_m = C_m(y_{m-1}).

Wire format: exactly the last stage's message, byte for byte (no header of its own, same
``nbits``); the payload is labelled ``"chain"`` and decodes only with the same chain config.
The receiver must know the whole chain only because the config names it; decoding itself
uses nothing but the last stage.

Randomness: the stages draw, in stage order, from the caller's generator(s). With one
Generator every randomized stage takes its words from it in turn (stage 1's draw for all
rows, then stage 2's, ...). With a sequence of n Generators every randomized stage gets the
same sequence, so row i draws from ``rng[i]`` first for stage 1, then for stage 2, ...:
exactly the draws of ``compress(X[i], rng[i])``; hence the batched form with per-row
generators is bit-identical to per-row compression (given that each stage's own batched form
is, as the Compressor contract requires). Deterministic stages receive no generator.

Theory:
    ``unbiased`` iff every stage is unbiased: with independent randomness,
    E[C_2(C_1(x))] = E[E[C_2(y) | y]] = E[y] = x (and by induction for m stages).
    ``variance_bound`` is None: if every stage satisfied E||C_j(y) - y||^2 <= w_j ||y||^2 for
    *all* y and were unbiased, the chain would satisfy it with 1 + w = prod_j (1 + w_j), but a
    stage's ``variance_bound(x)`` at one point does not certify such a uniform factor, so the
    chain does not claim one (the lead may wire such a rule to ``analysis/`` later).

Example:
    >>> import numpy as np
    >>> from simdist.compressors import make
    >>> c = Chain([make("fp16"), make("identity")])
    >>> p = c.compress(np.array([1.0, 0.1], np.float32))
    >>> p.nbits, p.to_bytes().hex(), c.decompress(p).tolist()
    (64, '0000803f00c0cc3d', [1.0, 0.0999755859375])

References:
    SparCML (Renggli et al., SC19) sends top-k values then quantizes the dense phase with QSGD;
    Lin et al., DGC, ICLR 2018 (sparsify then quantize); QSGD (Alistarh et al., NeurIPS 2017)
    for the unbiased-quantizer composition argument (Lemma 3.1 (i)).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Compressor
from .registry import make, register

__all__ = ["Chain"]


@register
@dataclass(frozen=True)
class Chain(Compressor):
    """Composition of at least two compressors; only the last one's message is sent.

    Args:
        stages: a list or tuple of compressors or their configs (dicts or registered names),
            at least 2, applied left to right. Stored as a tuple of compressors.
    """

    stages: tuple

    name = "chain"

    def __post_init__(self):
        stages = self.stages
        if isinstance(stages, (str, dict, bytes)) or not isinstance(stages, (list, tuple)):
            raise TypeError(f"stages must be a list of compressors or configs, got {type(stages).__name__}")
        if len(stages) < 2:
            raise ValueError(
                f"stages must hold at least 2 compressors (a chain of one is that compressor), got {len(stages)}"
            )
        built = []
        for i, s in enumerate(stages):
            if isinstance(s, (dict, str)):
                try:
                    s = make(s)
                except (TypeError, ValueError) as exc:
                    raise type(exc)(f"stages[{i}]: {exc}") from None
            if not isinstance(s, Compressor):
                raise TypeError(
                    f"stages[{i}] must be a simdist Compressor or its config (stateful wrappers such as "
                    f"error_feedback cannot be chain stages), got {type(s).__name__}"
                )
            built.append(s)
        object.__setattr__(self, "stages", tuple(built))

    # -- theory flags derived from the stages ------------------------------------------------
    @property
    def unbiased(self) -> bool:  # type: ignore[override]
        """True iff every stage is unbiased (independent randomness per stage)."""
        return all(s.unbiased for s in self.stages)

    @property
    def needs_rng(self) -> bool:  # type: ignore[override]
        """True if any stage is randomized."""
        return any(s.needs_rng for s in self.stages)

    @property
    def needs_key(self) -> bool:  # type: ignore[override]
        """True if the last stage's decoder needs the shared key."""
        return self.stages[-1].needs_key

    def _check_dim(self, d: int) -> None:
        for s in self.stages:
            s._check_dim(d)

    # -- coding ------------------------------------------------------------------------------
    def _encode_batch(self, X, rng):
        Y = X
        for stage in self.stages[:-1]:  # step 1: intermediate stages, decoded at once
            Y = stage.decompress_batch(stage.compress_batch(Y, rng if stage.needs_rng else None))
        last = self.stages[-1]  # step 2: the last stage's message is the wire message
        batch = last.compress_batch(Y, rng if last.needs_rng else None)
        return batch.buffer, batch.offsets, batch.nbits, batch.keys

    def _decode_batch(self, buffer, offsets, d, dtype, keys, out=None):
        return self.stages[-1]._decode_into(buffer, offsets, d, dtype, keys, out)
