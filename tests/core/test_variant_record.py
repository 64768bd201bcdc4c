"""VariantRecord: the one definition of a saved variant's slimpajama.json and predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.storage.variant import VARIANT_FILE, VERSION, VariantRecord


def _record() -> VariantRecord:
    return VariantRecord(
        job_id=3,
        step_index=1,
        step={"type": "prune", "version": 1},
        parent="/models/a",
        source_model="/models/a",
        label_names=["negative", "positive"],
        parameters=100,
        nonzero_parameters=90,
        recipe={"name": "x"},
        recipe_dir="/proj",
        metrics={"training": {"eval_accuracy": 0.8}},
        prune={"method": "magnitude"},
        app_version="test",
    )


def test_round_trip_through_the_file_and_the_model_card(tmp_path):
    record = _record()
    record.write(tmp_path)
    data = json.loads((tmp_path / VARIANT_FILE).read_text())
    assert data["format"] == "slimpajama-result" and data["version"] == VERSION
    assert "quantization" not in data  # sections of other steps are left out
    again = VariantRecord.read(tmp_path)
    assert again == record
    assert again.accuracy == 0.8 and again.step_type == "prune"
    assert "Parameters: 100 (non-zero 90)" in (tmp_path / "README.md").read_text()


def test_a_first_layout_file_is_read(tmp_path):
    """Version 1 named the recipe's folder recipe_base_dir and had no predictions."""
    old = {"format": "slimpajama-result", "version": 1, "recipe_base_dir": "/proj", "job_id": 1}
    (tmp_path / VARIANT_FILE).write_text(json.dumps(old))
    record = VariantRecord.read(tmp_path)
    assert record.recipe_dir == "/proj" and record.predictions == {} and record.job_id == 1


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"job_id": 1, "colour": "red"}, "unknown key 'colour'"),
        ({"version": VERSION + 1}, "newer SlimPajama Studio"),
        ({"format": "other"}, "not a SlimPajama variant record"),
        ([1, 2], "must hold a JSON object"),
    ],
)
def test_what_this_app_cannot_read_is_refused_with_a_sentence(tmp_path, data, words):
    (tmp_path / VARIANT_FILE).write_text(json.dumps(data))
    with pytest.raises(UserError, match=words):
        VariantRecord.read(tmp_path)
    assert VariantRecord.read_or_none(tmp_path) is None


def test_a_missing_folder_says_so(tmp_path):
    with pytest.raises(UserError, match="moved or deleted"):
        VariantRecord.read(tmp_path / "gone")


def test_predictions_are_stored_beside_the_record(tmp_path):
    record = _record()
    logits = np.array([[0.1, 0.9], [2.0, -1.0], [0.3, 0.2]], np.float32)
    record.write_predictions(tmp_path, "eval", logits, np.array([1, 0, 1]))
    record.write(tmp_path)
    stored = VariantRecord.read(tmp_path).read_predictions(tmp_path, "eval")
    np.testing.assert_array_equal(stored.logits, logits)
    assert stored.labels.tolist() == [1, 0, 1] and stored.rows.tolist() == [0, 1, 2]
    assert record.read_predictions(tmp_path, "test") is None
    (tmp_path / record.predictions["eval"]).write_bytes(b"damaged")
    assert record.read_predictions(tmp_path, "eval") is None  # then Compare computes them


def test_an_onnx_int8_figure_says_when_onnx_runtime_clipped_its_products(tmp_path):
    """The 'int8 measured on' line of Compare: an 8-bit ONNX file measured where ONNX
    Runtime clips 8-bit products says so, whatever arithmetic the file reproduces."""
    made_on_arm = {"description": "ARM/qnnpack (8-bit activations)"}
    cases = [
        ({"activation_bits": 8, "ort_saturates": False}, "ONNX Runtime, 8-bit activations"),
        (
            {"activation_bits": 8, "ort_saturates": True},
            "ONNX Runtime, 8-bit activations; ONNX Runtime clipped its 8-bit products "
            "(x86 without VNNI)",
        ),
        (
            {"activation_bits": 8, "int8_path": made_on_arm, "ort_saturates": True},
            "ARM/qnnpack (8-bit activations); ONNX Runtime clipped its 8-bit products "
            "(x86 without VNNI)",
        ),
        ({"activation_bits": 7}, "ONNX Runtime, 7-bit activations"),  # older files
    ]
    for onnx_section, label in cases:
        VariantRecord(label_names=["a", "b"], onnx=onnx_section).write(tmp_path)
        assert VariantRecord.read(tmp_path).int8_arithmetic == label
