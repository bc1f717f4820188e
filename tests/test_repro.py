"""`simdist repro`: every registered reproduction runs in its quick setting and writes its files."""

import json
import subprocess
import sys

import pytest

import paper_repro
from paper_repro.common import atomic_write_json
from simdist.cli.main import main


def test_list(capsys):
    assert main(["repro", "--list"]) == 0
    out = capsys.readouterr().out
    for name in paper_repro.names():
        assert name in out


def test_unknown_name_is_a_clear_error(capsys):
    assert main(["repro", "nope"]) == 2
    assert "unknown reproduction 'nope'" in capsys.readouterr().err


def test_all_quick_writes_figures_data_and_report(tmp_path):
    assert main(["repro", "all", "--quick", "--out", str(tmp_path)]) == 0
    for name in paper_repro.names():
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert data["name"] == name and data["claims"]
        assert all(c["passed"] is not False for c in data["claims"]), data["claims"]
    report = (tmp_path / "REPORT.md").read_text()
    assert "Lemma 3.1(ii)" in report and "Theorem 3.2" in report
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_python_dash_m_help_is_a_guide():
    out = subprocess.run([sys.executable, "-m", "simdist", "--help"], capture_output=True, text=True, check=True).stdout
    for word in ("check", "repro", "examples:", "simdist check qsgd --s 4"):
        assert word in out
