"""The accuracy guard: quantize, then keep the most sensitive layers in float.

:func:`guard_quantization` scores every candidate module by what quantizing only it
costs, then keeps the costliest in float one by one until the accuracy drop is
acceptable. :func:`judge_loss` says what acceptable means: a drop beyond the tolerance
(in accuracy *points*, as in the recipe's ``Quantize`` step) counts as a real loss only
when the paired per-row predictions of the float and the quantized model show it beyond
the eval set's own noise (McNemar's exact test); on 100 rows two flipped sentences are
two points and prove nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
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
from slimpajama_gui.core.units import TOLERANCE_LABEL

logger = logging.getLogger(__name__)

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


#: One-sided significance level under which a drop beyond the tolerance is a real loss.
SIGNIFICANCE = 0.05


# --------------------------------------------------------------------------- noise


def mcnemar_p(worse: int, better: int) -> float:
    """One-sided exact McNemar p-value that the second model is worse than the first.

    On paired predictions of the same rows only the discordant pairs carry information:
    ``worse`` rows the first model got right and the second wrong (b), ``better`` the
    reverse (c). Under "equally accurate" each discordant row goes either way with
    probability 1/2, so b ~ Binomial(b + c, 1/2) and p = P(X >= b) = sum_{k>=b}
    C(b+c, k) / 2^(b+c). This is the exact (conditional binomial) form of McNemar's test:
    Q. McNemar, "Note on the sampling error of the difference between correlated
    proportions or percentages", Psychometrika 12(2):153-157, 1947; the exact version as
    in M. W. Fagerland, S. Lydersen, P. Laake, "The McNemar test for binary matched-pairs
    data: mid-p and asymptotic are better than exact conditional", BMC Medical Research
    Methodology 13:91, 2013 (the exact test is the conservative one, which suits a guard
    that must not fail a job on noise). It is what ``scipy.stats.binomtest(b, b + c,
    0.5, alternative="greater")`` computes, in a few lines so the engine needs no scipy.

    Returns:
        p in (0, 1]; 1.0 with no discordant rows.

    Raises:
        ValueError: a negative count.
    """
    if worse < 0 or better < 0:
        raise ValueError(f"counts must be >= 0, got b={worse}, c={better}")
    n = worse + better
    if n == 0:
        return 1.0
    return math.fsum(math.comb(n, k) for k in range(worse, n + 1)) / 2**n


def smallest_detectable(rows: int, alpha: float = SIGNIFICANCE) -> int:
    """The fewest flipped rows that can ever be significant: k rows right→wrong, none back.

    With no flip the other way p = 2^-k, so k = the smallest integer with 2^-k < alpha
    (5 at alpha = 0.05), whatever the number of rows; as a drop that is 100 * k / rows
    points, which only a larger eval set makes smaller.
    """
    k = 1
    while 0.5**k >= alpha:
        k += 1
    return k


def allowed_loss(tolerance: float) -> str:
    """The allowed drop as a sentence names it, in the wizard's terms and the recipe's:
    its field ("Max. loss", in points) with the key in parentheses, as the steps'
    warnings name a setting, so one sentence reads right in the window and the CLI.

    Example:
        >>> allowed_loss(1.0)
        'the Max. loss of 1.0 pt (quantize.tolerance)'
    """
    value = float(tolerance)
    shown = f"{value:.1f}" if round(value, 1) == value else f"{value:g}"
    return f"the {TOLERANCE_LABEL} of {shown} pt (quantize.tolerance)"


@dataclass(frozen=True)
class LossVerdict:
    """Whether a quantized model lost accuracy against the float one on the same rows.

    Attributes:
        rows: eval rows compared.
        worse: rows the float model got right and the quantized one wrong (McNemar's b).
        better: rows the quantized model got right and the float one wrong (c).
        changed: rows whose predicted class differs (includes wrong→other wrong).
        tolerance: the allowed drop in accuracy points (``quantize.tolerance``).
        p_value: one-sided exact McNemar p (:func:`mcnemar_p`).
        what: the name of the quantization in sentences ("onnxruntime int8").
    """

    rows: int
    worse: int
    better: int
    changed: int
    tolerance: float
    p_value: float
    what: str = "int8"

    @property
    def drop_points(self) -> float:
        """Accuracy lost, in points (negative: gained)."""
        return 100 * (self.worse - self.better) / self.rows if self.rows else 0.0

    @property
    def beyond_tolerance(self) -> bool:
        return self.drop_points > self.tolerance + 1e-10

    @property
    def significant(self) -> bool:
        return self.p_value < SIGNIFICANCE

    @property
    def ok(self) -> bool:
        """Passes: within the tolerance, or beyond it by no more than the set's noise."""
        return not (self.beyond_tolerance and self.significant)

    @property
    def detectable_points(self) -> float:
        """The smallest drop this eval set can show as significant, in points."""
        return 100 * smallest_detectable(self.rows) / self.rows if self.rows else math.inf

    @property
    def underpowered(self) -> bool:
        """The eval set cannot tell a loss of the tolerance's size from noise."""
        return self.detectable_points > self.tolerance + 1e-10

    def sentence(self) -> str:
        """One honest sentence: what changed, and whether it is a loss or noise."""
        points = f"{-self.drop_points:+.1f}".replace("-", "−")
        flips = (
            f"{self.what} changed {self.changed} of {self.rows} predictions "
            f"({self.worse} right→wrong, {self.better} wrong→right: {points} points)"
        )
        p = f"McNemar p = {self.p_value:.2g}, one-sided"
        if not self.beyond_tolerance:
            return f"{flips}, within {allowed_loss(self.tolerance)}."
        if self.significant:
            return (
                f"{flips}: more than {allowed_loss(self.tolerance)} and beyond the "
                f"noise of {self.rows} eval rows ({p})."
            )
        return (
            f"{flips}: more than {allowed_loss(self.tolerance)}, but on "
            f"{self.rows} rows that is within noise ({p}); a larger eval set can detect "
            "smaller losses."
        )

    def power_warning(self) -> str | None:
        """A warning when the eval set is too small to detect a loss of the tolerance."""
        if not self.underpowered:
            return None
        k = smallest_detectable(self.rows)
        return (
            f"on {self.rows} eval rows the smallest accuracy loss that can show "
            f"beyond noise is {self.detectable_points:.1f} points ({k} rows right→wrong, "
            f"none the other way), more than {allowed_loss(self.tolerance)}; "
            "smaller losses cannot be told from noise here. A larger eval set can detect them."
        )

    def to_dict(self) -> dict[str, Any]:
        """The figures and sentences, for a variant's record."""
        out: dict[str, Any] = {
            "rows": self.rows,
            "right_to_wrong": self.worse,
            "wrong_to_right": self.better,
            "changed": self.changed,
            "drop_points": round(self.drop_points, 4),
            "tolerance": self.tolerance,
            "mcnemar_p": self.p_value,
            "significance_level": SIGNIFICANCE,
            "passed": self.ok,
            "verdict": self.sentence(),
        }
        if self.underpowered:
            out["warning"] = self.power_warning()
        return out


def judge_loss(
    reference: Any,
    candidate: Any,
    labels: Any,
    tolerance: float,
    *,
    what: str = "int8",
) -> LossVerdict:
    """Compare two models' predicted classes on the same eval rows against the gold labels.

    Args:
        reference, candidate: predicted class per row, shape ``(N,)``, same row order
            (the float model first).
        labels: gold class per row, shape ``(N,)``.
        tolerance: allowed drop in accuracy points.
        what: how sentences name the quantization.

    Raises:
        ValueError: the arrays differ in length.
    """
    ref, cand, gold = (np.asarray(a).reshape(-1) for a in (reference, candidate, labels))
    if not (len(ref) == len(cand) == len(gold)):
        raise ValueError(
            f"predictions of {len(ref)} and {len(cand)} rows against {len(gold)} labels"
        )
    return _verdict(ref == gold, cand == gold, int((ref != cand).sum()), tolerance, what)


def _verdict(
    ref_right: np.ndarray, cand_right: np.ndarray, changed: int, tolerance: float, what: str
) -> LossVerdict:
    worse = int((ref_right & ~cand_right).sum())
    better = int((~ref_right & cand_right).sum())
    return LossVerdict(
        len(ref_right), worse, better, changed, float(tolerance), mcnemar_p(worse, better), what
    )


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
        verdict: the final model against the float one, row by row (:func:`judge_loss`);
            None when ``evaluate`` gave accuracies only.
        first_verdict: the same for every candidate quantized, before the guard acted.
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
    verdict: LossVerdict | None = None
    first_verdict: LossVerdict | None = None

    @property
    def drop(self) -> float:
        return self.baseline - self.final

    @property
    def ok(self) -> bool:
        """The final drop is within the tolerance, or (with per-row predictions) beyond it
        by no more than the eval set's noise (:attr:`LossVerdict.ok`)."""
        if self.verdict is not None:
            return self.verdict.ok
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
    labels: Any = None,
    log: Callable[[str], None] | None = None,
    check: Callable[[], None] | None = None,
    known_costs: Mapping[str, float] | None = None,
) -> GuardReport:
    """Quantize, then keep the most sensitive layers in float until accuracy holds.

    Every candidate is scored once by what quantizing *only it* costs, then the most
    costly are kept float one by one, re-evaluating the whole model after each, until
    the drop passes or no candidate is left (``report.ok`` is then False). With ``labels``
    ``evaluate`` returns each eval row's predicted class and a drop beyond the tolerance
    fails only when it is significant against the float model's predictions on the same
    rows (:func:`judge_loss`); without, ``100 * (baseline - accuracy) <= tolerance``. One score per candidate suffices because quantizing only one module does
    not depend on which others are kept float.

    The score is the KL divergence between the float model's and the one-module-
    quantized model's logits on ``sample`` when given: it is continuous (it sees a
    layer's damage before it flips a prediction, where accuracy on a dev set ties at
    0 for most single layers) and costs one forward pass per candidate. Without a
    sample it is the accuracy lost, i.e. one ``evaluate`` per candidate.

    Args:
        model: the float model (not changed).
        method, per_channel, embeddings, group_size: as in :func:`quantize_model`.
        evaluate: model -> accuracy (a fraction in [0, 1]; the pipeline's evaluation),
            or with ``labels`` model -> predicted class per eval row, shape ``(N,)``.
        tolerance: allowed accuracy drop in points (0.5 = half a point, i.e. 0.005 of
            accuracy), as ``quantize.tolerance`` in a recipe.
        candidates: module names or prefixes that may be kept float (default: every
            quantizable module; :func:`layer_groups` gives coarser ones).
        sample: a batch (or batches) of model inputs for the KL score.
        skip: modules always kept float.
        baseline: the float model's accuracy, if already known (ignored with ``labels``:
            the float model's own predictions are needed).
        labels: the gold class per eval row, shape ``(N,)``, in ``evaluate``'s order.
        log: receives one line per step, for progress messages.
        check: called before every candidate is scored or kept float; raises to stop
            (the pipeline's stop check), and whatever it raises propagates.
        known_costs: module name -> the KL cost of quantizing only it, measured before
            (a sensitivity report's :meth:`~slimpajama_gui.core.techniques.sensitivity.
            SensitivityReport.linear_costs`); a candidate whose modules all have one is
            scored by their sum instead of being quantized and run again. Used only with
            ``sample`` (the other costs are then KL too).

    Raises:
        UserError: a bad method, tolerance or candidate.
    """
    _method(method)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise UserError(f"quantize.tolerance must be a number >= 0, not {tolerance!r}.")
    say = log or logger.info
    options = dict(per_channel=per_channel, embeddings=embeddings, group_size=group_size)
    gold = None if labels is None else np.asarray(labels).reshape(-1)
    reference_pred = None
    if gold is not None:
        reference_pred = np.asarray(evaluate(model)).reshape(-1)
        baseline = _accuracy(reference_pred, gold)
    elif baseline is None:
        baseline = float(evaluate(model))

    def measure(candidate: nn.Module) -> tuple[float, LossVerdict | None]:
        if gold is None:
            return float(evaluate(candidate)), None
        pred = np.asarray(evaluate(candidate)).reshape(-1)
        return _accuracy(pred, gold), judge_loss(reference_pred, pred, gold, tolerance, what=method)

    every = quantizable_modules(model, embeddings)
    always = _expand(quantizable_modules(model, True), skip, "quantize.skip")
    result = quantize_model(model, method, skip=always, **options)
    accuracy, verdict = measure(result.model)
    report = GuardReport(
        baseline, accuracy, accuracy, list(result.kept_float), [], result, tolerance=tolerance,
        verdict=verdict, first_verdict=verdict,
    )  # fmt: skip
    say(accuracy_change(method, accuracy, baseline, tolerance))
    if verdict is not None:
        say(verdict.sentence())
    if report.ok:
        return report

    names = list(candidates) if candidates is not None else every
    groups = {c: _expand(every, [c], "quantize.candidates") - always for c in names}
    groups = {c: g for c, g in groups.items() if g}
    # Known costs are KL divergences: comparable only with the KL the guard measures.
    known = dict(known_costs or {}) if sample is not None else {}
    from_report = {c: sum(known[m] for m in g) for c, g in groups.items() if g <= known.keys()}
    report.sensitivity.update(from_report)
    if from_report:
        say(f"sensitivity of {len(from_report)} candidates from the sensitivity report (kl)")
    to_measure = {c: g for c, g in groups.items() if c not in from_report}
    reference = _logits(model, _as_batches(sample)) if sample is not None and to_measure else None
    report.sensitivity_measure = "kl" if reference is not None else "accuracy"
    if not to_measure:
        report.sensitivity_measure = "kl (sensitivity report)"
    elif from_report:
        report.sensitivity_measure += (
            f" ({len(from_report)} of {len(groups)} from the sensitivity report)"
        )
    for name, group in to_measure.items():
        if check is not None:
            check()
        only = quantize_model(model, method, skip=set(every) - group, **options).model
        if reference is not None:
            score = _kl(reference, _logits(only, _as_batches(sample)))
        else:
            score = baseline - measure(only)[0]
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
        report.final, report.verdict = measure(report.result.model)
        report.tried.append((name, report.final))
        report.kept_float = list(report.result.kept_float)
        say(f"kept {name} in float: accuracy {report.final:.4f}")
    return report


def accuracy_change(what: str, accuracy: float, baseline: float, tolerance: float) -> str:
    """One sentence on how ``what`` changed accuracy against the float model, either way.

    A rise or no change is said as such, never as a loss; a drop says whether it is
    within ``tolerance`` (points). Accuracies are fractions in [0, 1].

    Example:
        >>> accuracy_change("dynamic_int8", 0.8544, 0.8486, 1.0)
        'dynamic_int8: accuracy 85.44 % against 84.86 % in float, +0.58 points (no loss).'
    """
    points = 100 * (accuracy - baseline)
    head = f"{what}: accuracy {100 * accuracy:.2f} % against {100 * baseline:.2f} % in float"
    if round(points, 2) == 0:
        return f"{head}, unchanged."
    if points > 0:
        return f"{head}, +{points:.2f} points (no loss)."
    within = (
        f"within {allowed_loss(tolerance)}"
        if -points <= tolerance
        else f"more than {allowed_loss(tolerance)}"
    )
    return f"{head}, −{-points:.2f} points, {within}."


def _accuracy(predicted: np.ndarray, gold: np.ndarray) -> float:
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predictions for {len(gold)} labels")
    return float((predicted == gold).mean()) if len(gold) else 0.0
