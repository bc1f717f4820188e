"""``benchmarks/bench_gpu.py --smoke``: the GPU benchmark script runs (under the CUDA simulator here)
and its device bytes equal the CPU path's for every case, so a GPU session can run it as is."""

import importlib.util
import json
from pathlib import Path

import pytest
from numba import cuda

if not cuda.is_available():
    pytest.skip("no CUDA GPU and the CUDA simulator is off (NUMBA_ENABLE_CUDASIM=0)", allow_module_level=True)

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def test_smoke_run_writes_rows_whose_bytes_equal_the_cpu_path(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "gpu.json"
    assert mod.main(["--smoke", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [r["compressor"] for r in res["rows"]] == [label for label, _ in mod.CASES]
    assert all(r["bytes_equal_cpu"] and r["round_trip_ms"] > 0 and r["bits_per_entry"] > 0 for r in res["rows"])
    assert res["meta"]["d"] == 256 and res["meta"]["copy_ms"] > 0
    assert "| qsgd(s=16, bucket=512), Elias code |" in capsys.readouterr().out
