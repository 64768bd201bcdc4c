"""benchmarks/soak.py --quick runs: jobs back to back in one process, with memory, threads
and live tensors printed after each. It checks the report's shape and that no thread is
left behind, never a memory figure: that depends on the machine (the 20-job figures are
in docs/reliability.md)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
JOB_LINE = re.compile(
    r"^job (\d+): status (\w+), seconds ([\d.]+), rss_mb ([\d.]+), python_threads (\d+), "
    r"os_threads (\d+), live_tensors (\d+)$"
)


def test_quick_soak_prints_each_job_and_leaves_no_thread_or_tensor_behind():
    report = REPO / "docs" / "reliability.md"
    before = report.read_bytes()
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "soak.py"), "--quick"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    jobs = [JOB_LINE.match(line) for line in lines if line.startswith("job ")]
    assert jobs and all(jobs), [line for line in lines if line.startswith("job ")]
    assert [int(m.group(1)) for m in jobs] == [1, 2, 3]
    assert {m.group(2) for m in jobs} == {"done"}
    printed = dict(line.split(": ", 1) for line in lines if re.match(r"^[a-z_0-9]+: ", line))
    assert printed["jobs"] == printed["jobs_done"] == "3"
    for key in ("rss_mb_start", "rss_mb_after_job_3", "rss_mb_last", "rss_mb_peak"):
        value = float(printed[key])
        assert math.isfinite(value) and value > 0, (key, value)
    assert float(printed["growth_mb_after_job_3"]) == 0.0  # the third is the last here
    # Nothing left behind: the threads a job starts end with it; its tensors are freed.
    assert printed["python_threads_end"] == printed["python_threads_start"]
    assert all(m.group(5) == printed["python_threads_start"] for m in jobs)
    assert int(printed["live_tensors_end"]) <= int(printed["live_tensors_start"])
    assert printed["network_attempts"] == "0"  # with the network refused, none tried
    assert printed["verdict"].startswith("too few jobs")
    assert report.read_bytes() == before  # the script never writes the docs
