"""Saving a variant and adding figures to it: the record, its files and its history row.

A model-changing step calls :func:`save_variant` once; evaluate and benchmark steps
call :func:`add_figures`. Both write the :class:`VariantRecord` (``slimpajama.json``
and the model card) and the variant's row in the job history from the same record, so
the history and the folder never hold different figures.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from slimpajama_gui import __version__
from slimpajama_gui.core.jobs.context import JobContext
from slimpajama_gui.core.model.saving import copy_tokenizer_files
from slimpajama_gui.core.model.tokenizers import pin_tokenizer_class
from slimpajama_gui.core.plan.recipe import Step
from slimpajama_gui.core.storage.atomic import atomic_dir, deferred_interrupt
from slimpajama_gui.core.storage.variant import VariantRecord, check_replaceable
from slimpajama_gui.core.techniques.quantize.folders import save_quantized

#: Steps that measure the model and save no variant folder of their own (a sensitivity
#: step's folder holds its report only; its handler checks that folder itself).
MEASURING_STEPS = frozenset({"evaluate", "benchmark", "sensitivity"})
#: Steps whose ``OUTPUT/NN-type`` folder holds variants of their own (a search's trials),
#: not one variant; the step checks that folder itself.
CONTAINER_STEPS = frozenset({"search"})


def variant_folder(output: Path, index: int, step: Step) -> Path:
    """Where step ``index`` saves its variant: ``OUTPUT/NN-type``."""
    return output / f"{index + 1:02d}-{step.step_type}"


def _check_target(ctx: JobContext, target: Path) -> None:
    check_replaceable(target, sources=[p for p in (ctx.source, ctx.tokenizer_dir) if p])


def check_outputs(ctx: JobContext, steps: list[Step], start: int = 0) -> None:
    """Before step 1: refuse now, not after an hour of training, a recipe whose variant
    folders would replace what the app did not write or the source model (O1, O2, F8).

    ``start`` is the first step that will run (a resume reuses the folders before it,
    one of which is then the model the job continues from).

    Raises:
        UserError: the first such folder, named (:func:`check_replaceable`).
    """
    for index, step in enumerate(steps):
        if index >= start and step.step_type not in MEASURING_STEPS | CONTAINER_STEPS:
            _check_target(ctx, variant_folder(ctx.output, index, step))


def recipe_dir(ctx: JobContext) -> str:
    """The folder the recipe's relative paths are read from (absolute)."""
    return str((ctx.recipe.base_dir or Path.cwd()).absolute())


def new_record(
    ctx: JobContext, index: int, step: Step | None, training: dict[str, Any], **sections: Any
) -> VariantRecord:
    """The record of the current model as step ``index`` leaves it.

    ``training`` holds the figures the step measured (``eval_accuracy``, ...);
    ``sections`` the technique's details (``prune=``, ``distill=``, ``quantization=``,
    ``onnx=``).
    """
    params, nonzero = ctx.parameters()
    if "eval_accuracy" in training and "eval_n" not in training and ctx.dataset.eval is not None:
        # The row count names the eval set in Compare; without it the accuracy could only
        # borrow the count of another variant of the job, and lose it with that variant.
        training = {**training, "eval_n": len(ctx.dataset.eval)}
    return VariantRecord(
        app_version=__version__,
        job_id=ctx.job_id,
        step_index=index,
        step=step.to_dict() if step is not None else None,
        parent=str(ctx.variants[-1] if ctx.variants else ctx.source),
        source_model=str(ctx.source),
        label_names=list(ctx.dataset.label_names),
        weights_format=ctx.onnx_format or _weights_format(ctx.model),
        parameters=params,
        nonzero_parameters=nonzero,
        recipe=ctx.recipe.to_dict(),
        recipe_dir=recipe_dir(ctx),
        metrics={"training": _with_device(ctx, training)},
        **sections,
    )


def _with_device(ctx: JobContext, training: dict[str, Any]) -> dict[str, Any]:
    """The step's figures, with where the model was trained when this step trained it."""
    out = dict(training)
    if ctx.trained_on is not None:
        out["trained_on"], ctx.trained_on = ctx.trained_on, None
    return out


def _weights_format(model: Any) -> str:
    spec = getattr(model, "quantization", None)
    return spec.method if spec is not None else "fp32"


def save_variant(
    ctx: JobContext,
    index: int,
    step: Step,
    record: VariantRecord,
    *,
    writer: Callable[[Path], None] | None = None,
) -> Path:
    """Save the current model as ``OUTPUT/NN-type`` atomically (old copy or new, never half).

    ``writer`` puts the model files into the staging folder when the model is not a
    PyTorch one (ONNX variants); the record and model card are added here either way.
    Returns the variant's folder; it becomes ``ctx.variant`` with ``record``.
    """
    target = variant_folder(ctx.output, index, step)
    ctx.check_stop()
    if not ctx.writes:  # a torchrun rank other than 0: rank 0 writes this variant
        ctx.variants.append(target)
        ctx.variant, ctx.record = target, record
        return target
    # From here the variant is written whole or not at all (atomic_dir): a stop request
    # waits for the save, and a process that dies inside leaves only debris that the
    # next start clears. Ctrl+C waits too, until the history records the variant, so
    # the history never calls a job cancelled before a save that did happen (F4).
    with ctx.uncancellable(f"saving {target.name}"), deferred_interrupt():
        ctx.model.to("cpu")
        with atomic_dir(target, check_target=lambda t: _check_target(ctx, t)) as staging:
            if writer is not None:
                writer(staging)
            elif getattr(ctx.model, "quantization", None) is not None:
                save_quantized(ctx.model, None, staging)
            else:
                ctx.model.write_files(staging)
            copy_tokenizer_files(ctx.tokenizer_dir or ctx.source, staging)
            # The variant's config.json says "slimpajama", not the source's model_type:
            # the tokenizer must load as the class the model was trained and measured with.
            pin_tokenizer_class(staging, ctx.tokenizer)
            record.write(staging)
        ctx.variants.append(target)
        ctx.variant, ctx.record = target, record
        ctx.variant_row = ctx.store.add_variant(ctx.job_id, index, "model", target, record.metrics)
    ctx.model.to(ctx.device)
    ctx.callbacks.on_variant(index, target, record.to_json())
    return target


def add_figures(
    ctx: JobContext,
    name: str,
    figures: dict[str, Any],
    *,
    predictions: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Add ``figures`` as ``metrics[name]`` of the saved variant (its files and history row).

    ``predictions`` (logits, gold labels in row order) of an evaluate step on split
    ``name`` are stored beside the record. Nothing happens before the job saved a
    variant (the source model is measured only in the job's logged metrics).
    """
    if ctx.variant is None or ctx.record is None or not ctx.writes:
        return
    record = ctx.record
    record.metrics[name] = figures
    if predictions is not None:
        record.write_predictions(ctx.variant, name, *predictions)
    record.write(ctx.variant)
    if ctx.variant_row is not None:
        ctx.store.update_variant_metrics(ctx.variant_row, record.metrics)
