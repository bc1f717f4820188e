"""SparCML in training: top-k + error feedback aggregated by each collective, priced on each network.

One least-squares run per aggregation (P = 16 nodes, d = 2048, top-k 1% with error feedback, and
full precision with the dense ring allreduce as the baseline), then every history priced again on
five network models with :meth:`simdist.engine.history.History.reprice` (exact: the network changes
no computed value). Aggregations of the compressed gradients:

* ``allgather``: every node receives every top-k payload (the gap-coded indices and values) and
  decodes all P;
* ``sparse_recursive_doubling``, ``sparse_split_allgather``, ``sparse_dynamic``: SparCML's sparse
  allreduces (:mod:`simdist.collectives.sparse`) sum the decoded sparse vectors on the way, as
  uint32 index + value items (the dynamic one switching blocks to dense once they fill up).

The figure shows the loss against simulated time on the latency-bound ``ec2-10g`` and the
bandwidth-rich ``aries`` model, and the mean simulated time per step of every aggregation on every
network. What it measures (model values, reported as such): with disjoint-ish supports a sparse
sum has about P k items, more bytes than P compact top-k payloads, so the allgather sends fewer bits;
the sparse allreduces win against the dense fp32 allreduce by an order of magnitude in bytes, and
their latency terms decide between them (recursive doubling's lg P rounds on ``ec2-10g``).

Checked (pass/fail): the sparse-allreduce runs train as the allgather run does (the same payloads
and memory; the mean summed in another order: equal losses to 1e-9 relative); repricing a run
equals running it on that network, bit for bit.

References:
    C. Renggli, S. Ashkboos, M. Aghagolzadeh, D. Alistarh, T. Hoefler, "SparCML: High-Performance
    Sparse Communication for Machine Learning", SC19 (Sections 4-5); S. Stich, J.-B. Cordonnier,
    M. Jaggi, "Sparsified SGD with Memory", NeurIPS 2018 (top-k with error feedback).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import simdist

from .common import ReproResult, atomic_write_json, new_figure, save_figure

NAME = "sparcml_training"
TITLE = "SparCML sparse allreduces in training: loss vs simulated time, every network from one run"
DESCRIPTION = "top-k + EF aggregated by allgather or a sparse allreduce, repriced on five networks"

NETWORKS = ("ec2-10g", "10gbe", "100gbe", "ib-hdr", "aries")
COLLECTIVES = ("allgather", "sparse_recursive_doubling", "sparse_split_allgather", "sparse_dynamic")


def settings(quick: bool) -> dict:
    return {"problem": {"name": "least_squares", "n": 4000, "d": 2048, "noise": 0.5, "seed": 0},
            "nodes": 16, "batch_size": 8, "lr": 0.02, "steps": 30 if quick else 200, "ratio": 0.01, "seed": 0,
            "recorded_on": "10gbe"}


def _train(cfg: dict, compressor, collective: str, network: str):
    return simdist.train(cfg["problem"], compressor, nodes=cfg["nodes"], steps=cfg["steps"], lr=cfg["lr"],
                         batch_size=cfg["batch_size"], seed=cfg["seed"], network=network, collective=collective,
                         error_feedback=compressor is not None)


def run(outdir: Path, quick: bool) -> ReproResult:
    cfg = settings(quick)
    res = ReproResult(NAME)
    topk = {"name": "topk", "ratio": cfg["ratio"]}
    runs = {"fp32 ring": _train(cfg, None, "ring", cfg["recorded_on"])}
    for c in COLLECTIVES:
        runs[f"top-k {100 * cfg['ratio']:g}% + {c}"] = _train(cfg, topk, c, cfg["recorded_on"])
    priced = {label: {net: h.reprice(net) for net in NETWORKS} for label, h in runs.items()}
    data = {"name": NAME, "settings": cfg, "networks": list(NETWORKS), "runs": []}
    for label, h in runs.items():
        data["runs"].append({
            "label": label, "loss": h.loss.tolist(), "bits_per_node_step": float(np.mean(h.bits)),
            "wire_bits_per_node_step": float(np.mean(h.wire_bits)),
            "seconds_per_step": {net: float(np.mean(priced[label][net].sim_time)) for net in NETWORKS},
        })
    # checks: the same training whatever the aggregation; repricing = running there
    base = runs[f"top-k {100 * cfg['ratio']:g}% + allgather"]
    worst = max(float(np.max(np.abs(h.loss - base.loss) / np.abs(base.loss))) for label, h in runs.items()
                if "sparse" in label)
    res.claim("top-k + EF trains the same with a sparse allreduce as with the allgather (same payloads and "
              "memory; the mean summed in another order)", "SparCML SC19 (exact sum) [M]", "max relative loss "
              "difference < 1e-9", f"{worst:.3g}", worst < 1e-9)
    fresh = _train(cfg, topk, "sparse_recursive_doubling", "aries")
    same = bool(np.array_equal(fresh.sim_time, priced[f"top-k {100 * cfg['ratio']:g}% + sparse_recursive_doubling"]
                               ["aries"].sim_time))
    res.claim("a run recorded on 10gbe, repriced on aries, equals the run on aries (sim_time per step)",
              "alpha-beta model (simdist.network.profile)", "bit for bit", "equal" if same else "differ", same)
    for net in ("ec2-10g", "aries"):
        sec = {r["label"]: r["seconds_per_step"][net] for r in data["runs"]}
        best = min((v, k) for k, v in sec.items() if k != "fp32 ring")
        res.claim(f"{net}: fastest aggregation of top-k {100 * cfg['ratio']:g}% (P = {cfg['nodes']}, d = "
                  f"{cfg['problem']['d']}), mean simulated seconds per step", "SparCML SC19 Sec. 5 (regimes) [model]",
                  "-", f"{best[1]}: {best[0]:.3g} s (fp32 ring {sec['fp32 ring']:.3g} s)", None)
    data["claims"] = res.claims
    files = [_figure(outdir, data, runs, priced), atomic_write_json(Path(outdir) / f"{NAME}.json", data)]
    res.files.extend(files)
    return res


def _figure(outdir: Path, data: dict, runs: dict, priced: dict) -> Path:
    fig, (a1, a2, a3) = new_figure(3, width=5.0, height=4.0)
    for ax, net in ((a1, "ec2-10g"), (a2, "aries")):
        for label, h in runs.items():
            t = np.cumsum(priced[label][net].sim_time)
            ax.plot(t, h.loss, label=label, lw=1.4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"simulated time on {net} (s)")
        ax.set_ylabel("training loss f(x_t)")
        ax.set_title(f"least squares, P = {data['settings']['nodes']}: {net}")
    a1.legend(fontsize=7)
    labels = [r["label"] for r in data["runs"]]
    width = 0.8 / len(labels)
    x = np.arange(len(NETWORKS))
    for i, r in enumerate(data["runs"]):
        a3.bar(x + i * width, [r["seconds_per_step"][n] for n in NETWORKS], width, label=r["label"])
    a3.set_xticks(x + 0.4 - width / 2, NETWORKS, fontsize=8)
    a3.set_yscale("log")
    a3.set_xlabel("network model")
    a3.set_ylabel("simulated seconds per step (mean)")
    a3.set_title("one run each, repriced per network")
    return save_figure(fig, Path(outdir) / f"{NAME}.png")
