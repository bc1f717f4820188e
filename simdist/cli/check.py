"""``simdist check``: check a compressor's claims (unbiasedness, variance, sparsity, bits) by Monte Carlo.

Usage::

    simdist check NAME [--PARAM VALUE ...] [--dim D] [--trials T] [--seed S]
                  [--confidence C] [--vector KIND] [--dtype float32|float64] [--json]

Every option that is not one of the check's own becomes a compressor parameter (``--s 4``,
``--bucket 512``, ``--ratio 0.01``, ``--scaled false``; ``--name=value`` works too, dashes in names
become underscores). Values are parsed as int, float, ``None``/``null``, ``true``/``false``, a JSON
list or object (``--stages '[{"name": "topk", "k": 10}]'``) or else a string; the compressor
validates them (errors name the parameter and exit with status 2).

Output: one line per statement (statement, source, measured mean with its confidence interval,
the bound or exact value, PASS/FAIL), or a JSON document with ``--json``. Exit status 1 when a
statement fails, 0 otherwise.

Example:
    >>> from simdist.cli.main import main
    >>> main(["check", "identity", "--dim", "8", "--trials", "4", "--json"]) == 0   # doctest: +ELLIPSIS
    {...
    True

References:
    The statements: THEORY.md sections 1-5; decision rules: :mod:`analysis.montecarlo`.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["register", "run", "parse_value", "split_params"]

HELP = "check a compressor against its theorems by Monte Carlo (unbiasedness, variance, nnz, bits)"

DESCRIPTION = """\
Compress a test vector many times and check every statement the compressor makes
(QSGD Lemma 3.1 and Theorem 3.2, TernGrad/NUQSGD variance identities, k-contraction, ...)
with a stated confidence: a bound PASSes when the data do not show a violation (one-sided
lower confidence limit <= bound), an identity when the exact value lies in the two-sided
interval. Options not listed below are compressor parameters: --s 4, --bucket 512, --ratio 0.01.
Exit status: 0 all pass, 1 a statement fails, 2 bad arguments.
"""

EPILOG = """\
examples:
  simdist check qsgd --s 4 --dim 10000 --trials 2000
  simdist check topk --ratio 0.01 --dim 10000 --json
  simdist check terngrad --bucket 128 --vector powerlaw --confidence 0.999
