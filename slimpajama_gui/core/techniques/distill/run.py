"""Running a distillation: the teacher-logit cache and :func:`distill`.

:func:`distill` puts :class:`~.loss.DistillLoss` together with the pipeline's ``fit``.
When only the teacher's logits are needed and they fit in memory
(:func:`fits_in_memory`), they are computed once (:func:`cache_teacher_logits`) instead
of running the teacher on every batch of every epoch.

A pipeline handler, in outline::

    student = student_from_teacher(ctx.model, step.student_layers)
    result = distill(student, ctx.model, fit, temperature=step.temperature,
                     alpha_kd=step.alpha_kd, hidden_mse=step.hidden_mse,
                     attention_mse=step.attention_mse, epochs=step.epochs,
                     train_batches_for_cache=cache_batches, control=ctx.control)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from slimpajama_gui.core.techniques.distill.cache import load_logits, save_logits
from slimpajama_gui.core.techniques.distill.loss import Batch, DistillLoss, _forward
from slimpajama_gui.core.techniques.distill.students import _device_of
from slimpajama_gui.core.techniques.hooks import Callbacks, Control
from slimpajama_gui.core.techniques.train import TrainResult

log = logging.getLogger(__name__)

#: ``fit(model, epochs, loss_fn=None, callbacks=()) -> TrainResult``, from the pipeline.
FitFn = Callable[..., TrainResult]

#: Teacher-logit caches larger than this are not built (see :func:`fits_in_memory`).
CACHE_BUDGET_BYTES = 512 * 2**20
#: Bytes a cache entry costs besides its logits: the dict slot, the int key and the
#: tensor object. Measured at ~650 bytes on CPython 3 / torch 2; rounded up.
CACHE_ROW_OVERHEAD_BYTES = 1024


# --------------------------------------------------------------------------- teacher logits


def fits_in_memory(n_rows: int, num_labels: int) -> bool:
    """Whether a teacher-logit cache of ``n_rows`` rows is small enough to keep.

    The rule: ``n_rows * (4 * num_labels + CACHE_ROW_OVERHEAD_BYTES)`` (float32 logits
    plus the measured cost of a dict entry holding a small tensor, rounded up to 1 KiB)
    must stay within ``CACHE_BUDGET_BYTES`` (512 MiB). That is ~520,000 rows of a
    2-label task: SST-2's 67,349 training rows take ~70 MB.
    """
    return n_rows * (4 * num_labels + CACHE_ROW_OVERHEAD_BYTES) <= CACHE_BUDGET_BYTES


def cache_teacher_logits(
    teacher: nn.Module,
    batches: Iterable[Batch],
    *,
    control: Control | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> dict[int, torch.Tensor]:
    """The teacher's logits for every row of ``batches``, keyed by the batch ``index``.

    ``index`` holds each row's position in the dataset (as ``data.batches`` yields), so
    a later training batch in any order finds its rows. Logits are float32 on the CPU,
    one ``(num_labels,)`` tensor per row. The teacher runs in eval mode without
    gradients on its own device.

    Args:
        control: stops early when a stop is requested (the cache is then partial).
        on_batch: called with the number of batches done, for progress.

    Raises:
        ValueError: a batch has no ``index`` entry.
    """
    teacher.eval()
    device = _device_of(teacher)
    cache: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for done, batch in enumerate(batches, start=1):
            if control is not None and control.should_stop:
                break
            if "index" not in batch:
                raise ValueError("batches for the teacher-logit cache need an 'index' entry")
            logits = _forward(teacher, batch, device).logits.float().cpu()  # (B, K)
            for row, logit in zip(batch["index"].tolist(), logits, strict=True):
                cache[int(row)] = logit.clone()  # own storage, not a view of the batch
            if on_batch is not None:
                on_batch(done)
    return cache


# --------------------------------------------------------------------------- convenience


def distill(
    student: nn.Module,
    teacher: nn.Module,
    fit: FitFn,
    *,
    temperature: float = 2.0,
    alpha_kd: float = 0.5,
    hidden_mse: float = 0.0,
    attention_mse: float = 0.0,
    epochs: float = 3.0,
    cache: bool = True,
    train_batches_for_cache: Iterable[Batch] | None = None,
    layer_map: list[int] | None = None,
    callbacks: Callbacks | Iterable[Callbacks] = (),
    control: Control | None = None,
    on_cache_batch: Callable[[int], None] | None = None,
    cache_path: Path | None = None,
    cache_rows: int | None = None,
    report: dict | None = None,
    teacher_labels_from: int | None = None,
) -> TrainResult:
    """Train ``student`` to imitate ``teacher`` with the pipeline's ``fit``.

    Builds a :class:`DistillLoss`, attaches it to the student, calls
    ``fit(student, epochs, loss_fn=loss, callbacks=callbacks)`` and removes the
    hidden-state projection afterwards, so the student saves as a plain model.

    The teacher's logits are cached first when all of these hold: ``cache`` is true,
    ``train_batches_for_cache`` is given (one pass over the training rows, with the
    same ``index`` numbering as fit's batches, in any order), only logit KD needs the
    teacher (``alpha_kd > 0``, no hidden/attention term), ``epochs > 1`` (with one
    epoch the cache costs as much as it saves) and the cache
    :func:`fits_in_memory`. Caching stops (and is discarded) as soon as it outgrows
    memory.

    With ``cache_path`` (see :mod:`.cache`: its name is the key of teacher and rows) the
    logits are read from that file when it holds ``cache_rows`` rows, and the teacher
    never runs; otherwise they are computed (whatever ``epochs``: a later run reuses
    them) and, when every row 0..cache_rows-1 was covered, written there.

    Args:
        fit: ``fit(model, epochs, loss_fn=None, callbacks=()) -> TrainResult``.
        control: checked while caching; a stop returns a "cancelled" result.
        on_cache_batch: progress while caching (batches done).
        cache_path: the on-disk cache file; needs ``cache_rows``.
        cache_rows: rows of the training split (the file's first dimension).
        teacher_labels_from: rows from this index on are augmented copies whose label
            is the teacher's argmax (see :class:`DistillLoss`).
        report: filled with ``teacher_logits`` ("read from disk", "computed",
            "teacher on every batch") and, after training, ``teacher_forwards``.
        Others: as :class:`DistillLoss`.

    Returns:
        What ``fit`` returned (or a cancelled result with 0 steps).
    """
    loss = DistillLoss(
        teacher,
        temperature=temperature,
        alpha_kd=alpha_kd,
        hidden_mse=hidden_mse,
        attention_mse=attention_mse,
        layer_map=layer_map,
        teacher_labels_from=teacher_labels_from,
    )
    loss._check_pair(student)  # fail on a bad layer map before the teacher pass
    report = report if report is not None else {}
    report["teacher_logits"] = "teacher on every batch"
    if cache_path is not None and cache_rows is None:
        raise ValueError("cache_path needs cache_rows (the training split's row count)")
    logits_only = (
        cache
        and train_batches_for_cache is not None
        and loss.alpha_kd > 0
        and not loss.needs_teacher_states
    )
    on_disk = None
    if logits_only and cache_path is not None:
        on_disk = load_logits(cache_path, cache_rows, teacher.config.num_labels)
    if on_disk is not None:
        log.info("Read the teacher's logits for %d rows from %s.", cache_rows, cache_path)
        loss.teacher_logits_cache = on_disk
        report["teacher_logits"] = "read from disk"
    elif logits_only and (epochs > 1 or cache_path is not None):
        logits = _build_cache(teacher, train_batches_for_cache, control, on_cache_batch)
        if control is not None and control.should_stop:
            return TrainResult("cancelled", 0, None, None, {}, 0.0, 0.0)
        if logits is not None:
            report["teacher_logits"] = "computed"
            if cache_path is not None and set(logits) == set(range(cache_rows)):
                table = torch.stack([logits[i] for i in range(cache_rows)])  # (N, K)
                try:
                    save_logits(cache_path, table)
                except OSError as exc:  # a cache is a saving, never a reason to fail
                    log.warning("Could not keep the teacher's logits in %s: %s", cache_path, exc)
                logits = table
        loss.teacher_logits_cache = logits
    loss.attach(student)
    try:
        return fit(student, epochs, loss_fn=loss, callbacks=callbacks)
    finally:
        loss.detach(student)
        report["teacher_forwards"] = loss.teacher_forwards


def _build_cache(
    teacher: nn.Module,
    batches: Iterable[Batch],
    control: Control | None,
    on_batch: Callable[[int], None] | None,
) -> dict[int, torch.Tensor] | None:
    num_labels = teacher.config.num_labels
    cache: dict[int, torch.Tensor] = {}
    for done, batch in enumerate(batches, start=1):
        if control is not None and control.should_stop:
            break
        cache.update(cache_teacher_logits(teacher, [batch]))
        if not fits_in_memory(len(cache), num_labels):
            log.info(
                "Teacher logits for %d+ rows do not fit in memory; the teacher runs on "
                "every batch instead.",
                len(cache),
            )
            return None
        if on_batch is not None:
            on_batch(done)
    log.info("Cached the teacher's logits for %d training rows.", len(cache))
    return cache
