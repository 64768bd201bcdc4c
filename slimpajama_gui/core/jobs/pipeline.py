"""Run a recipe: load the model and data, run the steps in order, save each variant.

The pipeline knows no screen. It reports through :class:`PipelineCallbacks` (no-op
hooks; the CLI prints, the GUI's bridge emits Qt signals) and reads stop requests from a
:class:`~slimpajama_gui.core.techniques.train.Control`: checked between steps and inside every
loop (training steps, evaluation and benchmark batches, importance-scoring batches,
vocabulary-counting chunks, quantization-guard candidates). The phases that have no
loop of ours to check in (loading the data, model and tokenizer, tokenizing a split,
exporting to ONNX, loading an ONNX session, saving a variant) run inside
``control.uncancellable(...)``, so whoever asks the job to stop can say what it waits
for; the stop is honoured right after them. Step types map to handler functions in
:data:`HANDLERS` (a registry, not an if/elif chain); a new technique adds a handler here
and its config in ``recipe.py``.

Example:
    >>> result = run(load_recipe("resources/recipes/demo.yaml"))  # doctest: +SKIP
    >>> result.status, result.final
    ('done', PosixPath('.../demo-output/01-finetune'))
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimpajama_gui import __version__
from slimpajama_gui.core import data as data_mod
from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.catalog import packaged_minilm_path
from slimpajama_gui.core.model.saving import copy_tokenizer_files
from slimpajama_gui.core.model.tokenizers import load_tokenizer as open_tokenizer
from slimpajama_gui.core.model.tokenizers import pin_tokenizer_class
from slimpajama_gui.core.plan.recipe import (
    Benchmark,
    Distill,
    Evaluate,
    Export,
    FineTune,
    Prune,
    Quantize,
    Recipe,
    Step,
    dump_recipe,
)
from slimpajama_gui.core.runtime import inputs as inputs_mod
from slimpajama_gui.core.runtime import onnx_runner
from slimpajama_gui.core.runtime.bench import BenchConfig, TorchRunner, benchmark, count_parameters
from slimpajama_gui.core.runtime.evaluate import classification_report, predict
from slimpajama_gui.core.runtime.loading import open_model
from slimpajama_gui.core.storage.history import JobStore, OutputLock
from slimpajama_gui.core.storage.leftovers import make_scratch, sweep_output
from slimpajama_gui.core.storage.safe_io import atomic_dir, atomic_write_text
from slimpajama_gui.core.techniques import distill as distill_mod
from slimpajama_gui.core.techniques import onnx_export
from slimpajama_gui.core.techniques import prune as prune_mod
from slimpajama_gui.core.techniques.prune import vocabulary as vocab_mod
from slimpajama_gui.core.techniques.quantize import int8_path
from slimpajama_gui.core.techniques.quantize.folders import save_quantized
from slimpajama_gui.core.techniques.quantize.guard import guard_quantization
from slimpajama_gui.core.techniques.train import (
    Callbacks,
    Control,
    NonFiniteLoss,
    TrainConfig,
    TrainState,
    pick_device,
    train,
)

log = logging.getLogger(__name__)

RESULT_FILE = "slimpajama.json"


class PipelineCallbacks:
    """No-op hooks; every call happens on the thread that runs the pipeline."""

    def on_job_start(self, job_id: int, recipe: Recipe) -> None: ...

    def on_message(self, text: str) -> None:
        """A warning or note for the user (data warnings, a new classifier head...)."""

    def on_step_start(self, index: int, step: Step, count: int) -> None: ...

    def on_progress(self, index: int, done: int, total: int) -> None:
        """``done`` of ``total`` units of the current step (training steps, batches)."""

    def on_log(self, index: int, metrics: dict[str, float]) -> None:
        """Training metrics: loss (and each loss term), lr, grad_norm, step, epoch."""

    def on_eval(self, index: int, metrics: dict[str, Any]) -> None: ...

    def on_artifact(self, index: int, path: Path, summary: dict[str, Any]) -> None: ...

    def on_step_end(self, index: int, step: Step, summary: dict[str, Any]) -> None: ...

    def on_end(self, status: str, error: str | None) -> None: ...


@dataclass
class PipelineResult:
    job_id: int
    status: str  # done | failed | cancelled
    error: str | None = None
    failed_step: str | None = None
    variants: list[Path] = field(default_factory=list)
    #: one row per step: {"step": "finetune", "accuracy": ..., "p50_ms": ...}
    summary: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> Path | None:
        return self.variants[-1] if self.variants else None


class _Cancelled(Exception):
    """Raised inside a step when the control asks to stop."""


@dataclass
class _Context:
    """What the steps share: the current model and where it is saved."""

    recipe: Recipe
    job_id: int
    source: Path
    output: Path
    model: Any
    tokenizer: Any
    dataset: data_mod.TextDataset
    device: torch.device
    callbacks: PipelineCallbacks
    control: Control
    store: JobStore
    #: What the model can represent; every encoding goes through it.
    inputs: inputs_mod.ModelInputs
    model_name: str = ""
    tokenizer_dir: Path | None = None  # where the current tokenizer's files are
    where: str = ""  # the running step for a person: "step 3 of 4 (export)"
    scratch: Path | None = None  # temporary files of this job (removed at the end)
    variant: Path | None = None  # folder of the current model, once saved
    #: Once the model is an ONNX variant: the PyTorch model it came from (for a
    #: PyTorch benchmark of the same weights), its parameter count and weight format.
    torch_model: Any = None
    onnx_parameters: int | None = None
    onnx_format: str | None = None
    variant_info: dict[str, Any] = field(default_factory=dict)
    variants: list[Path] = field(default_factory=list)
    _encoded: dict[str, data_mod.Encoded] = field(default_factory=dict)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0

    def split(self, name: str) -> data_mod.Split:
        split = getattr(self.dataset, name)
        if split is None:
            raise UserError(
                f"the recipe evaluates on '{name}' but the dataset has no {name} file; "
                f"add 'dataset.{name}: PATH' or evaluate on 'eval'."
            )
        return split

    def encoded(self, name: str) -> data_mod.Encoded:
        if name not in self._encoded:
            spec_len = self.dataset.spec.max_length
            with self.uncancellable(f"tokenizing the {name} data"):
                enc = self.inputs.encode_split(self.split(name), self.tokenizer, spec_len)
            for warning in enc.warnings:
                self.callbacks.on_message(warning)
            self._encoded[name] = enc
        return self._encoded[name]

    def check_stop(self) -> None:
        if self.control.should_stop:
            raise _Cancelled

    def uncancellable(self, what: str):
        """A phase with no stop point, named for whoever asks the job to stop."""
        return self.control.uncancellable(f"{what} in {self.where}" if self.where else what)

    @property
    def is_onnx(self) -> bool:
        return self.onnx_format is not None

    def parameters(self) -> tuple[int, int]:
        if self.is_onnx:
            return self.onnx_parameters or 0, self.onnx_parameters or 0
        return count_parameters(self.model)

    def scratch_dir(self, name: str) -> Path:
        if self.scratch is None:
            self.scratch = make_scratch(self.output, self.job_id)
        path = self.scratch / name
        path.mkdir(parents=True, exist_ok=True)
        return path


Handler = Callable[[_Context, int, Step], dict[str, Any]]
#: Steps that can run on an ONNX variant (they measure, they do not change weights).
ONNX_STEPS = {"evaluate", "benchmark"}
HANDLERS: dict[str, Handler] = {}


def handles(step_type: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[step_type] = fn
        return fn

    return register


# --------------------------------------------------------------------------- steps


class _TrainBridge(Callbacks):
    """Training-loop events → pipeline events and the job history."""

    def __init__(self, ctx: _Context, index: int, step_type: str) -> None:
        self.ctx, self.index, self.step_type = ctx, index, step_type
        self._last_progress = 0.0

    def on_step_end(self, state: TrainState) -> None:
        self.ctx.callbacks.on_progress(self.index, state.step, state.total_steps)
        now = time.monotonic()
        if now - self._last_progress > 1.0:  # the history needs no more than 1 write/s
            self._last_progress = now
            self.ctx.store.set_progress(self.ctx.job_id, self._overall(state.fraction))

    def _overall(self, fraction: float) -> float:
        return (self.index + fraction) / len(self.ctx.recipe.steps)

    def on_log(self, state: TrainState, metrics: dict[str, float]) -> None:
        metrics = dict(metrics, step=state.step)
        self.ctx.store.log_metrics(self.ctx.job_id, self.index, self.step_type, metrics)
        self.ctx.callbacks.on_log(self.index, metrics)

    def on_evaluate(self, state: TrainState, metrics: dict[str, float]) -> None:
        metrics = {f"eval_{k}" if k != "step" else k: v for k, v in metrics.items()}
        self.ctx.store.log_metrics(self.ctx.job_id, self.index, self.step_type, metrics)
        self.ctx.callbacks.on_eval(self.index, metrics)


def _eval_batches(ctx: _Context, name: str, batch_size: int):
    return data_mod.batches(
        ctx.encoded(name),
        ctx.split(name).labels,
        batch_size,
        shuffle=False,
        seed=0,
        pad_id=ctx.pad_id,
        sort_by_length=True,
    )


def _fit(
    ctx: _Context,
    index: int,
    step_type: str,
    model: Any,
    config: TrainConfig,
    *,
    loss_fn: Any = None,
    callbacks: tuple[Callbacks, ...] = (),
    eval_batch_size: int = 64,
):
    """The shared training loop on the recipe's data; every technique trains through this."""
    encoded = ctx.encoded("train")
    labels = ctx.dataset.train.labels
    steps_per_epoch = math.ceil(len(encoded) / config.batch_size)
    ctx.encoded("eval")

    def train_batches(epoch: int):
        return data_mod.batches(
            encoded,
            labels,
            config.batch_size,
            shuffle=True,
            seed=config.seed + epoch,
            pad_id=ctx.pad_id,
        )

    def eval_fn(m, control) -> dict[str, float]:
        preds = predict(m, _eval_batches(ctx, "eval", eval_batch_size), control=control)
        return classification_report(preds, ctx.dataset.label_names).metrics()

    config.device = str(ctx.device)
    extra = {"loss_fn": loss_fn} if loss_fn is not None else {}
    result = train(
        model,
        train_batches,
        steps_per_epoch,
        config,
        eval_fn=eval_fn,
        callbacks=[*callbacks, _TrainBridge(ctx, index, step_type)],
        control=ctx.control,
        **extra,
    )
    if result.status == "cancelled":
        raise _Cancelled
    return result


