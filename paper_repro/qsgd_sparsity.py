"""QSGD sparsity against Lemma 3.1 (iii): E nnz(Q_s(v)) as a function of s, for several d.

For each (d, s): the Monte-Carlo mean number of nonzeros (with its confidence interval), the
exact expectation #{l_i >= 1} + sum_{l_i = 0} p_i [D], and the bound s(s + sqrt d) [V] (capped
by d in the plot, since nnz <= d trivially).

References:
    Alistarh et al., "QSGD", NeurIPS 2017, Lemma 3.1 (iii). THEORY.md section 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.checks import make_vector
from analysis.montecarlo import sample_compressor, verdict_mean
from analysis.qsgd import qsgd_nnz_bound
from simdist.compressors import make

from .common import ReproResult, atomic_write_json, new_figure, save_figure

NAME = "qsgd_sparsity"
TITLE = "QSGD expected nonzeros vs s, against Lemma 3.1 (iii)"
CONFIDENCE = 0.99  # family-wise: split over the settings by Bonferroni (see per_check)


def settings(quick: bool) -> dict:
    """Grid and Monte-Carlo size of the quick and the full setting."""
    if quick:
        return {"dims": [1024, 16384], "levels": [1, 2, 4, 8, 16, 32, 64], "trials": 100, "seed": 1}
    return {"dims": [1024, 16384, 262144], "levels": [1, 2, 4, 8, 16, 32, 64, 128, 256], "trials": 500, "seed": 1}


def run(outdir: Path, quick: bool = True) -> ReproResult:
    """Measure, plot and write ``NAME.png`` / ``NAME.json``; return the claims."""
    cfg = settings(quick)
    res = ReproResult(NAME)
    rows = []
    per_check = 1.0 - (1.0 - CONFIDENCE) / (len(cfg["dims"]) * len(cfg["levels"]))
    for d in cfg["dims"]:
        x = make_vector("gaussian", d, cfg["seed"])
        for s in cfg["levels"]:
            c = make("qsgd", s=s)
            smp = sample_compressor(c, x, cfg["trials"], cfg["seed"])
            exact = c.expected_nnz(x)
            bound = qsgd_nnz_bound(d, s)
            vi = verdict_mean(smp.nnz, exact, kind="identity", statement="E nnz = exact", source="[D]",
                              confidence=per_check)
            vb = verdict_mean(smp.nnz, bound, kind="bound", statement="E nnz <= s(s + sqrt d)",
                              source="QSGD Lemma 3.1(iii)", confidence=per_check)
            rows.append({"d": d, "s": s, "trials": cfg["trials"], "measured": vi.measured, "ci_low": vi.ci_low,
                         "ci_high": vi.ci_high, "exact": exact, "bound": bound,
                         "identity_passed": vi.passed, "bound_passed": vb.passed})
    n = len(rows)
    n_id = sum(r["identity_passed"] for r in rows)
    n_bd = sum(r["bound_passed"] for r in rows)
    res.claim("MC nnz matches the exact [D] expectation (family-wise 99% CI)", "[D] from the definition", f"{n} settings",
              f"{n_id}/{n} inside", n_id == n)
    res.claim("E nnz <= s(s + sqrt d)", "QSGD Lemma 3.1(iii)", f"{n} settings", f"{n_bd}/{n} hold", n_bd == n)
    small = [r for r in rows if r["s"] == 1]
    if small:
        dens = max(r["measured"] / r["d"] for r in small)
        res.claim("s = 1 is sparse: E nnz / d", "QSGD Lemma 3.1(iii): <= (1 + sqrt d)/d", "small",
                  f"{dens:.4f}", None)

    fig, (ax,) = new_figure(1, 6.0, 4.4)
    for i, d in enumerate(cfg["dims"]):
        r = [row for row in rows if row["d"] == d]
        s = np.array([row["s"] for row in r])
        col = f"C{i}"
        meas = np.array([row["measured"] for row in r]) / d
        err = np.array([[row["measured"] - row["ci_low"] for row in r],
                        [row["ci_high"] - row["measured"] for row in r]]) / d
        ax.errorbar(s, meas, yerr=err, fmt="o", color=col, ms=4, capsize=2, label=f"d={d}: Monte Carlo (CI)")
        ax.plot(s, [row["exact"] / d for row in r], "-", color=col, lw=1, alpha=0.7, label=f"d={d}: exact [D]")
        ax.plot(s, [min(row["bound"], d) / d for row in r], "--", color=col, lw=1.2,
                label=f"d={d}: min(s(s+sqrt d), d)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("quantization levels s")
    ax.set_ylabel("E nnz(Q_s(v)) / d  (density)")
    ax.set_title("QSGD sparsity (Gaussian v, no bucketing)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    res.files.append(save_figure(fig, Path(outdir) / f"{NAME}.png"))
    res.files.append(atomic_write_json(Path(outdir) / f"{NAME}.json",
                                       {"name": NAME, "title": TITLE, "settings": cfg, "confidence": CONFIDENCE,
                                        "per_check_confidence": per_check, "rows": rows, "claims": res.claims}))
    return res
