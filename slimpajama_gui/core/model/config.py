"""The shape and behaviour of an :class:`~.encoder.EncoderClassifier`, as data.

:class:`EncoderConfig` is what our ``config.json`` holds (``model_type: slimpajama``):
sizes, per-layer head counts and FFN widths (pruned layers differ), the activation by
its Hugging Face name, label names. It checks itself when built, so a damaged or
hand-edited file is refused with the field named before any tensor is allocated.
Translating a Hugging Face ``config.json`` into it is :mod:`.hf_config`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.hf_config import MAX_LABELS, MAX_LAYERS
from slimpajama_gui.core.storage.safe_io import short_repr

CONFIG_FORMAT = "slimpajama"
CONFIG_VERSION = 1


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


#: Activations by their Hugging Face names (``hf_config.ACTIVATION_NAMES``), each the
#: same function as transformers' ``ACT2FN`` entry. "gelu" is the exact erf form BERT
#: uses; the gelu_new / _fast / _accurate / _tanh spellings are all the tanh
#: approximation; "swish" is silu.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_python": F.gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_python_tanh": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "gelu_accurate": _gelu_tanh,
    "gelu_10": lambda x: F.gelu(x).clamp(-10.0, 10.0),
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "relu": F.relu,
    "relu2": lambda x: F.relu(x).square(),
    "relu6": F.relu6,
    "leaky_relu": F.leaky_relu,  # slope 0.01, as nn.LeakyReLU()
    "silu": F.silu,
    "swish": F.silu,
    "mish": F.mish,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "linear": lambda x: x,
    "hardswish": F.hardswish,
    "sqrtsoftplus": lambda x: F.softplus(x).sqrt(),
    # MEGA's Laplace: the normal CDF at (x - mu) / sigma, mu = 1/sqrt(2), sigma = 1/sqrt(4 pi).
    "laplace": lambda x: 0.5 * (1.0 + torch.erf((x - 0.707107) / (0.282095 * math.sqrt(2.0)))),
}


# --------------------------------------------------------------------------- config


@dataclass
class EncoderConfig:
    """Shape and behaviour of an :class:`EncoderClassifier`.

    Per-layer lists make the model's structure explicit: ``layer_heads[i]`` heads of
    ``head_dim`` each, and an FFN of ``layer_ffn[i]`` neurons, in layer ``i``. Either may
    be 0 (the branch then adds only its output bias).

    Example:
        >>> cfg = EncoderConfig(vocab_size=100, hidden_size=32, layer_heads=[4, 2],
        ...                  head_dim=8, layer_ffn=[64, 0])
        >>> cfg.num_layers
        2
    """

    vocab_size: int  # rows of the word-embedding table (the tokenizer's vocabulary)
    hidden_size: int  # C: width of the residual stream
    layer_heads: list[int]  # attention heads in each layer; 0 = attention removed
    head_dim: int  # d_k: width of one head; stays fixed when heads are pruned
    layer_ffn: list[int]  # FFN width (intermediate size) of each layer; 0 = FFN removed
    max_position_embeddings: int = 512  # rows of the position table (incl. the offset)
    type_vocab_size: int = 2  # token types (BERT sentence A/B); 0 = no such embedding
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"  # a key of ACTIVATIONS
    hidden_dropout: float = 0.1  # on embeddings and on each branch before its residual add
    attention_dropout: float = 0.1  # on attention probabilities
    classifier_dropout: float | None = None  # before the classifier; None = hidden_dropout
    num_labels: int = 2  # rows of the classifier
    id2label: dict[int, str] = field(default_factory=dict)  # empty = LABEL_0, LABEL_1, ...
    pad_token_id: int = 0
    # 0: positions are 0..T-1 (BERT). >0: fairseq/RoBERTa positions, where the k-th
    # non-pad token (k = 0, 1, ...) gets position_offset + k and pads get pad_token_id.
    position_offset: int = 0
    has_pooler: bool = True  # dense + tanh on [CLS] before the classifier (as BERT)
    source_family: str = "bert"  # where the weights came from; decides export format

    @property
    def num_layers(self) -> int:
        return len(self.layer_heads)

    def __post_init__(self) -> None:
        self.layer_heads = list(self.layer_heads)
        self.layer_ffn = list(self.layer_ffn)
        for name in ("vocab_size", "hidden_size", "head_dim", "max_position_embeddings"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("type_vocab_size", "pad_token_id", "position_offset"):
            _check_int(name, getattr(self, name), minimum=0)
        _check_int("num_labels", self.num_labels, minimum=1)
        if self.num_labels > MAX_LABELS:
            raise UserError(
                f"model config: num_labels is {self.num_labels:,}; SlimPajama Studio trains "
                f"classifiers of at most {MAX_LABELS:,} classes. Check num_labels and id2label."
            )
        if len(self.layer_heads) > MAX_LAYERS:
            raise UserError(
                f"model config: {len(self.layer_heads):,} layers; at most {MAX_LAYERS:,} are "
                "supported. Check layer_heads and layer_ffn."
            )
        if len(self.layer_heads) != len(self.layer_ffn):
            raise UserError(
                f"model config: layer_heads has {len(self.layer_heads)} entries but "
                f"layer_ffn has {len(self.layer_ffn)}; they need one entry per layer."
            )
        for i, (h, f) in enumerate(zip(self.layer_heads, self.layer_ffn, strict=True)):
            _check_int(f"layer_heads[{i}]", h, minimum=0)
            _check_int(f"layer_ffn[{i}]", f, minimum=0)
        if self.hidden_act not in ACTIVATIONS:
            raise UserError(
                f"model config: hidden_act {self.hidden_act!r} is not supported; "
                f"use one of {', '.join(ACTIVATIONS)}."
            )
        for name in ("hidden_dropout", "attention_dropout", "classifier_dropout"):
            value = getattr(self, name)
            if value is None and name == "classifier_dropout":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"model config: {name} must be a number, not {value!r}.")
            if not 0.0 <= value < 1.0:
                raise UserError(f"model config: {name} must be in [0, 1), not {value}.")
        if not isinstance(self.layer_norm_eps, (int, float)) or not self.layer_norm_eps > 0:
            raise UserError(
                f"model config: layer_norm_eps must be positive, not {self.layer_norm_eps!r}."
            )
        if not isinstance(self.has_pooler, bool):
            raise UserError(
                f"model config: has_pooler must be true or false, not {self.has_pooler!r}."
            )
        if self.position_offset >= self.max_position_embeddings:
            raise UserError(
                f"model config: position_offset {self.position_offset} leaves no positions "
                f"in a table of {self.max_position_embeddings}."
            )
        if not self.id2label:
            self.id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        try:
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
        except (TypeError, ValueError, AttributeError) as exc:
            raise UserError(
                "model config: id2label must map label numbers to names, not "
                f"{short_repr(self.id2label)}."
            ) from exc
        if sorted(self.id2label) != list(range(self.num_labels)):
            raise UserError(
                f"model config: id2label has ids {short_repr(sorted(self.id2label))} but "
                "num_labels is "
                f"{self.num_labels}; it needs exactly the ids 0..{self.num_labels - 1}."
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict tagged with ``format`` and ``version``."""
        data = asdict(self)
        data["id2label"] = {str(k): v for k, v in sorted(self.id2label.items())}
        return {"format": CONFIG_FORMAT, "version": CONFIG_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderConfig:
        """Rebuild a config written by :meth:`to_dict` (a ``model_type`` key is allowed).

        Raises:
            UserError: wrong format tag or version, an unknown or a missing key.
        """
        data = dict(data)
        if data.pop("format", None) != CONFIG_FORMAT:
            raise UserError('model config: "format" must be "slimpajama".')
        version = data.pop("version", None)
        if version != CONFIG_VERSION:
            raise UserError(
                f"model config: version {version!r} is not one this SlimPajama Studio reads "
                f"(it reads version {CONFIG_VERSION}); update the app."
            )
        if data.pop("model_type", CONFIG_FORMAT) != CONFIG_FORMAT:
            raise UserError('model config: "model_type" must be "slimpajama".')
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(
                f"model config: unknown key {unknown[0]!r}"
                + (f" (and {', '.join(map(repr, unknown[1:]))})" if len(unknown) > 1 else "")
                + "; it was written by another program or a newer version."
            )
        try:
            return cls(**data)
        except TypeError as exc:  # a required field is missing
            raise UserError(f"model config: {exc}.") from exc


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"model config: {name} must be a whole number >= {minimum}, not {value!r}.")