@handles("finetune")
def _finetune(ctx: _Context, index: int, step: FineTune) -> dict[str, Any]:
    config = TrainConfig(
        epochs=step.epochs,
        learning_rate=step.learning_rate,
        batch_size=step.batch_size,
        warmup_ratio=step.warmup_ratio,
        weight_decay=step.weight_decay,
        max_grad_norm=step.max_grad_norm if step.max_grad_norm > 0 else float("inf"),
        eval_every_steps=step.eval_every_steps,
        max_steps=step.max_steps,
        keep_best=step.keep_best,
        seed=step.seed,
        log_every_steps=step.log_every_steps,
    )
    result = _fit(ctx, index, "finetune", ctx.model, config, eval_batch_size=step.eval_batch_size)
    metrics = {
        "eval_accuracy": result.best_metric,
        "train_steps": result.steps,
        "train_seconds": round(result.seconds, 1),
        "examples_per_second": round(result.examples_per_second, 1),
    }
    ctx.variant_info = {"metrics": {"training": metrics}}
    _save_variant(ctx, index, step)
    return {"accuracy": result.best_metric, "seconds": result.seconds}


@handles("evaluate")
def _evaluate(ctx: _Context, index: int, step: Evaluate) -> dict[str, Any]:
    total = math.ceil(len(ctx.encoded(step.split)) / step.batch_size)
    done = 0

    def counted():
        nonlocal done
        for batch in _eval_batches(ctx, step.split, step.batch_size):
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
    ctx.variant_info.setdefault("metrics", {})[step.split] = report.to_dict()
    _update_variant(ctx)
    return {
        "split": step.split,
        "accuracy": report.accuracy,
        "macro_f1": report.macro_f1,
        "n": report.n,
    }


