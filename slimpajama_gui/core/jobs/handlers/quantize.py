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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.context import JobContext, eval_batches, handles, warn
from slimpajama_gui.core.jobs.handlers.sensitivity import report_for_current_model
from slimpajama_gui.core.jobs.saving import new_record, save_variant
from slimpajama_gui.core.plan.recipe import Export, Quantize, Step
from slimpajama_gui.core.runtime import onnx_runner
from slimpajama_gui.core.runtime.bench import count_parameters
from slimpajama_gui.core.runtime.evaluate import classification_report, predict
from slimpajama_gui.core.techniques import onnx_export
from slimpajama_gui.core.techniques.quantize import int8_path
from slimpajama_gui.core.techniques.quantize.guard import (
    GuardReport,
    LossVerdict,
    allowed_loss,
    guard_quantization,
    judge_loss,
)
from slimpajama_gui.core.units import TOLERANCE_LABEL


@handles("quantize")
def quantize(ctx: JobContext, index: int, step: Quantize) -> dict[str, Any]:
    """Quantize the current model under the accuracy guard.

    A drop beyond ``step.tolerance`` points counts only when it is beyond the eval set's
    noise (:func:`~slimpajama_gui.core.techniques.quantize.guard.judge_loss`); the guard
    then keeps modules in float until the model passes, and fails the step only when
    nothing passes.
    """
    if step.backend == "onnxruntime":
        return to_onnx(
            ctx, index, step, quantized=True, per_channel=step.per_channel, tolerance=step.tolerance
        )
    # Quantized kernels here are CPU kernels; the rest of the job follows the model.
    ctx.device = torch.device("cpu")
    ctx.model.to(ctx.device)
    report = _torch_guard(ctx, ctx.model, step, index)
    if not report.ok:
        raise UserError(
            _guard_failure(
                step.method, report, step.tolerance, tried_per_channel=step.per_channel,
                other_method="choose method fp16" if step.method != "fp16" else None,
            )
        )  # fmt: skip
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
    if report.verdict is not None:
        details["accuracy_guard"] = _guard_record(report)
    if "sensitivity report" in report.sensitivity_measure:
        details["sensitivity_measure"] = report.sensitivity_measure
    if step.method == "dynamic_int8":
        # Its accuracy depends on the CPU's int8 arithmetic: say which one measured it.
        details["int8_path"] = int8_path.current().to_dict()
    record = new_record(ctx, index, step, {"eval_accuracy": report.final}, quantization=details)
    save_variant(ctx, index, step, record)
    return {"accuracy": report.final, "kept_float": len(report.kept_float)}


def _torch_guard(ctx: JobContext, model: Any, step: Quantize, index: int) -> GuardReport:
    """Run the per-module guard of PyTorch quantization on ``model`` (float, on the CPU).

    For dynamic int8, the int8 cost of each linear comes from a sensitivity report that
    measured this same model, when the job (or the source folder) has one
    (:func:`~slimpajama_gui.core.jobs.handlers.sensitivity.report_for_current_model`);
    the guard then quantizes and runs again only the candidates the report lacks.
    """
    known = None
    if step.method == "dynamic_int8":
        saved = report_for_current_model(ctx, index, step)
        if saved is not None and saved.linears:
            known = saved.linear_costs("kl")
    sample = list(itertools.islice(eval_batches(ctx, "eval", 32), 2))
    labels = None

    def predicted(candidate) -> np.ndarray:
        nonlocal labels
        preds = predict(candidate, eval_batches(ctx, "eval", 64), control=ctx.control)
        ctx.check_stop()
        labels = preds.labels
        return preds.predicted

    first = predicted(model)  # the float model's predictions, and the labels in that order

    def evaluate(candidate) -> np.ndarray:
        return first if candidate is model else predicted(candidate)

    report = guard_quantization(
        model, step.method, evaluate,
        tolerance=step.tolerance, per_channel=step.per_channel,
        embeddings=step.embeddings, sample=sample, labels=labels,
        log=ctx.callbacks.on_message, check=ctx.check_stop, known_costs=known,
    )  # fmt: skip
    if report.first_verdict is not None and report.first_verdict.underpowered:
        warn(ctx.callbacks, report.first_verdict.power_warning())
    return report


def _guard_record(report: GuardReport) -> dict[str, Any]:
    """What the guard judged, for the variant's record: the verdicts and what it kept."""
    out = {"final": report.verdict.to_dict() if report.verdict else None}
    if report.first_verdict is not None and report.tried:
        out["before_keeping_float"] = report.first_verdict.to_dict()
    return out


