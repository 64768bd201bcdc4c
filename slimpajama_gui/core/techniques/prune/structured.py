"""Structured pruning: score attention heads and FFN neurons, then remove them.

:func:`structure_importance` scores every attention head and FFN neuron by the gradient
of the loss with respect to a multiplicative mask on it (Michel et al. 2019);
:func:`select_structure` picks the ones to keep and :func:`prune_structure` returns a
*new*, physically smaller model (fewer heads, narrower FFNs, per layer) that computes
the same logits as the original with those heads and neurons masked out
(:func:`masked_structure`). The original is untouched; gradients go to temporary masks,
never to ``.grad``.

Example:
    >>> importance = structure_importance(model, train_batches, max_batches=32)  # doctest: +SKIP
    >>> small = prune_structure(model, importance, head_fraction=0.5, ffn_fraction=0.5)  # doctest: +SKIP
    >>> small.config.layer_heads
    [6, 5, 7, 6, 6, 6]
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.encoder import EncoderClassifier
from slimpajama_gui.core.techniques.prune.layers import (
    Scope,
    _check_fraction,
    _check_scope,
    _check_slim,
    _new_model,
    _plain_state_dict,
    _take,
)

#: ``loss_fn(model, batch) -> (loss, parts)``, as in :mod:`slimpajama_gui.core.techniques.train`.
LossFn = Callable[[nn.Module, Mapping[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]


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
def _hooks(model: EncoderClassifier, head_fns, ffn_fns) -> Iterator[None]:
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
def masked_structure(
    model: EncoderClassifier, masks: StructureMasks
) -> Iterator[EncoderClassifier]:
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
    model: EncoderClassifier,
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


def _check_masks(model: EncoderClassifier, masks: StructureMasks | Importance) -> None:
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
    model: EncoderClassifier,
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
    model: EncoderClassifier,
    importance: Importance | StructureMasks,
    *selection: Any,
    **selection_kw: Any,
) -> EncoderClassifier:
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
        importance: from :func:`structure_importance`, or ready :class:`StructureMasks`.
        selection: with scores, the arguments of :func:`select_structure` after
            ``importance`` (``head_fraction``, ``ffn_fraction``, ``scope``, the minimums),
            which choose the units to remove; not allowed with masks.

    Raises:
        UserError: as :func:`select_structure`.
        TypeError: selection arguments given with ready masks.

    Returns:
        The new model, on the original's device and dtype and in its train/eval mode.

    Example:
        >>> imp = structure_importance(model, batches, max_batches=16)  # doctest: +SKIP
        >>> small = prune_structure(model, imp, head_fraction=0.5, ffn_fraction=0.5)  # doctest: +SKIP
    """
    _check_slim(model)
    if isinstance(importance, StructureMasks):
        if selection or selection_kw:
            raise TypeError("prune_structure: ready masks take no selection arguments")
        masks = importance
        _check_masks(model, masks)
    else:
        masks = select_structure(model, importance, *selection, **selection_kw)
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
