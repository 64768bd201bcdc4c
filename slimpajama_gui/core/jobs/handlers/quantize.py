"""Steps that quantize or export: PyTorch int8/fp16 under an accuracy guard, and ONNX.

``quantize`` with the pytorch backend quantizes the weights in place under an accuracy
guard. ``export`` and ``quantize`` with ``backend: onnxruntime`` export to ONNX (int8
for the latter), check the ONNX model against the PyTorch one on every eval row, and
save the ONNX files as the new variant; from then on the job runs the ONNX model (only
evaluate and benchmark may follow).
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.context import JobContext, eval_batches, handles
from slimpajama_gui.core.jobs.saving import new_record, save_variant
from slimpajama_gui.core.plan.recipe import Export, Quantize, Step
from slimpajama_gui.core.runtime import onnx_runner
from slimpajama_gui.core.runtime.bench import count_parameters
from slimpajama_gui.core.runtime.evaluate import classification_report, predict
from slimpajama_gui.core.techniques import onnx_export
from slimpajama_gui.core.techniques.quantize import int8_path
from slimpajama_gui.core.techniques.quantize.guard import guard_quantization


@handles("quantize")
def quantize(ctx: JobContext, index: int, step: Quantize) -> dict[str, Any]:
    """Quantize the current model; fails when accuracy drops more than ``step.tolerance``
    points even with the guard's modules kept in float."""
    if step.backend == "onnxruntime":
        return to_onnx(
            ctx, index, step, quantized=True, per_channel=step.per_channel, tolerance=step.tolerance
        )
    # Quantized kernels here are CPU kernels; the rest of the job follows the model.
    ctx.device = torch.device("cpu")
    ctx.model.to(ctx.device)
    sample = list(itertools.islice(eval_batches(ctx, "eval", 32), 2))

    def accuracy_of(model) -> float:
        preds = predict(model, eval_batches(ctx, "eval", 64), control=ctx.control)
        ctx.check_stop()
        return classification_report(preds, ctx.dataset.label_names).accuracy

    report = guard_quantization(
        ctx.model, step.method, accuracy_of,
        tolerance=step.tolerance, per_channel=step.per_channel,
        embeddings=step.embeddings, sample=sample, log=ctx.callbacks.on_message,
        check=ctx.check_stop,
    )  # fmt: skip
    if not report.ok:
        raise UserError(
            f"quantize: {step.method} costs {100 * report.drop:.2f} accuracy points even with "
            f"{len(report.kept_float)} modules kept in float, more than quantize.tolerance "
            f"({step.tolerance}); raise the tolerance or choose another method."
        )
    ctx.model = report.result.model
    figures = {
        "baseline_accuracy": report.baseline,
        "quantized_accuracy": report.quantized,
        "eval_accuracy": report.final,
        "kept_float": len(report.kept_float),
    }
    ctx.store.log_metrics(ctx.job_id, index, "quantize", figures)
    ctx.callbacks.on_eval(index, figures)
    if report.kept_float:
        ctx.callbacks.on_message(
            f"the accuracy guard kept {len(report.kept_float)} modules in float: "
            + ", ".join(report.kept_float)
        )
    details: dict[str, Any] = {
        "method": step.method,
        "baseline_accuracy": report.baseline,
        "accuracy_before_guard": report.quantized,
        "kept_float": list(report.kept_float),
        "note": report.result.note,
    }
    if step.method == "dynamic_int8":
        # Its accuracy depends on the CPU's int8 arithmetic: say which one measured it.
        details["int8_path"] = int8_path.current().to_dict()
    record = new_record(ctx, index, step, {"eval_accuracy": report.final}, quantization=details)
    save_variant(ctx, index, step, record)
    return {"accuracy": report.final, "kept_float": len(report.kept_float)}


@handles("export")
def export(ctx: JobContext, index: int, step: Export) -> dict[str, Any]:
    """Export the current model to fp32 ONNX (or a dynamic_int8 model as it is)."""
    return to_onnx(ctx, index, step, quantized=False, per_channel=True, tolerance=None)