@handles("benchmark")
def _benchmark(ctx: _Context, index: int, step: Benchmark) -> dict[str, Any]:
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
    ctx.variant_info.setdefault("metrics", {})["benchmark"] = result.to_dict()
    _update_variant(ctx)
    return dict(figures, backend=result.backend)


def _bench_runner(ctx: _Context, index: int, step: Benchmark) -> tuple[Any, Any, Path]:
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


def _accuracy(ctx: _Context, batch_size: int = 64) -> float:
    preds = predict(ctx.model, _eval_batches(ctx, "eval", batch_size), control=ctx.control)
    ctx.check_stop()
    return classification_report(preds, ctx.dataset.label_names).accuracy


def _train_config(step: Any, epochs: float, *, keep_best: bool = True) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        learning_rate=step.learning_rate,
        batch_size=step.batch_size,
        keep_best=keep_best,
        seed=getattr(step, "seed", 0),
    )


def _report_sparsity(ctx: _Context, index: int) -> dict[str, Any]:
    report = prune_mod.sparsity_report(ctx.model)
    figures = {f"sparsity/{name}": value for name, value in report.per_layer.items()}
    figures["sparsity/overall"] = report.overall
    ctx.store.log_metrics(ctx.job_id, index, "prune", figures)
    ctx.callbacks.on_eval(index, figures)
    ctx.callbacks.on_message(report.note)
    return report.to_dict()


