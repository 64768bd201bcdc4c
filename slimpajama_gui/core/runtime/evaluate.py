"""Accuracy, macro-F1, confusion matrices, and what changes between two models.

Example:
    >>> preds = predict(model, batches)                      # doctest: +SKIP
    >>> report = classification_report(preds, ["neg", "pos"])
    >>> round(report.accuracy, 3), report.confusion
    (0.894, [[380, 48], [44, 400]])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from slimpajama_gui.core.errors import UserError


@dataclass
class Predictions:
    """Logits and gold labels of one model on one split, in dataset order."""

    logits: np.ndarray  # (N, C) float32
    labels: np.ndarray  # (N,) int64

    @property
    def predicted(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    @property
    def probabilities(self) -> np.ndarray:
        z = self.logits - self.logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


def batch_dependent(model: nn.Module) -> bool:
    """Whether one row's logits depend on the other rows of its batch.

    Dynamic int8 (PyTorch's ``linear_dynamic``, onnxruntime's ``DynamicQuantizeLinear``)
    quantizes each linear layer's input with one scale for the whole input tensor: every
    row of the batch and its padded positions. A row is then rounded on a grid set by
    its neighbours, and near the decision boundary its label changes with them:
    measured on the SST-2 presets (onnxruntime int8), 27-32 of 1,800 review sentences
    got another label in batches of 32 than alone. Float and weight-only models do not
    depend on their batch. A model may say so itself with a ``batch_dependent``
    attribute (an ONNX graph, which has no modules to look at).
    """
    said = getattr(model, "batch_dependent", None)
    if said is not None:
        return bool(said)
    from torch.ao.nn.quantized import dynamic as nnqd

    return any(isinstance(m, nnqd.Linear) for m in model.modules())


def row_logits(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    token_type_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits (B, C) of a batch, each row as the model gives it alone.

    A model whose rows depend on their batch (:func:`batch_dependent`) runs each row
    alone, without its padding, so a sentence gets the label it gets at batch 1 (the
    Playground's, and what latency measures) whatever it is batched with; other models
    run the batch at once. Why row by row and not a per-row scale: neither PyTorch's
    nor onnxruntime's dynamic int8 kernels take one, and at batch 1 these small models
    run as fast per row as in batches of 32 (docs/benchmarks.md, peers-sst2).
    """
    if input_ids.shape[0] == 1 or not batch_dependent(model):
        return model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).logits
    rows = []
    for i in range(input_ids.shape[0]):
        end = input_ids.shape[1]
        if attention_mask is not None:
            real = attention_mask[i].nonzero()
            # Padding on the right (as this project's batches and tokenizers pad): cut it;
            # a mask with holes is passed whole.
            if len(real) and int(real[-1]) + 1 == len(real):
                end = len(real)
        rows.append(
            model(
                input_ids=input_ids[i : i + 1, :end],
                attention_mask=None if attention_mask is None else attention_mask[i : i + 1, :end],
                token_type_ids=None if token_type_ids is None else token_type_ids[i : i + 1, :end],
            ).logits
        )
    return torch.cat(rows)


@torch.inference_mode()
def predict(
    model: nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    *,
    device: torch.device | str | None = None,
    control=None,
) -> Predictions:
    """Run ``model`` over ``batches`` (with ``labels``); stops early if asked.

    Batches may carry an ``index`` tensor (their rows' positions in the dataset, as
    length-bucketed loaders produce); outputs are put back in dataset order.

    Raises:
        UserError: some logits are inf/NaN (a diverged or damaged model).
    """
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    logits, labels, order = [], [], []
    for batch in batches:
        if control is not None and control.should_stop:
            break
        out = row_logits(
            model,
            batch["input_ids"].to(device),
            batch["attention_mask"].to(device),
            batch["token_type_ids"].to(device) if "token_type_ids" in batch else None,
        )
        logits.append(out.float().cpu().numpy())
        labels.append(batch["labels"].cpu().numpy())
        if "index" in batch:
            order.append(batch["index"].cpu().numpy())
    if not logits:
        return Predictions(np.zeros((0, 0), np.float32), np.zeros((0,), np.int64))
    result = Predictions(np.concatenate(logits), np.concatenate(labels).astype(np.int64))
    bad = int((~np.isfinite(result.logits)).any(axis=1).sum())
    if bad:
        # argmax of NaN is class 0: measuring this would report a made-up accuracy (X1).
        raise UserError(
            f"the model gives inf/NaN logits for {bad:,} of {len(result.labels):,} rows, so "
            "it cannot be measured: its weights are damaged or its training diverged. "
            "Train it again with a lower learning rate, or use another model."
        )
    if order:
        back = np.argsort(np.concatenate(order), kind="stable")
        result = Predictions(result.logits[back], result.labels[back])
    return result


