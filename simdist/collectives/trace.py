"""The communication trace of a collective: who sent how many bits to whom, in which round.

A collective algorithm, run on any transport, records every message as
``(round, src, dst, nbits)`` and every local reduction as ``(round, rank, nbytes)``.
The network model (:mod:`simdist.network`) prices a trace; tests compare the priced trace
with the closed-form costs of THEORY.md section 6.

Rounds are synchronous steps: in the alpha-beta model a round lasts as long as its slowest
rank, and a rank's time in a round is the sum over the messages it sends in that round of
``alpha + beta * bytes`` plus ``gamma * bytes`` it reduces (full duplex: receiving is free).

Storage: events live in growable int64 arrays ((capacity, 4) messages, (capacity, 3)
reductions) with amortized doubling. :meth:`Trace.add_message` / :meth:`Trace.add_reduction`
only validate and append a tuple to a short pending list (as cheap as before); the first
:meth:`Trace.messages` / :meth:`Trace.reductions` after new events moves them into the array
in one block, and every later call returns a **read-only view** of the filled rows in O(1) (no
copy). Traces built from arrays (:meth:`Trace.from_arrays`, the analytic fast path) never go
through Python tuples. :meth:`Trace.copy` is O(1): both traces keep the rows written so far
(which are never written again) and the next append to either one reallocates.
"""

from __future__ import annotations

import numpy as np

from .._validate import check_int

__all__ = ["Trace"]


class _Events:
    """A growable (n, k) int64 table: a pending list of tuples plus an array of filled rows."""

    __slots__ = ("k", "buf", "n", "pending")

    def __init__(self, k: int, rows: np.ndarray | None = None) -> None:
        self.k = k
        self.pending: list = []
        if rows is None:
            self.buf, self.n = np.zeros((0, k), np.int64), 0
        else:  # adopt a validated, private (n, k) int64 array: capacity exactly n
            self.buf, self.n = rows, rows.shape[0]

    def __len__(self) -> int:
        return self.n + len(self.pending)

    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        if need > self.buf.shape[0]:
            grown = np.empty((max(need, 2 * self.buf.shape[0], 16), self.k), np.int64)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown

    def append_rows(self, rows: np.ndarray) -> None:
        """Append an (m, k) int64 block (after the pending tuples, keeping recording order)."""
        self.flush()
        self._reserve(rows.shape[0])
        self.buf[self.n : self.n + rows.shape[0]] = rows
        self.n += rows.shape[0]

    def flush(self) -> None:
        if self.pending:
            block = np.array(self.pending, dtype=np.int64).reshape(-1, self.k)
            self.pending = []
            self._reserve(block.shape[0])
            self.buf[self.n : self.n + block.shape[0]] = block
            self.n += block.shape[0]

    def view(self) -> np.ndarray:
        """The filled rows, read-only (rows below n are never written again)."""
        self.flush()
        v = self.buf[: self.n]
        v.flags.writeable = False
        return v

    def share(self) -> "_Events":
        """An O(1) copy: both tables keep the filled rows; each one's next append reallocates."""
        self.flush()
        self.buf = self.buf[: self.n]  # no spare capacity left to share
        return _Events(self.k, self.buf)