def _guard_failure(
    what: str,
    report: GuardReport | None,
    tolerance: float,
    *,
    verdict: LossVerdict | None = None,
    tried_per_channel: bool = True,
    other_method: str | None = None,
    also: str = "",
) -> str:
    """The sentence of a quantize step nothing could save, with only advice that applies.

    ``tried_per_channel``: one scale per channel was tried (else it is advised);
    ``other_method``: advice on another method that could apply, or None; ``also``: a
    sentence on what else was tried.
    """
    verdict = verdict or (report.verdict if report else None)
    loss = (
        verdict.sentence()
        if verdict is not None
        else f"{what} costs {100 * report.drop:.2f} accuracy points, more than "
        f"{allowed_loss(tolerance)}."
    )
    kept = (
        f" Keeping {len(report.kept_float)} modules in float did not bring it within."
        if report is not None and report.kept_float
        else ""
    )
    kept += f" {also}" if also else ""
    advice = []
    if not tried_per_channel:
        advice.append("try 'per_channel: true'")
    if other_method:
        advice.append(other_method)
    advice += [f"raise the {TOLERANCE_LABEL} (quantize.tolerance)", "leave the quantize step out"]
    return f"quantize: {loss}{kept} To go on, " + ", ".join(advice[:-1]) + f" or {advice[-1]}."


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
    bits = step.embedding_bits if isinstance(step, Quantize) else 8
    candidate, info, staged = _export(ctx, index, torch_model, quantized, per_channel, bits=bits)
    preds = predict(candidate, eval_batches(ctx, "eval", 64), control=ctx.control)
    ctx.check_stop()
    accuracy = classification_report(preds, ctx.dataset.label_names).accuracy
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
    guard: dict[str, Any] | None = None
    source_model = torch_model
    if tolerance is not None:
        verdict = judge_loss(
            reference.predicted, preds.predicted, reference.labels, tolerance,
            what="onnxruntime int8",
        )  # fmt: skip
        ctx.callbacks.on_message(verdict.sentence())
        if verdict.underpowered:
            warn(ctx.callbacks, verdict.power_warning())
        guard = {"onnxruntime": verdict.to_dict(), "kept": "onnxruntime int8"}
        if not verdict.ok and not per_channel:
            ctx.callbacks.on_message("trying onnxruntime int8 with one scale per channel")
            tried = _export(ctx, index, torch_model, True, True, tag="per-channel", bits=bits)
            tried_preds = predict(tried[0], eval_batches(ctx, "eval", 64), control=ctx.control)
            ctx.check_stop()
            second = judge_loss(
                reference.predicted, tried_preds.predicted, reference.labels, tolerance,
                what="onnxruntime int8 per channel",
            )  # fmt: skip
            ctx.callbacks.on_message(second.sentence())
            guard["onnxruntime_per_channel"] = second.to_dict()
            if second.ok:
                candidate, info, staged = tried
                preds, verdict = tried_preds, second
                guard["kept"] = "onnxruntime int8 per channel"
                guard["why"] = (
                    "per-tensor int8 lost accuracy beyond noise; one scale per channel did not"
                )
        if not verdict.ok:
            fallback = _torch_fallback(ctx, index, step, torch_model, reference, tolerance)
            if fallback is None:
                raise UserError(
                    _guard_failure(
                        "onnxruntime int8", None, tolerance, verdict=verdict,
                        other_method="choose method fp16 with 'backend: pytorch'",
                        also="PyTorch's dynamic_int8 with modules kept in float did not "
                        "pass either.",
                    )
                )  # fmt: skip
            candidate, info, staged, preds, report, final = fallback
            source_model = report.result.model
            guard.update(
                kept="pytorch dynamic_int8 under the accuracy guard, exported to ONNX",
                why=f"onnxruntime int8 lost accuracy beyond noise: {verdict.sentence()}",
                kept_float=list(report.kept_float),
                pytorch=_guard_record(report),
                final=final.to_dict(),
            )
            ctx.callbacks.on_message(
                "kept PyTorch's dynamic_int8 model exported to ONNX instead of onnxruntime "
                "int8"
                + (
                    f", with {len(report.kept_float)} modules in float: "
                    + ", ".join(report.kept_float)
                    if report.kept_float
                    else ""
                )
                + f"; {final.sentence()}"
            )
        accuracy = classification_report(preds, ctx.dataset.label_names).accuracy
        parity = logit_parity(reference, preds)
    drop = 100 * (baseline - accuracy)
    ctx.torch_model = source_model
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
    if guard is not None:
        onnx_info["accuracy_guard"] = guard
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


def _export(
    ctx: JobContext,
    index: int,
    model: Any,
    quantized: bool,
    per_channel: bool,
    tag: str = "",
    bits: int = 8,
) -> tuple[Any, Any, Path]:
    """Export ``model`` to a scratch folder and load it: (ONNX classifier, info, folder)."""
    staged = ctx.scratch_dir(f"onnx-{index + 1:02d}" + (f"-{tag}" if tag else ""))
    what = "exporting the model to ONNX" + (" and quantizing it" if quantized else "")
    with ctx.uncancellable(what):
        info = onnx_export.save_onnx_variant(
            model, ctx.tokenizer_dir or ctx.source, staged,
            quantized=quantized, per_channel=per_channel, embedding_bits=bits,
        )  # fmt: skip
    ctx.check_stop()
    with ctx.uncancellable("loading the exported ONNX model"):
        candidate = onnx_runner.OnnxClassifier(onnx_runner.load_onnx_runner(staged, threads=2))
    return candidate, info, staged


def _torch_fallback(
    ctx: JobContext, index: int, step: Step, torch_model: Any, reference: Any, tolerance: float
):
    """PyTorch dynamic_int8 under the per-module guard, exported to ONNX as it is.

    Returns (ONNX classifier, info, folder, its predictions, the guard's report, its
    verdict against ``reference``), or None when even that does not pass.
    """
    ctx.callbacks.on_message(
        "onnxruntime int8 lost accuracy beyond noise; trying PyTorch's dynamic_int8 with "
        "the accuracy guard, which can keep the most sensitive modules in float"
    )
    options = replace(
        step if isinstance(step, Quantize) else Quantize(),
        method="dynamic_int8", backend="pytorch", per_channel=True, tolerance=tolerance,
    )  # fmt: skip
    report = _torch_guard(ctx, torch_model, options, index)
    if not report.ok:
        return None
    candidate, info, staged = _export(
        ctx, index, report.result.model, True, True, tag="pytorch-int8"
    )
    preds = predict(candidate, eval_batches(ctx, "eval", 64), control=ctx.control)
    ctx.check_stop()
    final = judge_loss(
        reference.predicted, preds.predicted, reference.labels, tolerance,
        what="PyTorch dynamic_int8 in ONNX",
    )  # fmt: skip
    if not final.ok:
        return None
    return candidate, info, staged, preds, report, final


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
