"""The communication trace of a collective: who sent how many bits to whom, in which round.

A collective algorithm, run on any transport, records every message as
``(round, src, dst, nbits)`` and every local reduction as ``(round, rank, nbytes)``.
The network model (:mod:`simdist.network`) prices a trace; tests compare the priced trace
with the closed-form costs of THEORY.md section 6.

Rounds are synchronous steps: in the alpha-beta model a round lasts as long as its slowest
rank, and a rank's time in a round is the sum over the messages it sends in that round of
``alpha + beta * bytes`` plus ``gamma * bytes`` it reduces (full duplex: receiving is free).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._validate import check_int

__all__ = ["Trace"]


@dataclass
class Trace:
    """Messages and reductions of one collective on ``size`` ranks.

    Example:
        >>> t = Trace(2)
        >>> t.add_message(0, 0, 1, 64); t.add_message(0, 1, 0, 64)
        >>> t.nrounds, t.total_bits, t.bits_sent_by_rank().tolist()
        (1, 128, [64, 64])
    """

    size: int
    _msg: list = field(default_factory=list, repr=False)
    _red: list = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.size = check_int("size", self.size, low=1)

    def add_message(self, round: int, src: int, dst: int, nbits: int) -> None:
        """Record that ``src`` sent ``nbits`` bits to ``dst`` in ``round``."""
        if not (0 <= src < self.size and 0 <= dst < self.size) or src == dst:
            raise ValueError(f"src and dst must be distinct ranks in [0, {self.size - 1}], got {src} -> {dst}")
        if round < 0 or nbits < 0:
            raise ValueError(f"round and nbits must be >= 0, got round={round}, nbits={nbits}")
        self._msg.append((int(round), int(src), int(dst), int(nbits)))

    def add_reduction(self, round: int, rank: int, nbytes: int) -> None:
        """Record that ``rank`` reduced (summed) ``nbytes`` bytes of incoming data in ``round``."""
        if not 0 <= rank < self.size or round < 0 or nbytes < 0:
            raise ValueError(f"bad reduction event: round={round}, rank={rank}, nbytes={nbytes}")
        self._red.append((int(round), int(rank), int(nbytes)))

    def messages(self) -> np.ndarray:
        """(m, 4) int64 array of (round, src, dst, nbits), in recording order."""
        return np.array(self._msg, dtype=np.int64).reshape(-1, 4)

    def reductions(self) -> np.ndarray:
        """(r, 3) int64 array of (round, rank, nbytes)."""
        return np.array(self._red, dtype=np.int64).reshape(-1, 3)

    @property
    def nrounds(self) -> int:
        """Number of rounds (1 + the largest round index; 0 when empty)."""
        rounds = [m[0] for m in self._msg] + [r[0] for r in self._red]
        return 1 + max(rounds) if rounds else 0

    @property
    def total_bits(self) -> int:
        """Bits sent by all ranks together."""
        return int(sum(m[3] for m in self._msg))

    def bits_sent_by_rank(self) -> np.ndarray:
        """(size,) bits sent by each rank."""
        out = np.zeros(self.size, dtype=np.int64)
        for _, src, _, nbits in self._msg:
            out[src] += nbits
        return out

    def extend(self, other: "Trace", round_offset: int | None = None) -> None:
        """Append ``other``'s events, shifted to start after this trace's last round by default."""
        if other.size != self.size:
            raise ValueError(f"cannot extend a trace of size {self.size} with one of size {other.size}")
        off = self.nrounds if round_offset is None else int(round_offset)
        self._msg.extend((r + off, s, d, b) for r, s, d, b in other._msg)
        self._red.extend((r + off, k, b) for r, k, b in other._red)

    @classmethod
    def from_arrays(cls, size: int, messages, reductions=None) -> "Trace":
        """A trace from an (m, 4) array of (round, src, dst, nbits) and an optional (r, 3)
        array of (round, rank, nbytes), validated as :meth:`add_message` / :meth:`add_reduction`
        do, but vectorized (for traces built analytically).

        Example:
            >>> Trace.from_arrays(2, [[0, 0, 1, 8], [0, 1, 0, 8]]) == Trace.from_dict(
            ...     {"size": 2, "messages": [[0, 1, 0, 8], [0, 0, 1, 8]]})
            True
        """
        t = cls(size)
        m = np.asarray(messages, dtype=np.int64).reshape(-1, 4)
        r = np.asarray([] if reductions is None else reductions, dtype=np.int64).reshape(-1, 3)
        rnd, src, dst, nb = m.T
        if np.any((src < 0) | (src >= t.size) | (dst < 0) | (dst >= t.size) | (src == dst)):
            raise ValueError(f"src and dst must be distinct ranks in [0, {t.size - 1}]")
        if np.any(rnd < 0) or np.any(nb < 0) or np.any(r[:, 0] < 0) or np.any(r[:, 2] < 0):
            raise ValueError("rounds, nbits and nbytes must be >= 0")
        if np.any((r[:, 1] < 0) | (r[:, 1] >= t.size)):
            raise ValueError(f"reduction ranks must be in [0, {t.size - 1}]")
        t._msg = list(map(tuple, m.tolist()))
        t._red = list(map(tuple, r.tolist()))
        return t

    def copy(self) -> "Trace":
        """An independent copy (events are immutable tuples; the lists are copied)."""
        t = type(self)(self.size)
        t._msg, t._red = list(self._msg), list(self._red)
        return t

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"size": self.size, "messages": [list(m) for m in self._msg],
                "reductions": [list(r) for r in self._red]}

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
        if not isinstance(other, Trace):
            return NotImplemented
        return self.size == other.size and sorted(self._msg) == sorted(other._msg) and sorted(self._red) == sorted(
            other._red
        )