def _layer_weights(model) -> dict[int, int]:
    """Encoder layer index -> weights of its linears (0 for a branch pruned away)."""
    return {
        i: sum(module.weight.numel() for module in layer.modules() if isinstance(module, nn.Linear))
        for i, layer in enumerate(model.layers)
    }


def _report_removed(
    ctx: _Context, index: int, before: dict[int, int], kept: Sequence[int] | None = None
) -> None:
    """Per-layer share of weights structured pruning removed, for the sparsity chart.

    The same ``sparsity/layer i`` keys as unstructured pruning (the share of each
    original layer's weights that no longer count), so one chart shows both; a dropped
    layer is 100 %.
    """
    after = _layer_weights(ctx.model)
    kept = list(kept) if kept is not None else list(before)
    remaining = {original: after[new] for new, original in enumerate(kept)}
    figures = {f"sparsity/layer {i}": 1.0 - remaining.get(i, 0) / n for i, n in before.items() if n}
    total = sum(before.values())
    figures["sparsity/overall"] = 1.0 - sum(remaining.values()) / total if total else 0.0
    ctx.store.log_metrics(ctx.job_id, index, "prune", figures)
    ctx.callbacks.on_eval(index, figures)


@handles("prune")
def _prune(ctx: _Context, index: int, step: Prune) -> dict[str, Any]:
    before = count_parameters(ctx.model)[0]
    layer_weights = _layer_weights(ctx.model)
    callbacks: tuple[Callbacks, ...] = ()
    info: dict[str, Any] = {"method": step.method}
    if step.method == "magnitude":
        if step.schedule == "gradual":
            steps = math.ceil(step.recovery_epochs * len(ctx.encoded("train")) / step.batch_size)
            callbacks = (
                prune_mod.GradualMagnitudePruner(
                    ctx.model,
                    step.amount,
                    step.scope,
                    start_step=0,
                    end_step=max(1, int(0.75 * steps)),
                ),
            )
        else:
            prune_mod.magnitude_prune(ctx.model, step.amount, step.scope)
    elif step.method in ("heads", "ffn"):
        batches = data_mod.batches(
            ctx.encoded("train"), ctx.dataset.train.labels, step.batch_size,
            shuffle=True, seed=0, pad_id=ctx.pad_id,
        )  # fmt: skip
        importance = prune_mod.structure_importance(
            ctx.model, batches, max_batches=32, check=ctx.check_stop
        )
        fraction = {"head_fraction" if step.method == "heads" else "ffn_fraction": step.amount}
        ctx.model = prune_mod.prune_structure(ctx.model, importance, scope=step.scope, **fraction)
        ctx.model.to(ctx.device)
        info.update(layer_heads=ctx.model.config.layer_heads, layer_ffn=ctx.model.config.layer_ffn)
        _report_removed(ctx, index, layer_weights)
    elif step.method == "layers":
        ctx.model = prune_mod.drop_layers(ctx.model, step.keep_layers or [])
        ctx.model.to(ctx.device)
        info["kept_layers"] = list(step.keep_layers or [])
        _report_removed(ctx, index, layer_weights, kept=info["kept_layers"])
    elif step.method == "vocabulary":
        return _prune_vocabulary(ctx, index, step, before)
    if step.recovery_epochs > 0:
        # A gradual schedule is not finished before its end step, so "best" weights from
        # earlier would be less sparse than asked: keep the last ones there.
        keep_best = step.schedule == "oneshot"
        _fit(
            ctx,
            index,
            "prune",
            ctx.model,
            _train_config(step, step.recovery_epochs, keep_best=keep_best),
            callbacks=callbacks,
        )
    if step.method == "magnitude":
        prune_mod.make_permanent(ctx.model)
        info["sparsity"] = _report_sparsity(ctx, index)
    accuracy = _accuracy(ctx)
    after = count_parameters(ctx.model)[0]
    ctx.variant_info = {"metrics": {"training": {"eval_accuracy": accuracy}}, "prune": info}
    _save_variant(ctx, index, step)
    return {"accuracy": accuracy, "parameters_before": before, "parameters": after}


