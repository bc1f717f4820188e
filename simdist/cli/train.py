"""``simdist train CONFIG.toml --out PATH``: one simulated training run, its history as JSON."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]

HELP = "run one simulated data-parallel training from a TOML config (history as JSON)"

DESCRIPTION = """\
Run the n-node synchronous SGD simulator on the run described by CONFIG.toml (problem,
compressor, nodes, steps, lr, batch_size, seed, network, collective, error_feedback, ...;
see examples/*.toml), show a progress bar, print a summary (final loss, bits sent per node,
bits on the wire per node, simulated time) and write the history (per-step loss, grad_norm,
bits, wire_bits, sim_time, wall_time, the collective's cost profile, plus the config and seed)
as JSON to --out (and as CSV with --csv). 'simdist reprice' prices it on other networks.
"""


def register(subparsers) -> None:
    """Add the ``train`` subcommand."""
    p = subparsers.add_parser("train", help=HELP, description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="a TOML run config (see examples/)")
    p.add_argument("--out", required=True, help="where to write the history (JSON)")
    p.add_argument("--csv", help="also write the per-step history as CSV here")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a top-level config value, e.g. --set nodes=16 --set seed=3 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _override(data: dict, items: list[str]) -> dict:
    import tomllib

    for item in items:
        if "=" not in item:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            data[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            data[key.strip()] = value
    return data


def load_config(path: str, overrides: list[str]):
    """The :class:`TrainConfig` of a TOML file with ``--set KEY=VALUE`` overrides (ValueError on bad input)."""
    import tomllib

    from ..engine import TrainConfig

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None
    return TrainConfig.from_dict(_override(data, overrides))


def run(args) -> int:
    """Execute ``simdist train``."""
    from ..engine import run as run_config

    cfg = load_config(args.config, args.set)
    h = run_config(cfg, progress=not args.no_progress)
    path = h.save_json(args.out)
    if args.csv:
        h.save_csv(args.csv)
    s = h.summary()
    comp = cfg.compressor["name"] if cfg.compressor else "fp32 (no compression)"
    print(f"{cfg.problem['name']}: {cfg.nodes} nodes, {s['steps']} steps, {comp}"
          f"{' + error feedback' if cfg.error_feedback else ''}")
    if s["final_loss"] is not None:
        print(f"  final loss        {s['final_loss']:.6g}  (min {s['min_loss']:.6g})")
    print(f"  bits per node     {s['total_bits_per_node']:.6g}  ({s['total_bits_per_node'] / 8e6:.4g} MB)")
    print(f"  on the wire       {s['total_wire_bits_per_node']:.6g}  bits per node ({cfg.collective} collective)")
    print(f"  simulated time    {s['sim_time']:.6g} s  (wall {s['wall_time']:.3g} s)")
    if h.stop_reason:
        print(f"  STOPPED: {h.stop_reason}")
    print(f"wrote {path}")
    return 1 if h.stop_reason else 0
