"""Layer dropping, and what every pruning shares: its checks and the rebuilding.

:func:`drop_layers` keeps some encoder layers, copied as they are, in a *new* model.
The helpers around it check a fraction and a scope (``prune.amount``, ``prune.scope``),
build a new, smaller :class:`EncoderClassifier` from a state dict (:func:`_new_model`),
fold ``torch.nn.utils.prune`` masks into plain tensors (:func:`_plain_state_dict`) and
cut tensors to the rows kept (:func:`_take`); the other pruning modules use them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

import torch
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.encoder import EncoderClassifier

Scope = Literal["global", "layer"]


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


def drop_layers(model: EncoderClassifier, keep: Sequence[int]) -> EncoderClassifier:
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


def _plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with every ``x_orig`` / ``x_mask`` pair folded into ``x``."""
    state = dict(model.state_dict())
    for key in [k for k in state if k.endswith("_orig")]:
        base = key[: -len("_orig")]
        mask = state.pop(base + "_mask", None)
        orig = state.pop(key)
        state[base] = orig * mask if mask is not None else orig
    return {k: v.detach() for k, v in state.items()}


def _check_slim(model: Any) -> EncoderClassifier:
    if not isinstance(model, EncoderClassifier):
        raise TypeError(f"expected an EncoderClassifier, got {type(model).__name__}")
    return model


def _new_model(
    model: EncoderClassifier, config, state: dict[str, torch.Tensor]
) -> EncoderClassifier:
    """A model built from ``config`` holding ``state``, on the original's device and dtype."""
    ref = next(model.parameters())
    # The random initialisation is overwritten at once; forking the RNG keeps pruning
    # from shifting the random numbers of whatever the caller does next.
    with torch.random.fork_rng(devices=[]):
        new = EncoderClassifier(config).to(dtype=ref.dtype)
    new.load_state_dict(state, strict=True)
    new.to(ref.device)
    new.train(model.training)
    return new


def _take(t: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    return t.index_select(dim, index.to(t.device)).contiguous()
