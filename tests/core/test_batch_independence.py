"""A sentence gets the same logits whatever it is batched with, dynamic int8 included.

Dynamic int8 quantizes each linear layer's input with one scale over the whole batch
(its other rows and their padding), so batching changed labels near the decision
boundary: 27-32 of 1,800 review sentences on the SST-2 presets. Evaluation, the
Playground's batch tab and ``slimpajama predict`` must give each row its batch-1 logits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from slimpajama_gui.core.runtime.evaluate import batch_dependent, predict, row_logits
from slimpajama_gui.core.runtime.onnx_runner import OnnxClassifier, OrtRunner
from slimpajama_gui.core.techniques.onnx_export import export_onnx
from slimpajama_gui.core.techniques.onnx_int8 import quantize_onnx
from slimpajama_gui.core.techniques.quantize.methods import quantize_model
from tests.core.test_quantize import tiny_model  # wide weights: rows of unlike ranges

pytestmark = pytest.mark.int8

LENGTHS = [5, 31, 12, 3]


def padded(lengths: list[int]) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(7)
    ids = torch.zeros((len(lengths), max(lengths)), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.from_numpy(rng.integers(5, 40, size=n))
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def alone(model: nn.Module, batch: dict[str, torch.Tensor], row: int, n: int) -> torch.Tensor:
    with torch.inference_mode():
        return model(**{k: v[row : row + 1, :n] for k, v in batch.items()}).logits[0]


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """(float model, PyTorch dynamic int8, ONNX fp32, ONNX dynamic int8)."""
    folder = tmp_path_factory.mktemp("batch")
    model = tiny_model()
    fp32 = export_onnx(model, folder / "fp32.onnx")
    int8 = quantize_onnx(fp32, folder / "int8.onnx")
    return (
        model,
        quantize_model(model, "dynamic_int8").model,
        OnnxClassifier(OrtRunner(fp32)),
        OnnxClassifier(OrtRunner(int8)),
    )


def test_dynamic_int8_models_say_their_rows_depend_on_the_batch(variants):
    model, torch_int8, onnx_fp32, onnx_int8 = variants
    assert batch_dependent(torch_int8) and batch_dependent(onnx_int8)
    assert not batch_dependent(model) and not batch_dependent(onnx_fp32)


@pytest.mark.parametrize("which", [1, 3], ids=["pytorch-int8", "onnx-int8"])
def test_each_row_gets_its_batch_1_logits_in_evaluation_and_prediction(variants, which):
    model = variants[which]
    batch = padded(LENGTHS)
    with torch.inference_mode():
        together = row_logits(model, **batch)
    labelled = {**batch, "labels": torch.zeros(len(LENGTHS), dtype=torch.long)}
    evaluated = predict(model, [labelled]).logits
    for row, n in enumerate(LENGTHS):
        expected = alone(model, batch, row, n)
        assert torch.equal(together[row], expected)
        assert np.array_equal(evaluated[row], expected.float().numpy())


def test_float_models_still_run_the_batch_at_once(variants):
    model = variants[0]
    batch = padded(LENGTHS)
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.inference_mode():
            together = row_logits(model, **batch)
    finally:
        hook.remove()
    assert len(calls) == 1
    for row, n in enumerate(LENGTHS):
        assert torch.allclose(together[row], alone(model, batch, row, n), atol=1e-5)
