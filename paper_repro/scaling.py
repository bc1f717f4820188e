"""ResNet-152 step time and time to train against nodes (1 to 1024): fp32, QSGD and top-k.

The seed talk's "scalability problem": ResNet-152 (60M parameters) on ImageNet takes 19 days on
one node and, in theory, 25 minutes on 1024 nodes. Here the theory is the ideal linear-scaling
line ``19 days / P`` (26.7 minutes at P = 1024), and the alpha-beta model
(:mod:`analysis.scaling`) says where communication makes each variant fall off it:

* ``fp32``: dense ring allreduce of 4 N bytes;
* ``QSGD 4-bit`` / ``QSGD 8-bit``: s = 7 / s = 127 with the fixed code (each entry
  ``sgn * level + s`` in 4 / 8 bits) and buckets of 512, one float32 scale per bucket; the bits
  per entry are *measured* by compressing a Gaussian vector with simdist's QSGD. Two
  collectives: a quantized reduce-scatter + allgather (owners decode, add and re-quantize: how
  SparCML's DSAR sends a quantized dense gradient) and a plain allgather of every node's message
  (what a compressor whose messages cannot be added must do);
* ``top-k 1%``: simdist's top-k (index-coded: Elias-delta gaps or fixed-width indices, float32
  values), bits per entry measured on a Gaussian vector; allgathered, or summed by the SparCML
  sparse allreduce (the cheapest of the three, 32-bit index + 32-bit value items, supports
  assumed independent and uniform across nodes -- real top-k supports overlap more, which helps).

Assumptions, all stated (none fitted to the talk's numbers):

* compute: ``seconds_per_sample`` is calibrated so that one node takes 19 days (the seed) for
  ResNet's training run of 600,000 iterations x 256 images (He et al. 2016, Sec. 3.4), i.e.
  153.6M samples: 10.7 ms per image. For comparison, the FLOP model (11.3 GFLOPs forward per
  image, He et al. Table 1, x 3 for forward + backward, on the ``v100`` compute preset) gives
  4.3 ms (recorded in the JSON);
* a fixed per-node batch of 32 images (Goyal et al. 2017 use 32 per GPU), so the global batch
  is 32 P and a run has 153.6M / (32 P) steps (weak scaling; no accuracy loss is assumed from
  the large batch);
* fabrics: ``aries`` (the seed's Piz Daint) and ``10gbe``, gamma = 0; compute and communication
  do not overlap.

References:
    K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
    (Table 1, Sec. 3.4). P. Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1
    Hour", 2017. D. Alistarh et al., "QSGD", NeurIPS 2017. C. Renggli et al., "SparCML", SC19.
    THEORY.md sections 6 and 11; the seed talk's "The Scalability Problem" slide.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from analysis.scaling import (
    allgather_time,
    dense_allreduce_time,
    ideal_time,
    quantized_allreduce_time,
    sparcml_costs,
    step_time,
    time_to_train,
)
from simdist import network
from simdist.compressors import make as make_compressor
from simdist.network import ComputeModel

from .common import ReproResult, atomic_write_json, new_figure, save_figure

NAME = "scaling"
TITLE = "ResNet-152 time to train against nodes: fp32, QSGD and top-k (alpha-beta model)"
DAY = 86400.0
SEED_MINUTES_1024 = 25.0


def settings(quick: bool) -> dict:
    """Sizes of the quick and the full setting (they differ only in the probe vector's length)."""
    return {
        "params": 60_000_000, "single_node_days": 19.0, "total_samples": 600_000 * 256,
        "batch_per_node": 32, "Ps": [2 ** i for i in range(11)], "networks": ["aries", "10gbe"],
        "probe_d": 2 ** 20 if quick else 2 ** 22, "seed": 0,
        "qsgd4": {"s": 7, "bucket": 512, "encoding": "fixed"},
        "qsgd8": {"s": 127, "bucket": 512, "encoding": "fixed"},
        "topk": {"ratio": 0.01},
        "flops_forward": 11.3e9, "compute_preset": "v100",
    }


def measured_bits(cfg: dict) -> dict:
    """Bits per entry of each compressor on a Gaussian float32 vector of ``probe_d`` entries."""
    x = np.random.default_rng(cfg["seed"]).standard_normal(cfg["probe_d"]).astype(np.float32)
    out = {}
    for key in ("qsgd4", "qsgd8", "topk"):
        c = make_compressor("qsgd" if key.startswith("qsgd") else "topk", **cfg[key])
        out[key] = c.compress(x, np.random.default_rng(cfg["seed"] + 1)).nbits / x.size
    return out


def comm_times(P: int, N: int, bits: dict, net) -> dict:
    """Seconds of communication per step of every variant on P nodes."""
    k = math.ceil(0.01 * N)
    sp = sparcml_costs(P, N, k, net)
    return {
        "fp32 ring allreduce": dense_allreduce_time(P, 4 * N, net, "ring"),
        "QSGD 4-bit, quantized allreduce": quantized_allreduce_time(P, N, bits["qsgd4"], net),
        "QSGD 8-bit, quantized allreduce": quantized_allreduce_time(P, N, bits["qsgd8"], net),
        "top-k 1%, SparCML allreduce": min(sp.values()),
        "QSGD 4-bit, allgather": allgather_time(P, N * bits["qsgd4"] / 8, net),
        "QSGD 8-bit, allgather": allgather_time(P, N * bits["qsgd8"] / 8, net),
        "top-k 1%, allgather": allgather_time(P, N * bits["topk"] / 8, net),
    }


ALLREDUCE_VARIANTS = ["QSGD 4-bit, quantized allreduce", "QSGD 8-bit, quantized allreduce",
                      "top-k 1%, SparCML allreduce"]


def run(outdir: Path, quick: bool = True) -> ReproResult:
    """Model, plot and write ``NAME.png`` / ``NAME.json``; return the claims."""
    cfg = settings(quick)
    res = ReproResult(NAME)
    N, B, S = cfg["params"], cfg["batch_per_node"], cfg["total_samples"]
    t1 = cfg["single_node_days"] * DAY
    compute = ComputeModel(seconds_per_sample=t1 / S, name="resnet152-seed-calibrated")
    t_sample = compute.seconds_per_sample_for()
    flop_sample = network.make_compute(cfg["compute_preset"]).seconds_per_sample_for(3 * cfg["flops_forward"])
    bits = measured_bits(cfg)

    # 1. per fabric, per P: communication, step time, time to train, parallel efficiency
    table = {}
    for name in cfg["networks"]:
        net = network.make(name, gamma=0.0)
        rows = []
        for P in cfg["Ps"]:
            comm = comm_times(P, N, bits, net) if P > 1 else None
            variants = {}
            for v in comm_times(2, N, bits, net):
                c = 0.0 if comm is None else comm[v]
                ttt = time_to_train(S, P, B, t_sample, c)
                variants[v] = {"comm_s": c, "step_s": step_time(B, t_sample, c), "train_s": ttt,
                               "efficiency": ideal_time(t1, P) / ttt}
            rows.append({"P": P, "ideal_s": ideal_time(t1, P), "variants": variants})
        table[name] = rows
    names = list(table[cfg["networks"][0]][0]["variants"])
    falloff = {net: {v: next((r["P"] for r in rows if r["variants"][v]["efficiency"] < 0.5), None) for v in names}
               for net, rows in table.items()}

    # 2. claims
    primary = cfg["networks"][0]
    last = {net: rows[-1] for net, rows in table.items()}
    Pmax = last[primary]["P"]
    res.claim(f"ideal linear scaling at P={Pmax}: 19 days / P", "seed: 25 min on 1024 'in theory'",
              f"{SEED_MINUTES_1024:.0f} min", f"{last[primary]['ideal_s'] / 60:.1f} min", None)
    for v in names:
        r = last[primary]["variants"][v]
        res.claim(f"{v} on {primary}, P={Pmax}: time to train (efficiency; 50% fall-off at P)",
                  "seed: 25 min 'in theory'", f"{SEED_MINUTES_1024:.0f} min",
                  f"{r['train_s'] / 60:.1f} min ({r['efficiency']:.0%}; falls below 50% at P="
                  f"{falloff[primary][v] or 'never'})", None)
    for net in cfg["networks"]:
        fp = last[net]["variants"]["fp32 ring allreduce"]["step_s"]
        worst = max(last[net]["variants"][v]["step_s"] for v in ALLREDUCE_VARIANTS)
        res.claim(f"compressed allreduce variants' step time < fp32's at P={Pmax} on {net}",
                  "QSGD / SparCML (qualitative)", f"< {fp * 1e3:.0f} ms", f"max {worst * 1e3:.0f} ms", worst < fp)
    ag = [v for v in names if v.endswith("allgather")]
    res.claim(f"allgather variants at P={Pmax} on {primary} (compressed messages that cannot be summed)",
              "[M] alpha-beta model", "info",
              ", ".join(f"{v}: {last[primary]['variants'][v]['step_s']:.2f} s/step" for v in ag), None)
    res.claim("bits per entry measured on a Gaussian vector (QSGD4, QSGD8, top-k 1%)", "simdist compressors",
              "4.06 / 8.06 / ~0.4 (wire format)", " / ".join(f"{bits[k]:.3f}" for k in ("qsgd4", "qsgd8", "topk")), None)

    _plot(cfg, table, names, Path(outdir) / f"{NAME}.png", res)
    res.files.append(atomic_write_json(Path(outdir) / f"{NAME}.json", {
        "name": NAME, "title": TITLE, "settings": cfg, "bits_per_entry": bits,
        "seconds_per_sample": t_sample, "seconds_per_sample_flop_model": flop_sample,
        "compute_model": compute.get_config(), "falloff_P_efficiency_below_half": falloff,
        "table": table, "claims": res.claims}))
    return res


def _plot(cfg, table, names, path, res) -> None:
    fig, axes = new_figure(3, 5.6, 4.6)
    styles = {v: ("-" if i < 4 else "--") for i, v in enumerate(names)}
    for ax, (net, rows) in zip(axes[:2], table.items()):
        Ps = [r["P"] for r in rows]
        ax.plot(Ps, [r["ideal_s"] / DAY for r in rows], "k:", lw=2, label="ideal: 19 days / P")
        for i, v in enumerate(names):
            ax.plot(Ps, [r["variants"][v]["train_s"] / DAY for r in rows], styles[v], color=f"C{i}", label=v)
        ax.scatter([1024], [SEED_MINUTES_1024 / 1440], marker="*", s=120, color="k", zorder=5,
                   label="seed: 25 min on 1024 'in theory'")
        ax.set_xscale("log", base=2); ax.set_yscale("log")
        ax.set_xlabel("nodes P"); ax.set_ylabel("time to train (days)")
        ax.set_title(f"ResNet-152 (60M params) on {net}, 32 images/node")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=6.5)
    ax = axes[2]
    rows = table[cfg["networks"][0]]
    Ps = [r["P"] for r in rows][1:]
    comp = rows[0]["variants"][names[0]]["step_s"]  # P = 1: no communication
    ax.axhline(comp, color="k", ls=":", lw=2, label="compute per step (32 images)")
    for i, v in enumerate(names):
        ax.plot(Ps, [r["variants"][v]["comm_s"] for r in rows[1:]], styles[v], color=f"C{i}", label=v)
    ax.set_xscale("log", base=2); ax.set_yscale("log")
    ax.set_xlabel("nodes P"); ax.set_ylabel("communication per step (s)")
    ax.set_title(f"communication per step on {cfg['networks'][0]} (step = compute + this)")
    ax.grid(True, which="both", alpha=0.3); ax.legend(fontsize=6.5)
    res.files.append(save_figure(fig, path))
