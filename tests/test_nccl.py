"""The NCCL side of the torch.distributed transport.

The rank script below runs a 2-rank allgather of compressed payloads (sign and fixed-width QSGD)
and a ring allreduce through :class:`TorchTransport`, and the test compares every rank's output
with the simulator's. It runs here with gloo (the code NCCL shares: the batched header/body
exchange of a 2-rank ring, where both ranks send to and receive from the same peer) and, on a
machine with 2+ CUDA GPUs, with NCCL (skipped elsewhere with the reason). The GPU selection
(:func:`nccl_device`) and the refusal of NCCL without a GPU are tested directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (CI installs it: pip install torch)")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)

from simdist.transports.torch_dist import TorchTransport, free_port, nccl_device  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
P, D = 2, 300
CODECS = {"sign": {"name": "sign", "bucket": 64}, "qsgd": {"name": "qsgd", "s": 4, "bucket": 64, "encoding": "fixed"}}

RANK = """\
import json, os, sys
import numpy as np
from simdist.collectives import dense
from simdist.compressors import make
from simdist.transports.torch_dist import TorchTransport
backend, out, codecs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
rank = int(os.environ["RANK"])
x = np.random.default_rng(rank).standard_normal(int(os.environ["D"])).astype(np.float32)
res = {}
with TorchTransport(backend=backend, timeout=60.0) as tr:
    res["device"] = tr._device
    total, _ = tr.run(dense.make("ring"), x)
    res["ring"] = total.tolist()
    for name, cfg in codecs.items():
        p = make(cfg).compress(x, np.random.default_rng(100 + rank))
        blocks, _ = tr.run(dense.make("allgather"), (p.data, p.nbits))
        res[name] = [[bytes(b).hex(), int(n)] for b, n in blocks]
with open(f"{out}.{rank}", "w") as f:
    json.dump(res, f)
"""


def _run_ranks(tmp_path, backend):
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    port, out = free_port(), tmp_path / "res"
    procs = [subprocess.Popen([sys.executable, str(script), backend, str(out), json.dumps(CODECS)],
                              env=dict(ENV, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(P), D=str(D),
                                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in range(P)]
    errs = [p.communicate(timeout=180)[1].decode()[-3000:] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    return [json.loads((tmp_path / f"res.{r}").read_text()) for r in range(P)]


def _check_against_simulator(res):
    from simdist.collectives import dense
    from simdist.collectives.simulated import SimulatedTransport
    from simdist.compressors import make

    xs = [np.random.default_rng(r).standard_normal(D).astype(np.float32) for r in range(P)]
    outs, _ = SimulatedTransport(P).run(dense.make("ring"), xs)
    for name, cfg in CODECS.items():
        c = make(cfg)
        ps = [c.compress(xs[r], np.random.default_rng(100 + r)) for r in range(P)]
        for r in range(P):
            assert res[r][name] == [[p.to_bytes().hex(), p.nbits] for p in ps], (name, r)  # every payload, in order
    for r in range(P):
        assert res[r]["ring"] == outs[r].tolist()  # the fp32 sum in the ring's order, bit for bit


def test_two_rank_exchange_of_payloads_over_gloo(tmp_path):
    if not torch.distributed.is_gloo_available():
        pytest.skip("gloo is not available")
    res = _run_ranks(tmp_path, "gloo")
    assert [r["device"] for r in res] == ["cpu", "cpu"]
    _check_against_simulator(res)


def _gpus() -> int:
    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 (no driver: no GPU)
        return 0


@pytest.mark.gpu
def test_two_rank_exchange_of_payloads_over_nccl(tmp_path):
    if _gpus() == 0 or not torch.distributed.is_nccl_available():
        pytest.skip("no CUDA GPU")
    if _gpus() < P:
        pytest.skip(f"NCCL needs one GPU per rank: {P} ranks, {_gpus()} GPU visible")
    res = _run_ranks(tmp_path, "nccl")
    assert [r["device"] for r in res] == ["cuda:0", "cuda:1"]
    _check_against_simulator(res)


def test_nccl_device_is_the_local_rank():
    assert nccl_device(0, 2) == 0 and nccl_device(1, 2) == 1
    assert nccl_device(5, 4, "1") == 1  # LOCAL_RANK (torchrun, simdist launch) wins over the global rank
    assert nccl_device(3, 4, "") == 3
    with pytest.raises(RuntimeError, match="one GPU per rank.*2 GPU"):
        nccl_device(2, 2)
    with pytest.raises(RuntimeError, match="torch sees none"):
        nccl_device(0, 0)
    with pytest.raises(ValueError, match="LOCAL_RANK"):
        nccl_device(0, 2, "-1")


def test_nccl_without_gpu_support_is_a_clear_error():
    if torch.distributed.is_nccl_available() and _gpus() > 0:
        pytest.skip("this machine has NCCL and a GPU")
    with pytest.raises(RuntimeError, match="nccl"):
        TorchTransport(0, 1, backend="nccl", port=0)