class Trace:
    """Messages and reductions of one collective on ``size`` ranks.

    Args:
        size: number of ranks (int >= 1).

    Example:
        >>> t = Trace(2)
        >>> t.add_message(0, 0, 1, 64); t.add_message(0, 1, 0, 64)
        >>> t.nrounds, t.total_bits, t.bits_sent_by_rank().tolist()
        (1, 128, [64, 64])
    """

    __hash__ = None  # mutable, compared by value

    def __init__(self, size: int) -> None:
        self.size = check_int("size", size, low=1)
        self._msg = _Events(4)
        self._red = _Events(3)

    def __repr__(self) -> str:
        return f"Trace(size={self.size})"

    def add_message(self, round: int, src: int, dst: int, nbits: int) -> None:
        """Record that ``src`` sent ``nbits`` bits to ``dst`` in ``round``."""
        if not (0 <= src < self.size and 0 <= dst < self.size) or src == dst:
            raise ValueError(f"src and dst must be distinct ranks in [0, {self.size - 1}], got {src} -> {dst}")
        if round < 0 or nbits < 0:
            raise ValueError(f"round and nbits must be >= 0, got round={round}, nbits={nbits}")
        self._msg.pending.append((int(round), int(src), int(dst), int(nbits)))

    def add_reduction(self, round: int, rank: int, nbytes: int) -> None:
        """Record that ``rank`` reduced (summed) ``nbytes`` bytes of incoming data in ``round``."""
        if not 0 <= rank < self.size or round < 0 or nbytes < 0:
            raise ValueError(f"bad reduction event: round={round}, rank={rank}, nbytes={nbytes}")
        self._red.pending.append((int(round), int(rank), int(nbytes)))

    def messages(self) -> np.ndarray:
        """(m, 4) int64 array of (round, src, dst, nbits), in recording order (a read-only view)."""
        return self._msg.view()

    def reductions(self) -> np.ndarray:
        """(r, 3) int64 array of (round, rank, nbytes), in recording order (a read-only view)."""
        return self._red.view()

    @property
    def nrounds(self) -> int:
        """Number of rounds (1 + the largest round index; 0 when empty)."""
        m, r = self.messages(), self.reductions()
        last = -1
        if m.shape[0]:
            last = int(m[:, 0].max())
        if r.shape[0]:
            last = max(last, int(r[:, 0].max()))
        return last + 1

    @property
    def total_bits(self) -> int:
        """Bits sent by all ranks together."""
        return int(self.messages()[:, 3].sum())

    def bits_sent_by_rank(self) -> np.ndarray:
        """(size,) bits sent by each rank."""
        m = self.messages()
        out = np.zeros(self.size, dtype=np.int64)
        np.add.at(out, m[:, 1], m[:, 3])  # exact int64 sums (bincount would go through float64)
        return out

    def extend(self, other: "Trace", round_offset: int | None = None) -> None:
        """Append ``other``'s events, shifted to start after this trace's last round by default."""
        if other.size != self.size:
            raise ValueError(f"cannot extend a trace of size {self.size} with one of size {other.size}")
        off = self.nrounds if round_offset is None else int(round_offset)
        m, r = other.messages().copy(), other.reductions().copy()
        m[:, 0] += off
        r[:, 0] += off
        self._msg.append_rows(m)
        self._red.append_rows(r)

    @classmethod
    def from_arrays(cls, size: int, messages, reductions=None) -> "Trace":
        """A trace from an (m, 4) array of (round, src, dst, nbits) and an optional (r, 3)
        array of (round, rank, nbytes), validated as :meth:`add_message` / :meth:`add_reduction`
        do, but vectorized (for traces built analytically). The arrays are copied.

        Example:
            >>> Trace.from_arrays(2, [[0, 0, 1, 8], [0, 1, 0, 8]]) == Trace.from_dict(
            ...     {"size": 2, "messages": [[0, 1, 0, 8], [0, 0, 1, 8]]})
            True
        """
        t = cls(size)
        m = np.array(messages, dtype=np.int64).reshape(-1, 4)  # np.array: a private copy
        r = np.array([] if reductions is None else reductions, dtype=np.int64).reshape(-1, 3)
        rnd, src, dst, nb = m.T
        if np.any((src < 0) | (src >= t.size) | (dst < 0) | (dst >= t.size) | (src == dst)):
            raise ValueError(f"src and dst must be distinct ranks in [0, {t.size - 1}]")
        if np.any(rnd < 0) or np.any(nb < 0) or np.any(r[:, 0] < 0) or np.any(r[:, 2] < 0):
            raise ValueError("rounds, nbits and nbytes must be >= 0")
        if np.any((r[:, 1] < 0) | (r[:, 1] >= t.size)):
            raise ValueError(f"reduction ranks must be in [0, {t.size - 1}]")
        t._msg = _Events(4, np.ascontiguousarray(m))
        t._red = _Events(3, np.ascontiguousarray(r))
        return t

    def copy(self) -> "Trace":
        """An independent copy, in O(1) (recorded events are never modified; see the module docstring)."""
        t = type(self)(self.size)
        t._msg, t._red = self._msg.share(), self._red.share()
        return t

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"size": self.size, "messages": self.messages().tolist(), "reductions": self.reductions().tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "Trace":
        """Inverse of :meth:`to_dict`."""
        t = cls(data["size"])
        for m in data.get("messages", []):
            t.add_message(*m)
        for r in data.get("reductions", []):
            t.add_reduction(*r)
        return t

    def __eq__(self, other) -> bool:
        """Same size and the same multisets of messages and of reductions (order ignored)."""
        if not isinstance(other, Trace):
            return NotImplemented
        return self.size == other.size and _same_rows(self.messages(), other.messages()) and _same_rows(
            self.reductions(), other.reductions()
        )


def _sorted_rows(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(a.T[::-1])] if a.shape[0] else a


def _same_rows(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(_sorted_rows(a), _sorted_rows(b))
