"""Pruning that really shrinks or speeds up a :class:`SlimPajamaModel` — and says when not.

Three techniques, from "smaller file only" to "smaller and faster" (vocabulary pruning,
which shrinks the word embedding, is in :mod:`slimpajama_gui.core.techniques.vocabulary`):

* **Unstructured magnitude pruning** (:func:`magnitude_prune`, one-shot, or
  :class:`GradualMagnitudePruner`, the cubic schedule of Zhu & Gupta 2017, during
  recovery training) sets the smallest weights of the encoder's linear layers to
  zero. The tensors keep their shape: the saved file is as large as before and dense
  CPU kernels run exactly as fast. Only a *compressed* copy (zip) shrinks, because runs
  of zeros compress well. :func:`sparsity_report` says so in its ``note``.
* **Structured pruning** (:func:`structure_importance` + :func:`prune_structure`)
  scores every attention head and FFN neuron by the gradient of the loss with respect
  to a multiplicative mask on it (Michel et al. 2019) and returns a *new*, physically
  smaller model (fewer heads, narrower FFNs, per layer) that computes the same
  logits as the original with those heads and neurons masked out.
* **Layer dropping** (:func:`drop_layers`) keeps some encoder layers, copied as they are.

Which functions change the model you pass and which return a new one:

===============================  =========================================================
:func:`magnitude_prune`          in place (adds masks); unchanged if it raises
:class:`GradualMagnitudePruner`  in place, during training (adds masks when built)
:func:`make_permanent`           in place (removes masks, keeps the zeros)
:func:`structure_importance`     reads only (gradients go to temporary masks, not .grad)
:func:`prune_structure`          returns a new model; the original is untouched
:func:`drop_layers`              returns a new model; the original is untouched
===============================  =========================================================

Measured on the packaged MiniLM-L6 (one run, a busy 2-core CPU, 1 thread): magnitude
pruning of the encoder linears leaves the 90.9 MB safetensors file at 90.9 MB and the
latency unchanged; deflated (zip) the file goes from 83.2 MB to 67.6 MB at 50 % and
51.8 MB at 90 % (the 11.7 M-parameter embedding is not pruned). Removing 50 % of the
heads and FFN neurons takes the encoder from 10.65 M to 5.33 M parameters and the batch-1
p50 latency down about 1.6-1.7x.

Masks follow ``torch.nn.utils.prune``: a pruned linear has ``weight_orig`` (trained)
and a ``weight_mask`` buffer, and ``weight = weight_orig * weight_mask`` is recomputed
before every forward, so recovery training cannot bring a pruned weight back. Call
:func:`make_permanent` before saving, exporting or quantizing: it leaves plain
``weight`` tensors with the zeros in them.

Example:
    >>> report = magnitude_prune(model, 0.5)  # doctest: +SKIP
    >>> fit(model, epochs=1)  # recovery; pruned weights stay zero  # doctest: +SKIP
    >>> make_permanent(model); model.save_pretrained(out)  # doctest: +SKIP
    >>> importance = structure_importance(model, train_batches, max_batches=32)  # doctest: +SKIP
    >>> small = prune_structure(model, importance, head_fraction=0.5, ffn_fraction=0.5)  # doctest: +SKIP
    >>> small.config.layer_heads
    [6, 5, 7, 6, 6, 6]
"""

from __future__ import annotations

import copy
import logging
import math
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.encoder import SlimPajamaModel
from slimpajama_gui.core.techniques.train import Callbacks, TrainState

log = logging.getLogger(__name__)

