"""Steps that measure the current model and change nothing: evaluate and benchmark.

Their figures go to the job's logged metrics and, once the job saved a variant, into
that variant's record and history row (:func:`~slimpajama_gui.core.jobs.saving.add_figures`);
an evaluate step also stores its predictions there, for Compare's flips.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.context import JobContext, eval_batches, handles
from slimpajama_gui.core.jobs.saving import add_figures
from slimpajama_gui.core.plan.recipe import Benchmark, Evaluate
from slimpajama_gui.core.runtime.bench import BenchConfig, benchmark, runner_for
from slimpajama_gui.core.runtime.evaluate import classification_report, predict


@handles("evaluate")
def evaluate(ctx: JobContext, index: int, step: Evaluate) -> dict[str, Any]:
    """Accuracy, macro-F1 and the confusion matrix of the current model on ``step.split``."""
    total = math.ceil(len(ctx.encoded(step.split)) / step.batch_size)
    done = 0

    def counted():
        nonlocal done
        for batch in eval_batches(ctx, step.split, step.batch_size):
            ctx.check_stop()
            yield batch
            done += 1
            ctx.callbacks.on_progress(index, done, total)

    ctx.model.to(ctx.device)
    preds = predict(ctx.model, counted(), control=ctx.control)
    ctx.check_stop()
    report = classification_report(preds, ctx.dataset.label_names)
    flat = {f"{step.split}_{k}": v for k, v in report.metrics().items()}
    ctx.store.log_metrics(ctx.job_id, index, "evaluate", flat)
    ctx.callbacks.on_eval(index, dict(flat, confusion=report.confusion))
    # Accuracy runs where the model is (a GPU after GPU training); the figures say so.
    figures = dict(report.to_dict(), device=str(ctx.device))
    add_figures(ctx, step.split, figures, predictions=(preds.logits, preds.labels))
    return {
        "split": step.split,
        "accuracy": report.accuracy,
        "macro_f1": report.macro_f1,
        "n": report.n,
    }


@handles("benchmark")
def run_benchmark(ctx: JobContext, index: int, step: Benchmark) -> dict[str, Any]:
    """Latency (batch 1, ms), throughput (sentences/s), size and memory of the current model."""
    if step.latency_batch != 1:
        raise UserError(
            "benchmark.latency_batch: only batch 1 is measured for latency so far; set it to 1."
        )
    sentences = ctx.split("eval").texts
    runner, folder = _bench_runner(ctx, index, step)
    config = BenchConfig(
        threads=step.threads,
        sentences=step.sentences,
        warmup=step.warmup,
        repeats=None if step.repeats == "auto" else step.repeats,
        throughput_batch=step.throughput_batch,
        max_length=ctx.inputs.fit_length(ctx.dataset.spec.max_length),
    )
    result = benchmark(
        runner, ctx.tokenizer, sentences, config, folder=folder, control=ctx.control,
        source=_eval_source(ctx),
    )  # fmt: skip
    ctx.check_stop()
    ctx.callbacks.on_message(
        f"benchmark: {result.backend}, {result.threads} thread"
        f"{'s' if result.threads != 1 else ''}, timed {result.timed}"
    )
    if not ctx.is_onnx:
        ctx.model.to(ctx.device)
    figures = {
        "latency_p50_ms": result.latency_p50_ms,
        "latency_p95_ms": result.latency_p95_ms,
        "throughput_per_s": result.throughput_per_s,
        "size_bytes": result.size_bytes,
        "parameters": result.parameters,
        "nonzero_parameters": result.nonzero_parameters,
        "peak_rss_mb": result.peak_rss_mb,
    }
    ctx.store.log_metrics(ctx.job_id, index, "benchmark", figures)
    ctx.callbacks.on_eval(index, figures)
    add_figures(ctx, "benchmark", result.to_dict())
    return dict(figures, backend=result.backend, timed=result.timed)


def _eval_source(ctx: JobContext) -> str:
    """Where the eval sentences come from, for the result's ``timed``."""
    spec = ctx.dataset.spec
    if spec.eval:
        return f"{spec.eval} (column {spec.text_column}, the recipe's eval set)"
    return f"the eval rows held out of {spec.train} (column {spec.text_column})"


def _bench_runner(ctx: JobContext, index: int, step: Benchmark) -> tuple[Any, Path]:
    """The runner for the current variant on the requested backend, on CPU
    (:func:`~slimpajama_gui.core.runtime.bench.runner_for`, as every benchmark path)."""
    folder = ctx.variant or ctx.source
    # An ONNX source folder loads as an OnnxClassifier (its runner is onnxruntime's)
    # without the job having exported it, so the model itself says so too.
    is_onnx = ctx.is_onnx or getattr(ctx.model, "runner", None) is not None
    if is_onnx and step.backend == "pytorch":
        # An ONNX variant's PyTorch twin: the model it was exported from.
        if ctx.torch_model is None:
            raise UserError(
                "benchmark.backend: this job's model is an ONNX file without the PyTorch "
                "weights it came from; benchmark it with 'auto' or 'onnxruntime'."
            )
        return runner_for(ctx.torch_model, backend="pytorch", threads=step.threads), folder
    wants_ort = step.backend == "onnxruntime" or (step.backend == "auto" and is_onnx)
    what = "loading the ONNX model" if is_onnx else "exporting the model to ONNX to time it"
    if wants_ort:
        # Any PyTorch variant can be timed in onnxruntime: runner_for exports it on the side.
        scratch = None if is_onnx else ctx.scratch_dir(f"bench-onnx-{index + 1:02d}")
        with ctx.uncancellable(what):
            runner = runner_for(
                ctx.model, backend="onnxruntime", threads=step.threads, export_dir=scratch
            )
        ctx.check_stop()
        return runner, folder
    return runner_for(ctx.model, backend="pytorch", threads=step.threads), folder
