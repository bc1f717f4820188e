"""Entry point of the ``simdist`` command.

Each subcommand lives in its own module ``simdist.cli.<name>`` that defines
``register(subparsers)``: it adds its parser and sets ``func`` (called with the parsed
arguments, returning an exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main", "build_parser"]

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = ("train", "launch", "reprice", "check", "repro")

DESCRIPTION = """\
simdist: simulate and validate communication-efficient distributed SGD.

Compressors (QSGD, NUQSGD, TernGrad, 1BitSGD, sign, top-k, rand-k, ...) are encoded
into real bytes, so every bit they send is counted, and their claims are checked
against the theorems by Monte Carlo with stated confidence. A synchronous n-node
engine trains convex and non-convex problems with them and prices every message
with an alpha-beta network model.
"""

EPILOG = """\
examples:
  simdist train examples/least_squares_qsgd.toml --out run.json
      simulate 8 nodes training least squares with 4-bit QSGD; history (loss, bits,
      simulated time per step) as JSON
  simdist reprice run.json --network aries --network ib-edr
      the same run priced on other network models (exact, without running it again)
  simdist check qsgd --s 4 --dim 10000 --trials 2000
      measure unbiasedness, variance, sparsity and code length of QSGD (4 levels)
      against Lemma 3.1 and Theorem 3.2, with confidence intervals and a verdict
  simdist check topk --ratio 0.01 --dim 10000 --json
      the same for top-k (k-contraction), as JSON
  simdist repro --list
      list the registered paper reproductions
  simdist repro all --quick
      run every reproduction in its quick setting; figures and data go to figures/

Run 'simdist COMMAND --help' for the options of a command.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="simdist",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"simdist {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"simdist.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError) as exc:
        print(f"simdist {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
