"""The ``distill_static`` step: static token embeddings (Model2Vec) plus a trained head.

Three phases, each reported as progress of the step: Model2Vec's pass of every token
through the current model (the vectors), the teacher's logits over the train split
(cached once), and the training of the classifier and the vectors through
:func:`~slimpajama_gui.core.jobs.context.fit` with the distillation loss. The vectors are
then stored as the step's ``storage`` (int8 with per-row scales by default) and the
model is measured as stored.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import torch

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
from slimpajama_gui.core.model.config import EncoderConfig
from slimpajama_gui.core.plan.static_step import DistillStatic
from slimpajama_gui.core.runtime.bench import count_parameters
from slimpajama_gui.core.techniques import distill as distill_mod
from slimpajama_gui.core.techniques.static import (
    StaticClassifier,
    skip_token_ids,
    token_vectors,
)


def static_config(teacher_config: EncoderConfig, dims: int) -> EncoderConfig:
    """The layer-less config of a static student of ``teacher_config`` with ``dims`` wide
    vectors: same vocabulary, labels and readable length, no segments, no pooler."""
    t = teacher_config
    return EncoderConfig(
        vocab_size=t.vocab_size, hidden_size=dims, layer_heads=[], head_dim=1, layer_ffn=[],
        max_position_embeddings=t.max_position_embeddings, type_vocab_size=0,
        num_labels=t.num_labels, id2label=dict(t.id2label), pad_token_id=t.pad_token_id,
        position_offset=t.position_offset, has_pooler=False, source_family=t.source_family,
    )  # fmt: skip


def _model2vec_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("model2vec")
    except PackageNotFoundError:  # pragma: no cover - it is a dependency
        return "unknown"


@handles("distill_static")
def distill_static(ctx: JobContext, index: int, step: DistillStatic) -> dict[str, Any]:
    """Distill the current model into static embeddings and a linear head; saves the variant."""
    teacher = ctx.model
    if isinstance(teacher, StaticClassifier):
        raise UserError(
            f"{ctx.where or 'distill_static'}: the model is already a static-embedding model; "
            "distill_static needs a transformer (remove this step or start from one)."
        )
    teacher.to(ctx.device)
    dims = min(step.dims, teacher.config.hidden_size, teacher.config.vocab_size - 1)
    if dims < step.dims:
        # As Model2Vec does: PCA cannot add dimensions; it keeps them all (rotated).
        ctx.callbacks.on_message(
            f"distill_static.dims is {step.dims} but the model has {teacher.config.hidden_size} "
            f"hidden units; the vectors keep all {dims}."
        )
    started = time.monotonic()

    def vectors_progress(done: int, tokens: int) -> None:
        ctx.callbacks.on_progress(index, done, tokens)

    with torch.no_grad():
        vectors = token_vectors(
            teacher, ctx.tokenizer, dims=dims,
            sif_coefficient=step.sif_coefficient or None,
            should_stop=lambda: ctx.control.should_stop, on_progress=vectors_progress,
        )  # fmt: skip
    if vectors is None:
        raise Cancelled
    vector_seconds = time.monotonic() - started
    static = {
        "dims": dims,
        "storage": "float32",
        "pooling": "mean",
        "skip_token_ids": skip_token_ids(ctx.tokenizer),
        "sif_coefficient": step.sif_coefficient,
        "teacher_hidden_size": teacher.config.hidden_size,
        "vectors": f"model2vec {_model2vec_version()} (token pass, PCA, SIF)",
    }
    student = StaticClassifier(
        static_config(teacher.config, dims), torch.from_numpy(vectors), static
    )
    student.embeddings.word_embeddings.weight.requires_grad_(step.train_vectors)
    student.to(ctx.device)
    base = replace(train_config(step, step.epochs), weight_decay=0.0)

    def fit_student(model, epochs, loss_fn=None, callbacks=()):
        return fit(ctx, index, "distill_static", model, replace(base, epochs=epochs),
                   loss_fn=loss_fn, callbacks=tuple(callbacks))  # fmt: skip

    cache_batches = data_mod.batches(
        ctx.encoded("train"), ctx.dataset.train.labels, 64,
        shuffle=False, seed=0, pad_id=ctx.pad_id, sort_by_length=True,
    )  # fmt: skip
    total = math.ceil(len(ctx.encoded("train")) / 64)
    done = {"n": 0}

    def cached(*_args) -> None:  # each phase reports its own share, as distill's does
        done["n"] += 1
        ctx.callbacks.on_progress(index, done["n"], total)

    result = distill_mod.distill(
        student, teacher, fit_student, temperature=step.temperature, alpha_kd=step.alpha_kd,
        epochs=step.epochs, cache=True, train_batches_for_cache=cache_batches,
        control=ctx.control, on_cache_batch=cached,
    )  # fmt: skip
    if result.status == "cancelled":
        raise Cancelled
    ctx.model = student
    del teacher
    float_acc = accuracy(ctx)
    student.store_as(step.storage)
    acc = accuracy(ctx) if step.storage != "float32" else float_acc
    training = {
        "eval_accuracy": acc,
        "eval_accuracy_float32": float_acc,
        "train_steps": result.steps,
        "vector_seconds": round(vector_seconds, 1),
        "train_seconds": round(result.seconds, 1),
    }
    details = {
        "student": "static",
        "dims": dims,
        "storage": step.storage,
        "alpha_kd": step.alpha_kd,
        "temperature": step.temperature,
        "train_vectors": step.train_vectors,
        "vectors": static["vectors"],
    }
    record = new_record(ctx, index, step, training, distill=details)
    record.weights_format = f"static_{step.storage}"
    save_variant(ctx, index, step, record)
    return {"accuracy": acc, "parameters": count_parameters(student)[0]}