Scope = Literal["global", "layer"]
#: ``loss_fn(model, batch) -> (loss, parts)``, as in :mod:`slimpajama_gui.core.techniques.train`.
LossFn = Callable[[nn.Module, Mapping[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]

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


def _check_fraction(value: Any, field_name: str, *, low_open: bool, high_open: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value)
    ok = ok and (value > 0 if low_open else value >= 0) and (value < 1 if high_open else value <= 1)
    if not ok:
        lo = "above 0" if low_open else "0 or more"
        hi = "below 1" if high_open else "at most 1"
        raise UserError(f"{field_name} must be a number {lo} and {hi}, not {value!r}.")
    return float(value)


def _check_scope(scope: Any) -> Scope:
    if scope not in ("global", "layer"):
        raise UserError(f"prune.scope must be 'global' or 'layer', not {scope!r}.")
    return scope


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


def _plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with every ``x_orig`` / ``x_mask`` pair folded into ``x``."""
    state = dict(model.state_dict())
    for key in [k for k in state if k.endswith("_orig")]:
        base = key[: -len("_orig")]
        mask = state.pop(base + "_mask", None)
        orig = state.pop(key)
        state[base] = orig * mask if mask is not None else orig
    return {k: v.detach() for k, v in state.items()}


def _check_slim(model: Any) -> SlimPajamaModel:
    if not isinstance(model, SlimPajamaModel):
        raise TypeError(f"expected a SlimPajamaModel, got {type(model).__name__}")
    return model


def _new_model(model: SlimPajamaModel, config, state: dict[str, torch.Tensor]) -> SlimPajamaModel:
    """A model built from ``config`` holding ``state``, on the original's device and dtype."""
    ref = next(model.parameters())
    # The random initialisation is overwritten at once; forking the RNG keeps pruning
    # from shifting the random numbers of whatever the caller does next.
    with torch.random.fork_rng(devices=[]):
        new = SlimPajamaModel(config).to(dtype=ref.dtype)
    new.load_state_dict(state, strict=True)
    new.to(ref.device)
    new.train(model.training)
    return new


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
    model: SlimPajamaModel, include_classifier: bool = False
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


def sparsity_report(model: SlimPajamaModel, include_classifier: bool = False) -> SparsityReport:
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
    model: SlimPajamaModel,
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
    ``weight_mask``), so :meth:`SlimPajamaModel.save_pretrained`, ONNX export and
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
        model: SlimPajamaModel,
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


# --------------------------------------------------------------------------- structured


@dataclass
class Importance:
    """Gradient-based importance of every head and FFN neuron (Michel et al. 2019).

    Attributes:
        heads: one tensor per layer, (h_i,): mean over examples of |dL/d mask_head|.
        ffn: one tensor per layer, (f_i,): the same for each FFN neuron.
        examples: how many examples the means are over.
    """

    heads: list[torch.Tensor]
    ffn: list[torch.Tensor]
    examples: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "heads": [t.tolist() for t in self.heads],
            "ffn": [t.tolist() for t in self.ffn],
            "examples": self.examples,
        }


@dataclass
class StructureMasks:
    """Which heads and FFN neurons to keep (True) in each layer."""

    heads: list[torch.Tensor]  # per layer, bool (h_i,)
    ffn: list[torch.Tensor]  # per layer, bool (f_i,)

    @property
    def layer_heads(self) -> list[int]:
        return [int(m.sum()) for m in self.heads]

    @property
    def layer_ffn(self) -> list[int]:
        return [int(m.sum()) for m in self.ffn]


def _head_hook(mask_fn: Callable[[int], torch.Tensor], heads: int, head_dim: int):
    """A pre-hook on ``attention.output`` that scales each head's slice of its input."""

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]):
        y = args[0]  # (B, T, h*d), the concatenated heads
        B, T, _ = y.shape
        m = mask_fn(B).to(y.dtype)  # (B, h) or (h,)
        m = m[:, None, :, None] if m.dim() == 2 else m[None, None, :, None]
        return ((y.view(B, T, heads, head_dim) * m).view(B, T, heads * head_dim),)

    return hook


def _ffn_hook(mask_fn: Callable[[int], torch.Tensor]):
    """A pre-hook on ``ffn.output`` that scales each neuron's activation."""

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]):
        y = args[0]  # (B, T, f), activations after the non-linearity
        m = mask_fn(y.shape[0]).to(y.dtype)  # (B, f) or (f,)
        return (y * (m[:, None, :] if m.dim() == 2 else m),)

    return hook


@contextmanager
def _hooks(model: SlimPajamaModel, head_fns, ffn_fns) -> Iterator[None]:
    handles = []
    try:
        for layer, hf, ff in zip(model.layers, head_fns, ffn_fns, strict=True):
            att = layer.attention
            if hf is not None and att.num_heads:
                hook = _head_hook(hf, att.num_heads, att.head_dim)
                handles.append(att.output.register_forward_pre_hook(hook))
            if ff is not None and layer.ffn.intermediate.out_features:
                handles.append(layer.ffn.output.register_forward_pre_hook(_ffn_hook(ff)))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def masked_structure(model: SlimPajamaModel, masks: StructureMasks) -> Iterator[SlimPajamaModel]:
    """Run ``model`` with the heads/neurons that ``masks`` drops multiplied by zero.

    What :func:`prune_structure` would give, without building it: the logits inside
    the block equal the pruned model's (up to float rounding). Hooks are removed on exit.

    Example:
        >>> with masked_structure(model, masks):  # doctest: +SKIP
        ...     logits = model(ids, mask).logits
    """
    _check_masks(model, masks)

    def const(m: torch.Tensor):
        return lambda B: m

    with _hooks(
        model,
        [const(m.float()) for m in masks.heads],
        [const(m.float()) for m in masks.ffn],
    ):
        yield model


