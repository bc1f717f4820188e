"""``simdist reprice RUN.json --network NAME --out PATH``: a recorded run priced on another network."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]

HELP = "price a recorded run (a 'simdist train' history) on other networks, without running it again"

DESCRIPTION = """\
Read a history written by 'simdist train' or 'simdist launch' and price every step's collective
again on other network models (and, with --compute, another compute model). The network changes
no computed value, only the price, so each result equals what a run of the same config on that
network would have recorded, bit for bit. Prints the total simulated time per network; with --out
(one network) writes the repriced history.
"""

EPILOG = """\
examples:
  simdist reprice run.json --network aries --network ib-edr --network 10gbe
  simdist reprice run.json --network aries --compute v100 --out run_aries.json
"""


def register(subparsers) -> None:
    """Add the ``reprice`` subcommand."""
    p = subparsers.add_parser("reprice", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("history", help="a history JSON written by 'simdist train' or 'simdist launch'")
    p.add_argument("--network", action="append", required=True, metavar="NAME",
                   help="a network preset (repeatable): " + ", ".join(_presets()))
    p.add_argument("--compute", default="config", metavar="NAME",
                   help="compute model: 'config' (the run's own, default), 'none', or a preset")
    p.add_argument("--out", help="write the repriced history here (JSON; needs exactly one --network)")
    p.set_defaults(func=run)


def _presets() -> list[str]:
    from ..network import available

    return available()


def run(args) -> int:
    """Execute ``simdist reprice``."""
    from ..engine.history import History

    if args.out and len(args.network) != 1:
        raise ValueError("--out writes one repriced history: give exactly one --network")
    try:
        h = History.load_json(args.history)
    except FileNotFoundError:
        raise ValueError(f"history file not found: {args.history}") from None
    compute = None if args.compute == "none" else args.compute
    print(f"{args.history}: {h.steps_run} steps, recorded on {h.config.get('network')!r}: "
          f"{h.summary()['sim_time']:.6g} s simulated")
    for name in args.network:
        r = h.reprice(name, compute=compute)
        print(f"  {name:12s} {r.summary()['sim_time']:.6g} s")
        if args.out:
            print(f"wrote {r.save_json(args.out)}")
    return 0