def _prune_vocabulary(ctx: _Context, index: int, step: Prune, before: int) -> dict[str, Any]:
    out = ctx.scratch_dir(f"tokenizer-{index + 1:02d}")
    # Every train row (both text columns), also those dataset.max_rows left out of
    # training; measured on the eval rows, encoded at the length the model reads.
    texts, pairs = ctx.dataset.vocabulary_rows()
    ev = ctx.dataset.eval
    ctx.model, report = vocab_mod.prune_vocabulary(
        ctx.model,
        ctx.tokenizer_dir or ctx.source,
        texts,
        out,
        pairs=pairs,
        eval_texts=ev.texts,
        eval_pairs=ev.pairs,
        max_length=ctx.dataset.spec.max_length,
        check=ctx.check_stop,
    )
    ctx.model.to(ctx.device)
    # Token ids changed: the tokenizer and every cached encoding must follow.
    ctx.tokenizer_dir = out
    ctx.tokenizer = open_tokenizer(out)
    ctx.inputs = inputs_mod.model_inputs(ctx.model, ctx.tokenizer, ctx.model_name)
    ctx._encoded.clear()
    ctx.callbacks.on_message(report.sentence())
    accuracy = _accuracy(ctx)
    figures = report.to_dict()
    ctx.variant_info = {
        "metrics": {"training": {"eval_accuracy": accuracy}},
        "prune": {"method": "vocabulary", **figures},
    }
    _save_variant(ctx, index, step)
    return {
        "accuracy": accuracy,
        "parameters_before": before,
        "parameters": count_parameters(ctx.model)[0],
        **{k: figures[k] for k in _VOCAB_FIGURES},
    }


#: The vocabulary report's figures that the step's summary (CLI, job log) carries.
_VOCAB_FIGURES = ("kept", "unk_rate_on_texts", "unk_rate_on_eval", "changed_on_eval")


@handles("distill")
def _distill(ctx: _Context, index: int, step: Distill) -> dict[str, Any]:
    teacher = ctx.model
    student = distill_mod.student_from_teacher(teacher, step.student_layers)
    student.to(ctx.device)
    base = _train_config(step, step.epochs)

    def fit(model, epochs, loss_fn=None, callbacks=()):
        return _fit(
            ctx,
            index,
            "distill",
            model,
            replace(base, epochs=epochs),
            loss_fn=loss_fn,
            callbacks=tuple(callbacks),
        )

    cache_batches = data_mod.batches(
        ctx.encoded("train"), ctx.dataset.train.labels, 64,
        shuffle=False, seed=0, pad_id=ctx.pad_id, sort_by_length=True,
    )  # fmt: skip
    total = math.ceil(len(ctx.encoded("train")) / 64)
    done = {"n": 0}

    def cached(*_args) -> None:
        done["n"] += 1
        ctx.callbacks.on_progress(index, done["n"], total)

    result = distill_mod.distill(
        student, teacher, fit,
        temperature=step.temperature, alpha_kd=step.alpha_kd,
        hidden_mse=step.hidden_mse, attention_mse=step.attention_mse, epochs=step.epochs,
        cache=True, train_batches_for_cache=cache_batches, control=ctx.control, on_cache_batch=cached,
    )  # fmt: skip
    if result.status == "cancelled":
        raise _Cancelled
    layers = list(getattr(student, "distill_layers", step.student_layers))
    ctx.model = student
    del teacher
    accuracy = _accuracy(ctx)
    ctx.variant_info = {
        "metrics": {"training": {"eval_accuracy": accuracy, "train_steps": result.steps}},
        "distill": {
            "teacher_layers": layers,
            "temperature": step.temperature,
            "alpha_kd": step.alpha_kd,
        },
    }
    _save_variant(ctx, index, step)
    return {"accuracy": accuracy, "parameters": count_parameters(ctx.model)[0]}


@handles("quantize")
def _quantize(ctx: _Context, index: int, step: Quantize) -> dict[str, Any]:
    if step.backend == "onnxruntime":
        return _to_onnx(
            ctx, index, step, quantized=True, per_channel=step.per_channel, tolerance=step.tolerance
        )
    # Quantized kernels here are CPU kernels; the rest of the job follows the model.
    ctx.device = torch.device("cpu")
    ctx.model.to(ctx.device)
    sample = list(itertools.islice(_eval_batches(ctx, "eval", 32), 2))

    def accuracy_of(model) -> float:
        preds = predict(model, _eval_batches(ctx, "eval", 64), control=ctx.control)
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
    ctx.variant_info = {
        "metrics": {"training": {"eval_accuracy": report.final}},
        "quantization": {
            "method": step.method,
            "baseline_accuracy": report.baseline,
            "accuracy_before_guard": report.quantized,
            "kept_float": list(report.kept_float),
            "note": report.result.note,
        },
    }
    if step.method == "dynamic_int8":
        # Its accuracy depends on the CPU's int8 arithmetic: say which one measured it.
        ctx.variant_info["quantization"]["int8_path"] = int8_path.current().to_dict()
    _save_variant(ctx, index, step)
    return {"accuracy": report.final, "kept_float": len(report.kept_float)}