def _batch_loss(model: nn.Module, batch: Mapping[str, torch.Tensor], loss_fn: LossFn | None):
    if loss_fn is not None:
        return loss_fn(model, batch)[0]
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch.get("attention_mask"),
        token_type_ids=batch.get("token_type_ids"),
    )
    # Summed, so each example's gradient is its own (Michel et al. average |grad| per example).
    return F.cross_entropy(out.logits.float(), batch["labels"], reduction="sum")


def structure_importance(
    model: SlimPajamaModel,
    batches: Iterable[Mapping[str, torch.Tensor]],
    max_batches: int | None = 32,
    *,
    loss_fn: LossFn | None = None,
    check: Callable[[], None] | None = None,
) -> Importance:
    """Score every head and FFN neuron by how much the loss depends on it.

    Following Michel, Levy & Neubig (2019), "Are Sixteen Heads Really Better than
    One?", each head's output (and each FFN neuron's activation) is multiplied by a
    mask ξ = 1 that requires grad, one per example; the importance is the mean over
    examples of |∂L/∂ξ| = |Σ_tokens (∂L/∂out)·out|, a first-order estimate of how much
    the loss changes when the unit is removed. Dropout is off while scoring.

    Reads only: the model's weights, ``.grad`` fields, ``requires_grad`` flags and
    train/eval mode are as before when this returns or raises.

    Args:
        model: the model to score.
        batches: training batches (dicts with ``input_ids``, ``attention_mask``,
            ``token_type_ids``, ``labels``), e.g. one epoch's iterator.
        max_batches: stop after this many; None = all.
        loss_fn: ``(model, batch) -> (loss, parts)``; default: summed cross-entropy.
        check: called before every batch; raises to stop (the pipeline's stop check),
            and whatever it raises propagates.

    Raises:
        UserError: no batch was given.
    """
    _check_slim(model)
    device = next(model.parameters()).device
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    heads = [torch.zeros(layer.attention.num_heads, device=device) for layer in model.layers]
    ffn = [
        torch.zeros(layer.ffn.intermediate.out_features, device=device) for layer in model.layers
    ]
    current: dict[tuple[str, int], torch.Tensor] = {}

    def fresh(kind: str, i: int, width: int):
        def make(B: int) -> torch.Tensor:
            m = torch.ones(B, width, device=device, requires_grad=True)  # (B, width)
            current[(kind, i)] = m
            return m

        return make

    seen = 0
    n_batches = 0
    try:
        model.eval()
        for p, _ in flags:  # only the masks need gradients: skip weight-gradient work
            p.requires_grad_(False)
        head_fns = [fresh("h", i, len(t)) for i, t in enumerate(heads)]
        ffn_fns = [fresh("f", i, len(t)) for i, t in enumerate(ffn)]
        with torch.enable_grad(), _hooks(model, head_fns, ffn_fns):
            for batch in batches:
                if max_batches is not None and n_batches >= max_batches:
                    break
                if check is not None:
                    check()
                batch = {k: v.to(device) for k, v in batch.items()}
                current.clear()
                loss = _batch_loss(model, batch, loss_fn)
                keys = list(current)
                grads = torch.autograd.grad(loss, [current[k] for k in keys], allow_unused=True)
                for (kind, i), g in zip(keys, grads, strict=True):
                    if g is not None:
                        (heads if kind == "h" else ffn)[i] += g.detach().abs().sum(0)
                seen += int(batch["input_ids"].shape[0])
                n_batches += 1
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)
    if n_batches == 0:
        raise UserError(
            "structured pruning needs training batches to score heads and neurons, but "
            "none were given; check that the dataset's train split is not empty."
        )
    return Importance(
        heads=[(t / seen).cpu() for t in heads], ffn=[(t / seen).cpu() for t in ffn], examples=seen
    )


