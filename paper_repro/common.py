"""Shared plumbing of the reproductions: atomic writes, figure style, the result record.

Every reproduction writes ``figures/NAME.png`` (matplotlib, labelled axes) and the data
behind it as ``figures/NAME.json`` (and ``.csv`` for tables), each written atomically
(a temporary file in the same folder, then ``os.replace``), so an interrupted run never
leaves a half-written file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from simdist.io import atomic_write_bytes, atomic_write_csv, atomic_write_json

__all__ = ["ReproResult", "atomic_write_bytes", "atomic_write_json", "atomic_write_csv", "save_figure", "new_figure"]


@dataclass
class ReproResult:
    """What a reproduction produced.

    Attributes:
        name: registry name.
        files: paths written.
        claims: rows of (claim, source, paper value or bound, measured, verdict) for the report.
    """

    name: str
    files: list[Path] = field(default_factory=list)
    claims: list[dict] = field(default_factory=list)

    def claim(self, claim: str, source: str, expected, measured, passed: bool | None) -> None:
        """Record one line of the report."""
        self.claims.append(
            {"claim": claim, "source": source, "expected": expected, "measured": measured, "passed": passed}
        )


def new_figure(ncols: int = 1, width: float = 5.2, height: float = 4.0):
    """A figure with ``ncols`` axes side by side (Agg backend, no screen needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, list(axes[0])


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
