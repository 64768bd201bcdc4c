"""The GPU path: a tiny fine-tune and distillation on CUDA whose results reload on the CPU.

Marked ``gpu``; without CUDA every test here skips with the reason.
``benchmarks/gpu_check.sh`` runs them (``pytest -m gpu``) on a CUDA machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slimpajama_gui.core import data
from slimpajama_gui.core.jobs.pipeline import run
from slimpajama_gui.core.runtime.predictor import ModelPredictor
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.storage.variant import VariantRecord
from tests.core.test_pipeline import FINETUNE, make_recipe

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="no CUDA GPU: torch.cuda.is_available() is False on this machine",
    ),
]

#: Probabilities of the variant reloaded on the CPU (fp32) against the ones the job's
#: evaluate step computed on the GPU (fp32: evaluation runs without autocast; CUDA's
#: matmuls differ from the CPU's only in summation order).
PROB_TOLERANCE = 1e-3


@pytest.mark.parametrize(
    "steps, folder",
    [
        (FINETUNE + "  - type: evaluate\n", "01-finetune"),
        (
            FINETUNE + "  - {type: distill, student_layers: [1], epochs: 2, learning_rate: 1.0e-3,"
            " batch_size: 16}\n  - type: evaluate\n",
            "02-distill",
        ),
    ],
    ids=["finetune", "distill"],
)
def test_trains_on_cuda_and_reloads_on_cpu(tiny_minilm, tmp_path, steps, folder):
    out = tmp_path / "out"
    recipe = make_recipe(tiny_minilm, out, steps)
    recipe.device = "cuda"
    with JobStore() as store:
        result = run(recipe, store=store)
    assert result.status == "done", result.error
    record = VariantRecord.read(out / folder)
    trained_on = record.metrics["training"]["trained_on"]
    assert trained_on["device"].startswith("cuda")
    assert trained_on["gpu"] == torch.cuda.get_device_name(0)
    expected = "bf16 autocast" if torch.cuda.is_bf16_supported() else "fp32"
    assert trained_on["precision"] == expected

    # The job's evaluate step ran on the GPU and stored its logits; the reloaded
    # variant on the CPU gives the same probabilities and the same accuracy.
    stored = record.read_predictions(out / folder, "eval")
    assert stored is not None
    z = stored.logits - stored.logits.max(axis=1, keepdims=True)
    gpu_probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    dataset = data.load_dataset(data.DatasetSpec.from_dict(recipe.dataset), base_dir=tmp_path)
    texts = dataset.eval.texts  # the split the evaluate step measured, in row order
    assert len(texts) == len(stored.labels)
    cpu_probs = ModelPredictor(out / folder, max_length=48).scores(texts).probs
    assert np.abs(cpu_probs - gpu_probs).max() < PROB_TOLERANCE
    cpu_accuracy = float((cpu_probs.argmax(1) == stored.labels).mean())
    assert cpu_accuracy == pytest.approx(record.metrics["eval"]["accuracy"], abs=1e-9)