def _check_masks(model: SlimPajamaModel, masks: StructureMasks | Importance) -> None:
    what = "importance scores" if isinstance(masks, Importance) else "structure masks"
    if len(masks.heads) != len(model.layers) or len(masks.ffn) != len(model.layers):
        raise UserError(
            f"the {what} are for {len(masks.heads)} layers but the model has "
            f"{len(model.layers)}; compute them again on this model."
        )
    for i, layer in enumerate(model.layers):
        h, f = layer.attention.num_heads, layer.ffn.intermediate.out_features
        if masks.heads[i].numel() != h or masks.ffn[i].numel() != f:
            raise UserError(
                f"the {what} for layer {i} cover {masks.heads[i].numel()} heads and "
                f"{masks.ffn[i].numel()} FFN neurons but the model has {h} and {f}; "
                "compute them again on this model."
            )


def _select(
    scores: list[torch.Tensor], fraction: float, scope: Scope, minimum: int, normalize: bool
) -> list[torch.Tensor]:
    """Keep-masks that drop the lowest-scoring ``fraction`` of units, >= ``minimum`` per layer."""
    keep = [torch.ones(len(s), dtype=torch.bool) for s in scores]
    if scope == "layer":
        for i, s in enumerate(scores):
            drop = min(round(fraction * len(s)), max(0, len(s) - minimum))
            if drop:
                order = sorted(range(len(s)), key=lambda j: (float(s[j]), j))
                keep[i][order[:drop]] = False
        return keep
    ranked = []
    for i, s in enumerate(scores):
        s = s.detach().double().cpu()
        if normalize:
            # Michel et al.: normalising by each layer's l2 norm makes global ranking work.
            norm = s.norm()
            s = s / norm if norm > 0 else s
        ranked += [(float(v), i, j) for j, v in enumerate(s)]
    ranked.sort()
    to_drop = round(fraction * len(ranked))
    left = [len(s) for s in scores]
    for _, i, j in ranked:
        if to_drop == 0:
            break
        if left[i] > minimum:
            keep[i][j] = False
            left[i] -= 1
            to_drop -= 1
    return keep


