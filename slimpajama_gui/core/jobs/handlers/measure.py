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
from slimpajama_gui.core.runtime import onnx_runner
from slimpajama_gui.core.runtime.bench import BenchConfig, TorchRunner, benchmark
from slimpajama_gui.core.runtime.evaluate import classification_report, predict
from slimpajama_gui.core.techniques import onnx_export


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
    runner, model, folder = _bench_runner(ctx, index, step)
    config = BenchConfig(
        threads=step.threads,
        sentences=step.sentences,
        warmup=step.warmup,
        repeats=None if step.repeats == "auto" else step.repeats,
        throughput_batch=step.throughput_batch,
        max_length=ctx.inputs.fit_length(ctx.dataset.spec.max_length),
    )
    result = benchmark(
        runner, ctx.tokenizer, sentences, config, model=model, folder=folder, control=ctx.control
    )
    ctx.check_stop()
    if model is None:
        result.parameters, result.nonzero_parameters = ctx.parameters()
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
    return dict(figures, backend=result.backend)


def _bench_runner(ctx: JobContext, index: int, step: Benchmark) -> tuple[Any, Any, Path]:
    """The runner for the current variant on the requested backend, on CPU."""
    backend = step.backend
    if backend == "auto":
        backend = "onnxruntime" if ctx.is_onnx else "pytorch"
    folder = ctx.variant or ctx.source
    if backend == "onnxruntime":
        if ctx.is_onnx:
            with ctx.uncancellable("loading the ONNX model"):
                runner = onnx_runner.load_onnx_runner(ctx.variant, threads=step.threads)
            return runner, None, folder
        if getattr(ctx.model, "quantization", None) is not None:
            raise UserError(
                "benchmark.backend: a PyTorch-quantized model cannot run in onnxruntime; "
                "quantize with 'backend: onnxruntime' instead, or benchmark with pytorch."
            )
        # Any PyTorch variant can be timed in onnxruntime: export it on the side.
        scratch = ctx.scratch_dir(f"bench-onnx-{index + 1:02d}")
        with ctx.uncancellable("exporting the model to ONNX to time it"):
            onnx_export.export_onnx(ctx.model.to("cpu"), scratch / onnx_export.ONNX_NAME)
            runner = onnx_runner.OrtRunner(
                scratch / onnx_export.ONNX_NAME, threads=step.threads, config=ctx.model.config
            )
        ctx.check_stop()
        return runner, ctx.model, folder
    model = ctx.torch_model if ctx.is_onnx else ctx.model
    model.to("cpu")  # latency is a CPU figure, whatever trained the model
    return TorchRunner(model), model, folder
