"""benchmarks/ort_ops.py: an ONNX result's time per operator and under other ORT settings."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _script():
    monkey = str(REPO / "benchmarks")
    if monkey not in sys.path:
        sys.path.insert(0, monkey)
    spec = importlib.util.spec_from_file_location("ort_ops", REPO / "benchmarks" / "ort_ops.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profile_and_settings_tables_for_an_int8_result(tiny_minilm, tmp_path, capsys):
    from slimpajama_gui.core.jobs.pipeline import run
    from slimpajama_gui.core.plan.recipe import recipe_from_yaml
    from slimpajama_gui.core.storage.history import JobStore

    out = tmp_path / "out"
    recipe = recipe_from_yaml(
        f"name: int8\nmodel: {tiny_minilm}\n"
        "dataset:\n  train: demo\n  labels: [negative, positive]\n  max_length: 48\n"
        f"output: {out}\nsteps:\n  - {{type: quantize, method: dynamic_int8, "
        "backend: onnxruntime, tolerance: 100}\n",
        source="test.yaml",
        base_dir=tmp_path,
    )
    with JobStore(tmp_path / "history.sqlite3") as store:
        result = run(recipe, store=store)
    assert result.status == "done", result.error
    report = REPO / "docs" / "benchmarks.md"
    before = report.read_bytes() if report.exists() else None
    ort_ops = _script()
    dev = REPO / "resources" / "demo" / "train.tsv"
    code = ort_ops.main(
        ["--teacher", str(tiny_minilm), "--result", str(out / "01-quantize"), "--dev", str(dev)]
        + ["--sentences", "6", "--rounds", "1"]
    )
    text = capsys.readouterr().out
    assert code == 0
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ")]
    ops = {r[0].lstrip("| "): r for r in rows if r[-1].rstrip(" |").replace(".", "").isdigit()}
    # The int8 graph's matrix products are profiled, each with its calls a run.
    assert any("MatMul" in op or "Attention" in op for op in ops), ops
    assert all(float(r[3]) >= 1 for r in ops.values())
    speed = {r[0].lstrip("| "): r for r in rows if r[-1].rstrip(" |").endswith("x")}
    assert set(speed) == {"teacher fp32 (PyTorch)", *(name for name, _, _ in ort_ops.SETTINGS)}
    assert speed["teacher fp32 (PyTorch)"][-1].strip(" |") == "1.0x"
    assert "6 dev sentences at batch 1" in text
    # Without --write the published report is left alone.
    assert (report.read_bytes() if report.exists() else None) == before


def test_a_folder_without_an_onnx_file_is_refused(tiny_minilm, capsys):
    with pytest.raises(SystemExit):
        _script().main(["--teacher", str(tiny_minilm), "--result", str(tiny_minilm)])
    assert "no model.onnx there; give an ONNX result folder" in capsys.readouterr().err
