"""Steps that train: fine-tuning the model, and distilling it into a smaller student.

Both train through :func:`~slimpajama_gui.core.jobs.context.fit` (the recipe's data,
the job's stop control, logged metrics) and save the trained model as a variant.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from slimpajama_gui.core import data as data_mod
from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.context import (
    Cancelled,
    JobContext,
    accuracy,
    fit,
    handles,
    train_config,
)
from slimpajama_gui.core.jobs.saving import new_record, save_variant
from slimpajama_gui.core.plan.recipe import Distill, FineTune
from slimpajama_gui.core.runtime.bench import count_parameters
from slimpajama_gui.core.techniques import distill as distill_mod
from slimpajama_gui.core.techniques import prune as prune_mod
from slimpajama_gui.core.techniques.distill import augment as augment_mod
from slimpajama_gui.core.techniques.distill import cache as distill_cache
from slimpajama_gui.core.techniques.train import TrainConfig

#: Neighbours a swapped word chooses from: 8 keep to related words (near synonyms, and
#: sometimes antonyms such as good/bad, which is why the teacher labels each copy) while
#: still varying the text; the out-of-domain probe used 8.
AUGMENT_NEIGHBOURS = 8


@handles("finetune")
def finetune(ctx: JobContext, index: int, step: FineTune) -> dict[str, Any]:
    """Train the whole model on the train split; keeps the best eval accuracy if asked."""
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
        ema_decay=step.ema_decay,
    )
    result = fit(ctx, index, "finetune", ctx.model, config, eval_batch_size=step.eval_batch_size)
    metrics = {
        "eval_accuracy": result.best_metric,
        "train_steps": result.steps,
        "train_seconds": round(result.seconds, 1),
        "examples_per_second": round(result.examples_per_second, 1),
    }
    save_variant(ctx, index, step, new_record(ctx, index, step, metrics))
    return {"accuracy": result.best_metric, "seconds": result.seconds}


@handles("distill")
def distill(ctx: JobContext, index: int, step: Distill) -> dict[str, Any]:
    """Train a student with fewer layers to mimic the current model (the teacher)."""
    teacher = ctx.model
    student = distill_mod.student_from_teacher(teacher, step.student_layers)
    student.to(ctx.device)
    if step.ffn_fraction > 0:
        student = _narrow_ffn(ctx, student, step)
    base = train_config(step, step.epochs)
    train_data = _train_rows(ctx, teacher, step)
    rows = len(train_data[0])

    def fit_student(model, epochs, loss_fn=None, callbacks=()):
        return fit(
            ctx,
            index,
            "distill",
            model,
            replace(base, epochs=epochs),
            loss_fn=loss_fn,
            callbacks=tuple(callbacks),
            data=train_data,
        )

    cache_batches = data_mod.batches(
        train_data[0], train_data[1], 64,
        shuffle=False, seed=0, pad_id=ctx.pad_id, sort_by_length=True,
    )  # fmt: skip
    total = math.ceil(rows / 64)
    done = {"n": 0}

    def cached(*_args) -> None:
        done["n"] += 1
        ctx.callbacks.on_progress(index, done["n"], total)

    report: dict[str, Any] = {}
    originals = len(ctx.encoded("train"))
    result = distill_mod.distill(
        student, teacher, fit_student,
        temperature=step.temperature, alpha_kd=step.alpha_kd,
        hidden_mse=step.hidden_mse, attention_mse=step.attention_mse, epochs=step.epochs,
        cache=True, train_batches_for_cache=cache_batches, control=ctx.control, on_cache_batch=cached,
        cache_path=_logits_cache_path(ctx, teacher, step, train_data[0]), cache_rows=rows,
        report=report, teacher_labels_from=originals if rows > originals else None,
    )  # fmt: skip
    if result.status == "cancelled":
        raise Cancelled
    layers = list(getattr(student, "distill_layers", step.student_layers))
    ctx.model = student
    del teacher
    acc = accuracy(ctx)
    record = new_record(
        ctx, index, step,
        {
            "eval_accuracy": acc, "train_steps": result.steps,
            "train_seconds": round(result.seconds, 1),
            "examples_per_second": round(result.examples_per_second, 1),
        },
        distill={
            "teacher_layers": layers, "temperature": step.temperature, "alpha_kd": step.alpha_kd,
            "teacher_logits": report.get("teacher_logits"),
            "augmented_rows": rows - originals, "ema_decay": step.ema_decay,
        },
    )  # fmt: skip
    save_variant(ctx, index, step, record)
    return {"accuracy": acc, "parameters": count_parameters(ctx.model)[0]}


def _train_rows(ctx: JobContext, teacher: Any, step: Distill) -> tuple[Any, list[int]]:
    """The rows the student trains on: the train split, then ``step.augment`` altered
    copies of it (see :mod:`~slimpajama_gui.core.techniques.distill.augment`), whose
    labels here are placeholders (the loss takes the teacher's argmax for them)."""
    enc, labels = ctx.encoded("train"), list(ctx.dataset.train.labels)
    if not step.augment:
        return enc, labels
    try:
        words, continues = augment_mod.whole_word_ids(ctx.tokenizer)
    except ValueError as exc:
        raise UserError(
            f"distill.augment: {exc}, so no word can be swapped safely; set augment to 0 "
            "for this model."
        ) from None
    in_use = {token for ids in enc.input_ids for token in ids}
    table = teacher.embeddings.word_embeddings.weight  # (vocab, hidden)
    neighbours = augment_mod.neighbour_table(table, words, in_use, k=AUGMENT_NEIGHBOURS)
    extra = augment_mod.augment_rows(
        enc.input_ids, neighbours, continues,
        rate=step.augment_rate, copies=step.augment, seed=getattr(step, "seed", 0),
    )  # fmt: skip
    types = enc.token_type_ids
    both = replace(
        enc,
        input_ids=[*enc.input_ids, *extra],
        token_type_ids=None if types is None else [*types, *(types * step.augment)],
    )
    ctx.callbacks.on_message(
        f"Distill: {len(extra):,} altered copies of the {len(enc):,} train rows "
        f"({100 * step.augment_rate:g} % of their whole words swapped for near neighbours); "
        "they learn from the teacher's logits."
    )
    return both, labels * (1 + step.augment)


def _logits_cache_path(ctx: JobContext, teacher: Any, step: Distill, enc: Any) -> Path | None:
    """The teacher-logit cache file of this teacher on these train rows (``enc``: the
    split, augmented copies included), or None when the loss needs more of the teacher
    than its logits (hidden states, attention)."""
    if step.alpha_kd <= 0 or step.hidden_mse > 0 or step.attention_mse > 0:
        return None
    split = ctx.dataset.train
    extra: dict[str, object] = {"max_length": enc.max_length}
    try:
        extra["data"] = distill_cache.file_sha256(split.path) if split.path else "none"
    except OSError:
        return None  # the file moved since it was read: no key to trust
    key = distill_cache.logits_key(teacher, enc.input_ids, enc.token_type_ids, extra=extra)
    return distill_cache.logits_path(key)


def _narrow_ffn(ctx: JobContext, student: Any, step: Distill) -> Any:
    """The student without ``step.ffn_fraction`` of each layer's FFN neurons, the least
    important by their gradient score on 32 training batches (as ``prune: ffn`` scores)."""
    layers = list(getattr(student, distill_mod.LAYERS_ATTR, step.student_layers))
    scoring = data_mod.batches(
        ctx.encoded("train"), ctx.dataset.train.labels, step.batch_size,
        shuffle=True, seed=0, pad_id=ctx.pad_id,
    )  # fmt: skip
    importance = prune_mod.structure_importance(
        student, scoring, max_batches=32, check=ctx.check_stop
    )
    narrow = prune_mod.prune_structure(
        student, importance, scope="layer", ffn_fraction=step.ffn_fraction
    )
    setattr(narrow, distill_mod.LAYERS_ATTR, layers)
    return narrow.to(ctx.device)