@dataclass
class ClassReport:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class EvalReport:
    accuracy: float
    macro_f1: float
    n: int
    confusion: list[list[int]]  # rows: gold label, columns: predicted label
    per_class: dict[str, ClassReport]

    def metrics(self) -> dict[str, float]:
        """Flat numbers for charts and the job history."""
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "n": float(self.n)}

    def to_dict(self) -> dict:
        return asdict(self)


def classification_report(preds: Predictions, label_names: Sequence[str]) -> EvalReport:
    k = len(label_names)
    gold, guess = preds.labels, preds.predicted
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (gold, guess), 1)
    return confusion_report(confusion, label_names)


def confusion_report(confusion: Any, label_names: Sequence[str]) -> EvalReport:
    """The report of a confusion matrix (K, K) of counts: rows gold, columns predicted.

    Counts from several processes, summed, give the report of all their rows.
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    per_class: dict[str, ClassReport] = {}
    f1s = []
    for c, name in enumerate(label_names):
        tp = confusion[c, c]
        precision = tp / confusion[:, c].sum() if confusion[:, c].sum() else 0.0
        recall = tp / confusion[c, :].sum() if confusion[c, :].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[str(name)] = ClassReport(
            float(precision), float(recall), float(f1), int(confusion[c, :].sum())
        )
        f1s.append(f1)
    n = int(confusion.sum())
    return EvalReport(
        accuracy=float(np.trace(confusion) / n) if n else 0.0,
        macro_f1=float(np.mean(f1s)) if f1s else 0.0,
        n=n,
        confusion=confusion.tolist(),
        per_class=per_class,
    )


@dataclass
class Flip:
    index: int
    text: str
    label: int
    before: int  # prediction of model A
    after: int  # prediction of model B
    confidence_before: float  # A's probability of its own prediction
    confidence_after: float


@dataclass
class PredictionDiff:
    agreement: float  # share of examples where A and B predict the same class
    flips: list[Flip]
    fixed: int  # B right where A was wrong
    broken: int  # B wrong where A was right
    mean_confidence_shift: float  # mean |p_B(gold) - p_A(gold)|


def prediction_diff(a: Predictions, b: Predictions, texts: Sequence[str]) -> PredictionDiff:
    """Which examples change their prediction from model A to model B."""
    if a.logits.shape[0] != b.logits.shape[0]:
        raise ValueError("both predictions must cover the same examples")
    pa, pb = a.predicted, b.predicted
    prob_a, prob_b = a.probabilities, b.probabilities
    rows = np.arange(len(pa))
    flips = [
        Flip(
            index=int(i),
            text=texts[i],
            label=int(a.labels[i]),
            before=int(pa[i]),
            after=int(pb[i]),
            confidence_before=float(prob_a[i, pa[i]]),
            confidence_after=float(prob_b[i, pb[i]]),
        )
        for i in np.nonzero(pa != pb)[0]
    ]
    gold = a.labels
    return PredictionDiff(
        agreement=float((pa == pb).mean()) if len(pa) else 1.0,
        flips=flips,
        fixed=int(((pa != gold) & (pb == gold)).sum()),
        broken=int(((pa == gold) & (pb != gold)).sum()),
        mean_confidence_shift=float(np.abs(prob_b[rows, gold] - prob_a[rows, gold]).mean())
        if len(pa)
        else 0.0,
    )
