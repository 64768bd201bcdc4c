"""The accuracy guard: quantize, then keep the most sensitive layers in float.

:func:`guard_quantization` scores every candidate module by what quantizing only it
costs, then keeps the costliest in float one by one until the accuracy drop is within
the tolerance, given in accuracy *points* as in the recipe's ``Quantize`` step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.encoder import EncoderClassifier
from slimpajama_gui.core.techniques.quantize.methods import (
    QuantizedResult,
    _expand,
    _method,
    quantizable_modules,
    quantize_model,
)
from slimpajama_gui.core.techniques.quantize.modules import _device_of

logger = logging.getLogger(__name__)

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


# --------------------------------------------------------------------------- guard


@dataclass
class GuardReport:
    """What :func:`guard_quantization` did.

    Attributes:
        baseline: accuracy of the float model.
        quantized: accuracy with every candidate quantized.
        final: accuracy of ``result.model``.
        kept_float: modules left in float32 in the final model.
        tried: (candidate kept float, accuracy afterwards), in the order tried.
        result: the final :class:`QuantizedResult`.
        sensitivity: candidate -> cost of quantizing only it (KL divergence of the
            logits on ``sample``, or accuracy lost); empty if not needed.
        sensitivity_measure: "kl" or "accuracy".
        tolerance: the allowed drop in accuracy points (0.5 = half a point), the unit
            of the recipe's ``Quantize.tolerance``; ``drop`` is a fraction like the
            accuracies.
    """

    baseline: float
    quantized: float
    final: float
    kept_float: list[str]
    tried: list[tuple[str, float]]
    result: QuantizedResult
    sensitivity: dict[str, float] = field(default_factory=dict)
    sensitivity_measure: str = ""
    tolerance: float = 0.5

    @property
    def drop(self) -> float:
        return self.baseline - self.final

    @property
    def ok(self) -> bool:
        """The final drop is within the tolerance."""
        return 100 * self.drop <= self.tolerance + 1e-10


def layer_groups(model: nn.Module, embeddings: bool = True) -> list[str]:
    """Coarser guard candidates: each layer's attention and FFN, the head, the embeddings.

    Example:
        >>> layer_groups(model)[:3]  # doctest: +SKIP
        ['embeddings.word_embeddings', 'layers.0.attention', 'layers.0.ffn']
    """
    groups: list[str] = []
    for name in quantizable_modules(model, embeddings):
        parts = name.split(".")
        group = ".".join(parts[:3]) if parts[0] == "layers" and len(parts) > 3 else name
        if group not in groups:
            groups.append(group)
    return groups


def _as_batches(sample: Mapping | Iterable[Mapping]) -> list[Mapping]:
    return [sample] if isinstance(sample, Mapping) else list(sample)


@torch.no_grad()
def _logits(model: nn.Module, batches: list[Mapping]) -> list[torch.Tensor]:
    device = _device_of(model)
    out = []
    for batch in batches:
        inputs = {k: batch[k].to(device) for k in _MODEL_INPUTS if batch.get(k) is not None}
        out.append(model(**inputs).logits.float().cpu())
    return out


def _kl(reference: list[torch.Tensor], other: list[torch.Tensor]) -> float:
    """Mean KL(p_ref || p_other) over the rows of every batch."""
    total, rows = 0.0, 0
    for p, q in zip(reference, other, strict=True):
        log_p, log_q = p.log_softmax(-1), q.log_softmax(-1)
        total += float((log_p.exp() * (log_p - log_q)).sum())
        rows += p.shape[0]
    return total / max(rows, 1)


def guard_quantization(
    model: EncoderClassifier,
    method: str,
    evaluate: Callable[[nn.Module], float],
    tolerance: float = 0.5,
    candidates: Iterable[str] | None = None,
    *,
    sample: Mapping | Iterable[Mapping] | None = None,
    per_channel: bool = True,
    embeddings: bool = True,
    group_size: int = 32,
    skip: Iterable[str] = frozenset(),
    baseline: float | None = None,
    log: Callable[[str], None] | None = None,
    check: Callable[[], None] | None = None,
) -> GuardReport:
    """Quantize, then keep the most sensitive layers in float until accuracy holds.

    Every candidate is scored once by what quantizing *only it* costs, then the most
    costly are kept float one by one, re-evaluating the whole model after each, until
    ``100 * (baseline - accuracy) <= tolerance`` or no candidate is left (``report.ok``
    is then False). One score per candidate suffices because quantizing only one module does
    not depend on which others are kept float.

    The score is the KL divergence between the float model's and the one-module-
    quantized model's logits on ``sample`` when given: it is continuous (it sees a
    layer's damage before it flips a prediction, where accuracy on a dev set ties at
    0 for most single layers) and costs one forward pass per candidate. Without a
    sample it is the accuracy lost, i.e. one ``evaluate`` per candidate.

    Args:
        model: the float model (not changed).
        method, per_channel, embeddings, group_size: as in :func:`quantize_model`.
        evaluate: model -> accuracy (a fraction in [0, 1]; the pipeline's evaluation).
        tolerance: allowed accuracy drop in points (0.5 = half a point, i.e. 0.005 of
            accuracy), as ``quantize.tolerance`` in a recipe.
        candidates: module names or prefixes that may be kept float (default: every
            quantizable module; :func:`layer_groups` gives coarser ones).
        sample: a batch (or batches) of model inputs for the KL score.
        skip: modules always kept float.
        baseline: the float model's accuracy, if already known.
        log: receives one line per step, for progress messages.
        check: called before every candidate is scored or kept float; raises to stop
            (the pipeline's stop check), and whatever it raises propagates.

    Raises:
        UserError: a bad method, tolerance or candidate.
    """
    _method(method)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise UserError(f"quantize.tolerance must be a number >= 0, not {tolerance!r}.")
    say = log or logger.info
    options = dict(per_channel=per_channel, embeddings=embeddings, group_size=group_size)
    if baseline is None:
        baseline = float(evaluate(model))
    every = quantizable_modules(model, embeddings)
    always = _expand(quantizable_modules(model, True), skip, "quantize.skip")
    result = quantize_model(model, method, skip=always, **options)
    accuracy = float(evaluate(result.model))
    report = GuardReport(
        baseline, accuracy, accuracy, list(result.kept_float), [], result, tolerance=tolerance
    )
    say(f"{method}: accuracy {accuracy:.4f} (float {baseline:.4f})")
    if report.ok:
        return report

    names = list(candidates) if candidates is not None else every
    groups = {c: _expand(every, [c], "quantize.candidates") - always for c in names}
    groups = {c: g for c, g in groups.items() if g}
    reference = _logits(model, _as_batches(sample)) if sample is not None else None
    report.sensitivity_measure = "kl" if reference is not None else "accuracy"
    for name, group in groups.items():
        if check is not None:
            check()
        only = quantize_model(model, method, skip=set(every) - group, **options).model
        if reference is not None:
            score = _kl(reference, _logits(only, _as_batches(sample)))
        else:
            score = baseline - float(evaluate(only))
        report.sensitivity[name] = score
        say(f"sensitivity of {name}: {score:.4g} ({report.sensitivity_measure})")

    kept = set(always)
    for name in sorted(groups, key=lambda c: -report.sensitivity[c]):
        if report.ok:
            break
        if check is not None:
            check()
        kept |= groups[name]
        report.result = quantize_model(model, method, skip=kept, **options)
        report.final = float(evaluate(report.result.model))
        report.tried.append((name, report.final))
        report.kept_float = list(report.result.kept_float)
        say(f"kept {name} in float: accuracy {report.final:.4f}")
    return report
