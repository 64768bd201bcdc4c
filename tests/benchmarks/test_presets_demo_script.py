"""benchmarks/presets_demo.py --quick runs every preset and writes its section into a copy of
docs/benchmarks.md, so the script cannot rot. It checks the report's shape, never a figure:
--quick caps training, and speed depends on the machine."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.figures import measured

REPO = Path(__file__).resolve().parents[2]
PRESETS = ("fast", "balanced", "smallest")


def test_quick_run_finishes_every_preset_and_writes_its_section(tmp_path):
    report = REPO / "docs" / "benchmarks.md"
    before = report.read_bytes()
    copy = tmp_path / "benchmarks.md"
    shutil.copy(report, copy)
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "presets_demo.py"), "--quick", "--doc", str(copy)],
        capture_output=True, text=True, timeout=1500, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = dict(
        line.split(": ", 1) for line in proc.stdout.splitlines() if line.startswith("preset_")
    )
    for name in PRESETS:
        assert printed[f"preset_{name}_status"] == "done", printed.get(f"preset_{name}_error")
        assert measured(float(printed[f"preset_{name}_wall_s"]))
        assert 0 <= float(printed[f"preset_{name}_accuracy"]) <= 1
        assert measured(float(printed[f"preset_{name}_p50_ms"]))
        assert int(printed[f"preset_{name}_size_bytes"]) > 0
    text = copy.read_text()
    section = text[
        text.index("<!-- presets-demo:start -->") : text.index("<!-- presets-demo:end -->")
    ]
    assert "--quick run: training capped" in section and "Machine: " in section
    rows = [
        line for line in section.splitlines() if line.startswith(tuple(f"| {p} |" for p in PRESETS))
    ]
    assert len(rows) == 3 and all("| done |" in r for r in rows), rows
    # Each preset's quantize step says what its accuracy guard decided.
    assert section.count("of 100 predictions") >= 3
    # One section in the copy, whatever it held; the published report is not written.
    assert text.count("<!-- presets-demo:start -->") == text.count("<!-- presets-demo:end -->") == 1
    assert report.read_bytes() == before
