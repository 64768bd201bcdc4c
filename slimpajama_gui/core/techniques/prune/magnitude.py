"""Unstructured magnitude pruning: one-shot, or gradual during recovery training.

:func:`magnitude_prune` (one-shot) or :class:`GradualMagnitudePruner` (the cubic
schedule of Zhu & Gupta 2017, during recovery training) sets the smallest weights of the
encoder's linear layers to zero. The tensors keep their shape: the saved file is as large
as before and dense CPU kernels run exactly as fast. Only a *compressed* copy (zip)
shrinks, because runs of zeros compress well; :func:`sparsity_report` says so in its
``note`` and :func:`safetensors_sizes` measures it.

Masks follow ``torch.nn.utils.prune``: a pruned linear has ``weight_orig`` (trained)
and a ``weight_mask`` buffer, and ``weight = weight_orig * weight_mask`` is recomputed
before every forward, so recovery training cannot bring a pruned weight back. Call
:func:`make_permanent` before saving, exporting or quantizing: it leaves plain
``weight`` tensors with the zeros in them.

Example:
    >>> report = magnitude_prune(model, 0.5)  # doctest: +SKIP
    >>> fit(model, epochs=1)  # recovery; pruned weights stay zero  # doctest: +SKIP
    >>> make_permanent(model); model.save_pretrained(out)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.encoder import EncoderClassifier
from slimpajama_gui.core.techniques.hooks import Callbacks, TrainState
from slimpajama_gui.core.techniques.prune.layers import (
    Scope,
    _check_fraction,
    _check_scope,
    _check_slim,
    _plain_state_dict,
)

log = logging.getLogger(__name__)

#: The encoder linears unstructured pruning touches, per layer (not embeddings, norms,
#: biases or the head).
ENCODER_LINEARS = (
    "attention.query",
    "attention.key",
    "attention.value",
    "attention.output",
    "ffn.intermediate",
    "ffn.output",
)
HEAD_LINEARS = ("pooler.dense", "classifier")

UNSTRUCTURED_NOTE = (
    "Unstructured sparsity: the zeros are stored like any other number, so the "
    "safetensors file keeps its size and dense CPU kernels run no faster. A compressed "
    "copy (zip) does shrink. For a model that is smaller on disk and faster, prune "
    "heads/FFN neurons or layers, or quantize."
)


# --------------------------------------------------------------------------- helpers


def _pruned_modules(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, tensor name) for every ``torch.nn.utils.prune`` reparametrisation."""
    found = []
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, torch_prune.BasePruningMethod):
                found.append((module, hook._tensor_name))
    return found


def _effective_weight(linear: nn.Module) -> torch.Tensor:
    """The weight the forward pass uses, masked if the module is pruned."""
    if hasattr(linear, "weight_orig"):
        return linear.weight_orig.detach() * linear.weight_mask
    return linear.weight.detach()


# --------------------------------------------------------------------------- unstructured


@dataclass
class SparsityReport:
    """How many of the pruned linears' weights are zero, for charts and reports.

    Attributes:
        per_layer: "layer 0", "layer 1", ... (and "head" when the pooler/classifier
            is counted) -> fraction of zeros in that layer's linear weights.
        per_module: module name (e.g. "layers.0.attention.query") -> fraction of zeros.
        overall: fraction of zeros over all counted weights.
        nonzero: non-zero weights counted.
        total: weights counted (linear weights only: no biases, norms or embeddings).
        note: what this sparsity does and does not buy (see :data:`UNSTRUCTURED_NOTE`).
    """

    per_layer: dict[str, float]
    per_module: dict[str, float]
    overall: float
    nonzero: int
    total: int
    note: str = UNSTRUCTURED_NOTE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prunable_linears(
    model: EncoderClassifier, include_classifier: bool = False
) -> dict[str, nn.Linear]:
    """The linears unstructured pruning works on, by module name.

    The encoder's query/key/value/attention-output and FFN intermediate/output layers;
    with ``include_classifier`` also ``pooler.dense`` and ``classifier``. Zero-sized
    linears (a branch removed by structured pruning) are left out.
    """
    names = [f"layers.{i}.{part}" for i in range(len(model.layers)) for part in ENCODER_LINEARS]
    if include_classifier:
        names += [n for n in HEAD_LINEARS if n != "pooler.dense" or model.pooler is not None]
    modules = dict(model.named_modules())
    return {n: modules[n] for n in names if _effective_weight(modules[n]).numel() > 0}


def _group(name: str) -> str:
    return f"layer {name.split('.')[1]}" if name.startswith("layers.") else "head"


