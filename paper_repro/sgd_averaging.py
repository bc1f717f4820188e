"""Averaging P gradients divides the variance by P (THEORY 7): measured on the engine's own sampling path.

What is measured: the aggregated gradient g_t that :func:`simdist.train` applies at step t (full
precision: each node's minibatch gradient from its own part D_i, the float32 wire cast, the mean
over nodes), at a fixed x (x0 and x*), for the engine's steps t = 0..trials-1, via
:func:`analysis.convergence_parallel.engine_averaged_gradients` (tested bit-equal to the engine).
Per trial: ||g_t - grad f(x)||^2.
For mean estimation x0 and x* give identical numbers: g_j(x) - grad f(x) = x* - e_j does not depend on
x and both points use the same sampling stream (least squares: the variance at x0 is about 90x that at x*).

Compared with:

* the exact [D] value for the engine's partitioned sampling (nodes draw from D_i, not from the whole
  set; samples beyond P * (n // P) are dropped): ||mu_kept - grad f||^2 + sum_i sigma_i^2 / (P^2 B)
  (:func:`analysis.convergence_parallel.partitioned_gradient_error`) -- the identity checked;
* the textbook sigma^2(x) / (P B) (THEORY 7, sigma^2(x) the single-sample variance over the whole
  set): exact when every node samples from the whole set, which the figure also measures (same
  ``problem.grads``, indices uniform on all n samples: the theorem's assumption, not an engine mode).
  The partitioned value is smaller by about (m - 1)/m (m = n // P samples per node): within-part
  variance is total variance minus the between-part spread.

Family-wise confidence 99%, split by Bonferroni over every (problem, point, P, B, sampling) check.

References:
    THEORY.md section 7 ("averaging P independent gradients divides the variance by P"); Bubeck 2015,
    Theorem 6.3 (as QSGD Theorem 2.1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.convergence_parallel import engine_averaged_gradients, partitioned_gradient_error
from analysis.montecarlo import info_verdict, verdict_mean
from simdist import problems

from .common import ReproResult, atomic_write_json, save_figure

NAME = "sgd_averaging"
TITLE = "Variance of the averaged gradient vs P: sigma^2/P and the engine's partitioned sampling"
CONFIDENCE = 0.99  # family-wise, Bonferroni over the checks

PROBLEMS = {
    "mean_estimation": {"name": "mean_estimation", "d": 10, "n": 1000, "seed": 0},
    "least_squares": {"name": "least_squares", "d": 20, "n": 1000, "seed": 0},
}


def settings(quick: bool) -> dict:
    """The grid and Monte-Carlo size of the quick and the full setting."""
    base = {"problems": PROBLEMS, "nodes": [1, 2, 4, 8, 16, 32, 64], "points": ["x0", "x_star"], "seed": 0}
    if quick:
        return {**base, "batch_sizes": [1], "trials": 1500}
    return {**base, "batch_sizes": [1, 4], "trials": 20000}


def _whole_set_gradients(prob, x, P, B, trials, seed):
    # every node samples uniformly from all n samples (the theorem's iid assumption), same grads/wire path
    rng = np.random.default_rng([seed, 0xA5])
    out = np.empty((trials, prob.dim))
    for t in range(trials):
        G = prob.grads(x, rng.integers(0, prob.n_samples, size=(P, B)))
        out[t] = G.astype(np.float32).astype(np.float64).mean(axis=0)
    return out


def _slope(P, y):
    return float(np.polyfit(np.log(P), np.log(y), 1)[0])


def run(outdir: Path, quick: bool = True) -> ReproResult:
    """Measure, plot and write ``NAME.png`` / ``NAME.json``; return the claims."""
    cfg = settings(quick)
    res = ReproResult(NAME)
    n_checks = len(cfg["problems"]) * len(cfg["points"]) * len(cfg["nodes"]) * len(cfg["batch_sizes"]) * 2
    per_check = 1.0 - (1.0 - CONFIDENCE) / n_checks
    rows = []
    for pname, pcfg in cfg["problems"].items():
        prob = problems.make(pcfg)
        for point in cfg["points"]:
            x = np.array(prob.x0 if point == "x0" else prob.x_star, dtype=np.float64)
            grad = prob.full_grad(x).astype(np.float64)
            sigma2 = prob.grad_variance(x)
            for B in cfg["batch_sizes"]:
                for P in cfg["nodes"]:
                    bias_sq, var = partitioned_gradient_error(prob, x, prob.partition(P, "iid", cfg["seed"]), B)
                    exact = bias_sq + var
                    textbook = sigma2 / (P * B)
                    A = engine_averaged_gradients(prob, x, nodes=P, trials=cfg["trials"], batch_size=B, seed=cfg["seed"])
                    y = np.sum((A - grad) ** 2, axis=1)
                    v = verdict_mean(y, exact, kind="identity", statement="E||g-grad f||^2 = partitioned [D]",
                                     source="[D]", confidence=per_check)
                    W = _whole_set_gradients(prob, x, P, B, cfg["trials"], cfg["seed"])
                    yw = np.sum((W - grad) ** 2, axis=1)
                    vw = verdict_mean(yw, textbook, kind="identity", statement="whole-set sampling: sigma^2/(PB)",
                                      source="THEORY 7", confidence=per_check)
                    vt = info_verdict(y / textbook, statement="engine / (sigma^2/(PB))", source="info",
                                      confidence=per_check)
                    rows.append({
                        "problem": pname, "point": point, "B": B, "P": P, "trials": cfg["trials"],
                        "sigma2": sigma2, "textbook": textbook, "exact_partitioned": exact, "bias_sq": bias_sq,
                        "measured": v.measured, "ci_low": v.ci_low, "ci_high": v.ci_high, "passed": v.passed,
                        "whole_measured": vw.measured, "whole_ci_low": vw.ci_low, "whole_ci_high": vw.ci_high,
                        "whole_passed": vw.passed, "ratio_to_textbook": vt.measured,
                        "ratio_ci": [vt.ci_low, vt.ci_high],
                    })
    n = len(rows)
    ok = sum(r["passed"] for r in rows)
    okw = sum(r["whole_passed"] for r in rows)
    res.claim("engine's averaged-gradient variance = exact [D] for partitioned sampling, P = "
              f"{cfg['nodes'][0]}..{cfg['nodes'][-1]} (family-wise {CONFIDENCE:.0%} CI)",
              "[D] (THEORY 7 with per-node parts)", f"{n} settings", f"{ok}/{n} inside", ok == n)
    res.claim("nodes sampling the whole set: variance = sigma^2/(P B) (family-wise CI)", "THEORY 7",
              f"{n} settings", f"{okw}/{n} inside", okw == n)
    ratios = [r["exact_partitioned"] / r["textbook"] for r in rows]
    res.claim("engine's exact variance / (sigma^2/(PB)) (partition effect, about (m-1)/m)", "[D] / THEORY 7",
              "1 for sampling from the whole set", f"{min(ratios):.3f}..{max(ratios):.3f}", None)
    slopes = []
    for pname in cfg["problems"]:
        for point in cfg["points"]:
            r = [row for row in rows if row["problem"] == pname and row["point"] == point and row["B"] == 1]
            slopes.append(_slope([row["P"] for row in r], [row["measured"] for row in r]))
    res.claim("fitted slope of log variance vs log P (B = 1)", "THEORY 7", "-1",
              f"{min(slopes):.3f}..{max(slopes):.3f}", None)
    _plot(res, cfg, rows, outdir)
    res.files.append(atomic_write_json(Path(outdir) / f"{NAME}.json",
                                       {"name": NAME, "title": TITLE, "settings": cfg, "confidence": CONFIDENCE,
                                        "per_check_confidence": per_check, "rows": rows, "claims": res.claims}))
    return res


def _plot(res, cfg, rows, outdir):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    names = list(cfg["problems"])
    fig, axes = plt.subplots(2, len(names), figsize=(5.6 * len(names), 8.0), squeeze=False)
    for c, pname in enumerate(names):
        ax, axr = axes[0][c], axes[1][c]
        for j, point in enumerate(cfg["points"]):
            for k, B in enumerate(cfg["batch_sizes"]):
                r = [row for row in rows if row["problem"] == pname and row["point"] == point and row["B"] == B]
                P = np.array([row["P"] for row in r], dtype=float)
                Ps = P * (1.0 + 0.06 * j)  # x0 and x* side by side (identical for mean estimation)
                col = f"C{2 * j + k}"
                lab = f"x={'x0' if point == 'x0' else 'x*'}, B={B}"
                m = np.array([row["measured"] for row in r])
                err = np.array([m - [row["ci_low"] for row in r], [row["ci_high"] for row in r] - m])
                tb = np.array([row["textbook"] for row in r])
                ax.errorbar(Ps, m, yerr=err, fmt="o", color=col, ms=4, capsize=2, label=f"{lab}: engine (CI)")
                ax.plot(P, [row["exact_partitioned"] for row in r], "-", color=col, lw=1, label=f"{lab}: exact [D], parts")
                ax.plot(P, tb, "--", color=col, lw=1, alpha=0.7, label=f"{lab}: sigma^2/(PB)")
                axr.errorbar(Ps, m / tb, yerr=err / tb, fmt="o", color=col, ms=4, capsize=2, label=f"{lab}: engine (CI)")
                axr.plot(P, [row["exact_partitioned"] for row in r] / tb, "-", color=col, lw=1,
                         label=f"{lab}: exact [D], parts")
                w = np.array([row["whole_measured"] for row in r])
                werr = np.array([w - [row["whole_ci_low"] for row in r], [row["whole_ci_high"] for row in r] - w])
                axr.errorbar(Ps * 1.03, w / tb, yerr=werr / tb, fmt="x", color=col, ms=5, capsize=2, alpha=0.6,
                             label=f"{lab}: whole-set sampling (CI)")
        axr.axhline(1.0, color="k", ls="--", lw=1, label="sigma^2/(PB)")
        for a in (ax, axr):
            a.set_xscale("log", base=2)
            a.set_xlabel("nodes P")
            a.grid(True, which="both", alpha=0.3)
            a.legend(fontsize=6)
        ax.set_yscale("log")
        ax.set_ylabel("E||avg gradient - grad f(x)||^2")
        ax.set_title(f"{pname}: variance of the averaged gradient")
        axr.set_ylabel("measured / (sigma^2(x) / (P B))")
        axr.set_title(f"{pname}: ratio to sigma^2/P (trials {cfg['trials']}, family-wise 99% CI)", fontsize=9)
    res.files.append(save_figure(fig, Path(outdir) / f"{NAME}.png"))