@handles("export")
def _export(ctx: _Context, index: int, step: Export) -> dict[str, Any]:
    return _to_onnx(ctx, index, step, quantized=False, per_channel=True, tolerance=None)


def _to_onnx(
    ctx: _Context,
    index: int,
    step: Step,
    *,
    quantized: bool,
    per_channel: bool,
    tolerance: float | None,
) -> dict[str, Any]:
    """Export (and maybe int8-quantize) to ONNX, check accuracy, save it as the new variant."""
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
    reference = predict(torch_model, _eval_batches(ctx, "eval", 64), control=ctx.control)
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
    preds = predict(candidate, _eval_batches(ctx, "eval", 64), control=ctx.control)
    ctx.check_stop()
    accuracy = classification_report(preds, ctx.dataset.label_names).accuracy
    drop = 100 * (baseline - accuracy)
    parity = _logit_parity(reference, preds)
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
    ctx.variant_info = {
        "metrics": {"training": {"eval_accuracy": accuracy}},
        "onnx": dict(
            info.to_dict(),
            path=None,
            baseline_accuracy=baseline,
            max_abs_logit_diff=parity["max_abs_logit_diff"],
            agreement=parity["agreement"],
        ),
    }

    def copy_staged(staging: Path) -> None:
        for item in staged.iterdir():
            shutil.copy2(item, staging / item.name)

    target = _save_variant(ctx, index, step, writer=copy_staged)
    # Run from the saved folder from now on; the staged copy goes with the scratch folder.
    with ctx.uncancellable("loading the saved ONNX model"):
        ctx.model = onnx_runner.OnnxClassifier(onnx_runner.load_onnx_runner(target, threads=2))
    return {
        "accuracy": accuracy,
        "accuracy_drop": drop,
        "size_bytes": info.size_bytes,
        "agreement": parity["agreement"],
    }


def _logit_parity(reference: Any, candidate: Any) -> dict[str, float]:
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


# --------------------------------------------------------------------------- saving


def _result_json(ctx: _Context, index: int, step: Step | None) -> dict[str, Any]:
    params, nonzero = ctx.parameters()
    info = {
        "format": "slimpajama-result",
        "version": 1,
        "app_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "job_id": ctx.job_id,
        "step_index": index,
        "step": step.to_dict() if step is not None else None,
        "parent": str(ctx.variants[-1] if ctx.variants else ctx.source),
        "source_model": str(ctx.source),
        "label_names": list(ctx.dataset.label_names),
        "weights_format": ctx.onnx_format or _weights_format(ctx.model),
        "parameters": params,
        "nonzero_parameters": nonzero,
        "recipe": ctx.recipe.to_dict(),
        # Relative dataset paths in the recipe are relative to this folder.
        "recipe_base_dir": str(ctx.recipe.base_dir) if ctx.recipe.base_dir else None,
    }
    info.update({k: v for k, v in ctx.variant_info.items() if k != "size_bytes"})
    return info


def _weights_format(model: Any) -> str:
    spec = getattr(model, "quantization", None)
    return spec.method if spec is not None else "fp32"


def _model_card(info: dict[str, Any], folder_name: str) -> str:
    metrics = info.get("metrics", {})
    lines = [
        f"# {folder_name}",
        "",
        f"A text classifier made by SlimPajama Studio {info['app_version']} from "
        f"`{info['source_model']}` (job {info['job_id']}, step "
        f"{info['step_index'] + 1}: {info['step']['type'] if info['step'] else 'source'}).",
        "",
        f"- Labels: {', '.join(info['label_names'])}",
        f"- Parameters: {info['parameters']:,} (non-zero {info['nonzero_parameters']:,})",
        f"- Weights: {info['weights_format']}, safetensors",
    ]
    for split in ("eval", "test"):
        if split in metrics:
            m = metrics[split]
            lines.append(
                f"- {split} accuracy: {100 * m['accuracy']:.2f} % (macro-F1 {100 * m['macro_f1']:.2f}, n={m['n']})"
            )
    if "benchmark" in metrics:
        b = metrics["benchmark"]
        lines.append(
            f"- Latency (batch 1, {b['threads']} threads, {b['backend']}): p50 "
            f"{b['latency_p50_ms']:.2f} ms, p95 {b['latency_p95_ms']:.2f} ms; throughput "
            f"{b['throughput_per_s']:.0f}/s at batch {b['throughput_batch']}"
        )
    lines += [
        "",
        'Load it with SlimPajama Studio (`slimpajama predict FOLDER "text"`) or in Python:',
        "",
        "```python",
        "from slimpajama_gui.core.model.encoder import SlimPajamaModel",
        "model = SlimPajamaModel.from_pretrained(FOLDER)",
        "```",
        "",
        "`slimpajama.json` beside this file holds the recipe, the metrics and the parent model.",
        "",
    ]
    return "\n".join(lines)