def select_structure(
    model: SlimPajamaModel,
    importance: Importance,
    head_fraction: float = 0.0,
    ffn_fraction: float = 0.0,
    scope: Scope = "global",
    *,
    min_heads_per_layer: int = 1,
    min_ffn_per_layer: int = 1,
    normalize: bool = True,
) -> StructureMasks:
    """Decide which heads and neurons to keep, from their importance. Reads only.

    Args:
        head_fraction: share of all heads to remove (0 = none).
        ffn_fraction: share of all FFN neurons to remove (0 = none).
        scope: "global" ranks units across layers (after dividing each layer's scores
            by their l2 norm when ``normalize``), so layers lose different amounts;
            "layer" removes the fraction from every layer.
        min_heads_per_layer / min_ffn_per_layer: never go below these in a layer
            (0 allows removing a whole branch).

    Raises:
        UserError: a fraction or minimum is out of range (named ``prune.amount``), or
            the scores do not fit the model.
    """
    _check_slim(model)
    head_fraction = _check_fraction(head_fraction, "prune.amount", low_open=False, high_open=False)
    ffn_fraction = _check_fraction(ffn_fraction, "prune.amount", low_open=False, high_open=False)
    scope = _check_scope(scope)
    for label, value in (
        ("min_heads_per_layer", min_heads_per_layer),
        ("min_ffn_per_layer", min_ffn_per_layer),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserError(f"prune.{label} must be a whole number >= 0, not {value!r}.")
    _check_masks(model, importance)
    return StructureMasks(
        heads=_select(importance.heads, head_fraction, scope, min_heads_per_layer, normalize),
        ffn=_select(importance.ffn, ffn_fraction, scope, min_ffn_per_layer, normalize),
    )


def prune_structure(
    model: SlimPajamaModel,
    importance: Importance | StructureMasks,
    head_fraction: float = 0.0,
    ffn_fraction: float = 0.0,
    scope: Scope = "global",
    *,
    min_heads_per_layer: int = 1,
    min_ffn_per_layer: int = 1,
    normalize: bool = True,
) -> SlimPajamaModel:
    """A NEW model without the least important heads and FFN neurons.

    The heads' rows of query/key/value (blocks of ``head_dim``) and their columns of
    the attention output are sliced away, as are the FFN neurons' intermediate rows
    and output columns; ``config.layer_heads`` / ``layer_ffn`` record the new widths.
    The result computes the same logits as the original run under
    :func:`masked_structure` with the same masks, has fewer parameters, is faster on
    every backend, and saves/loads with ``save_pretrained`` / ``from_pretrained``.
    Usually some recovery training follows.

    Args:
        model: read only (masked weights from :func:`magnitude_prune` are folded in).
        importance: from :func:`structure_importance` (then the fractions etc. choose
            the units, see :func:`select_structure`), or ready :class:`StructureMasks`.

    Returns:
        The new model, on the original's device and dtype and in its train/eval mode.

    Example:
        >>> imp = structure_importance(model, batches, max_batches=16)  # doctest: +SKIP
        >>> small = prune_structure(model, imp, head_fraction=0.5, ffn_fraction=0.5)  # doctest: +SKIP
    """
    _check_slim(model)
    if isinstance(importance, StructureMasks):
        masks = importance
        _check_masks(model, masks)
    else:
        masks = select_structure(
            model,
            importance,
            head_fraction,
            ffn_fraction,
            scope,
            min_heads_per_layer=min_heads_per_layer,
            min_ffn_per_layer=min_ffn_per_layer,
            normalize=normalize,
        )
    cfg = model.config
    d = cfg.head_dim
    state = _plain_state_dict(model)
    for i, (hm, fm) in enumerate(zip(masks.heads, masks.ffn, strict=True)):
        hm, fm = hm.bool().cpu(), fm.bool().cpu()
        rows = torch.arange(len(hm) * d).view(len(hm), d)[hm].flatten()  # kept q/k/v rows
        neurons = torch.nonzero(fm).flatten()
        p = f"layers.{i}."
        for part in ("query", "key", "value"):
            state[f"{p}attention.{part}.weight"] = _take(
                state[f"{p}attention.{part}.weight"], 0, rows
            )
            state[f"{p}attention.{part}.bias"] = _take(state[f"{p}attention.{part}.bias"], 0, rows)
        state[f"{p}attention.output.weight"] = _take(state[f"{p}attention.output.weight"], 1, rows)
        state[f"{p}ffn.intermediate.weight"] = _take(
            state[f"{p}ffn.intermediate.weight"], 0, neurons
        )
        state[f"{p}ffn.intermediate.bias"] = _take(state[f"{p}ffn.intermediate.bias"], 0, neurons)
        state[f"{p}ffn.output.weight"] = _take(state[f"{p}ffn.output.weight"], 1, neurons)
    config = replace(copy.deepcopy(cfg), layer_heads=masks.layer_heads, layer_ffn=masks.layer_ffn)
    return _new_model(model, config, state)


def _take(t: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    return t.index_select(dim, index.to(t.device)).contiguous()


# --------------------------------------------------------------------------- layers


def drop_layers(model: SlimPajamaModel, keep: Sequence[int]) -> SlimPajamaModel:
    """A NEW model with only the encoder layers ``keep`` (0-based, increasing).

    Each kept layer is copied as it is (its own heads and FFN width); embeddings,
    pooler and classifier are copied unchanged. The original is not touched.

    Example:
        >>> student = drop_layers(teacher, [1, 3, 5])  # doctest: +SKIP
        >>> student.config.num_layers
        3

    Raises:
        UserError: ``keep`` is empty, has repeats, is not increasing, or names a layer
            the model does not have (named ``prune.keep_layers``).
    """
    _check_slim(model)
    n = model.config.num_layers
    if isinstance(keep, (str, bytes)) or not isinstance(keep, Sequence):
        raise UserError(f"prune.keep_layers must be a list of layer numbers, not {keep!r}.")
    keep = list(keep)
    if not keep:
        raise UserError(
            "prune.keep_layers is empty; list the encoder layers to keep, e.g. [0, 2, 4]."
        )
    bad = [k for k in keep if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < n]
    if bad:
        raise UserError(
            f"prune.keep_layers names {bad[0]!r}, but this model's layers are 0 to {n - 1}."
        )
    if any(b <= a for a, b in zip(keep, keep[1:], strict=False)):
        raise UserError(f"prune.keep_layers {keep} must list each layer once, in increasing order.")
    state = {}
    for key, value in _plain_state_dict(model).items():
        if key.startswith("layers."):
            _, idx, rest = key.split(".", 2)
            if int(idx) in keep:
                state[f"layers.{keep.index(int(idx))}.{rest}"] = value
        else:
            state[key] = value
    cfg = model.config
    config = replace(
        copy.deepcopy(cfg),
        layer_heads=[cfg.layer_heads[k] for k in keep],
        layer_ffn=[cfg.layer_ffn[k] for k in keep],
    )
    return _new_model(model, config, state)
