"""REPORT.md: the papers' claims, the theorems' bounds and our measurements side by side."""

from __future__ import annotations

from pathlib import Path

from .common import ReproResult, atomic_write_bytes

__all__ = ["write_report"]


def write_report(outdir: Path, results: list[ReproResult], quick: bool) -> Path:
    """Write ``outdir/REPORT.md`` from the results of a ``simdist repro all`` run."""
    lines = [
        "# simdist reproduction report",
        "",
        f"Setting: {'quick' if quick else 'full'}. Regenerate with `simdist repro all{' --quick' if quick else ''}`.",
        "",
        "| reproduction | claim | source | paper / bound | measured | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for c in r.claims:
            verdict = {True: "pass", False: "FAIL", None: "info"}[c["passed"]]
            lines.append(
                f"| [{r.name}]({r.name}.png) | {c['claim']} | {c['source']} | {c['expected']} | {c['measured']} | {verdict} |"
            )
    return atomic_write_bytes(Path(outdir) / "REPORT.md", ("\n".join(lines) + "\n").encode())
