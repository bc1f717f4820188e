"""``simdist launch --nodes 4 --backend gloo CONFIG.toml --out PATH``: the run of ``simdist train``
on real processes, one per node, over torch.distributed; the same history file.

Steps:

1. The launcher picks a free port on 127.0.0.1 (or ``--addr``) and starts ``--nodes`` worker
   processes (``python -m simdist launch --worker ...``) with RANK, WORLD_SIZE, MASTER_ADDR and
   MASTER_PORT set.
2. Each worker joins the process group (:class:`~simdist.transports.torch_dist.TorchTransport`)
   and runs :func:`~simdist.engine.distributed.run_rank`; rank 0 writes the history JSON
   atomically (the format of ``simdist train``).
3. The launcher waits; when a worker fails, it stops the others and exits non-zero with that
   rank's error. A dead or stalled rank makes the others raise TimeoutError within ``--timeout``.

Under torchrun (which sets the same variables), run the workers directly::

    torchrun --nproc-per-node 4 -m simdist launch --worker CONFIG.toml --out run.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

__all__ = ["register", "run"]

HELP = "run a training on N local processes over torch.distributed (same history JSON as train)"


def register(subparsers) -> None:
    """Add the ``launch`` subcommand."""
    p = subparsers.add_parser("launch", help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="a TOML run config (see examples/)")
    p.add_argument("--out", required=True, help="where rank 0 writes the history (JSON)")
    p.add_argument("--nodes", type=int, default=None,
                   help="number of processes (default: the config's nodes; overrides it when given)")
    p.add_argument("--backend", default="gloo", choices=("gloo", "nccl"), help="torch.distributed backend")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds a rank waits for a peer (rendezvous and every message) before failing")
    p.add_argument("--addr", default="127.0.0.1", help="rendezvous address (default loopback only)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a top-level config value (repeatable), as in simdist train")
    p.add_argument("--worker", action="store_true",
                   help="run one rank from the env (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), as torchrun does")
    p.set_defaults(func=run)


def _config(args):
    from .train import load_config

    sets = list(args.set) + ([f"nodes={args.nodes}"] if args.nodes is not None else [])
    return load_config(args.config, sets)


def _worker(args) -> int:
    from ..engine.distributed import run_rank
    from ..transports.torch_dist import TorchTransport

    size = int(os.environ.get("WORLD_SIZE", "1"))
    if args.nodes is None:
        args.nodes = size
    cfg = _config(args)
    with TorchTransport(backend=args.backend, timeout=args.timeout,
                        addr=os.environ.get("MASTER_ADDR", args.addr)) as tr:
        h = run_rank(cfg, tr)
    if h is not None:
        h.save_json(args.out)
        s = h.summary()
        print(f"rank 0: {s['steps']} steps over {size} processes ({args.backend}); final loss {s['final_loss']}; "
              f"wrote {args.out}")
        return 1 if h.stop_reason else 0
    return 0


def run(args) -> int:
    """Execute ``simdist launch`` (the launcher, or one worker with ``--worker``)."""
    if args.timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {args.timeout}")
    if args.worker:
        return _worker(args)
    from ..transports.torch_dist import free_port

    cfg = _config(args)  # validate before starting anything
    P = cfg.nodes
    port = free_port(args.addr)
    base = [sys.executable, "-m", "simdist", "launch", "--worker", args.config, "--out", args.out,
            "--nodes", str(P), "--backend", args.backend, "--timeout", repr(args.timeout), "--addr", args.addr]
    for item in args.set:
        base += ["--set", item]
    procs, logs = [], []
    for r in range(P):
        env = dict(os.environ, RANK=str(r), WORLD_SIZE=str(P), LOCAL_RANK=str(r),
                   MASTER_ADDR=args.addr, MASTER_PORT=str(port))
        log = tempfile.TemporaryFile()
        logs.append(log)
        procs.append(subprocess.Popen(base, env=env, stdout=None if r == 0 else log, stderr=log))
    failed = None
    try:
        while True:
            codes = [p.poll() for p in procs]
            bad = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if bad:
                failed = bad[0]
                break
            if all(c == 0 for c in codes):
                break
            time.sleep(0.05)
    finally:
        if failed is not None:
            time.sleep(0.2)  # let the others report the peer's failure, then stop them
            for p in procs:
                if p.poll() is None:
                    p.kill()
            for p in procs:
                p.wait()
    if failed is None:
        return 0
    r, code = failed
    logs[r].seek(0)
    tail = logs[r].read().decode(errors="replace").strip().splitlines()[-15:]
    print(f"simdist launch: rank {r} of {P} failed (exit code {code}); the other ranks were stopped.\n"
          + "\n".join(f"  [rank {r}] {line}" for line in tail), file=sys.stderr)
    return 1
