"""Registered reproductions of the seed talk's and the papers' figures.

Each reproduction is a module with ``NAME``, ``TITLE``, ``DESCRIPTION`` and
``run(outdir, quick) -> ReproResult``, writing ``outdir/NAME.png`` and the data behind it.
``simdist repro --list`` lists them; ``simdist repro NAME`` runs one; ``simdist repro all --quick``
runs every one in its quick setting and writes ``outdir/REPORT.md``.
"""

from __future__ import annotations

import importlib

__all__ = ["REPROS", "get", "names"]

#: name -> module (in the order the report lists them).
REPROS = {
    "qsgd_variance": "paper_repro.qsgd_variance",
    "qsgd_sparsity": "paper_repro.qsgd_sparsity",
    "qsgd_bits": "paper_repro.qsgd_bits",
    "sgd_averaging": "paper_repro.sgd_averaging",
    "bubeck_parallel": "paper_repro.bubeck_parallel",
    "qsgd_convergence": "paper_repro.qsgd_convergence",
    "sign_counterexample": "paper_repro.sign_counterexample",
    "topk_convergence": "paper_repro.topk_convergence",
    "sparcml": "paper_repro.sparcml",
    "sparcml_training": "paper_repro.sparcml_training",
    "scaling": "paper_repro.scaling",
    "byzantine": "paper_repro.byzantine",
    "staleness": "paper_repro.staleness",
}


def names() -> list[str]:
    """Registered reproduction names."""
    return list(REPROS)


def get(name: str):
    """The module of a reproduction (ValueError naming the choices for an unknown name)."""
    if name not in REPROS:
        raise ValueError(f"unknown reproduction {name!r}; available: {', '.join(REPROS)}")
    return importlib.import_module(REPROS[name])
