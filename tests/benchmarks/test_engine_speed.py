"""benchmarks/engine_speed.py --quick runs, so the speed targets the unit tests do not time
stay measured. It checks the report's shape, never the speed: that depends on the machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.figures import in_order, measured

REPO = Path(__file__).resolve().parents[2]

SECONDS = (
    "stop_seconds_median",
    "stop_seconds_max",
    "encode_1mb_seconds_median",
    "encode_1mb_seconds_max",
    "bench_p50_ms_median",
)


def test_quick_run_prints_every_figure_and_leaves_docs_alone():
    report = REPO / "docs" / "benchmarks.md"
    before = report.read_bytes() if report.exists() else None
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "engine_speed.py"), "--quick"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = dict(
        line.split(": ", 1)
        for line in proc.stdout.splitlines()
        if ": " in line and " " not in line.split(": ")[0]
    )
    # Every stop ended the job as cancelled; the runs are the ones --quick asks for.
    assert printed["stop_status"] == "cancelled"
    assert (printed["stop_runs"], printed["encode_runs"], printed["bench_runs"]) == ("2", "2", "3")
    assert int(printed["stop_steps_after_request_max"]) >= 0
    for key in SECONDS:
        value = float(printed[key])
        assert measured(value), (key, value)
    assert in_order(float(printed["stop_seconds_median"]), float(printed["stop_seconds_max"]))
    assert in_order(
        float(printed["encode_1mb_seconds_median"]), float(printed["encode_1mb_seconds_max"])
    )
    assert measured(float(printed["bench_p50_spread"]))
    # One table row per target, each with a verdict.
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "< " in line]
    rows += [line for line in proc.stdout.splitlines() if "within 15 %" in line]
    assert len(rows) == 3 and all(r.endswith(("| met |", "| **missed** |")) for r in rows), rows
    # --quick never rewrites the published report.
    assert (report.read_bytes() if report.exists() else None) == before