def sparsity_report(model: EncoderClassifier, include_classifier: bool = False) -> SparsityReport:
    """Fraction of zero weights in the linears :func:`magnitude_prune` works on.

    Counts masked weights as zero whether or not :func:`make_permanent` has run.
    Reads only.

    Example:
        >>> sparsity_report(model).per_layer  # doctest: +SKIP
        {'layer 0': 0.41, 'layer 1': 0.55, ...}
    """
    _check_slim(model)
    per_module: dict[str, float] = {}
    groups: dict[str, list[int]] = {}
    zeros_all = total_all = 0
    for name, linear in prunable_linears(model, include_classifier).items():
        w = _effective_weight(linear)
        n, z = w.numel(), int(w.numel() - torch.count_nonzero(w))
        per_module[name] = z / n
        g = groups.setdefault(_group(name), [0, 0])
        g[0] += z
        g[1] += n
        zeros_all += z
        total_all += n
    return SparsityReport(
        per_layer={k: z / n for k, (z, n) in groups.items()},
        per_module=per_module,
        overall=zeros_all / total_all if total_all else 0.0,
        nonzero=total_all - zeros_all,
        total=total_all,
    )


def _magnitude_masks(
    weights: dict[str, torch.Tensor], amount: float, scope: Scope
) -> dict[str, torch.Tensor]:
    """Keep-masks (1 keep, 0 prune) that zero the ``amount`` smallest |w|, no side effects.

    Exactly ``round(amount * n)`` weights are pruned (ties broken by position), as
    ``torch.nn.utils.prune`` does. Weights already zero are the smallest, so masks only
    ever grow when called again with a larger amount.
    """
    masks = {}
    if scope == "layer":
        for name, w in weights.items():
            flat = w.abs().flatten()
            k = round(amount * flat.numel())
            mask = torch.ones_like(flat)
            if k:
                mask[torch.topk(flat, k, largest=False).indices] = 0
            masks[name] = mask.view_as(w)
        return masks
    flat = torch.cat([w.abs().flatten().float() for w in weights.values()])  # (N,)
    k = round(amount * flat.numel())
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k:
        keep[torch.topk(flat, k, largest=False).indices] = False
    start = 0
    for name, w in weights.items():
        n = w.numel()
        masks[name] = keep[start : start + n].view_as(w).to(w.dtype)
        start += n
    return masks


def _set_masks(linears: dict[str, nn.Linear], masks: dict[str, torch.Tensor]) -> None:
    """Install ``masks`` (reparametrising plain linears first); undone fully on error."""
    undo: list[tuple[nn.Linear, torch.Tensor | None]] = []
    try:
        for name, linear in linears.items():
            if hasattr(linear, "weight_mask"):
                undo.append((linear, linear.weight_mask.detach().clone()))
            else:
                torch_prune.identity(linear, "weight")
                linear.register_forward_hook(_detach_weight)
                undo.append((linear, None))
            linear.weight_mask.copy_(masks[name])
            _refresh(linear)
    except BaseException:
        for linear, old in reversed(undo):
            if old is None:
                linear.weight_mask.fill_(1)
                torch_prune.remove(linear, "weight")
                _remove_detach_hook(linear)
            else:
                linear.weight_mask.copy_(old)
                _refresh(linear)
        raise


def _detach_weight(module: nn.Module, args: Any, output: Any) -> None:
    # The pruning pre-hook leaves ``weight = weight_orig * weight_mask`` as a non-leaf
    # tensor, and copy.deepcopy refuses modules holding one (the pipeline clones models
    # between steps). The forward's graph keeps its own reference, so swapping in a
    # detached copy once the forward is done loses no gradient.
    if hasattr(module, "weight_orig"):
        module.weight = module.weight.detach()


def _remove_detach_hook(module: nn.Module) -> None:
    for key in [k for k, fn in module._forward_hooks.items() if fn is _detach_weight]:
        del module._forward_hooks[key]


@torch.no_grad()
def _refresh(linear: nn.Module) -> None:
    # The pre-hook recomputes ``weight`` at the next forward; doing it now as well means
    # anyone reading ``linear.weight`` in between (a report, a chart) sees the zeros.
    linear.weight = linear.weight_orig * linear.weight_mask


