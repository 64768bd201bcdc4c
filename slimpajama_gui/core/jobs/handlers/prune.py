"""The prune step: magnitude sparsity, heads and FFN neurons, whole layers, vocabulary.

Each method prunes, optionally recovers accuracy by training, reports what it removed
per layer (the ``sparsity/...`` metrics the sparsity chart draws; ``vocabulary/kept`` and
``vocabulary/original`` for vocabulary pruning) and saves a variant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import nn

from slimpajama_gui.core import data as data_mod
from slimpajama_gui.core.jobs.context import (
    JobContext,
    accuracy,
    fit,
    handles,
    train_config,
)
from slimpajama_gui.core.jobs.saving import new_record, save_variant
from slimpajama_gui.core.model.tokenizers import load_tokenizer as open_tokenizer
from slimpajama_gui.core.plan.recipe import Prune
from slimpajama_gui.core.runtime import inputs as inputs_mod
from slimpajama_gui.core.runtime.bench import count_parameters
from slimpajama_gui.core.techniques import prune as prune_mod
from slimpajama_gui.core.techniques.hooks import Callbacks
from slimpajama_gui.core.techniques.prune import vocabulary as vocab_mod

#: The vocabulary report's figures that the step's summary (CLI, job log) carries.
VOCAB_FIGURES = (
    "kept",
    "kept_general",
    "unk_rate_on_texts",
    "unk_rate_on_eval",
    "changed_on_eval",
)


def report_sparsity(ctx: JobContext, index: int) -> dict[str, Any]:
    """Log the share of zero weights per layer and overall (0..1); returns the report."""
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
    ctx: JobContext, index: int, before: dict[int, int], kept: Sequence[int] | None = None
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
def prune(ctx: JobContext, index: int, step: Prune) -> dict[str, Any]:
    """Prune by ``step.method``, recover by training if asked, save the variant."""
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
        fit(
            ctx,
            index,
            "prune",
            ctx.model,
            train_config(step, step.recovery_epochs, keep_best=keep_best),
            callbacks=callbacks,
        )
    if step.method == "magnitude":
        prune_mod.make_permanent(ctx.model)
        info["sparsity"] = report_sparsity(ctx, index)
    acc = accuracy(ctx)
    after = count_parameters(ctx.model)[0]
    save_variant(ctx, index, step, new_record(ctx, index, step, {"eval_accuracy": acc}, prune=info))
    return {"accuracy": acc, "parameters_before": before, "parameters": after}


def _prune_vocabulary(ctx: JobContext, index: int, step: Prune, before: int) -> dict[str, Any]:
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
        keep_general=step.keep_general,
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
    ctx.forget_encodings()
    ctx.callbacks.on_message(report.sentence())
    # For the sparsity chart (live and from the history): embedding rows, not layer weights.
    sizes = {"vocabulary/kept": report.kept, "vocabulary/original": report.original}
    ctx.store.log_metrics(ctx.job_id, index, "prune", sizes)
    ctx.callbacks.on_eval(index, sizes)
    acc = accuracy(ctx)
    figures = report.to_dict()
    record = new_record(
        ctx, index, step, {"eval_accuracy": acc}, prune={"method": "vocabulary", **figures}
    )
    save_variant(ctx, index, step, record)
    return {
        "accuracy": acc,
        "parameters_before": before,
        "parameters": count_parameters(ctx.model)[0],
        **{k: figures[k] for k in VOCAB_FIGURES},
    }
