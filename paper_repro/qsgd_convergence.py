"""QSGD convergence: at most 2x the iterations of full precision to a target loss, at least 10x fewer bits.

The talk's reading of QSGD (Corollary 3.3 with Theorem 3.4): at s = sqrt(d) the quantized gradient's
second moment is at most 2x, so at most 2x more iterations, while the message is about 11x shorter
than 32 d bits. Measured here with the simulated data-parallel engine on two problems, full
precision against QSGD at s = sqrt(d) (no bucketing) and 4-bit QSGD (s = 16, bucket 512), the
paper's Elias encoding, every node's bits counted from its payloads:

* ``least_squares`` (d = 1024, n = 4096, noise 0.5): target f* + 1% of the initial gap
  f(x0) - f*. d = 1024 (not 256) so that s = sqrt(d) = 32 and the 4-bit/bucket-512 setting differ.
* ``mlp_digits`` (d = 2410, the non-convex problem): target 5% of f(x0) (f* >= 0 unknown; a
  level full precision reaches in about half the step budget). s = ceil(sqrt(2410)) = 50.

Protocol: P = 8 nodes, batch 8, no momentum, the same constant step for every compressor
("without extra tuning", as in the paper): least squares 1/(L + L_sample/(P B)) (the step at
which minibatch SGD is stable with a factor-2 margin), the MLP 0.3 (the larger of {0.1, 0.3} in a
full-precision pilot). Seeds 0..m-1; a seed fixes the data sampling, so full precision and QSGD
of one seed see the same minibatches (a paired design). Per seed: T = steps until the loss first
reaches the target (:func:`analysis.convergence_compressed.steps_to_target`), the iteration ratio
T_q / T_fp, and the bits ratio (32 d T_fp) / (QSGD bits per node summed over its T_q steps).

Claims (each decided by :func:`analysis.convergence_compressed.demonstrate_mean`, one-sided
Student t over the seeds, Bonferroni over the 8 claims, family-wise confidence 99%):
(1) mean iteration ratio < 2 (demonstrated: the upper limit is below 2); (2) mean bits-to-target
ratio > 10 (the lower limit is above 10). The theorem's factor 1 + min(b/s^2, sqrt(b)/s) is
reported beside (1): 2 at s = sqrt(d), 2.41 for 4-bit with bucket 512.

References:
    D. Alistarh, D. Grubic, J. Li, R. Tomioka, M. Vojnovic, "QSGD", NeurIPS 2017: Lemma 3.1 (ii),
    Corollary 3.3, Theorem 3.4 (smooth convex), Theorem 3.5 (non-convex); Sec. 5 (bucketing).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import simdist
from analysis.convergence_compressed import (
    blas_threads,
    bonferroni,
    demonstrate_mean,
    qsgd_iteration_factor,
    steps_to_target,
)
from simdist import problems

from .common import ReproResult, atomic_write_json, new_figure, save_figure

NAME = "qsgd_convergence"
TITLE = "QSGD vs full precision: iterations and bits to a target loss (least squares, MLP)"
CONFIDENCE = 0.99  # family-wise, split by Bonferroni over the claims


def settings(quick: bool) -> dict:
    """The problems, compressors, step budgets and seeds of the quick and the full setting."""
    seeds = 10 if quick else 30
    return {
        "nodes": 8,
        "batch_size": 8,
        "seeds": seeds,
        "problems": [
            {"problem": {"name": "least_squares", "n": 4096, "d": 1024, "noise": 0.5, "seed": 0},
             "lr": "1/(L + L_sample/(P B))", "steps": 200, "target": {"kind": "gap", "frac": 0.01}},
            {"problem": {"name": "mlp_digits", "hidden": 32, "seed": 0},
             "lr": 0.3, "steps": 250, "target": {"kind": "f0", "frac": 0.05}},
        ],
        "compressors": [{"label": "s = sqrt(d)", "s": "sqrt"}, {"label": "4-bit, bucket 512", "s": 16, "bucket": 512}],
    }


def _qsgd_config(spec: dict, d: int) -> dict:
    s = math.ceil(math.sqrt(d)) if spec["s"] == "sqrt" else spec["s"]
    cfg = {"name": "qsgd", "s": s}
    if spec.get("bucket") is not None:
        cfg["bucket"] = spec["bucket"]
    return cfg


def _run_problem(ps: dict, cfg: dict) -> dict:
    prob = problems.make(ps["problem"])
    P, B, d = cfg["nodes"], cfg["batch_size"], prob.dim
    lr = 1.0 / (prob.L + prob.L_sample / (P * B)) if ps["lr"] == "1/(L + L_sample/(P B))" else float(ps["lr"])
    f0 = prob.loss(prob.x0)
    if ps["target"]["kind"] == "gap":
        target = prob.f_star + ps["target"]["frac"] * (f0 - prob.f_star)
    else:
        target = ps["target"]["frac"] * f0
    variants = [("full precision", None)] + [(c["label"], _qsgd_config(c, d)) for c in cfg["compressors"]]
    out = {"problem": prob.get_config(), "d": d, "lr": lr, "f0": f0, "f_star": prob.f_star, "target": target,
           "steps": ps["steps"], "variants": []}
    for label, comp in variants:
        T, bits, curves, bits_per_step = [], [], [], []
        for seed in range(cfg["seeds"]):
            h = simdist.train(prob, comp, nodes=P, steps=ps["steps"], lr=lr, batch_size=B, seed=seed)
            t = steps_to_target(h.loss, target) if h.stop_reason is None else math.inf
            T.append(t)
            bits.append(float(np.sum(h.bits[: int(t)])) if math.isfinite(t) else math.inf)
            bits_per_step.append(float(np.mean(h.bits)))
            curves.append(h.loss.tolist())
        out["variants"].append({"label": label, "compressor": comp, "T": T, "bits_to_target": bits,
                                "bits_per_step": bits_per_step, "loss": curves})
    return out


def _claims(res: ReproResult, data: list[dict], per: float) -> list[dict]:
    rows = []
    for pd in data:
        fp = pd["variants"][0]
        T_fp = np.array(fp["T"])
        pname = pd["problem"]["name"]
        for v in pd["variants"][1:]:
            T_q = np.array(v["T"])
            it_ratio = T_q / T_fp
            bits_ratio = 32.0 * pd["d"] * T_fp / np.array(v["bits_to_target"])
            comp = v["compressor"]
            factor = qsgd_iteration_factor(pd["d"], comp["s"], comp.get("bucket"))
            vi = demonstrate_mean(it_ratio, 2.0, side="below", confidence=per,
                                  statement=f"{pname}, {v['label']}: T_q/T_fp < 2", source="QSGD Thm 3.4 / talk")
            vb = demonstrate_mean(bits_ratio, 10.0, side="above", confidence=per,
                                  statement=f"{pname}, {v['label']}: bits ratio > 10", source="QSGD Cor 3.3 / talk")
            per_step = 32.0 * pd["d"] / np.mean(v["bits_per_step"])
            res.claim(f"{pname} (d={pd['d']}), QSGD {v['label']} (s={comp['s']}): iterations to target "
                      f"at most 2x full precision", "QSGD Thm 3.4 / talk",
                      f"< 2 (theorem factor 1 + min(b/s^2, sqrt(b)/s) = {factor:.2f})",
                      f"mean {vi.measured:.3f}, one-sided CI [{_f(vi.ci_low)}, {_f(vi.ci_high)}], "
                      f"range {np.min(it_ratio):.3f}-{np.max(it_ratio):.3f} over {len(it_ratio)} seeds", vi.passed)
            res.claim(f"{pname} (d={pd['d']}), QSGD {v['label']}: bits per node summed to the target at least "
                      f"10x fewer than full precision's (32 d per step)", "QSGD Cor 3.3 / talk (about 11x)",
                      "> 10", f"mean {vb.measured:.2f}, one-sided CI [{_f(vb.ci_low)}, {_f(vb.ci_high)}] "
                      f"(per step {per_step:.2f}x)", vb.passed)
            rows.append({"problem": pname, "variant": v["label"], "s": comp["s"], "bucket": comp.get("bucket"),
                         "theorem_factor": factor, "iteration_ratio": it_ratio.tolist(),
                         "bits_ratio": bits_ratio.tolist(), "bits_ratio_per_step": per_step,
                         "verdict_iterations": vi.to_dict(), "verdict_bits": vb.to_dict()})
    return rows


def _summary(pd: dict) -> dict:
    """The run data for the JSON file: per-seed T and bits, loss curves as mean/min/max over seeds."""
    out = {k: v for k, v in pd.items() if k != "variants"}
    out["variants"] = []
    for v in pd["variants"]:
        L = np.array(v["loss"])
        w = {k: x for k, x in v.items() if k != "loss"}
        w.update(loss_mean=L.mean(axis=0), loss_min=L.min(axis=0), loss_max=L.max(axis=0))
        out["variants"].append(w)
    return out


def _f(v) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _plot(data: list[dict], path: Path) -> Path:
    fig, axes = new_figure(4, 4.2, 3.8)
    for j, pd in enumerate(data):
        ax_t, ax_b = axes[2 * j], axes[2 * j + 1]
        gap = pd["problem"]["name"] == "least_squares"
        off = pd["f_star"] if gap else 0.0
        for i, v in enumerate(pd["variants"]):
            L = np.array(v["loss"]) - off
            mean = L.mean(axis=0)
            steps = np.arange(1, L.shape[1] + 1)
            bits = steps * np.mean(v["bits_per_step"])  # QSGD's bits per step vary little around their mean
            col, ls = f"C{i}", "-" if i == 0 else "--"
            ax_t.plot(steps, mean, ls, color=col, lw=1.3, label=v["label"])
            ax_t.fill_between(steps, L.min(axis=0), L.max(axis=0), color=col, alpha=0.15)
            ax_b.plot(bits, mean, ls, color=col, lw=1.3, label=v["label"])
        for ax in (ax_t, ax_b):
            ax.axhline(pd["target"] - off, color="k", ls=":", lw=1, label="target")
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.set_ylabel("f(x_t) - f*" if gap else "training loss f(x_t)")
        ax_t.set_xlabel("step t")
        ax_b.set_xlabel("bits sent per node (cumulative)")
        ax_b.set_xscale("log")
        name = f"{pd['problem']['name']} (d={pd['d']})"
        ax_t.set_title(f"{name}: loss vs steps\n(mean, band = min-max over seeds)", fontsize=9)
        ax_b.set_title(f"{name}: loss vs bits", fontsize=9)
        ax_t.legend(fontsize=7)
    return save_figure(fig, path)


def run(outdir: Path, quick: bool = True) -> ReproResult:
    """Train, decide the claims, write ``NAME.png`` / ``NAME.json``; return the result."""
    cfg = settings(quick)
    res = ReproResult(NAME)
    with blas_threads(1):
        data = [_run_problem(ps, cfg) for ps in cfg["problems"]]
    n_claims = 2 * len(cfg["problems"]) * len(cfg["compressors"])
    per = bonferroni(CONFIDENCE, n_claims)
    rows = _claims(res, data, per)
    res.files.append(_plot(data, Path(outdir) / f"{NAME}.png"))
    res.files.append(atomic_write_json(Path(outdir) / f"{NAME}.json", {
        "name": NAME, "title": TITLE, "settings": cfg, "confidence": CONFIDENCE, "per_claim_confidence": per,
        "rows": rows, "runs": [_summary(pd) for pd in data], "claims": res.claims}))
    return res
