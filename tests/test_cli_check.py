"""The ``simdist check`` command: any registered compressor, parameters from --NAME VALUE, exit codes."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from simdist.cli.check import parse_value, split_params
from simdist.cli.main import main
from simdist.compressors import available, registry
from simdist.compressors.base import Compressor
from simdist.compressors.identity import raw_float_decode


def _run_json(capsys, *argv):
    rc = main(["check", *argv, "--json"])
    out = capsys.readouterr().out
    return rc, json.loads(out)


def test_identity_json(capsys):
    rc, doc = _run_json(capsys, "identity", "--dim", "64", "--trials", "20", "--seed", "3")
    assert rc == 0 and doc["passed"] is True
    assert doc["compressor"] == {"name": "identity"}
    assert (doc["dim"], doc["trials"], doc["seed"], doc["confidence"]) == (64, 20, 3, 0.99)
    kinds = [v["kind"] for v in doc["verdicts"]]
    assert kinds == ["unbiased", "identity", "bound", "info"]
    assert doc["verdicts"][-1]["measured"] == 32 * 64


def test_fp16_table_and_options_before_name(capsys):
    rc = main(["check", "--dim", "32", "fp16", "--trials", "10", "--vector", "powerlaw", "--dtype", "float64"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "dim=32 vector=powerlaw (float64) trials=10" in out
    assert "E||C(x)-x||^2 = exact value" in out and "PASS" in out and "ALL PASS" in out
    assert "compression ratio 32 d / E nbits = 2" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["identity", "--bogus", "1"], "unknown parameter(s) ['bogus']"),
        (["nosuchcompressor"], "unknown compressor 'nosuchcompressor'"),
        (["identity", "--dim", "0"], "d must be in"),
        (["identity", "--trials", "1"], "trials must be in"),
        (["identity", "--confidence", "1.5"], "confidence must be in"),
        (["identity", "--vector", "cauchy"], "kind must be one of"),
        (["identity", "--dtype", "int8"], "dtype must be one of"),
        (["identity", "stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_arguments_exit_2_naming_the_problem(capsys, argv, message):
    assert main(["check", *argv]) == 2
    assert message in capsys.readouterr().err


def test_value_parsing():
    assert [parse_value(t) for t in ["4", "-2", "1e-3", "None", "null", "TRUE", "false", "max"]] == [
        4, -2, 1e-3, None, None, True, False, "max"]
    assert parse_value('[{"name": "topk", "k": 3}]') == [{"name": "topk", "k": 3}]
    assert split_params(["--tau", "-0.5", "--scaled", "--bucket-size=8", "--seed", "2"]) == (
        ["--seed", "2"], {"tau": -0.5, "scaled": True, "bucket_size": 8})
    with pytest.raises(ValueError, match="given twice"):
        split_params(["--s", "1", "--s", "2"])


@dataclass(frozen=True)
class _Biased(Compressor):
    """Returns 1.1 x and claims to be unbiased: the check must fail with exit status 1."""

    name = "toy_cli_biased"
    unbiased = True

    def _encode_batch(self, X, rng):
        n, d = X.shape
        buffer = np.ascontiguousarray(1.1 * X, dtype="<f4").view(np.uint8).reshape(-1).copy()
        return buffer, np.arange(n + 1, dtype=np.int64) * 4 * d, np.full(n, 32 * d, np.int64), None

    def _decode_batch(self, buffer, offsets, d, dtype, keys):
        return raw_float_decode(self.name, buffer, offsets, d, dtype, "<f4")


def test_failing_statement_exits_1(capsys, monkeypatch):
    available()  # load the built-ins first
    monkeypatch.setitem(registry.REGISTRY._classes, _Biased.name, _Biased)
    assert main(["check", _Biased.name, "--dim", "16", "--trials", "5"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "E[C(x)] = x" in out


needs = lambda name: pytest.mark.skipif(name not in available(), reason=f"{name} not registered yet")  # noqa: E731


@needs("qsgd")
def test_qsgd_lemma_3_1_and_theorem_3_2(capsys):
    rc, doc = _run_json(capsys, "qsgd", "--s", "4", "--dim", "2000", "--trials", "400", "--seed", "1")
    assert rc == 0, doc
    assert doc["compressor"]["name"] == "qsgd" and doc["compressor"]["s"] == 4
    sources = {v["source"] for v in doc["verdicts"]}
    assert {"QSGD Lemma 3.1(i)", "QSGD Lemma 3.1(ii)", "QSGD Lemma 3.1(iii)"} <= sources
    bound = [v for v in doc["verdicts"] if v["source"] == "QSGD Lemma 3.1(ii)"][0]
    from analysis.qsgd import qsgd_variance_bound
    from analysis.checks import make_vector

    x = make_vector("gaussian", 2000, seed=1).astype(np.float64)
    assert bound["reference"] == pytest.approx(qsgd_variance_bound(2000, 4, float(x @ x)), rel=1e-6)


@needs("qsgd")
def test_qsgd_invalid_parameter_is_named(capsys):
    assert main(["check", "qsgd", "--s", "0", "--dim", "10"]) == 2
    assert "s must be" in capsys.readouterr().err


@needs("topk")
def test_topk_k_contraction(capsys):
    rc, doc = _run_json(capsys, "topk", "--ratio", "0.01", "--dim", "2000", "--trials", "5")
    assert rc == 0, doc
    assert doc["compressor"]["name"] == "topk" and doc["compressor"]["ratio"] == 0.01
    bounds = [v for v in doc["verdicts"] if v["kind"] == "bound"]
    assert bounds and all(v["passed"] for v in bounds)
    info = doc["verdicts"][-1]
    assert info["kind"] == "info" and info["measured"] < 32 * 2000
