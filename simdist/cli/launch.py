"""``simdist launch --nodes 4 --backend gloo CONFIG.toml --out PATH``: the run of ``simdist train``
on real processes, one per node, over torch.distributed or MPI; the same history file.

Steps:

1. The launcher picks a free port on 127.0.0.1 (or ``--addr``) and starts ``--nodes`` worker
   processes (``python -m simdist launch --worker ...``) with RANK, WORLD_SIZE, MASTER_ADDR and
   MASTER_PORT set.
2. Each worker joins the process group (:class:`~simdist.transports.torch_dist.TorchTransport`)
   and runs :func:`~simdist.engine.distributed.run_rank`; rank 0 writes the history JSON
   atomically (the format of ``simdist train``).
3. The launcher waits; when a worker fails, it stops the others and exits non-zero with that
   rank's error. A dead or stalled rank makes the others raise TimeoutError within ``--timeout``.

NCCL (``--backend nccl``, one GPU per process): worker r uses GPU ``LOCAL_RANK`` = r (the launcher
sets it; torchrun too), so ``--nodes`` may not exceed the GPUs of the machine; the messages travel
as GPU tensors (see :mod:`simdist.transports.torch_dist`).

Under torchrun (which sets the same variables), run the workers directly::

    torchrun --nproc-per-node 4 -m simdist launch --worker CONFIG.toml --out run.json

MPI (``--backend mpi``, needs mpi4py and an MPI runtime): the launcher runs
``mpirun -np N [--allow-run-as-root] --oversubscribe python -m simdist launch --worker --backend mpi ...``
(``--allow-run-as-root`` only when running as root; with the default ``--addr 127.0.0.1`` Open MPI's
TCP traffic is restricted to the loopback interface). Each worker runs
:func:`~simdist.engine.distributed.run_rank` over :class:`~simdist.transports.mpi.MPITransport`; a
worker that fails (a peer timed out, or any error) prints its error and calls ``MPI_Abort``, so
``mpirun`` stops every rank and the launcher exits non-zero. Under an existing mpirun/mpiexec
(detected from OMPI_COMM_WORLD_RANK / PMIX_RANK / PMI_RANK), the command runs the worker directly::

    mpirun -np 4 python -m simdist launch --backend mpi CONFIG.toml --out run.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

__all__ = ["register", "run"]

HELP = "run a training on N local processes over torch.distributed or MPI (same history JSON as train)"


def register(subparsers) -> None:
    """Add the ``launch`` subcommand."""
    p = subparsers.add_parser("launch", help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="a TOML run config (see examples/)")
    p.add_argument("--out", required=True, help="where rank 0 writes the history (JSON)")
    p.add_argument("--nodes", type=int, default=None,
                   help="number of processes (default: the config's nodes; overrides it when given)")
    p.add_argument("--backend", default="gloo", choices=("gloo", "nccl", "mpi"),
                   help="torch.distributed backend (gloo, nccl), or mpi (mpirun + mpi4py)")
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


def _mpi_worker(args) -> int:
    import traceback

    from ..engine.distributed import run_rank
    from ..transports.mpi import MPITransport

    tr = MPITransport(timeout=args.timeout)
    try:
        if args.nodes is None:
            args.nodes = tr.size
        h = run_rank(_config(args), tr)
        if h is not None:
            h.save_json(args.out)
            s = h.summary()
            print(f"rank 0: {s['steps']} steps over {tr.size} processes (mpi); final loss {s['final_loss']}; "
                  f"wrote {args.out}", flush=True)
            if h.stop_reason:
                raise RuntimeError(f"the run stopped early: {h.stop_reason}")
    except BaseException:  # a timeout or any failure: report it and stop the whole job (MPI_Finalize could hang)
        print(f"[rank {tr.rank}] " + traceback.format_exc().replace("\n", f"\n[rank {tr.rank}] "),
              file=sys.stderr, flush=True)
        tr.abort(1)
    return 0


def _mpirun(args, P: int) -> int:
    exe = shutil.which("mpirun") or shutil.which("mpiexec")
    if exe is None:
        print("simdist launch: --backend mpi needs mpirun or mpiexec on PATH (e.g. apt-get install openmpi-bin) "
              "and mpi4py (pip install mpi4py)", file=sys.stderr)
        return 2
    cmd = [exe, "-np", str(P)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    cmd.append("--oversubscribe")
    if args.addr in ("127.0.0.1", "localhost"):  # keep Open MPI's TCP traffic on the loopback interface
        cmd += ["--mca", "oob_tcp_if_include", "lo", "--mca", "btl_tcp_if_include", "lo"]
    cmd += [sys.executable, "-m", "simdist", "launch", "--worker", args.config, "--out", args.out,
            "--nodes", str(P), "--backend", "mpi", "--timeout", repr(args.timeout), "--addr", args.addr]
    for item in args.set:
        cmd += ["--set", item]
    code = subprocess.run(cmd).returncode
    if code == 0:
        return 0
    print(f"simdist launch: the MPI job of {P} ranks failed (mpirun exit code {code}); see the ranks' errors above.",
          file=sys.stderr)
    return 1


def run(args) -> int:
    """Execute ``simdist launch`` (the launcher, or one worker with ``--worker`` or under mpirun)."""
    if args.timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {args.timeout}")
    if args.backend == "mpi":
        from ..transports.mpi import under_mpirun

        if args.worker or under_mpirun():
            return _mpi_worker(args)
        return _mpirun(args, _config(args).nodes)
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