"""

#: The check's own options: name -> (type, default, help). Anything else is a compressor parameter.
OPTIONS = {
    "--dim": (int, 1000, "dimension of the test vector (default 1000)"),
    "--trials": (int, 1000, "number of independent compressions (default 1000)"),
    "--seed": (int, 0, "root seed of the vector and of the compressions (default 0)"),
    "--confidence": (float, 0.99, "confidence of each verdict, in [0.5, 1) (default 0.99)"),
    "--vector": (str, "gaussian", "test vector: gaussian, uniform, sparse or powerlaw (default gaussian)"),
    "--dtype": (str, "float32", "float32 or float64 (default float32)"),
}
FLAGS = {
    "--json": "print a JSON document instead of the table",
    "--no-progress": "no progress bar on stderr",
}


def register(subparsers) -> None:
    """Add the ``check`` subcommand (its parser accepts arbitrary compressor options)."""
    p = subparsers.add_parser("check", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("name", help="registered compressor name (see simdist.compressors.available())")
    for opt, (typ, default, text) in OPTIONS.items():
        p.add_argument(opt, type=typ, default=default, help=text)
    for opt, text in FLAGS.items():
        p.add_argument(opt, action="store_true", help=text)
    # Everything after NAME is collected here and split by split_params (own options vs parameters).
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=run, _check_parser=p)


def parse_value(text: str):
    """Parse a command-line value: int, float, None/null, true/false, JSON list/object, else str.

    Example:
        >>> [parse_value(t) for t in ["4", "0.5", "none", "True", "elias", "[1, 2]"]]
        [4, 0.5, None, True, 'elias', [1, 2]]
    """
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if low[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"cannot parse JSON value {text!r}: {exc}") from exc
    return text


def _is_value(tok: str) -> bool:
    if not tok.startswith("-"):
        return True
    try:
        float(tok)
        return True
    except ValueError:
        return False


def split_params(tokens: list[str]) -> tuple[list[str], dict]:
    """Split tokens after NAME into the check's own options and compressor parameters.

    Returns:
        ``(own_tokens, params)``: tokens for the check's parser, and ``{name: parsed value}``.

    Example:
        >>> split_params(["--s", "4", "--dim", "10", "--norm=max", "--json"])
        (['--dim', '10', '--json'], {'s': 4, 'norm': 'max'})
    """
    own: list[str] = []
    params: dict = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        key, eq, val = tok.partition("=")
        if key in OPTIONS or key in FLAGS or key in ("-h", "--help"):
            own.append(tok)
            if key in OPTIONS and not eq and i + 1 < len(tokens):
                own.append(tokens[i + 1])
                i += 1
        elif tok.startswith("--") and len(key) > 2:
            name = key[2:].replace("-", "_")
            if name in params:
                raise ValueError(f"compressor parameter {name!r} given twice")
            if eq:
                params[name] = parse_value(val)
            elif i + 1 < len(tokens) and _is_value(tokens[i + 1]):
                params[name] = parse_value(tokens[i + 1])
                i += 1
            else:
                params[name] = True
        else:
            raise ValueError(f"unexpected argument {tok!r}: compressor parameters are given as --NAME VALUE")
        i += 1
    return own, params


def _fmt(v) -> str:
    if v is None:
        return "-"
    av = abs(v)
    return f"{v:.6g}" if av == 0 or 1e-3 <= av < 1e7 else f"{v:.4e}"


def _table(verdicts) -> str:
    rows = [("statement", "source", "measured [CI]", "bound/exact", "result")]
    for v in verdicts:
        ci = "" if v.ci_low is None else f" [{_fmt(v.ci_low)}, {_fmt(v.ci_high)}]"
        ref = {"bound": "<= ", "identity": "= ", "unbiased": "<= "}.get(v.kind, "") + _fmt(v.reference)
        res = "info" if v.kind == "info" else ("PASS" if v.passed else "FAIL")
        rows.append((v.statement, v.source, _fmt(v.measured) + ci, ref if v.reference is not None else "-", res))
    widths = [max(len(r[k]) for r in rows) for k in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for v in verdicts:
        lines.append(f"  {v.statement}: {v.detail}")
    return "\n".join(lines)


def run(args) -> int:
    """Execute ``simdist check``; return 1 if a statement fails."""
    import numpy as np

    from analysis.checks import check_compressor, make_vector

    from ..compressors import make

    own, params = split_params(list(args.rest))
    if any(t in ("-h", "--help") for t in own):
        args._check_parser.print_help()
        return 0
    own_parser = argparse.ArgumentParser(prog="simdist check", allow_abbrev=False, add_help=False)
    for opt, (typ, _, _) in OPTIONS.items():
        own_parser.add_argument(opt, type=typ, default=getattr(args, opt[2:].replace("-", "_")))
    for opt in FLAGS:
        own_parser.add_argument(opt, action="store_true", default=getattr(args, opt[2:].replace("-", "_")))
    try:
        opts = own_parser.parse_args(own)
    except SystemExit as exc:  # argparse already printed the reason
        raise ValueError("invalid check option (see simdist check --help)") from exc
    if opts.dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be one of ['float32', 'float64'], got {opts.dtype!r}")
    c = make(args.name, **params)
    x = make_vector(opts.vector, opts.dim, seed=opts.seed, dtype=np.dtype(opts.dtype))
    progress = not opts.json and not opts.no_progress and sys.stderr.isatty()
    verdicts = check_compressor(c, x, opts.trials, opts.seed, opts.confidence, progress=progress)
    ok = all(v.passed for v in verdicts)
    if opts.json:
        doc = {
            "compressor": c.get_config(),
            "dim": opts.dim,
            "trials": opts.trials,
            "seed": opts.seed,
            "confidence": opts.confidence,
            "vector": opts.vector,
            "dtype": opts.dtype,
            "passed": ok,
            "verdicts": [v.to_dict() for v in verdicts],
        }
        print(json.dumps(doc, indent=2, allow_nan=False))
    else:
        print(f"simdist check {c}: dim={opts.dim} vector={opts.vector} ({opts.dtype}) trials={opts.trials} "
              f"seed={opts.seed} confidence={opts.confidence:g}")
        print(_table(verdicts))
        print("ALL PASS" if ok else "FAIL: at least one statement is contradicted by the data")
    return 0 if ok else 1
