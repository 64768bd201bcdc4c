"""benchmarks/onnx_parity.py --quick runs and labels every int8 row with its CPU path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from slimpajama_gui.core.techniques.quantize import int8_path

REPO = Path(__file__).resolve().parents[2]
SST2 = REPO.parent / "shared" / "data" / "sst2"


@pytest.mark.skipif(not SST2.is_dir(), reason="needs ../shared/data/sst2")
def test_quick_run_measures_each_int8_path_and_names_it(tiny_minilm):
    cmd = [sys.executable, str(REPO / "benchmarks" / "onnx_parity.py")]
    cmd += ["--teacher", str(tiny_minilm), "--quick"]
    report = REPO / "docs" / "benchmarks.md"
    before = report.read_bytes() if report.exists() else None
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| PyTorch int8")]
    here = int8_path.current()
    # This CPU's path, and on a VNNI CPU also the 7-bit path of CPUs without VNNI.
    expected = [here.describe()]
    if here.name == "vnni":
        expected.append(int8_path.Int8Path("no-vnni", 7, forced=True).describe())
    assert len(rows) == len(expected)
    for row, described in zip(rows, expected, strict=True):
        assert f"| {described} |" in row
    exported = [line for line in proc.stdout.splitlines() if "that PyTorch int8 model" in line]
    assert len(exported) == len(expected)
    assert f"int8 path: {here.describe()}" in proc.stdout
    # --quick never rewrites the published report.
    assert (report.read_bytes() if report.exists() else None) == before
