"""``simdist repro``: run the registered paper reproductions (figures + data under figures/)."""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["register", "run"]

HELP = "reproduce the papers' figures (writes figures/NAME.png and the data behind it)"

DESCRIPTION = """\
Run registered reproductions from paper_repro/. Each writes OUT/NAME.png (labelled
matplotlib figure) and OUT/NAME.json (the data behind it); 'all' also writes OUT/REPORT.md,
which puts each claim of the papers beside the theorem's bound and our measurement.
Use --quick for the small setting (about a minute in all); without it the full setting runs.
"""


def register(subparsers) -> None:
    """Add the ``repro`` subcommand."""
    import argparse

    p = subparsers.add_parser("repro", help=HELP, description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help="a reproduction name, or 'all'")
    p.add_argument("--list", action="store_true", help="list the registered reproductions and exit")
    p.add_argument("--quick", action="store_true", help="small, fast setting (the full one is the default)")
    p.add_argument("--out", default="figures", help="output folder (default: figures)")
    p.set_defaults(func=run)


def run(args) -> int:
    """Execute ``simdist repro``; return 1 if a reproduced claim failed its check."""
    import paper_repro

    if args.list or not args.name:
        for name in paper_repro.names():
            mod = paper_repro.get(name)
            print(f"{name:16s} {mod.TITLE}")
        if not args.list:
            print("\nrun one with: simdist repro NAME [--quick], or all of them with: simdist repro all --quick")
        return 0
    names = paper_repro.names() if args.name == "all" else [args.name]
    mods = [paper_repro.get(n) for n in names]  # fail early on an unknown name
    out = Path(args.out)
    results = []
    for name, mod in zip(names, mods):
        t0 = time.perf_counter()
        print(f"[{name}] {mod.TITLE} ({'quick' if args.quick else 'full'} setting)", flush=True)
        res = mod.run(out, quick=args.quick)
        results.append(res)
        for f in res.files:
            print(f"  wrote {f}")
        for c in res.claims:
            verdict = {True: "PASS", False: "FAIL", None: "info"}[c["passed"]]
            print(f"  {verdict:4s} {c['claim']}: expected {c['expected']}, measured {c['measured']}")
        print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)
    if args.name == "all":
        from paper_repro.report import write_report

        print(f"wrote {write_report(out, results, quick=args.quick)}")
    return 1 if any(c["passed"] is False for r in results for c in r.claims) else 0
