"""Shared plumbing of the reproductions: atomic writes, figure style, the result record.

Every reproduction writes ``figures/NAME.png`` (matplotlib, labelled axes) and the data
behind it as ``figures/NAME.json`` (and ``.csv`` for tables), each written atomically
(a temporary file in the same folder, then ``os.replace``), so an interrupted run never
leaves a half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: Path, obj) -> Path:
    """Write ``obj`` as indented JSON (NumPy values converted, non-finite floats as null)."""
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=False, allow_nan=False)
    return atomic_write_bytes(path, (text + "\n").encode())


def atomic_write_csv(path: Path, rows: list[dict]) -> Path:
    """Write a list of dicts as CSV with a header row."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(_jsonable(rows))
    return atomic_write_bytes(path, buf.getvalue().encode())


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