def to_onnx(
    ctx: JobContext,
    index: int,
    step: Step,
    *,
    quantized: bool,
    per_channel: bool,
    tolerance: float | None,
) -> dict[str, Any]:
    """Export (and maybe int8-quantize) to ONNX, check accuracy, save it as the new variant.

    ``tolerance`` is the accuracy drop allowed, in points (``None``: no limit).

    Raises:
        UserError: the model is already quantized in a way ONNX cannot take, an fp32
            export's logits differ from PyTorch's, or int8 costs more than ``tolerance``.
    """
    spec = getattr(ctx.model, "quantization", None)
    if spec is not None and (quantized or spec.method != "dynamic_int8"):
        raise UserError(
            f"step {index + 1} '{step.step_type}': the model is already quantized in PyTorch "
            f"({spec.method}); "
            + (
                "an 'export' step writes a dynamic_int8 model to ONNX as it is, without "
                "quantizing it twice."
                if quantized and spec.method == "dynamic_int8"
                else "only dynamic_int8 models export to ONNX; export before that quantize "
                "step (or use 'backend: onnxruntime')."
            )
        )
    ctx.device = torch.device("cpu")
    torch_model = ctx.model.to("cpu")
    reference = predict(torch_model, eval_batches(ctx, "eval", 64), control=ctx.control)
    ctx.check_stop()
    baseline = classification_report(reference, ctx.dataset.label_names).accuracy
    staged = ctx.scratch_dir(f"onnx-{index + 1:02d}")
    what = "exporting the model to ONNX" + (" and quantizing it" if quantized else "")
    with ctx.uncancellable(what):
        info = onnx_export.save_onnx_variant(
            torch_model,
            ctx.tokenizer_dir or ctx.source,
            staged,
            quantized=quantized,
            per_channel=per_channel,
        )
    ctx.check_stop()
    with ctx.uncancellable("loading the exported ONNX model"):
        candidate = onnx_runner.OnnxClassifier(onnx_runner.load_onnx_runner(staged, threads=2))
    preds = predict(candidate, eval_batches(ctx, "eval", 64), control=ctx.control)
    ctx.check_stop()
    accuracy = classification_report(preds, ctx.dataset.label_names).accuracy
    drop = 100 * (baseline - accuracy)
    parity = logit_parity(reference, preds)
    if not quantized and spec is None:
        # An fp32 export promises the model's own logits: check it on every eval row.
        bound = onnx_export.FP32_EXPORT_TOLERANCE * max(1.0, parity["max_abs_logit"])
        if parity["max_abs_logit_diff"] > bound:
            raise UserError(
                f"export: the fp32 ONNX model's logits differ from the PyTorch model's by "
                f"up to {parity['max_abs_logit_diff']:.3g} on the eval rows (float rounding "
                f"stays below {bound:.1g}; {100 * parity['agreement']:.2f} % of the "
                "predictions agree), so it was not saved. Please report it."
            )
    if tolerance is not None and drop > tolerance:
        raise UserError(
            f"quantize: onnxruntime int8 costs {drop:.2f} accuracy points, more than "
            f"quantize.tolerance ({tolerance}); try 'per_channel: true', raise the "
            "tolerance, or quantize with the pytorch backend and its accuracy guard."
        )
    ctx.torch_model = torch_model
    ctx.onnx_parameters = count_parameters(torch_model)[0]
    ctx.onnx_format = "onnx_int8" if info.quantized else "onnx_fp32"
    ctx.model = candidate
    onnx_info = dict(
        info.to_dict(),
        path=None,
        baseline_accuracy=baseline,
        max_abs_logit_diff=parity["max_abs_logit_diff"],
        agreement=parity["agreement"],
    )
    record = new_record(ctx, index, step, {"eval_accuracy": accuracy}, onnx=onnx_info)

    def copy_staged(staging: Path) -> None:
        for item in staged.iterdir():
            shutil.copy2(item, staging / item.name)

    target = save_variant(ctx, index, step, record, writer=copy_staged)
    # Run from the saved folder from now on; the staged copy goes with the scratch folder.
    with ctx.uncancellable("loading the saved ONNX model"):
        ctx.model = onnx_runner.OnnxClassifier(onnx_runner.load_onnx_runner(target, threads=2))
    return {
        "accuracy": accuracy,
        "accuracy_drop": drop,
        "size_bytes": info.size_bytes,
        "agreement": parity["agreement"],
    }


def logit_parity(reference: Any, candidate: Any) -> dict[str, float]:
    """How far ``candidate``'s eval logits are from ``reference``'s (same rows, same order).

    Returns the largest absolute logit difference, the largest absolute reference logit
    and the share of rows where both predict the same class (1.0 with no rows).
    """
    if not len(reference.logits):
        return {"max_abs_logit_diff": 0.0, "max_abs_logit": 0.0, "agreement": 1.0}
    diff = np.abs(candidate.logits - reference.logits).max()
    same = (candidate.predicted == reference.predicted).mean()
    return {
        "max_abs_logit_diff": float(diff),
        "max_abs_logit": float(np.abs(reference.logits).max()),
        "agreement": float(same),
    }
