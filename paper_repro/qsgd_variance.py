"""QSGD variance against Lemma 3.1 (ii): E||Q_s(v) - v||^2 / ||v||^2 as a function of s, for several d.

For each (d, s): the Monte-Carlo estimate (with its confidence interval), the exact value
(||v||^2/s^2) sum p_i(1 - p_i) [D], and the bound min(d/s^2, sqrt(d)/s) [V]. The talk's
reading: at s = sqrt(d) the variance is at most ||v||^2 (a second moment at most 2x).

References:
    Alistarh et al., "QSGD", NeurIPS 2017, Lemma 3.1 (ii). THEORY.md section 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.checks import make_vector
from analysis.montecarlo import sample_compressor, verdict_mean
from analysis.qsgd import qsgd_variance_factor
from simdist.compressors import make

from .common import ReproResult, atomic_write_json, new_figure, save_figure

NAME = "qsgd_variance"
TITLE = "QSGD variance vs s for several d, against Lemma 3.1 (ii)"
CONFIDENCE = 0.99  # family-wise: split over the settings by Bonferroni (see per_check)


def settings(quick: bool) -> dict:
    """Grid and Monte-Carlo size of the quick and the full setting."""
    if quick:
        return {"dims": [256, 4096], "levels": [1, 2, 4, 8, 16, 32, 64], "trials": 200, "seed": 0}
    return {"dims": [256, 4096, 65536], "levels": [1, 2, 4, 8, 16, 32, 64, 128, 256], "trials": 1000, "seed": 0}


def run(outdir: Path, quick: bool = True) -> ReproResult:
    """Measure, plot and write ``NAME.png`` / ``NAME.json``; return the claims."""
    cfg = settings(quick)
    res = ReproResult(NAME)
    rows = []
    n_identity = n_bound = n_id_pass = n_bd_pass = 0
    per_check = 1.0 - (1.0 - CONFIDENCE) / (len(cfg["dims"]) * len(cfg["levels"]))
    for d in cfg["dims"]:
        x = make_vector("gaussian", d, cfg["seed"])
        norm_sq = float(np.sum(x.astype(np.float64) ** 2))
        for s in cfg["levels"]:
            c = make("qsgd", s=s)
            smp = sample_compressor(c, x, cfg["trials"], cfg["seed"])
            exact = c.exact_variance(x)
            bound = qsgd_variance_factor(d, s) * norm_sq
            vi = verdict_mean(smp.sq_error, exact, kind="identity", statement="E||Q-v||^2 = exact",
                              source="[D]", confidence=per_check)
            vb = verdict_mean(smp.sq_error, bound, kind="bound", statement="E||Q-v||^2 <= Lemma 3.1(ii)",
                              source="QSGD Lemma 3.1(ii)", confidence=per_check)
            n_identity += 1
            n_bound += 1
            n_id_pass += vi.passed
            n_bd_pass += vb.passed
            rows.append({
                "d": d, "s": s, "trials": cfg["trials"], "norm_sq": norm_sq,
                "measured": vi.measured / norm_sq, "ci_low": vi.ci_low / norm_sq, "ci_high": vi.ci_high / norm_sq,
                "exact": exact / norm_sq, "bound": bound / norm_sq,
                "identity_passed": vi.passed, "bound_passed": vb.passed,
            })
    res.claim("MC variance matches the exact [D] value (family-wise 99% CI)", "[D] from the definition",
              f"{n_identity} settings", f"{n_id_pass}/{n_identity} inside", n_id_pass == n_identity)
    res.claim("variance <= min(d/s^2, sqrt(d)/s) ||v||^2", "QSGD Lemma 3.1(ii)",
              f"{n_bound} settings", f"{n_bd_pass}/{n_bound} hold", n_bd_pass == n_bound)
    at_sqrt = [r for r in rows if r["s"] ** 2 >= r["d"] and (r["s"] // 2) ** 2 < r["d"]]
    if at_sqrt:
        worst = max(r["measured"] for r in at_sqrt)
        res.claim("s ~ sqrt(d): variance factor <= 1 (second moment <= 2x)", "QSGD / talk",
                  "<= 1", f"{worst:.3f}", worst <= 1.0)

    fig, (ax,) = new_figure(1, 6.0, 4.4)
    for i, d in enumerate(cfg["dims"]):
        r = [row for row in rows if row["d"] == d]
        s = np.array([row["s"] for row in r])
        col = f"C{i}"
        meas = np.array([row["measured"] for row in r])
        err = np.array([[row["measured"] - row["ci_low"] for row in r], [row["ci_high"] - row["measured"] for row in r]])
        ax.errorbar(s, meas, yerr=err, fmt="o", color=col, ms=4, capsize=2, label=f"d={d}: Monte Carlo (CI)")
        ax.plot(s, [row["exact"] for row in r], "-", color=col, lw=1, alpha=0.7, label=f"d={d}: exact [D]")
        ax.plot(s, [row["bound"] for row in r], "--", color=col, lw=1.2, label=f"d={d}: Lemma 3.1(ii) bound")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("quantization levels s")
    ax.set_ylabel("E||Q_s(v) - v||^2 / ||v||^2")
    ax.set_title("QSGD variance (Gaussian v, no bucketing)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=1)
    res.files.append(save_figure(fig, Path(outdir) / f"{NAME}.png"))
    res.files.append(atomic_write_json(Path(outdir) / f"{NAME}.json",
                                       {"name": NAME, "title": TITLE, "settings": cfg, "confidence": CONFIDENCE,
                                        "per_check_confidence": per_check, "rows": rows, "claims": res.claims}))
    return res
