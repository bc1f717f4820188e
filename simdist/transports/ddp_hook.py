"""Any simdist compressor as a PyTorch DDP communication hook, with or without error feedback.

    state = SimdistHookState(make("topk", ratio=0.01), error_feedback=True, seed=0)
    ddp_model.register_comm_hook(state, simdist_hook)
    ...                                    # train as usual
    state.bits_sent, state.total_bits      # exact payload bits this rank sent, per step / in all

For every gradient bucket DDP hands over, :func:`simdist_hook` (steps numbered as in the code):

1. takes the bucket's flat gradient ``bucket.buffer()`` as a NumPy vector on the CPU (float32;
   float64 buckets stay float64, other dtypes are converted to float32);
2. with error feedback, adds this bucket's memory: ``r = g + e`` in float64, ``q = r`` rounded to
   the gradient's dtype (exactly :class:`~simdist.compressors.error_feedback.ErrorFeedback`'s
   steps 1-2);
3. compresses ``q`` with the simdist compressor and the generator of (seed, rank, step, bucket)
   (see "Randomness"); the payload's exact ``nbits`` are recorded;
4. exchanges the payload *bytes* among the ranks of the process group, never pickled objects
   (:func:`all_gather_bytes`): an all_gather of one int64 header per rank ``[nbytes, nbits]``,
   then an all_gather of uint8 tensors zero-padded to the longest message, each cut back to its
   length;
5. decodes every rank's message (one ``decompress_batch`` call over the received rows, which
   checks each row decodes to exactly its declared ``nbits`` with zero padding, so a malformed
   message raises :class:`simdist.DecodeError`) and averages them in float64 (rows added in
   rank order, then one division by the world size);
6. with error feedback, updates the memory: ``e = r - own decoded`` (ErrorFeedback's step 4);
7. writes the average into the bucket buffer and returns a completed
   :class:`torch.futures.Future` holding it.

Several buckets per step: state is keyed by ``bucket.index()``; the step counter advances after
the bucket with ``bucket.is_last()``. DDP may rebuild its buckets after the first iteration
(other sizes, other order): the memory is then re-mapped parameter by parameter
(the parameters' gradients are laid out back to back in a bucket buffer), so no error is lost.

Randomness: bucket b at step t on rank r uses the PCG64 generator of
``SeedSequence(seed, spawn_key=(1, r, t, b))`` (node_step_rng's stream with the bucket added).
Compressors with shared randomness (Rand-k: ``needs_key``) use
``SeedSequence(seed, spawn_key=(2, t, b))`` on every rank instead (shared_rng's stream with
the bucket added), so every rank derives the same key and decodes the others' messages with it;
the key is never sent. Deterministic compressors get no generator.

Wire format: per bucket and step, two collectives. (a) all_gather of a 2-entry int64 tensor
``[nbytes, nbits]`` from every rank; (b) if the longest message is non-empty, all_gather of a
uint8 tensor of ``max nbytes`` bytes: the rank's message (the compressor's own bytes,
ceil(nbits/8) of them) followed by zero bytes. Only the message bits are counted in
``bits_sent``; the header and the padding are framing, as in :mod:`.torch_dist`.

Args (SimdistHookState):
    compressor: a simdist Compressor, a registered name or a config dict.
    error_feedback: keep an error-feedback memory per bucket (EF-SGD / Mem-SGD).
    process_group: the torch.distributed group (None: the default group).
    seed: root seed (int >= 0) of the per-rank, per-step, per-bucket generators.

Example (in each of P processes after ``torch.distributed.init_process_group("gloo", ...)``)::

    from torch.nn.parallel import DistributedDataParallel as DDP
    from simdist.compressors import make
    from simdist.transports.ddp_hook import SimdistHookState, simdist_hook
    model = DDP(torch.nn.Linear(10, 2))
    state = SimdistHookState(make("qsgd", s=4), seed=1)
    model.register_comm_hook(state, simdist_hook)

References:
    PyTorch DDP communication hooks (torch.distributed.algorithms.ddp_comm_hooks);
    Alistarh et al., "QSGD", NeurIPS 2017; Stich, Cordonnier, Jaggi, "Sparsified SGD with
    memory", NeurIPS 2018; Karimireddy et al., "Error feedback fixes SignSGD", ICML 2019.
"""

from __future__ import annotations

import numpy as np

from .._validate import check_int
from ..compressors.base import Compressor
from ..compressors.payload import PayloadBatch
from ..errors import DecodeError

__all__ = ["SimdistHookState", "simdist_hook", "all_gather_bytes", "pad_bytes", "join_padded", "bucket_rng"]

_F64 = np.dtype(np.float64)