def _save_variant(
    ctx: _Context, index: int, step: Step, *, writer: Callable[[Path], None] | None = None
) -> Path:
    """Save the current model as ``OUTPUT/NN-type`` atomically (old copy or new, never half).

    ``writer`` puts the model files into the staging folder when the model is not a
    PyTorch one (ONNX variants); the report and model card are added here either way.
    """
    target = ctx.output / f"{index + 1:02d}-{step.step_type}"
    ctx.check_stop()
    # From here the variant is written whole or not at all (atomic_dir): a stop request
    # waits for the save, and a process that dies inside leaves only a staging folder.
    with ctx.uncancellable(f"saving {target.name}"):
        ctx.model.to("cpu")
        info = _result_json(ctx, index, step)
        with atomic_dir(target) as staging:
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
            atomic_write_text(staging / RESULT_FILE, json.dumps(info, indent=2) + "\n")
            atomic_write_text(staging / "README.md", _model_card(info, target.name))
    ctx.model.to(ctx.device)
    ctx.variants.append(target)
    ctx.variant = target
    ctx.store.add_artifact(ctx.job_id, index, "model", str(target), info.get("metrics", {}))
    ctx.callbacks.on_artifact(index, target, info)
    return target


def _update_variant(ctx: _Context) -> None:
    """Add new metrics to the saved variant's ``slimpajama.json`` and model card."""
    if ctx.variant is None:
        return
    path = ctx.variant / RESULT_FILE
    info = json.loads(path.read_text(encoding="utf-8"))
    info["metrics"] = ctx.variant_info.get("metrics", {})
    atomic_write_text(path, json.dumps(info, indent=2) + "\n")
    atomic_write_text(ctx.variant / "README.md", _model_card(info, ctx.variant.name))


# --------------------------------------------------------------------------- running


def resolve_model_path(recipe: Recipe) -> Path:
    return (
        packaged_minilm_path() if recipe.uses_packaged_model else recipe.resolve_path(recipe.model)
    )


def run(
    recipe: Recipe,
    callbacks: PipelineCallbacks | None = None,
    control: Control | None = None,
    *,
    store: JobStore | None = None,
    device: str | None = None,
) -> PipelineResult:
    """Run every step of ``recipe`` and record the job; never raises for a failed job.

    Returns:
        The job's outcome. ``status`` is "failed" with a sentence in ``error`` (and the
        step in ``failed_step``) when something went wrong; earlier variants stay.
    """
    callbacks = callbacks or PipelineCallbacks()
    control = control or Control()
    own_store = store is None
    store = store or JobStore()
    started = time.monotonic()
    recipe.validate()
    output = recipe.resolve_path(recipe.output)
    job_id = store.create_job(recipe.name, dump_recipe(recipe), str(output))
    result = PipelineResult(job_id=job_id, status="running")
    current: str | None = None
    threads_before = torch.get_num_threads()
    try:
        with OutputLock(output, job_id=job_id):
            # What a job killed in this folder left behind (only a lock holder writes it).
            sweep_output(output)
            store.mark_running(job_id)
            callbacks.on_job_start(job_id, recipe)
            current = "loading the model and data"
            ctx = _prepare(recipe, job_id, output, callbacks, control, store, device)
            for index, step in enumerate(recipe.steps):
                ctx.check_stop()
                current = f"step {index + 1} ({step.step_type})"
                ctx.where = f"step {index + 1} of {len(recipe.steps)} ({step.step_type})"
                callbacks.on_step_start(index, step, len(recipe.steps))
                if ctx.is_onnx and step.step_type not in ONNX_STEPS:
                    raise UserError(
                        f"step {index + 1} '{step.step_type}' needs a PyTorch model, but an "
                        "earlier step turned the model into ONNX; move export and "
                        "onnxruntime quantization to the end of the recipe."
                    )
                step_started = time.monotonic()
                summary = HANDLERS[step.step_type](ctx, index, step)
                summary["seconds"] = time.monotonic() - step_started
                result.summary.append({"step": step.step_type, **summary})
                store.set_progress(job_id, (index + 1) / len(recipe.steps))
                callbacks.on_step_end(index, step, summary)
            result.status = "done"
    except _Cancelled:
        result.status = "cancelled"
        result.error = f"cancelled during {current}" if current else "cancelled"
    except KeyboardInterrupt:
        result.status, result.error = "cancelled", "interrupted from the keyboard"
        raise
    except NonFiniteLoss as exc:
        result.status, result.error, result.failed_step = "failed", str(exc), current
    except UserError as exc:
        result.status, result.error, result.failed_step = "failed", str(exc), current
    except Exception as exc:  # noqa: BLE001 - a bug must still end the job as "failed"
        log.exception("Job %s failed in %s", job_id, current)
        result.status, result.failed_step = "failed", current
        result.error = (
            f"internal error in {current or 'the job'}: {type(exc).__name__}: {exc}. "
            "The log has the full traceback; please report it."
        )
    finally:
        torch.set_num_threads(threads_before)
        result.seconds = time.monotonic() - started
        if result.status == "running":  # an exception we re-raise (KeyboardInterrupt)
            result.status = "cancelled"
        if "ctx" in locals():
            result.variants = list(ctx.variants)
            if ctx.scratch is not None:
                shutil.rmtree(ctx.scratch, ignore_errors=True)
        store.finish(job_id, result.status, error=result.error, failed_step=result.failed_step)
        callbacks.on_end(result.status, result.error)
        if own_store:
            store.close()
    return result


