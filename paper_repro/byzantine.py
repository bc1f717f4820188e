"""Byzantine nodes against the mean and against robust aggregation rules (THEORY.md 9).

Setting: distributed mean estimation (f* known exactly), P = 16 nodes of which the last f = 3 are
Byzantine and omniscient, full precision and QSGD (s = 8, the rule applied to the decoded payloads).
Aggregation rules: the mean, the coordinate-wise median, the trimmed mean (beta = 0.2, b = 3 >= f),
Krum (f = 3) and the geometric median. Attacks: sign flip (every attacker sends -6 times the honest
mean) and "a little is enough" (mu - z sigma, z from Baruch et al.).

Claims:

1. The sign flip turns the mean into an ascent direction: E[mean] = ((P - f) - 6 f)/P grad f =
   -5/16 grad f, so f(x_T) > f(x_0) (measured on every seed).
2. Every robust rule still descends under the sign flip: f(x_T) - f* < (f(x_0) - f*)/2 on every seed
   (the criterion is a direction, not a tuned threshold: SGD's noise floor here is a few % of the gap).
3. Krum's resilience, Blanchard et al. Proposition 1 [M]: <E Krum, g> >= (1 - sin alpha)||g||^2, decided
   by Monte Carlo at 99% confidence (``analysis.robust.verify_krum_resilience``) under both attacks.
4. (info) ALIE against each rule: the final gap relative to the attack-free mean's.

References:
    Blanchard et al., NeurIPS 2017; Yin et al., ICML 2018; Baruch et al., NeurIPS 2019; Pillutla et
    al. 2019 (RFA); Alistarh, Allen-Zhu, Li, NeurIPS 2018 (the setting).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import simdist
from analysis.robust import verify_krum_resilience
from simdist import problems

from .common import ReproResult, atomic_write_json, new_figure, save_figure

NAME = "byzantine"
TITLE = "Byzantine nodes: the mean breaks, median / trimmed mean / Krum / geometric median do not (THEORY 9)"
P, F = 16, 3
SIGN_FLIP = {"name": "sign_flip", "scale": 6.0}
ATTACKS = {"sign flip (x6)": SIGN_FLIP, "ALIE": {"name": "alie"}}
RULES = {"mean": "mean", "median": "median", "trimmed mean (0.2)": {"name": "trimmed_mean", "beta": 0.2},
         "Krum (f=3)": {"name": "krum", "f": F}, "geometric median": "geometric_median"}


def settings(quick: bool) -> dict:
    """Steps, seeds and the Monte Carlo size of the quick and the full setting."""
    return {"d": 20, "n": 480, "lr": 0.2, "batch_size": 4, "steps": 120 if quick else 400,
            "seeds": 2 if quick else 5, "krum_trials": 300 if quick else 2000}


def _runs(prob, cfg):
    runs = []
    base = dict(nodes=P, steps=cfg["steps"], lr=cfg["lr"], batch_size=cfg["batch_size"])
    for comp in (None, {"name": "qsgd", "s": 8}):
        curves = [simdist.train(prob, comp, seed=s, **base).loss for s in range(cfg["seeds"])]
        runs.append({"attack": None, "rule": "mean", "compressor": comp, "loss": curves})
        for alabel, atk in ATTACKS.items():
            for rlabel, rule in RULES.items():
                hs = [simdist.train(prob, comp, seed=s, aggregator=rule, byzantine=F, attack=atk, **base)
                      for s in range(cfg["seeds"])]
                runs.append({"attack": alabel, "rule": rlabel, "compressor": comp, "loss": [h.loss for h in hs],
                             "stop_reason": [h.stop_reason for h in hs]})
    return runs


def run(outdir: Path, quick: bool = True) -> ReproResult:
    """Train every (attack, rule, compressor), decide the claims, write ``NAME.png`` / ``NAME.json``."""
    cfg = settings(quick)
    prob = problems.make("mean_estimation", d=cfg["d"], n=cfg["n"])
    f0, fstar = prob.loss(prob.x0), prob.constants()["f_star"]
    res = ReproResult(NAME)
    runs = _runs(prob, cfg)
    sf = [r for r in runs if r["attack"] == "sign flip (x6)"]
    for comp_label, comp in (("full precision", None), ("QSGD s=8", {"name": "qsgd", "s": 8})):
        mine = [r for r in sf if r["compressor"] == comp]
        mean_run = next(r for r in mine if r["rule"] == "mean")
        worst = min(float(c[-1]) for c in mean_run["loss"])
        res.claim(f"sign flip x6, {comp_label}: the mean ascends", "E[mean] = -5/16 grad f (arithmetic)",
                  f"f(x_T) > f(x_0) = {f0:.4g} on every seed", f"min over seeds of f(x_T) = {worst:.4g}",
                  worst > f0)
        for r in mine:
            if r["rule"] == "mean":
                continue
            gap = max(float(c[-1]) - fstar for c in r["loss"])
            res.claim(f"sign flip x6, {comp_label}: {r['rule']} descends", "Yin et al. 2018 / Blanchard et al. 2017",
                      f"f(x_T) - f* < (f(x_0) - f*)/2 = {(f0 - fstar) / 2:.4g}",
                      f"max over seeds of f(x_T) - f* = {gap:.4g}", gap < (f0 - fstar) / 2)
    g = np.linspace(1.0, 2.0, 10)
    for alabel, atk in ATTACKS.items():
        v = verify_krum_resilience(11, 2, g, 0.05, atk, trials=cfg["krum_trials"], seed=0)
        res.claim(f"Krum (n=11, f=2, sigma=0.05, d=10) under {alabel}: <E Krum, g> >= (1 - sin a)||g||^2",
                  v.source, f">= {-v.reference:.4g} (99% one-sided)",
                  f"{-v.measured:.4g} [lower limit {-v.ci_high:.4g}]", v.passed)
    clean = next(r for r in runs if r["attack"] is None and r["compressor"] is None)
    clean_gap = np.mean([c[-1] for c in clean["loss"]]) - fstar
    alie = [r for r in runs if r["attack"] == "ALIE" and r["compressor"] is None]
    res.claim("ALIE (full precision): final gap / attack-free mean's gap", "Baruch et al. 2019 (measured)", "info",
              ", ".join(f"{r['rule']} {(np.mean([c[-1] for c in r['loss']]) - fstar) / clean_gap:.2f}" for r in alie),
              None)
    res.files.append(_plot(runs, f0, fstar, cfg, Path(outdir) / f"{NAME}.png"))
    res.files.append(atomic_write_json(Path(outdir) / f"{NAME}.json", {
        "name": NAME, "title": TITLE, "settings": cfg, "nodes": P, "byzantine": F, "f0": f0, "f_star": fstar,
        "runs": [{k: v for k, v in r.items() if k != "loss"} | {"loss_mean": np.mean(r["loss"], axis=0)}
                 for r in runs], "claims": res.claims}))
    return res


def _plot(runs, f0, fstar, cfg, path: Path) -> Path:
    fig, axes = new_figure(2, 5.4, 4.4)
    t = np.arange(1, cfg["steps"] + 1)
    colours = dict(zip(RULES, ["C3", "C0", "C2", "C1", "C4"]))
    clean = next(r for r in runs if r["attack"] is None and r["compressor"] is None)
    for ax, alabel in zip(axes, ATTACKS):
        ax.plot(t, np.mean(clean["loss"], axis=0) - fstar, "k:", lw=2, label="no attack, mean")
        for r in runs:
            if r["attack"] != alabel:
                continue
            ls = "-" if r["compressor"] is None else "--"
            gap = np.maximum(np.mean(r["loss"], axis=0) - fstar, 1e-12)
            ax.plot(t, gap, ls, color=colours[r["rule"]], lw=1.3,
                    label=f"{r['rule']}{'' if r['compressor'] is None else ' + QSGD'}")
        ax.axhline(f0 - fstar, color="grey", lw=0.8, ls="-.", label="f(x_0) - f*")
        ax.set_yscale("log")
        ax.set_xlabel("step t")
        ax.set_ylabel("f(x_t) - f*   (mean over seeds)")
        ax.set_title(f"{alabel}: P = {P}, f = {F} Byzantine, mean estimation d = {cfg['d']}\n"
                     f"(solid: full precision, dashed: QSGD s = 8)", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5, ncol=2)
    return save_figure(fig, path)
