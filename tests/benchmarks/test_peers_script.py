"""benchmarks/peers_sst2.py --quick runs every entry, so the published comparison cannot rot."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SST2, write_tiny_minilm_vocab

REPO = Path(__file__).resolve().parents[2]
MUST_RUN = [  # ours, the baseline and the plain transformers teacher
    "teacher fp32", "teacher fp32, onnxruntime", "PyTorch int8 (guarded)", "onnxruntime int8",
    "vocabulary", "heads + FFN 50 % + recovery", "distill 3 layers", "preset fast",
    "preset balanced", "preset smallest", "DistilBERT-style 3 layers (baseline)",
    "transformers fp32",
]  # fmt: skip
PEERS = [
    "PyTorch dynamic int8", "ONNX Runtime fp32", "ONNX Runtime int8, defaults",
    "ONNX Runtime int8, per-channel", "ONNX Runtime int8, BERT optimizer + per-channel",
    "TextPruner vocabulary", "TextPruner heads + FFN 50 %",
]  # fmt: skip


def _image(path: Path) -> tuple[int, int, float, bool]:
    """(width, height, share of pixels that are not white, has near-black pixels)."""
    from PySide6.QtGui import QImage

    image = QImage(str(path))
    assert not image.isNull(), f"{path} is not a readable image"
    w, h = image.width(), image.height()
    inked = dark = 0
    total = 0
    for y in range(0, h, 4):
        for x in range(0, w, 4):
            c = image.pixelColor(x, y)
            total += 1
            inked += c.lightness() < 245
            dark += c.lightness() < 60
    return w, h, inked / total, dark > 0


@pytest.mark.skipif(not SST2.is_dir(), reason="needs ../shared/data/sst2")
def test_quick_run_measures_every_entry_and_leaves_docs_alone(tmp_path):
    # Six layers, so the 3-layer students (1,3,5 and the baseline's 0,2,4) and the 2-layer
    # preset (1,4) can all be built from it.
    teacher = write_tiny_minilm_vocab(tmp_path / "teacher", layers=6)
    work = tmp_path / "work"
    docs = [REPO / "docs" / "benchmarks.md", REPO / "docs" / "peers_sst2.png"]
    before = [p.read_bytes() if p.exists() else None for p in docs]
    cmd = [
        sys.executable, str(REPO / "benchmarks" / "peers_sst2.py"),
        "--teacher", str(teacher), "--quick", "--work", str(work),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    result = json.loads((work / "peers_sst2.json").read_text(encoding="utf-8"))
    entries = {e["name"]: e for e in result["entries"]}
    assert sorted(entries) == sorted(MUST_RUN + PEERS)
    for name, e in entries.items():
        row = e["row"]
        if "error" in row:
            # Only a peer may fail, and then with a reason a person can act on.
            assert name in PEERS, f"{name}: {row['error']}"
            assert len(row["error"]) > 20 and ":" in row["error"]
            continue
        for key in ("dev", "test"):
            assert 0.0 <= row[key] <= 1.0, (name, key, row[key])
        assert row["size"] > 0 and row["p50"] > 0 and row["p95"] >= row["p50"]
        assert row["tput"] > 0 and row["compress_s"] >= 0
        assert all(math.isfinite(v) and v > 0 for v in e["ratios"].values()), (name, e["ratios"])
    # The teacher is its own yardstick; the plain transformers export of it must agree.
    assert entries["teacher fp32"]["ratios"]["size"] == 1.0
    n_test = result["noise"]["test_n"]
    same = entries["transformers fp32"]["row"]["test"] - entries["teacher fp32"]["row"]["test"]
    assert abs(same) <= 1 / n_test + 1e-9
    # TextPruner either ran or says why not (not installed, or the exception and versions).
    for name in ("TextPruner vocabulary", "TextPruner heads + FFN 50 %"):
        error = entries[name]["row"].get("error", "")
        assert not error or error.startswith("not installed") or "TextPruner" in error
    assert result["best_preset"] in ("preset fast", "preset balanced", "preset smallest")
    assert result["noise"]["latency"] >= 0 and 0 < result["noise"]["test_se"] < 0.05

    out = proc.stdout
    assert "| preset balanced | ours |" in out and "| PyTorch dynamic int8 | peer |" in out
    assert f"Our best preset is `{result['best_preset']}`" in out
    assert "Our fastest CPU backend against ONNX Runtime on the same model" in out
    assert "**Noise.**" in out

    picture = Path(result["picture"])
    assert picture.parent == work
    w, h, inked, dark = _image(picture)
    assert (w, h) == (1600, 760)
    assert 0.01 < inked < 0.6 and dark  # points, text and axes on a light background

    # --quick never rewrites the published report or picture.
    assert [p.read_bytes() if p.exists() else None for p in docs] == before
