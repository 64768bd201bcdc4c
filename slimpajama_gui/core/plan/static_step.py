"""The ``distill_static`` step: distill the current model into static token embeddings.

Its own module so that it registers itself with one import (at the end of
:mod:`.steps`). No torch here: the wizard builds and checks it on the GUI thread.

Example:
    >>> step = step_from_dict({"type": "distill_static", "dims": 128, "storage": "int8"})
    >>> step.dims, step.storage
    (128, 'int8')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from slimpajama_gui.core.plan.fields import Bounds, RecipeError
from slimpajama_gui.core.plan.steps import (
    BATCH_SIZE,
    EPOCHS,
    KD_WEIGHT,
    LEARNING_RATE,
    SEED,
    SHARE_BELOW_ALL,
    TEMPERATURE,
    Step,
    register_step,
    step_from_dict,  # noqa: F401 (the docstring's example)
)

StaticStorage = Literal["float32", "float16", "int8"]
#: Vector widths above any encoder's hidden size (a typo, not a choice).
MAX_DIMS = 16384
#: Steps that may follow it: the static model is no longer a transformer.
AFTER_STATIC = ("evaluate", "benchmark")


@register_step("distill_static")
@dataclass
class DistillStatic(Step):
    """Static embeddings (Model2Vec): one vector per token from the current model, PCA to
    ``dims``, then a linear classifier (and, with ``train_vectors``, the vectors) trained
    on the train split to match the teacher's logits. Very fast, less accurate."""

    version: ClassVar[int] = 1
    bounds: ClassVar[dict[str, Bounds]] = {
        "dims": Bounds(0, MAX_DIMS, low_open=True),
        "sif_coefficient": SHARE_BELOW_ALL,  # 0: no weighting
        "alpha_kd": KD_WEIGHT, "temperature": TEMPERATURE, "epochs": EPOCHS,
        "learning_rate": LEARNING_RATE, "batch_size": BATCH_SIZE, "seed": SEED,
    }  # fmt: skip

    dims: int = 256  # PCA components kept per token vector
    storage: StaticStorage = "int8"  # int8: one scale per row, 4x smaller than float32
    sif_coefficient: float = 1e-4  # Model2Vec's SIF weighting of frequent tokens; 0 = none
    train_vectors: bool = True  # train the vectors with the classifier (else the head only)
    alpha_kd: float = 1.0  # weight of the teacher's logits; 1 - alpha_kd goes to the labels
    temperature: float = 2.0
    epochs: float = 3.0
    learning_rate: float = 2e-3
    batch_size: int = 32
    seed: int = 0


def check_static_chain(steps: Sequence[Step]) -> None:
    """Refuse steps after ``distill_static`` that need a transformer.

    Raises:
        RecipeError: naming the first such step and what may follow instead.
    """
    seen = None
    for index, step in enumerate(steps):
        if seen is None:
            if step.step_type == "distill_static":
                seen = index
            continue
        backend = getattr(step, "backend", "auto")
        if step.step_type not in AFTER_STATIC or backend == "onnxruntime":
            what = (
                "benchmark with backend 'onnxruntime'"
                if step.step_type == "benchmark"
                else f"'{step.step_type}'"
            )
            raise RecipeError(
                "type",
                f"a {what} step cannot follow step {seen + 1} 'distill_static': the static "
                "model has no transformer layers left. Only evaluate and benchmark steps "
                "can follow it; put the other steps before it",
                step=index,
                step_type=step.step_type,
            )