def magnitude_prune(
    model: EncoderClassifier,
    amount: float,
    scope: Scope = "global",
    *,
    include_classifier: bool = False,
) -> SparsityReport:
    """Zero the smallest-magnitude weights of the encoder's linears, in place, at once.

    The pruned linears get ``torch.nn.utils.prune`` masks, so recovery training keeps
    the zeros; call :func:`make_permanent` before saving. Pruning an already pruned
    model ranks the weights the forward pass uses, so the masks only grow: ``amount``
    is the target share of zeros, not a share of what is left.

    This shrinks only a compressed copy of the file and does not speed up dense CPU
    inference (see the report's ``note``).

    Args:
        model: changed in place; left exactly as it was if this raises.
        amount: share of the weights to zero, strictly between 0 and 1.
        scope: "global" ranks all the weights together (layers end up with different
            sparsity); "layer" prunes ``amount`` of every linear (weight matrix).
        include_classifier: also prune ``pooler.dense`` and ``classifier``.

    Returns:
        The :func:`sparsity_report` after pruning.

    Raises:
        UserError: ``amount`` or ``scope`` is out of range (named ``prune.amount`` /
            ``prune.scope``).

    Example:
        >>> magnitude_prune(model, 0.9).overall  # doctest: +SKIP
        0.9
    """
    _check_slim(model)
    amount = _check_fraction(amount, "prune.amount", low_open=True, high_open=True)
    scope = _check_scope(scope)
    linears = prunable_linears(model, include_classifier)
    if not linears:
        raise UserError("this model has no linear weights left to prune.")
    masks = _magnitude_masks({n: _effective_weight(m) for n, m in linears.items()}, amount, scope)
    _set_masks(linears, masks)
    return sparsity_report(model, include_classifier)


def make_permanent(model: nn.Module) -> nn.Module:
    """Remove every pruning mask and hook, in place, keeping the pruned weights at zero.

    Afterwards the state dict is plain (``...weight``; no ``weight_orig`` /
    ``weight_mask``), so :meth:`EncoderClassifier.save_pretrained`, ONNX export and
    quantization see an ordinary model. A model without masks is returned unchanged.

    Returns:
        ``model``, for chaining.
    """
    for module, name in _pruned_modules(model):
        torch_prune.remove(module, name)
    for module in model.modules():
        _remove_detach_hook(module)
    return model


def cubic_sparsity(
    step: int, final: float, start_step: int, end_step: int, initial: float = 0.0
) -> float:
    """Zhu & Gupta 2017: ``s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n Δt))^3``.

    ``s_i`` before ``start_step`` (t0), ``s_f`` from ``end_step`` (t0 + nΔt) on; the
    curve prunes fast early, while there are many redundant weights, and slowly near
    the end.

    Example:
        >>> round(cubic_sparsity(50, 0.9, 0, 100), 4)
        0.7875
    """
    if step < start_step:
        return initial
    if step >= end_step:
        return final
    progress = (step - start_step) / (end_step - start_step)
    return final + (initial - final) * (1.0 - progress) ** 3


