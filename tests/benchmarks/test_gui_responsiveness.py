"""benchmarks/gui_responsiveness.py --quick runs, so the published figures cannot rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.figures import in_order, measured

REPO = Path(__file__).resolve().parents[2]

FIGURES = (
    "gap_max_ms",
    "gap_p99_ms",
    "gaps_over_50ms",
    "logs_per_s",
    "redraws_per_s",
    "set_data_calls",
    "draw_delay_p50_ms",
    "cancel_seconds",
    "playground_seconds",
    "playground_gap_max_ms",
)


def test_quick_run_prints_the_figures(tmp_path):
    report = REPO / "docs" / "benchmarks.md"
    before = report.read_bytes() if report.exists() else None
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", TMPDIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gui_responsiveness.py"), "--quick"],
        capture_output=True, text=True, timeout=600, cwd=REPO, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = dict(
        line.split(": ", 1)
        for line in proc.stdout.splitlines()
        if ": " in line and " " not in line.split(": ")[0]
    )
    for key in FIGURES:
        assert key in printed, proc.stdout
        float(printed[key])  # a number (nan allowed), not an error text
    assert int(printed["logs"]) == 12  # a training log per step reached the GUI thread
    assert "| Event-loop gap, largest |" in proc.stdout
    # Cancel ended the job as cancelled; the Playground showed both predictions. How fast
    # is in the figures, not in this test.
    assert printed["cancel_status"] == "cancelled"
    assert measured(float(printed["cancel_seconds"]), float(printed["playground_seconds"]))
    assert in_order(1, int(printed["playground_ticks"]))  # the start; the rest depends on speed
    assert "| Cancel clicked at the first training log" in proc.stdout
    assert "| Playground: both models load (cold) and predict one sentence |" in proc.stdout
    # --quick never rewrites the published report.
    assert (report.read_bytes() if report.exists() else None) == before
