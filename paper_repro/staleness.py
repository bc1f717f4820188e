"""Stale gradients: the step must shrink like 1/(tau + 1) (THEORY.md 10).

Left: gradient descent with a fixed delay tau on a quadratic (distributed mean estimation with s = 0:
deterministic, L = 1), x_{t+1} - x* = (x_t - x*) - a (x_{t-tau} - x*). The final distance ratio
||x_T - x*|| / ||x_0 - x*|| over a grid of steps a / a_c(tau), where a_c(tau) = 2 sin(pi/(2(2 tau + 1)))
is Levin & May's exact stability threshold [D] (a_c = 2, 1, 0.618, 0.347, 0.185 for tau = 0, 1, 2, 4, 8).

Right: stochastic mean estimation (P = 8) with uniform random delays in [0, tau]: the same step
0.5 for every tau, against the theory's step 0.5 / (tau + 1).

Claims:

1. [D] For each tau, a = 0.9 a_c contracts and a = 1.1 a_c expands: after T = ln(1e6)/|ln rho| steps
   (rho the exact spectral radius) the distance ratio is below 1e-3, resp. above 1e3.
2. With the step 0.5 / (tau + 1) every delay converges: f(x_T) - f* < (f(x_0) - f*)/2.
3. (info) the fixed step 0.5 with tau = 16: the final gap (or the step it diverged at).

References:
    S. A. Levin, R. M. May (1976); A. Agarwal, J. C. Duchi, NeurIPS 2011; X. Lian et al., NeurIPS 2015.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import simdist
from analysis.staleness import delayed_gd_critical_step, delayed_gd_spectral_radius
from simdist import problems

from .common import ReproResult, atomic_write_json, new_figure, save_figure

NAME = "staleness"
TITLE = "Stale gradients: fixed-delay GD is stable exactly below a_c(tau); steps must shrink like 1/(tau+1) (THEORY 10)"
TAUS_D = (0, 1, 2, 4, 8)
TAUS_SGD = (0, 2, 8, 16)


def settings(quick: bool) -> dict:
    """Grid size, steps and seeds of the quick and the full setting."""
    return {"grid": 11 if quick else 41, "grid_steps": 300 if quick else 1000, "sgd_steps": 200 if quick else 600,
            "seeds": 2 if quick else 5, "lr": 0.5}


def _distance_ratio(prob, a: float, tau: int, T: int) -> float:
    h = simdist.train(prob, None, nodes=1, steps=T, lr=a, seed=0, staleness=tau, delays="fixed")
    if h.stop_reason is not None:
        return float("inf")
    e = prob.samples[0]
    return float(np.linalg.norm(np.array(h.extra["x_final"]) - e) / np.linalg.norm(np.asarray(prob.x0) - e))


def run(outdir: Path, quick: bool = True) -> ReproResult:
    """Run the grid and the stochastic runs, decide the claims, write ``NAME.png`` / ``NAME.json``."""
    cfg = settings(quick)
    res = ReproResult(NAME)
    det = problems.make("mean_estimation", d=3, n=4, s=0.0)
    grid = np.linspace(0.5, 1.5, cfg["grid"])
    curves = {tau: [_distance_ratio(det, g * delayed_gd_critical_step(tau), tau, cfg["grid_steps"]) for g in grid]
              for tau in TAUS_D}
    for tau in TAUS_D:
        ratios = {}
        for factor in (0.9, 1.1):
            a = factor * delayed_gd_critical_step(tau)
            rho = delayed_gd_spectral_radius(a, tau)
            T = int(np.ceil(np.log(1e6) / abs(np.log(rho))))
            ratios[factor] = (_distance_ratio(det, a, tau, T), T)
        ok = ratios[0.9][0] < 1e-3 and ratios[1.1][0] > 1e3
        res.claim(f"fixed delay tau={tau}: stable at 0.9 a_c, unstable at 1.1 a_c (a_c = {delayed_gd_critical_step(tau):.4f})",
                  "Levin & May 1976 [D]", "ratio < 1e-3 at 0.9 a_c, > 1e3 at 1.1 a_c",
                  f"{ratios[0.9][0]:.2e} (T={ratios[0.9][1]}), {ratios[1.1][0]:.2e} (T={ratios[1.1][1]})", ok)
    prob = problems.make("mean_estimation", d=20, n=400)
    f0, fstar = prob.loss(prob.x0), prob.constants()["f_star"]
    sgd = []
    for tau in TAUS_SGD:
        for rule, lr in (("fixed", cfg["lr"]), ("1/(tau+1)", cfg["lr"] / (tau + 1))):
            hs = [simdist.train(prob, None, nodes=8, steps=cfg["sgd_steps"], lr=lr, seed=s, staleness=tau)
                  for s in range(cfg["seeds"])]
            sgd.append({"tau": tau, "rule": rule, "lr": lr, "loss": [list(h.loss) for h in hs],
                        "stop_reason": [h.stop_reason for h in hs]})
    for r in sgd:
        if r["rule"] == "1/(tau+1)":
            ok = all(s is None for s in r["stop_reason"])
            gap = max(c[-1] for c in r["loss"]) - fstar if ok else float("inf")
            res.claim(f"uniform delays tau={r['tau']}, step 0.5/(tau+1): converges", "THEORY 10 [M] (step ~ 1/(L(tau+1)))",
                      f"f(x_T) - f* < {(f0 - fstar) / 2:.4g}", f"max over seeds {gap:.4g}", ok and gap < (f0 - fstar) / 2)
    worst = next(r for r in sgd if r["tau"] == TAUS_SGD[-1] and r["rule"] == "fixed")
    res.claim(f"uniform delays tau={TAUS_SGD[-1]}, the same step 0.5", "measured", "info",
              "; ".join(s if s else f"f(x_T) - f* = {c[-1] - fstar:.3g}" for s, c in zip(worst["stop_reason"], worst["loss"])),
              None)
    res.files.append(_plot(grid, curves, sgd, fstar, cfg, Path(outdir) / f"{NAME}.png"))
    res.files.append(atomic_write_json(Path(outdir) / f"{NAME}.json", {
        "name": NAME, "title": TITLE, "settings": cfg, "grid": grid,
        "distance_ratio": {str(t): c for t, c in curves.items()}, "f_star": fstar, "f0": f0,
        "sgd": [{k: v for k, v in r.items() if k != "loss"} | {"loss_seed0": r["loss"][0]} for r in sgd],
        "claims": res.claims}))
    return res


def _plot(grid, curves, sgd, fstar, cfg, path: Path) -> Path:
    fig, (ax, az) = new_figure(2, 5.4, 4.4)
    for k, (tau, c) in enumerate(curves.items()):
        ax.plot(grid, np.clip(np.array(c), 1e-17, 1e30), "o-", ms=3, color=f"C{k}", label=f"tau = {tau}")
    ax.axvline(1.0, color="k", ls="--", lw=1, label="a = a_c(tau) (Levin-May)")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step a / a_c(tau)")
    ax.set_ylabel(f"||x_T - x*|| / ||x_0 - x*||, T = {cfg['grid_steps']} (clipped to [1e-17, 1e30])")
    ax.set_title("fixed-delay gradient descent on a quadratic (L = 1)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    for k, tau in enumerate(TAUS_SGD):
        for r in sgd:
            if r["tau"] != tau:
                continue
            L = np.array(r["loss"][0]) - fstar
            az.plot(np.arange(1, L.size + 1), np.maximum(L, 1e-12), "-" if r["rule"] == "fixed" else "--",
                    color=f"C{k}", lw=1.2, label=f"tau = {tau}, step {r['lr']:.3g}")
    az.set_yscale("log")
    az.set_xlabel("step t")
    az.set_ylabel("f(x_t) - f*   (seed 0)")
    az.set_title("SGD, P = 8, uniform delays in [0, tau]\n(solid: step 0.5; dashed: 0.5 / (tau + 1))", fontsize=9)
    az.grid(True, which="both", alpha=0.3)
    az.legend(fontsize=6.5, ncol=2)
    return save_figure(fig, path)
