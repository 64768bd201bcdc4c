"""benchmarks/search_sst2.py --quick: a search on SST-2 from a tiny teacher, cancelled
part-way, returns its best-so-far and Pareto set and writes its section into a copy of
docs/benchmarks.md. Checks the report's shape, never a figure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SST2 = REPO.parent / "shared" / "data" / "sst2"


@pytest.mark.skipif(not (SST2 / "train.tsv").is_file(), reason="SST-2 files are not present")
def test_quick_search_is_cancelled_and_still_returns_its_best(tmp_path, tiny_minilm):
    report = REPO / "docs" / "benchmarks.md"
    before = report.read_bytes()
    copy = tmp_path / "benchmarks.md"
    shutil.copy(report, copy)
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "search_sst2.py"), "--quick",
         "--teacher", str(tiny_minilm), "--doc", str(copy), "--cancel-after", "40",
         "--work", str(tmp_path / "work"), "--screenshot", str(tmp_path / "pareto.png")],
        capture_output=True, text=True, timeout=1200, cwd=REPO,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = dict(line.split(": ", 1) for line in proc.stdout.splitlines()
                   if line.startswith("search_"))  # fmt: skip
    assert printed["search_job_status"] == "cancelled"
    assert printed["search_state"] == "cancelled"
    assert Path(printed["search_best"]).is_dir()
    assert (tmp_path / "pareto.png").stat().st_size > 0  # the chart, from this run's history
    text = copy.read_text()
    section = text[
        text.index("<!-- search-sst2:start -->") : text.index("<!-- search-sst2:end -->")
    ]
    assert "--quick run" in section and "Machine: " in section and "Pareto set" in section
    assert "search's best-so-far" in section and "| teacher (PyTorch fp32) |" in section
    assert report.read_bytes() == before