def bucket_rng(compressor: Compressor, seed: int, rank: int, step: int, bucket: int):
    """The generator of ``bucket`` at ``step`` on ``rank`` (None for a deterministic compressor).

    Example:
        >>> from simdist.compressors import make
        >>> a = bucket_rng(make("qsgd"), 3, 0, 5, 1).integers(1 << 30)
        >>> bool(a == bucket_rng(make("qsgd"), 3, 0, 5, 1).integers(1 << 30)), bucket_rng(make("identity"), 3, 0, 5, 1)
        (True, None)
    """
    if getattr(compressor, "needs_key", False):  # shared randomness: the same stream on every rank
        key = (2, step, bucket)
    elif compressor.needs_rng:
        key = (1, rank, step, bucket)
    else:
        return None
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


# -- byte exchange ------------------------------------------------------------------------------
def pad_bytes(data, length: int) -> np.ndarray:
    """``data`` (1-D uint8) followed by zero bytes up to ``length`` (>= len(data)).

    Example:
        >>> pad_bytes(np.array([7, 9], np.uint8), 4).tolist()
        [7, 9, 0, 0]
    """
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 1:
        raise TypeError(f"data must be a 1-D uint8 array, got {data.dtype} {data.shape}")
    length = check_int("length", length, low=data.shape[0])
    out = np.zeros(length, np.uint8)
    out[: data.shape[0]] = data
    return out


