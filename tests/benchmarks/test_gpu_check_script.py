"""benchmarks/gpu_check.sh on a machine without CUDA: says so, the gpu tests skip, exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the CPU path; on a GPU run the script itself"
)
def test_without_a_gpu_it_says_so_shows_the_skips_and_exits_0():
    # Only the gpu tests' own file is collected, so the check stays short.
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_TESTS="tests/core/test_gpu.py")
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "No CUDA GPU on this machine: torch.cuda.is_available() is False" in out
    assert "SKIPPED [2]" in out and "no CUDA GPU" in out
    assert "2 skipped" in out
    assert "examples/s" not in out  # nothing timed on a CPU


def test_the_sst2_part_names_missing_data(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert gpu_check.main(["--data", str(tmp_path)]) == 1
    assert f"{tmp_path / 'train.tsv'} not found; pass --data FOLDER" in capsys.readouterr().err