class GradualMagnitudePruner(Callbacks):
    """Prune gradually during training, on the cubic schedule of Zhu & Gupta (2017).

    Pass it to :func:`slimpajama_gui.core.techniques.train.train` as a callback. Every ``every``
    steps between ``start_step`` and ``end_step`` it raises the masks to
    :func:`cubic_sparsity`; after *every* optimizer step it re-applies them (and zeroes
    the masked entries of ``weight_orig``), so the optimizer cannot revive a pruned
    weight. Masks only grow: a pruned weight stays pruned.

    The model is changed in place: masks (all ones) are attached at construction, so
    the training loop's snapshots see the same tensors from its first step to its last.
    When training ends normally the model holds exactly ``final_amount`` zeros, even if
    the loop restored a best checkpoint from before ``end_step`` (those weights are
    then pruned to the final amount and a warning is logged; with ``keep_best`` prefer
    evaluating only after ``end_step``). Call :func:`make_permanent` before saving.

    Args:
        model: the model to prune (changed in place).
        final_amount: s_f, the share of zeros at the end, strictly between 0 and 1.
        scope: "global" or "layer", as in :func:`magnitude_prune`.
        start_step: t0, the step of the first pruning (0 = before the first step).
        end_step: t0 + nΔt, the step where ``final_amount`` is reached; None = three
            quarters of the training run, leaving the last quarter to recover.
        every: Δt, steps between mask updates; None = (end - start) / 16.
        initial_amount: s_i, the sparsity applied at ``start_step``.
        include_classifier: also prune ``pooler.dense`` and ``classifier``.

    Example:
        >>> pruner = GradualMagnitudePruner(model, 0.8, end_step=1500, every=100)  # doctest: +SKIP
        >>> train(model, batches, steps, config, callbacks=[pruner, progress])  # doctest: +SKIP
        >>> make_permanent(model)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: EncoderClassifier,
        final_amount: float,
        scope: Scope = "global",
        start_step: int = 0,
        end_step: int | None = None,
        every: int | None = None,
        *,
        initial_amount: float = 0.0,
        include_classifier: bool = False,
    ) -> None:
        _check_slim(model)
        self.final_amount = _check_fraction(
            final_amount, "prune.amount", low_open=True, high_open=True
        )
        self.initial_amount = _check_fraction(
            initial_amount, "prune.initial_amount", low_open=False, high_open=True
        )
        if self.initial_amount > self.final_amount:
            raise UserError(
                f"prune.initial_amount ({initial_amount}) must not exceed prune.amount "
                f"({final_amount})."
            )
        self.scope = _check_scope(scope)
        for label, value in (("start_step", start_step), ("end_step", end_step), ("every", every)):
            if value is None and label != "start_step":
                continue
            minimum = 1 if label == "every" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise UserError(
                    f"prune.{label} must be a whole number >= {minimum}, not {value!r}."
                )
        if end_step is not None and end_step < start_step:
            raise UserError(
                f"prune.end_step ({end_step}) must not come before prune.start_step ({start_step})."
            )
        self.model = model
        self.include_classifier = include_classifier
        self.start_step = start_step
        self.end_step = end_step
        self.every = every
        self.current_amount = 0.0
        self.linears = prunable_linears(model, include_classifier)
        if not self.linears:
            raise UserError("this model has no linear weights left to prune.")
        # Attach masks now (not at on_train_begin): the loop snapshots the state dict
        # before its first callback, and a NaN rollback must find the same keys.
        _set_masks(self.linears, {n: self._mask_or_ones(m) for n, m in self.linears.items()})
        self.history: list[tuple[int, float]] = []  # (step, sparsity) at each mask update

    @staticmethod
    def _mask_or_ones(linear: nn.Linear) -> torch.Tensor:
        if hasattr(linear, "weight_mask"):
            return linear.weight_mask.detach().clone()
        return torch.ones_like(linear.weight)

    def sparsity_at(self, step: int) -> float:
        """The scheduled share of zeros after ``step`` optimizer steps."""
        end = self.end_step if self.end_step is not None else self.start_step
        return cubic_sparsity(step, self.final_amount, self.start_step, end, self.initial_amount)

    def _due(self, step: int) -> bool:
        if step < self.start_step:
            return False
        end = self.end_step if self.end_step is not None else self.start_step
        return step >= end or (step - self.start_step) % self.every == 0

    @torch.no_grad()
    def _update(self, amount: float, step: int) -> None:
        weights = {n: _effective_weight(m) for n, m in self.linears.items()}
        _set_masks(self.linears, _magnitude_masks(weights, amount, self.scope))
        self.current_amount = amount
        self.history.append((step, amount))

    @torch.no_grad()
    def _reapply(self) -> None:
        for linear in self.linears.values():
            linear.weight_orig.mul_(linear.weight_mask)
            _refresh(linear)

    def on_train_begin(self, state: TrainState) -> None:
        total = state.total_steps
        if self.end_step is None:
            self.end_step = max(self.start_step, math.ceil(0.75 * total))
        if self.end_step > total:
            log.warning(
                "gradual pruning ends at step %d but training has only %d steps; the "
                "final sparsity is applied when training ends.",
                self.end_step,
                total,
            )
        if self.every is None:
            self.every = max(1, (self.end_step - self.start_step) // 16)
        self._step(state.step)

    def _step(self, step: int) -> None:
        target = self.sparsity_at(step)
        if self._due(step) and target > self.current_amount:
            self._update(target, step)

    def on_step_end(self, state: TrainState) -> None:
        self._reapply()
        self._step(state.step)

    def on_end(self, state: TrainState, status: str) -> None:
        if status != "done":  # cancelled or failed: keep the masks the weights were trained with
            self._reapply()
            return
        report = sparsity_report(self.model, self.include_classifier)
        if report.overall + 1e-9 < self.final_amount and self.current_amount >= self.final_amount:
            log.warning(
                "the restored best weights have %.1f %% zeros (from before the pruning "
                "schedule ended); pruning them to the final %.1f %% without further training.",
                100 * report.overall,
                100 * self.final_amount,
            )
        if report.overall + 1e-9 < self.final_amount or self.current_amount < self.final_amount:
            self._update(self.final_amount, state.step)
        self._reapply()


def safetensors_sizes(model: nn.Module) -> tuple[int, int]:
    """(bytes of the safetensors file, bytes after zip's deflate) of the plain weights.

    The honest measure of what unstructured sparsity buys on disk: the first number
    does not change with sparsity, the second does. Works on masked models too.
    """
    from safetensors.torch import save

    state = {k: v.cpu().contiguous() for k, v in _plain_state_dict(model).items()}
    raw = save(state, metadata={"format": "pt"})
    return len(raw), len(zlib.compress(raw, 6))