def join_padded(rows: np.ndarray, lengths) -> tuple[np.ndarray, np.ndarray]:
    """Cut row i of a (P, m) uint8 matrix to ``lengths[i]`` bytes; join them back to back.

    Returns:
        ``(buffer, offsets)``: the messages back to back and the P+1 byte offsets.

    Raises:
        DecodeError: a length is negative or longer than the rows, or a padding byte is nonzero
            (the sender's padding is zeros, so anything else is a corrupted exchange).

    Example:
        >>> buf, off = join_padded(np.array([[1, 2, 0], [3, 0, 0]], np.uint8), [2, 1])
        >>> buf.tolist(), off.tolist()
        ([1, 2, 3], [0, 2, 3])
    """
    rows = np.asarray(rows)
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[0] != lengths.shape[0]:
        raise TypeError(f"rows must be a (P, m) uint8 matrix with P = {lengths.shape[0]}, got {rows.dtype} {rows.shape}")
    m = rows.shape[1]
    if np.any(lengths < 0) or np.any(lengths > m):
        raise DecodeError(f"received message lengths {lengths.tolist()} outside [0, {m}]")
    pad = np.arange(m)[None, :] >= lengths[:, None]
    if np.any(rows[pad]):
        raise DecodeError("received padding bytes are not zero")
    offsets = np.zeros(lengths.shape[0] + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.ascontiguousarray(rows[~pad]), offsets


def all_gather_bytes(data, nbits: int, group=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every rank's message bytes and bit length, in rank order (no pickling).

    Args:
        data: this rank's message (1-D uint8, ceil(nbits/8) bytes).
        nbits: its exact length in bits.
        group: the torch.distributed process group (None: the default one).

    Returns:
        ``(buffer, offsets, nbits)``: the P messages back to back, the P+1 byte offsets, and
        the P declared bit lengths (int64).
    """
    import torch
    import torch.distributed as dist

    data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    nbits = check_int("nbits", nbits, low=0)
    if (nbits + 7) >> 3 != data.shape[0]:
        raise ValueError(f"data must be ceil(nbits/8) = {(nbits + 7) >> 3} bytes, got {data.shape[0]}")
    P = dist.get_world_size(group)
    head = torch.tensor([data.shape[0], nbits], dtype=torch.int64)
    heads = [torch.zeros(2, dtype=torch.int64) for _ in range(P)]
    dist.all_gather(heads, head, group=group)
    meta = torch.stack(heads).numpy()
    lengths, all_nbits = meta[:, 0].copy(), meta[:, 1].copy()
    if np.any(lengths < 0) or np.any(all_nbits < 0) or np.any((all_nbits + 7) >> 3 != lengths):
        raise DecodeError(f"received headers [nbytes, nbits] inconsistent: {meta.tolist()}")
    m = int(lengths.max())
    rows = np.zeros((P, m), np.uint8)
    if m:
        outs = [torch.from_numpy(rows[i]) for i in range(P)]  # views: all_gather writes into rows
        dist.all_gather(outs, torch.from_numpy(pad_bytes(data, m)), group=group)
    buffer, offsets = join_padded(rows, lengths)
    return buffer, offsets, all_nbits


# -- the hook -----------------------------------------------------------------------------------
class SimdistHookState:
    """State of :func:`simdist_hook` on one rank (see the module docstring).

    Attributes:
        compressor: the simdist compressor.
        error_feedback, process_group, seed: as given.
        step: index of the current step (advanced after the last bucket of a step).
        memory: ``{bucket index: float64 error memory}`` (empty without error feedback).
        bits_sent: exact payload bits this rank sent, one entry per completed step.
        bits_by_rank: per completed step, the list of every rank's payload bits.
    """

    def __init__(self, compressor, error_feedback: bool = False, process_group=None, seed: int = 0) -> None:
        from ..compressors.registry import make

        if isinstance(compressor, (str, dict)):
            compressor = make(compressor)
        if not isinstance(compressor, Compressor):
            raise TypeError(f"compressor must be a simdist Compressor, a registered name or a config dict, "
                            f"got {type(compressor).__name__}")
        if not isinstance(error_feedback, bool):
            raise TypeError(f"error_feedback must be True or False, got {error_feedback!r}")
        self.compressor = compressor
        self.error_feedback = error_feedback
        self.process_group = process_group
        self.seed = check_int("seed", seed, low=0)
        self.step = 0
        self.memory: dict[int, np.ndarray] = {}
        self._layout: dict[int, tuple] = {}  # bucket index -> ((param id, numel), ...)
        self._param_view: dict = {}  # param id -> its slice of a bucket's memory
        self.bits_sent: list[int] = []
        self.bits_by_rank: list[list[int]] = []
        self._step_bits: np.ndarray | None = None

    @property
    def total_bits(self) -> int:
        """Payload bits this rank sent over all completed steps."""
        return int(sum(self.bits_sent))

    def _memory_for(self, index: int, layout: tuple, d: int) -> np.ndarray:
        """The float64 memory of bucket ``index`` (updated in place by the hook)."""
        if self._layout.get(index) == layout:
            return self.memory[index]
        # first use, or DDP rebuilt its buckets: gather each parameter's memory from wherever it
        # was (views into the old arrays, which no hook writes any more) and re-point the views
        mem = np.zeros(d, _F64)
        pos = 0
        for pid, n in layout:
            old = self._param_view.get(pid)
            if old is not None and old.shape[0] == n:
                mem[pos:pos + n] = old
            self._param_view[pid] = mem[pos:pos + n]
            pos += n
        self._layout[index], self.memory[index] = layout, mem
        return mem


def simdist_hook(state: SimdistHookState, bucket):
    """DDP communication hook: compress, exchange bytes, decode and average one gradient bucket.

    Args:
        state: the :class:`SimdistHookState` passed to ``register_comm_hook``.
        bucket: the ``torch.distributed.GradBucket`` DDP hands over.

    Returns:
        A completed ``torch.futures.Future`` holding the averaged flat gradient (the bucket buffer).
    """
    import torch
    import torch.distributed as dist

    group = state.process_group
    rank, P = dist.get_rank(group), dist.get_world_size(group)
    comp = state.compressor
    buf = bucket.buffer()
    index = bucket.index()

    # 1. the bucket's flat gradient as a NumPy vector on the CPU
    tdtype = buf.dtype if buf.dtype in (torch.float32, torch.float64) else torch.float32
    x = np.ascontiguousarray(buf.detach().to(device="cpu", dtype=tdtype).numpy().reshape(-1))
    d = x.shape[0]
    dtype = x.dtype

    # 2. error feedback: r = g + e (float64), the compressor's input q = r rounded to the dtype
    if state.error_feedback:
        layout = tuple((id(p), int(g.numel())) for p, g in zip(bucket.parameters(), bucket.gradients()))
        if sum(n for _, n in layout) != d:  # pragma: no cover - DDP lays gradients out back to back
            layout = ((("bucket", index), d),)
        r = x.astype(_F64) + state._memory_for(index, layout, d)
        with np.errstate(over="ignore"):
            q = r.astype(dtype)
        if not np.all(np.isfinite(q)):
            raise ValueError(f"gradient + error memory of bucket {index} is not finite in {dtype}")
    else:
        r, q = None, x

    # 3. compress (exact bits from the payload)
    payload = comp.compress(q, bucket_rng(comp, state.seed, rank, state.step, index))

    # 4. exchange the payload bytes: all_gather [nbytes, nbits], then the zero-padded bytes
    buffer, offsets, nbits = all_gather_bytes(payload.data, payload.nbits, group)

    # 5. decode every rank's message (one batch call, validated) and average in float64
    keys = None if payload.key is None else np.full(P, payload.key, np.int64)
    buffer.setflags(write=False)
    batch = PayloadBatch(buffer, offsets, nbits, d, dtype, comp.name, keys)
    Y = comp.decompress_batch(batch)
    if not np.all(np.isfinite(Y)):
        raise DecodeError(f"bucket {index}: a rank's message decoded to non-finite values")
    mean = Y.astype(_F64).sum(axis=0) / P

    # 6. error feedback: e = r - own decoded
    if state.error_feedback:
        np.subtract(r, Y[rank], out=state.memory[index])  # in place: the per-parameter views stay valid

    # 7. write the average into the bucket and return a completed future
    buf.copy_(torch.from_numpy(mean.astype(dtype)).to(device=buf.device, dtype=buf.dtype))
    if state._step_bits is None:
        state._step_bits = np.zeros(P, np.int64)
    state._step_bits += nbits
    if bucket.is_last():
        state.bits_by_rank.append(state._step_bits.tolist())
        state.bits_sent.append(int(state._step_bits[rank]))
        state._step_bits = None
        state.step += 1
    fut = torch.futures.Future()
    fut.set_result(buf)
    return fut
