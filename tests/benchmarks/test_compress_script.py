"""benchmarks/compress_sst2.py --quick runs, so the published benchmark cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SST2 = REPO.parent / "shared" / "data" / "sst2"


@pytest.mark.skipif(not SST2.is_dir(), reason="needs ../shared/data/sst2")
def test_quick_run_prints_a_table(tiny_minilm, tmp_path):
    cmd = [
        sys.executable, str(REPO / "benchmarks" / "compress_sst2.py"),
        "--teacher", str(tiny_minilm), "--quick", "--work", str(tmp_path),
        "--only", "vocabulary", "onnxruntime int8", "preset fast",
    ]  # fmt: skip
    report = REPO / "docs" / "benchmarks.md"
    before = report.read_bytes() if report.exists() else None
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for name in ("teacher fp32", "vocabulary", "onnxruntime int8", "preset fast"):
        assert f"| {name} |" in out
    assert "× smaller" in out and "× faster" in out
    # --quick never rewrites the published report.
    assert (report.read_bytes() if report.exists() else None) == before