def _prepare(
    recipe: Recipe,
    job_id: int,
    output: Path,
    callbacks: PipelineCallbacks,
    control: Control,
    store: JobStore,
    device: str | None,
) -> _Context:
    int8_path.check_setting()  # a mistyped override fails before any step runs
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    # Reading a file and a model has no stop point; the stop is honoured in between.
    if control.should_stop:
        raise _Cancelled
    spec = data_mod.DatasetSpec.from_dict(recipe.dataset)
    with control.uncancellable("loading the data"):
        dataset = data_mod.load_dataset(spec, base_dir=recipe.base_dir)
    for warning in dataset.warnings:
        callbacks.on_message(warning)
    if control.should_stop:
        raise _Cancelled
    source = resolve_model_path(recipe)
    with control.uncancellable("loading the model"):
        handle = open_model(source)
        # A trained head's rows are its classes: the data is numbered as the head is.
        dataset, note = inputs_mod.match_label_order(
            dataset, inputs_mod.head_label_names(handle.info.path), handle.info.name
        )
        if note:
            callbacks.on_message(note)
        id2label = dict(enumerate(dataset.label_names))
        model = handle.load_model(num_labels=dataset.num_labels, id2label=id2label)
    report = getattr(model, "load_report", None)
    if report is not None and report.new_keys:
        callbacks.on_message(
            f"{handle.info.name} gets a new {dataset.num_labels}-class classifier head "
            "(randomly initialised); fine-tune before trusting its predictions."
        )
    with control.uncancellable("loading the tokenizer"):
        tokenizer = handle.load_tokenizer()
    # Tokens, segment ids, positions and labels the model cannot represent: all refused
    # (or fitted, as transformers fits them) here, before any step writes anything.
    inputs, notes = inputs_mod.check_job_inputs(
        model,
        tokenizer,
        dataset,
        name=handle.info.name,
        max_length=spec.max_length,
        first_label_step=_first_untrained_use(recipe.steps),
    )
    for note in notes:
        callbacks.on_message(note)
    run_device = pick_device(device or recipe.device)
    model.to(run_device)
    return _Context(
        recipe=recipe,
        job_id=job_id,
        source=handle.info.path,
        tokenizer_dir=handle.info.path,
        output=output,
        model=model,
        tokenizer=tokenizer,
        dataset=dataset,
        device=run_device,
        callbacks=callbacks,
        control=control,
        store=store,
        inputs=inputs,
        model_name=handle.info.name,
    )


def _first_untrained_use(steps: Sequence[Step]) -> str | None:
    """The first step that uses the classifier's outputs before any step trains it."""
    for index, step in enumerate(steps):
        if step.step_type == "finetune":
            return None
        # Pruning weights by magnitude or dropping layers needs no labels; recovery then trains.
        if (
            isinstance(step, Prune)
            and step.method in ("magnitude", "layers")
            and step.recovery_epochs > 0
        ):
            return None
        if step.step_type != "benchmark":
            return f"step {index + 1} '{step.step_type}'"
    return None
