"""The A/B prediction diff: which eval examples flip between two variants, and why not.

Compare shows it for the pair it has picked. Each side's predictions come from what its
evaluate step stored beside its record (``predictions-eval.npz``) when that covers the
same eval rows; only a side without them is run again (loading its model). The eval
texts are read from the dataset in the recipe (at most :data:`MAX_FLIP_ROWS` rows).

Example:
    >>> for item in flip_job(a, b): ...                       # doctest: +SKIP
    >>> # the generator's return value is a FlipResult (superqt's worker returns it)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.index import Variant
from slimpajama_gui.core.storage.variant import VariantRecord

#: Eval rows the flip list is computed on, at most.
MAX_FLIP_ROWS = 2000
#: Rows per forward pass when predicting the eval split.
EVAL_BATCH = 64


@dataclass
class FlipResult:
    """Both models' predictions on the same eval rows, and what changed between them."""

    a: Variant
    b: Variant
    diff: Any  # evaluate.PredictionDiff
    label_names: list[str]
    rows: int
    total: int
    dataset: str
    report_a: Any  # evaluate.EvalReport
    report_b: Any
    #: Which sides used the predictions their evaluate step stored ("A", "B").
    stored: tuple[str, ...] = ()


def _dataset_text(spec: Any, n: int, total: int) -> str:
    where = (
        "the built-in demo set" if str(spec.train).lower() == "demo" else spec.eval or spec.train
    )
    capped = f"the first {n} of {total}" if n < total else f"all {n}"
    return f"{capped} eval rows of {where}"


def _folded(names: list[str]) -> list[str]:
    return [n.strip().casefold() for n in names]


def stored_predictions(variant: Variant, names: list[str], labels: np.ndarray, total: int):
    """``variant``'s stored eval predictions on the first ``len(labels)`` rows, in the
    data's class order ``names``; ``None`` when it has none for these very rows.

    ``total`` is the number of rows of the eval split: stored predictions of another
    split size, other classes or other gold labels are of other data and are not used.
    """
    from slimpajama_gui.core.runtime.evaluate import Predictions

    record = VariantRecord.read_or_none(variant.path)
    if record is None:
        return None
    stored = record.read_predictions(variant.path, "eval")
    keys = _folded(record.label_names)
    wanted = _folded(names)
    if stored is None or len(stored.labels) != total or sorted(keys) != sorted(wanted):
        return None
    if stored.logits.shape[1] != len(keys):
        return None
    n = len(labels)
    columns = [keys.index(k) for k in wanted]
    # The record numbers classes as its head does; the data may number them otherwise.
    to_data = np.array([wanted.index(k) for k in keys], dtype=np.int64)
    gold = to_data[stored.labels[:n]]
    if not np.array_equal(gold, labels):
        return None
    return Predictions(stored.logits[:n][:, columns], np.asarray(labels, dtype=np.int64))


def flip_job(a: Variant, b: Variant, max_rows: int = MAX_FLIP_ROWS) -> Iterator[tuple]:
    """Both variants' predictions on the eval split, then the prediction diff (a worker).

    Yields ``("status", text)`` and ``("progress", side, done, total)``; between any two
    batches the worker can be asked to stop. Returns a :class:`FlipResult`.

    Raises:
        UserError: no recipe says which data to use, the data or a model cannot be
            read, or the models have another number of classes than the data.
    """
    from slimpajama_gui.core import data as data_mod
    from slimpajama_gui.core.runtime.evaluate import classification_report, prediction_diff

    owner = a if a.recipe else b
    if not owner.recipe or not isinstance(owner.recipe.get("dataset"), dict):
        raise UserError(
            f"neither {a.name} nor {b.name} records the dataset it was evaluated on "
            "(no recipe in slimpajama.json), so there are no eval examples to compare."
        )
    spec = data_mod.DatasetSpec.from_dict(owner.recipe["dataset"])
    yield ("status", "Reading the eval data…")
    # Records of the first layout without the folder: the working folder, as then.
    dataset = data_mod.load_dataset(spec, base_dir=owner.recipe_dir or Path.cwd())
    split = dataset.eval
    n = min(len(split), max_rows)
    sub = replace(
        split,
        texts=split.texts[:n],
        labels=split.labels[:n],
        pairs=split.pairs[:n] if split.pairs is not None else None,
        lines=split.lines[:n],
    )
    names = list(dataset.label_names)
    gold = np.asarray(sub.labels, dtype=np.int64)
    preds, stored = [], []
    for side, variant in (("A", a), ("B", b)):
        found = stored_predictions(variant, names, gold, len(split))
        if found is not None:
            stored.append(side)
            preds.append(found)
            continue
        predicted = yield from _predict(side, variant, dataset, sub, names, spec.max_length)
        preds.append(predicted)
    diff = prediction_diff(preds[0], preds[1], sub.texts)
    return FlipResult(
        a=a,
        b=b,
        diff=diff,
        label_names=names,
        rows=n,
        total=len(split),
        dataset=_dataset_text(spec, n, len(split)),
        report_a=classification_report(preds[0], names),
        report_b=classification_report(preds[1], names),
        stored=tuple(stored),
    )


def _predict(side: str, variant: Variant, dataset: Any, sub: Any, names: list[str], length: int):
    """Load ``variant`` and predict the rows of ``sub`` (yields status and progress)."""
    from slimpajama_gui.core.runtime.evaluate import Predictions
    from slimpajama_gui.core.runtime.inputs import head_label_names, match_label_order
    from slimpajama_gui.core.runtime.predictor import ModelPredictor

    yield ("status", f"Loading {side}: {variant.name}…")
    predictor = ModelPredictor(
        variant.path,
        max_length=length,
        batch_size=EVAL_BATCH,
        no_head_hint="its predictions would be noise; fine-tune it first.",
    )
    if len(predictor.label_names) != len(names):
        raise UserError(
            f"{variant.name} predicts {len(predictor.label_names)} classes but the eval data "
            f"has {len(names)} ({', '.join(names)}); compare models trained on the same "
            "labels."
        )
    # The job numbered the data as the model's head numbers its classes.
    matched, _ = match_label_order(
        replace(dataset, eval=sub), head_label_names(variant.path), variant.name
    )
    gen = predictor.split_logits(matched.eval)
    while True:
        try:
            done, total = next(gen)
        except StopIteration as finished:
            logits = finished.value
            break
        yield ("progress", side, done, total)
    # Back to the data's own numbering, so A and B are compared class by class.
    keys = _folded(matched.label_names)
    columns = [keys.index(k) for k in _folded(names)]
    return Predictions(logits[:, columns], np.asarray(sub.labels))
