"""The SlimPajama transformer: a compact Transformer encoder with a [CLS] classifier.

One readable file in the spirit of nanoGPT's ``model.py``: a commented config, four
small modules (embeddings, self-attention, feed-forward, layer) and the model, then the
code that loads Hugging Face BERT-family folders and writes ours. Unlike BERT, every
layer has its *own* number of attention heads and its own FFN width, so structured
pruning removes heads and neurons physically and the result is still this model.

Attention is ``softmax(Q K^T / sqrt(d_k)) V`` with ``d_k = head_dim``; the fast path is
``torch.nn.functional.scaled_dot_product_attention``, and the explicit formula runs
only when attention maps are asked for (distillation), since SDPA does not return them.

Parameter names (ours, left) and where they come from in a Hugging Face checkpoint
(right; BERT keys may carry a ``bert.`` prefix, RoBERTa keys a ``roberta.`` prefix):

============================================  ==================================================
SlimPajama                                    Hugging Face BERT / RoBERTa
============================================  ==================================================
embeddings.word_embeddings                    embeddings.word_embeddings
embeddings.position_embeddings                embeddings.position_embeddings
embeddings.token_type_embeddings              embeddings.token_type_embeddings
embeddings.layer_norm                         embeddings.LayerNorm
layers.{i}.attention.query / key / value      encoder.layer.{i}.attention.self.query / key / value
layers.{i}.attention.output                   encoder.layer.{i}.attention.output.dense
layers.{i}.attention_norm                     encoder.layer.{i}.attention.output.LayerNorm
layers.{i}.ffn.intermediate                   encoder.layer.{i}.intermediate.dense
layers.{i}.ffn.output                         encoder.layer.{i}.output.dense
layers.{i}.ffn_norm                           encoder.layer.{i}.output.LayerNorm
pooler.dense                                  pooler.dense (RoBERTa classifier: classifier.dense)
classifier                                    classifier (RoBERTa classifier: classifier.out_proj)
============================================  ==================================================

Each name is followed by ``.weight`` / ``.bias``. The table is ``NAME_TABLE`` below and
drives both loading and :meth:`SlimPajamaModel.export_transformers`.

Example:
    >>> model = SlimPajamaModel.from_pretrained(minilm_path, num_labels=2)  # doctest: +SKIP
    >>> model.load_report.new_keys
    ['classifier.weight', 'classifier.bias']
    >>> out = model(input_ids, attention_mask)  # doctest: +SKIP
    >>> out.logits.shape
    torch.Size([8, 2])
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.hf_config import (
    Translation,
    head_refusal,
    shape_keys,
    specific_label_names,
    translate,
)
from slimpajama_gui.core.storage.safe_io import (
    PICKLE_SUFFIXES,
    atomic_dir,
    atomic_write_text,
    load_safetensors,
    refuse_pickle,
)

logger = logging.getLogger(__name__)

CONFIG_FORMAT = "slimpajama"
CONFIG_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
#: Families :meth:`SlimPajamaModel.from_pretrained` reads, by config ``model_type``.
SUPPORTED_FAMILIES = ("bert", "roberta", "slimpajama")
#: Files :func:`copy_tokenizer_files` carries from a source model to a result.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "merges.txt",
    "vocab.json",
    "added_tokens.json",
)


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
class SlimConfig:
    """Shape and behaviour of a :class:`SlimPajamaModel`.

    Per-layer lists make the model's structure explicit: ``layer_heads[i]`` heads of
    ``head_dim`` each, and an FFN of ``layer_ffn[i]`` neurons, in layer ``i``. Either may
    be 0 (the branch then adds only its output bias).

    Example:
        >>> cfg = SlimConfig(vocab_size=100, hidden_size=32, layer_heads=[4, 2],
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
                f"model config: id2label must map label numbers to names, not {self.id2label!r}."
            ) from exc
        if sorted(self.id2label) != list(range(self.num_labels)):
            raise UserError(
                f"model config: id2label has ids {sorted(self.id2label)} but num_labels is "
                f"{self.num_labels}; it needs exactly the ids 0..{self.num_labels - 1}."
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict tagged with ``format`` and ``version``."""
        data = asdict(self)
        data["id2label"] = {str(k): v for k, v in sorted(self.id2label.items())}
        return {"format": CONFIG_FORMAT, "version": CONFIG_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlimConfig:
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


# --------------------------------------------------------------------------- modules


def _linear(n_in: int, n_out: int) -> nn.Linear:
    # A pruned-away branch has a zero-sized weight; torch warns that initialising it is
    # a no-op, which is exactly what we want, so the warning is noise here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        return nn.Linear(n_in, n_out)


class Embeddings(nn.Module):
    """Word + token-type + position embeddings, then LayerNorm and dropout."""

    def __init__(self, config: SlimConfig) -> None:
        super().__init__()
        self.config = config
        C = config.hidden_size
        pad = config.pad_token_id
        # padding_idx only freezes the pad row's gradient, as in Hugging Face.
        self.word_embeddings = nn.Embedding(
            config.vocab_size, C, padding_idx=pad if pad < config.vocab_size else None
        )
        self.position_embeddings = nn.Embedding(
            config.max_position_embeddings,
            C,
            padding_idx=pad
            if config.position_offset > 0 and pad < config.max_position_embeddings
            else None,
        )
        self.token_type_embeddings = (
            nn.Embedding(config.type_vocab_size, C) if config.type_vocab_size > 0 else None
        )
        self.layer_norm = nn.LayerNorm(C, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Positions of each token, (B, T) or (T,) (broadcast over the batch)."""
        T = input_ids.shape[1]
        offset = self.config.position_offset
        if offset == 0:
            return torch.arange(T, device=input_ids.device)  # (T,)
        # RoBERTa counts only real tokens, so left padding does not shift positions.
        real = input_ids.ne(self.config.pad_token_id)  # (B, T)
        # int64 rather than bool: ONNX's CumSum has no bool kernel, so export needs it.
        counted = torch.cumsum(real.long(), dim=1) - 1 + offset  # (B, T)
        return torch.where(real, counted, self.config.pad_token_id)

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.word_embeddings(input_ids)  # (B, T, C)
        # Same summation order as Hugging Face (word + type, then position), so that
        # the floating-point result is identical, not just close.
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(self.position_ids(input_ids))
        return self.dropout(self.layer_norm(x))  # (B, T, C)


class SelfAttention(nn.Module):
    """Multi-head self-attention with this layer's own head count.

    Args:
        hidden_size: C, the width of the residual stream.
        num_heads: h; 0 is allowed and leaves only the output bias.
        head_dim: d_k, the width of one head.
        dropout: dropout on the attention probabilities (training only).
    """

    def __init__(self, hidden_size: int, num_heads: int, head_dim: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        inner = num_heads * head_dim
        self.query = _linear(hidden_size, inner)
        self.key = _linear(hidden_size, inner)
        self.value = _linear(hidden_size, inner)
        self.output = _linear(inner, hidden_size)
        self.dropout = dropout
        # Set only while exporting to ONNX (techniques/onnx_export.py): spell attention out as
        # MatMul -> scale -> Add mask -> Softmax -> MatMul, the pattern ONNX Runtime's
        # BERT optimizer fuses into one (int8-quantizable) Attention operator; SDPA
        # exports as a graph it does not recognise.
        self.fusable_export = False

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend; ``mask`` is additive, (B, 1, 1, T): 0 = attend, very negative = padding.

        Returns:
            The branch output (B, T, C) and, if ``need_weights``, the attention
            probabilities (B, h, T, T).
        """
        B, T, _ = x.shape
        h, d = self.num_heads, self.head_dim
        if h == 0:
            weights = x.new_zeros(B, 0, T, T) if need_weights else None
            return self.output(x.new_zeros(B, T, 0)), weights  # bias only, (B, T, C)
        q = self.query(x).view(B, T, h, d).transpose(1, 2)  # (B, h, T, d)
        k = self.key(x).view(B, T, h, d).transpose(1, 2)  # (B, h, T, d)
        v = self.value(x).view(B, T, h, d).transpose(1, 2)  # (B, h, T, d)
        if mask is not None and mask.dtype != q.dtype:
            # Under autocast q is half precision but the mask was built in fp32; some
            # SDPA backends want one dtype. Clamp first so fp32's minimum does not round
            # to -inf, which would turn an all-padding row into NaN.
            mask = mask.clamp(min=torch.finfo(q.dtype).min).to(q.dtype)
        p = self.dropout if self.training else 0.0
        scale = 1.0 / math.sqrt(d)
        weights = None
        if need_weights or self.fusable_export:
            if self.fusable_export:
                # A Div: the optimizer looks for the mask's Mul among the Add's inputs
                # and takes a scale Mul there for it.
                scores = (q @ k.transpose(-2, -1)) / math.sqrt(d)  # (B, h, T, T)
            else:
                scores = (q @ k.transpose(-2, -1)) * scale  # (B, h, T, T)
            if mask is not None:
                scores = scores + mask
            weights = scores.softmax(dim=-1)  # (B, h, T, T)
            y = F.dropout(weights, p=p, training=self.training) @ v  # (B, h, T, d)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, scale=scale)
        y = y.transpose(1, 2).reshape(B, T, h * d)  # (B, T, h*d)
        return self.output(y), weights if need_weights else None  # (B, T, C)


class FeedForward(nn.Module):
    """Position-wise FFN ``output(act(intermediate(x)))``; width 0 leaves the output bias."""

    def __init__(self, hidden_size: int, width: int, act: str) -> None:
        super().__init__()
        self.intermediate = _linear(hidden_size, width)
        self.output = _linear(width, hidden_size)
        self.act_name = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(ACTIVATIONS[self.act_name](self.intermediate(x)))  # (B, T, C)


class Layer(nn.Module):
    """One encoder layer, post-LN as in BERT: ``norm(x + dropout(branch(x)))`` twice."""

    def __init__(self, config: SlimConfig, num_heads: int, ffn_width: int) -> None:
        super().__init__()
        C = config.hidden_size
        self.attention = SelfAttention(C, num_heads, config.head_dim, config.attention_dropout)
        self.attention_norm = nn.LayerNorm(C, eps=config.layer_norm_eps)
        self.ffn = FeedForward(C, ffn_width, config.hidden_act)
        self.ffn_norm = nn.LayerNorm(C, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, weights = self.attention(x, mask, need_weights)  # (B, T, C)
        x = self.attention_norm(x + self.dropout(a))  # (B, T, C)
        x = self.ffn_norm(x + self.dropout(self.ffn(x)))  # (B, T, C)
        return x, weights


class Pooler(nn.Module):
    """``tanh(dense(h_[CLS]))``, BERT's sentence vector."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x[:, 0]))  # (B, C)


@dataclass
class SlimOutput:
    """What :meth:`SlimPajamaModel.forward` returns.

    Attributes:
        logits: (B, num_labels).
        last_hidden_state: (B, T, C), the output of the last layer.
        pooled_output: (B, C), the classifier's input before dropout (the pooler's
            output, or the [CLS] hidden state when the model has no pooler).
        hidden_states: with ``output_hidden_states``, num_layers + 1 tensors
            (B, T, C): the embeddings, then each layer's output. Otherwise None.
        attentions: with ``output_attentions``, one (B, h_i, T, T) tensor per layer
            (h_i = that layer's heads). Otherwise None.
    """

    logits: torch.Tensor
    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    pooled_output: torch.Tensor | None = None


@dataclass
class LoadReport:
    """How a checkpoint's tensors were used by :meth:`SlimPajamaModel.from_pretrained`.

    Attributes:
        source: the folder read.
        family: its ``model_type`` ("bert", "roberta", "slimpajama").
        new_keys: our parameters that were freshly initialised (only ever the
            classifier head); the model must be fine-tuned before its logits mean
            anything.
        ignored_keys: tensors in the checkpoint that this model does not use (e.g. a
            masked-LM head, ``embeddings.position_ids``, a replaced classifier).
    """

    source: Path
    family: str
    new_keys: list[str] = field(default_factory=list)
    ignored_keys: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ParameterBreakdown:
    """Parameter counts by part of the model."""

    embeddings: int
    layers: tuple[int, ...]
    head: int  # pooler + classifier

    @property
    def total(self) -> int:
        return self.embeddings + sum(self.layers) + self.head


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements in ``model`` (optionally only trainable ones)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class SlimPajamaModel(nn.Module):
    """Transformer encoder + [CLS] classification head.

    Build one from a :class:`SlimConfig` (random BERT-style initialisation) or load
    one with :meth:`from_pretrained`.

    Attributes:
        config: the model's :class:`SlimConfig`.
        source_path: the resolved folder it was loaded from, or None; never written to.
        load_report: a :class:`LoadReport` after :meth:`from_pretrained`, else None.
    """

    def __init__(self, config: SlimConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(
            Layer(config, h, f) for h, f in zip(config.layer_heads, config.layer_ffn, strict=True)
        )
        self.pooler = Pooler(config.hidden_size) if config.has_pooler else None
        p = config.classifier_dropout
        self.dropout = nn.Dropout(config.hidden_dropout if p is None else p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.source_path: Path | None = None
        self.load_report: LoadReport | None = None
        self.apply(_init_weights)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> SlimOutput:
        """Classify a batch of token ids.

        Args:
            input_ids: (B, T) token ids.
            attention_mask: (B, T), 1 for real tokens and 0 for padding; None = all real.
            token_type_ids: (B, T) segment ids; None = all 0. Ignored when the model
                has no token-type embedding (``type_vocab_size == 0``).
            output_hidden_states: also return every layer's hidden states.
            output_attentions: also return attention maps (slower: explicit softmax).

        Raises:
            UserError: the input is longer than the position table allows.
        """
        n_tokens = input_ids.shape[1]
        limit = self.config.max_position_embeddings - self.config.position_offset
        if n_tokens > limit:
            raise UserError(
                f"the input has {n_tokens} tokens but this model reads at most {limit}; "
                "truncate the text (tokenizer max_length)."
            )
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, C)
        mask = None
        if attention_mask is not None:
            # Additive rather than boolean so SDPA and the explicit path see the same
            # numbers, and a row that is all padding stays finite instead of NaN.
            keep = attention_mask[:, None, None, :].to(x.dtype)  # (B, 1, 1, T)
            mask = (1.0 - keep) * torch.finfo(x.dtype).min
        hidden = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for layer in self.layers:
            x, weights = layer(x, mask, output_attentions)  # (B, T, C)
            if hidden is not None:
                hidden.append(x)
            if attentions is not None:
                attentions.append(weights)
        pooled = self.pooler(x) if self.pooler is not None else x[:, 0]  # (B, C)
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        return SlimOutput(
            logits=logits,
            last_hidden_state=x,
            hidden_states=tuple(hidden) if hidden is not None else None,
            attentions=tuple(attentions) if attentions is not None else None,
            pooled_output=pooled,
        )

    def parameter_breakdown(self) -> ParameterBreakdown:
        """Parameter counts of the embeddings, each layer, and pooler + classifier."""
        head = count_parameters(self.classifier)
        if self.pooler is not None:
            head += count_parameters(self.pooler)
        return ParameterBreakdown(
            embeddings=count_parameters(self.embeddings),
            layers=tuple(count_parameters(layer) for layer in self.layers),
            head=head,
        )

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        num_labels: int | None = None,
        id2label: dict[int, str] | None = None,
    ) -> SlimPajamaModel:
        """Load a BERT or RoBERTa Hugging Face folder, or one saved by this class.

        Only ``config.json`` (read and checked here, never executed) and safetensors
        weights are read. A missing or replaced classifier head is the one thing
        initialised at random; it is listed in ``model.load_report.new_keys`` and
        logged as a warning.

        Args:
            folder: the model folder.
            num_labels: classifier rows; a number different from the checkpoint's
                replaces its head. Default: the config's labels, else 2.
            id2label: label names by id; implies ``num_labels``.

        Raises:
            UserError: the folder, its config or its weights cannot be used safely
                or do not match; the message names the file, key or tensors.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"{folder} is not a folder; choose the folder that holds config.json.")
        raw = read_config(folder)
        if "quantization" in raw:
            # Loading int8/int4 tensors as float would silently give a different model.
            method = (
                raw["quantization"].get("method", "?")
                if isinstance(raw["quantization"], dict)
                else "?"
            )
            raise UserError(
                f"{folder} holds a quantized model ({method}); open it with "
                "quantize.load_any(folder) or open_model(folder).load_model(), which keep it quantized."
            )
        family = raw.get("model_type")
        if family == CONFIG_FORMAT:
            config, mapped, ignored, translation = _slim_checkpoint(folder, raw)
        elif isinstance(family, str) and family in _FAMILIES:
            config, mapped, ignored, translation = _hf_checkpoint(folder, raw, _FAMILIES[family])
        elif family is None:
            raise UserError(
                f"{folder / 'config.json'} has no model_type, so the architecture is "
                f"unknown; supported: {', '.join(SUPPORTED_FAMILIES)}."
            )
        else:
            raise UserError(
                f"unsupported architecture {family!r} in {folder / 'config.json'}; "
                f"supported: {', '.join(SUPPORTED_FAMILIES)}."
            )

        # Decide the classifier: the caller's labels win; a checkpoint head that does
        # not fit them is set aside (reported), never reshaped. A head trained for other
        # named classes does not fit either, even with as many rows (its row i means
        # the class it was trained as id i; callers match names first, see inputs.py).
        trained_names = specific_label_names(config.id2label)
        if id2label is not None:
            if num_labels is not None and num_labels != len(id2label):
                raise UserError(
                    f"num_labels={num_labels} but id2label names {len(id2label)} labels."
                )
            num_labels = len(id2label)
        if num_labels is not None and num_labels != config.num_labels:
            if id2label is None:
                id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
            config.num_labels = num_labels
        if id2label is not None:
            config.id2label = dict(id2label)
        config.__post_init__()  # re-validate the label fields
        head = ("classifier.weight", "classifier.bias")
        user_labels = num_labels is not None
        if user_labels and "classifier.weight" in mapped:
            rows = mapped["classifier.weight"].shape[0]
            other_classes = (
                trained_names is not None
                and id2label is not None
                and sorted(n.strip().casefold() for n in trained_names)
                != sorted(str(n).strip().casefold() for n in id2label.values())
            )
            if rows != config.num_labels or other_classes:
                ignored += [k for k in head if k in mapped]
                for k in head:
                    mapped.pop(k, None)

        if translation is not None and "classifier.weight" in mapped:
            refusal = head_refusal(translation, config.num_labels, str(folder / "config.json"))
            if refusal is not None:
                raise UserError(refusal)

        model = cls(config)
        expected = model.state_dict()
        new_keys = [k for k in head if k not in mapped]
        _check_match(folder, expected, mapped, allowed_missing=set(head), family=str(family))
        model.load_state_dict(mapped, strict=False)
        model.source_path = folder.resolve()
        model.load_report = LoadReport(
            source=folder, family=str(family), new_keys=new_keys, ignored_keys=sorted(ignored)
        )
        if new_keys:
            logger.warning(
                "The classifier head of %s is new (randomly initialised, %d labels); "
                "fine-tune the model before trusting its predictions.",
                folder,
                config.num_labels,
            )
        if ignored:
            logger.info("Unused tensors in %s: %s", folder, _list_keys(sorted(ignored)))
        return model.eval()

    # ------------------------------------------------------------------ saving

    def save_pretrained(self, folder: str | Path, tokenizer_from: str | Path | None = None) -> Path:
        """Write ``model.safetensors`` + ``config.json`` atomically into ``folder``.

        The folder is staged beside its final place and swapped in complete, so a
        crash leaves the old folder or the new one, never half of either.

        Args:
            folder: the output folder; an existing model folder there is replaced.
            tokenizer_from: also copy tokenizer files from this folder.

        Returns:
            The absolute output folder.

        Raises:
            UserError: ``folder`` is (or contains) the folder this model was loaded
                from, or is an existing folder that is not a model folder.
        """
        target = self._check_target(folder)
        with atomic_dir(target) as staging:
            self.write_files(staging)
            if tokenizer_from is not None:
                copy_tokenizer_files(tokenizer_from, staging)
        return target

    def write_files(self, folder: str | Path) -> None:
        """Write our weights and config into an existing folder, not atomically.

        For callers that stage a larger folder themselves (e.g. a result with its
        report) inside one :func:`atomic_dir`; everyone else wants
        :meth:`save_pretrained`.
        """
        from safetensors.torch import save_file

        folder = Path(folder)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        config = {"model_type": CONFIG_FORMAT, **self.config.to_dict()}
        atomic_write_text(folder / "config.json", json.dumps(config, indent=2) + "\n")

    def export_transformers(
        self, folder: str | Path, tokenizer_from: str | Path | None = None
    ) -> Path:
        """Write a folder that plain ``transformers`` loads with identical logits.

        BERT-positioned models become ``BertForSequenceClassification``, RoBERTa-
        positioned ones ``RobertaForSequenceClassification`` (its head is our pooler
        + classifier). Written atomically, like :meth:`save_pretrained`.

        transformers (5.x) gives every layer ``hidden_size / head_dim`` heads and one
        FFN width, and no longer reads ``pruned_heads``. A structured-pruned layer is
        therefore written back at full width with zero rows and columns in place of
        its removed heads and neurons: they contribute exactly nothing, so the logits
        are the same, but the file is as large as the unpruned model's (our own format,
        :meth:`save_pretrained`, keeps it small).

        Raises:
            UserError: the model cannot be expressed in that class (a layer wider than
                ``hidden_size``, ``hidden_size`` not a multiple of ``head_dim``, no
                pooler), or the folder is refused as in :meth:`save_pretrained`.
        """
        cfg = self.config
        target = self._check_target(folder)
        heads = cfg.hidden_size // cfg.head_dim
        if heads * cfg.head_dim != cfg.hidden_size or max(cfg.layer_heads, default=0) > heads:
            raise UserError(
                f"this model has heads of width {cfg.head_dim} ({cfg.layer_heads} per layer), "
                f"but Hugging Face BERT needs heads x head width = hidden size "
                f"({cfg.hidden_size}); save in the SlimPajama format instead."
            )
        ffn = max(cfg.layer_ffn, default=0)
        if self.pooler is None:
            raise UserError(
                "this model has no pooler, and Hugging Face's sequence classifiers always "
                "apply one; save in the SlimPajama format instead."
            )
        roberta = cfg.position_offset > 0
        if roberta and cfg.position_offset != cfg.pad_token_id + 1:
            raise UserError(
                f"position_offset {cfg.position_offset} is neither 0 (BERT) nor "
                f"pad_token_id + 1 (RoBERTa); no Hugging Face class positions tokens so."
            )
        family = "roberta" if roberta else "bert"

        state: dict[str, torch.Tensor] = {}
        padded = _pad_layers(self.state_dict(), cfg, heads * cfg.head_dim, ffn)
        for name, tensor in padded.items():
            state[_export_name(name, family)] = tensor.detach().cpu().contiguous()
        if any(h != heads for h in cfg.layer_heads) or any(f != ffn for f in cfg.layer_ffn):
            logger.warning(
                "Exported %s with its pruned heads and neurons as zeros (%d heads, FFN %d "
                "in every layer): transformers has one width for all layers.",
                target,
                heads,
                ffn,
            )
        if cfg.type_vocab_size == 0:
            # Hugging Face always adds a token-type row; a zero row adds nothing.
            ref = self.embeddings.word_embeddings.weight
            state[f"{family}.embeddings.token_type_embeddings.weight"] = torch.zeros(
                1, cfg.hidden_size, dtype=ref.dtype
            )
        label2id = {label: i for i, label in cfg.id2label.items()}
        hf_config = {
            "architectures": [
                "RobertaForSequenceClassification" if roberta else "BertForSequenceClassification"
            ],
            "model_type": family,
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.hidden_size,
            "num_hidden_layers": cfg.num_layers,
            "num_attention_heads": heads,
            "intermediate_size": ffn,
            "hidden_act": cfg.hidden_act,
            "hidden_dropout_prob": cfg.hidden_dropout,
            "attention_probs_dropout_prob": cfg.attention_dropout,
            "classifier_dropout": cfg.classifier_dropout,
            "max_position_embeddings": cfg.max_position_embeddings,
            "type_vocab_size": max(cfg.type_vocab_size, 1),
            "initializer_range": 0.02,
            "layer_norm_eps": cfg.layer_norm_eps,
            "pad_token_id": cfg.pad_token_id,
            "position_embedding_type": "absolute",
            "id2label": {str(i): label for i, label in sorted(cfg.id2label.items())},
            "label2id": label2id,
        }
        from safetensors.torch import save_file

        with atomic_dir(target) as staging:
            save_file(state, str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
            atomic_write_text(staging / "config.json", json.dumps(hf_config, indent=2) + "\n")
            if tokenizer_from is not None:
                copy_tokenizer_files(tokenizer_from, staging)
        return target

    def _check_target(self, folder: str | Path) -> Path:
        target = Path(folder).expanduser().resolve()
        src = self.source_path
        if src is not None and (target == src or src.is_relative_to(target)):
            raise UserError(
                f"refusing to write into {target}: it is (or holds) the folder this model "
                f"was loaded from ({src}), and a source model is never overwritten. "
                "Choose another output folder."
            )
        if target.exists() and not target.is_dir():
            raise UserError(f"cannot save to {target}: it is a file; choose a folder.")
        # The folder is replaced as a whole, so refuse one that holds something else
        # (a home folder picked by mistake) rather than delete it.
        if target.is_dir() and any(target.iterdir()) and not (target / "config.json").is_file():
            raise UserError(
                f"{target} already holds files and is not a model folder; saving would "
                "replace it. Choose a new or empty folder."
            )
        return target


def _pad_layers(
    state: dict[str, torch.Tensor], cfg: SlimConfig, attention_width: int, ffn: int
) -> dict[str, torch.Tensor]:
    """``state`` with every layer widened to ``attention_width`` / ``ffn`` by zeros.

    A zero query/key/value row gives a head whose value is 0, and a zero column of the
    output projection drops it; a zero FFN output column drops that neuron whatever
    its activation gives. So the padded layers compute exactly what the narrow ones do.
    """
    out = dict(state)
    for i in range(cfg.num_layers):
        rows = {
            f"layers.{i}.attention.{p}.{t}": attention_width
            for p in ("query", "key", "value")
            for t in ("weight", "bias")
        }
        rows[f"layers.{i}.ffn.intermediate.weight"] = ffn
        rows[f"layers.{i}.ffn.intermediate.bias"] = ffn
        for name, width in rows.items():
            t = out[name]
            out[name] = torch.cat([t, t.new_zeros(width - t.shape[0], *t.shape[1:])])
        for name, width in (
            (f"layers.{i}.attention.output.weight", attention_width),
            (f"layers.{i}.ffn.output.weight", ffn),
        ):
            t = out[name]
            out[name] = torch.cat([t, t.new_zeros(t.shape[0], width - t.shape[1])], dim=1)
    return out


def _init_weights(module: nn.Module) -> None:
    # BERT's initialisation: N(0, 0.02) weights, zero biases, identity LayerNorms.
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def copy_tokenizer_files(src: str | Path, dst: str | Path) -> list[str]:
    """Copy the tokenizer files present in ``src`` into ``dst``.

    Returns:
        The names of the files copied (possibly none).
    """
    src, dst = Path(src), Path(dst)
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
            copied.append(name)
    return copied


# --------------------------------------------------------------------------- checkpoints

#: (Hugging Face name, our name); ``{i}`` is a layer number. See the module docstring.
NAME_TABLE: tuple[tuple[str, str], ...] = (
    ("embeddings.word_embeddings", "embeddings.word_embeddings"),
    ("embeddings.position_embeddings", "embeddings.position_embeddings"),
    ("embeddings.token_type_embeddings", "embeddings.token_type_embeddings"),
    ("embeddings.LayerNorm", "embeddings.layer_norm"),
    ("encoder.layer.{i}.attention.self.query", "layers.{i}.attention.query"),
    ("encoder.layer.{i}.attention.self.key", "layers.{i}.attention.key"),
    ("encoder.layer.{i}.attention.self.value", "layers.{i}.attention.value"),
    ("encoder.layer.{i}.attention.output.dense", "layers.{i}.attention.output"),
    ("encoder.layer.{i}.attention.output.LayerNorm", "layers.{i}.attention_norm"),
    ("encoder.layer.{i}.intermediate.dense", "layers.{i}.ffn.intermediate"),
    ("encoder.layer.{i}.output.dense", "layers.{i}.ffn.output"),
    ("encoder.layer.{i}.output.LayerNorm", "layers.{i}.ffn_norm"),
    ("pooler.dense", "pooler.dense"),
)


def _compile(template: str) -> re.Pattern[str]:
    body = re.escape(template).replace(re.escape("{i}"), r"(?P<i>\d+)")
    return re.compile(rf"^{body}\.(?P<p>weight|bias)$")


_FROM_HF = [(_compile(hf), ours) for hf, ours in NAME_TABLE]
_TO_HF = [(_compile(ours), hf) for hf, ours in NAME_TABLE]


def _rename(key: str, table: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, template in table:
        m = pattern.match(key)
        if m:
            layer = m.group("i") if "i" in pattern.groupindex else ""
            return f"{template.format(i=layer)}.{m.group('p')}"
    return None


@dataclass(frozen=True)
class _Family:
    """How one Hugging Face encoder family's tensors map onto :class:`SlimPajamaModel`.

    What its config.json may say (architectures, defaults, positions) is in
    :data:`hf_config.FAMILIES`.
    """

    name: str
    prefix: str  # base-model key prefix in task checkpoints, e.g. "bert."
    head: dict[str, str]  # sequence-classifier tensors -> our names


_FAMILIES: dict[str, _Family] = {
    "bert": _Family(
        name="bert",
        prefix="bert.",
        head={"classifier.weight": "classifier.weight", "classifier.bias": "classifier.bias"},
    ),
    "roberta": _Family(
        name="roberta",
        prefix="roberta.",
        head={
            "classifier.dense.weight": "pooler.dense.weight",
            "classifier.dense.bias": "pooler.dense.bias",
            "classifier.out_proj.weight": "classifier.weight",
            "classifier.out_proj.bias": "classifier.bias",
        },
    ),
}


def _export_name(name: str, family: str) -> str:
    if family == "roberta" and name.startswith(("pooler.", "classifier.")):
        # RobertaClassificationHead = dense + tanh + out_proj on <s>: our pooler + classifier.
        part = "dense" if name.startswith("pooler.") else "out_proj"
        return f"classifier.{part}.{name.rsplit('.', 1)[1]}"
    if name.startswith("classifier."):
        return name
    hf = _rename(name, _TO_HF)
    if hf is None:  # every parameter is in NAME_TABLE; this is a bug, not a user error
        raise RuntimeError(f"no Hugging Face name for parameter {name}")
    return f"{family}.{hf}"


def read_config(folder: Path) -> dict[str, Any]:
    """Read ``folder/config.json`` and refuse anything that asks to run code.

    Raises:
        UserError: the file is missing or not a JSON object, or it names
            ``auto_map``, ``trust_remote_code`` or a hub repo as
            ``attn_implementation``.
    """
    path = Path(folder) / "config.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            f"config.json not found in {folder}; choose the folder of a Hugging Face model."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}.") from exc
    if not text.strip():
        raise UserError(f"{path} is empty; copy the model folder again from its source.")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
        ) from exc
    if not isinstance(raw, dict):
        raise UserError(f"{path} must hold a JSON object, not {type(raw).__name__}.")

    refused = []
    if "auto_map" in raw:
        refused.append("auto_map")
    if raw.get("trust_remote_code"):
        refused.append("trust_remote_code")
    for key in ("attn_implementation", "_attn_implementation"):
        value = raw.get(key)
        if isinstance(value, str) and "/" in value:
            refused.append(f"{key}={value!r}")
    if refused:
        raise UserError(
            f"{path} asks to run code that ships with the model or from the hub "
            f"({', '.join(refused)}); SlimPajama Studio never runs such code. Use a "
            "model with a standard architecture, or remove these keys if you trust it."
        )
    return raw


def _load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of ``folder``'s safetensors weights (single file or sharded)."""
    single = folder / WEIGHTS_NAME
    if single.is_file():
        return load_safetensors(single)
    index = folder / WEIGHTS_INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (
            OSError,
            UnicodeDecodeError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
        ) as exc:
            raise UserError(f"{index} is not a valid safetensors index ({exc}).") from exc
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            # Shard names come from the file; refuse anything that leaves the folder.
            if (
                not isinstance(shard, str)
                or Path(shard).name != shard
                or not shard.endswith(".safetensors")
            ):
                raise UserError(f"{index} names a shard {shard!r} outside the model folder.")
            if not (folder / shard).is_file():
                raise UserError(
                    f"{index} lists {shard} but it is not in {folder}; copy the folder again."
                )
            tensors.update(load_safetensors(folder / shard))
        return tensors
    pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise refuse_pickle(pickles[0])
    raise UserError(
        f"no model.safetensors in {folder}; SlimPajama Studio reads weights from "
        "safetensors files only."
    )


def _hf_checkpoint(
    folder: Path, raw: dict[str, Any], family: _Family
) -> tuple[SlimConfig, dict[str, torch.Tensor], list[str], Translation]:
    where = str(folder / "config.json")
    translation = translate(raw, family.name, where)
    try:
        config = SlimConfig(**translation.fields)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from exc
    archs = raw.get("architectures") or []
    # Only a sequence classifier's head is ours to reuse; a token-classification or QA
    # head has the same key names but a different meaning.
    seq_cls = not archs or any(str(a).endswith("ForSequenceClassification") for a in archs)
    tensors = _load_weights(folder)
    head: dict[str, torch.Tensor] = {}
    mapped: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    unused_layers: set[int] = set()
    for key, tensor in tensors.items():
        if seq_cls and key in family.head:
            head[family.head[key]] = tensor
            continue
        base = key[len(family.prefix) :] if key.startswith(family.prefix) else key
        # TF-converted BERT checkpoints name LayerNorm parameters gamma/beta.
        base = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", base)
        base = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", base)
        ours = _rename(base, _FROM_HF)
        layer = re.match(r"layers\.(\d+)\.", ours or "")
        if ours is None:
            ignored.append(key)
        elif layer and int(layer.group(1)) >= config.num_layers:
            # transformers builds num_hidden_layers layers and leaves the rest unused.
            unused_layers.add(int(layer.group(1)))
            ignored.append(key)
        elif ours in mapped:
            raise UserError(
                f"the weights in {folder} hold two tensors for {ours} "
                "(with and without the model prefix); keep one."
            )
        else:
            mapped[ours] = tensor
    if unused_layers:
        logger.warning(
            "%s: num_hidden_layers is %d, so the weights' layers %s are not used "
            "(as transformers does).",
            where,
            config.num_layers,
            ", ".join(map(str, sorted(unused_layers))),
        )
    # A RoBERTa classifier's dense layer replaces any pretraining pooler.
    for ours, tensor in head.items():
        if ours in mapped:
            ignored.append(family.prefix + ours)
        mapped[ours] = tensor
    config.has_pooler = "pooler.dense.weight" in mapped or "pooler.dense.bias" in mapped
    if "classifier.weight" in mapped and not translation.num_labels_given:
        config.num_labels = mapped["classifier.weight"].shape[0]
        config.id2label = {}
        config.__post_init__()
    return config, mapped, ignored, translation


def _slim_checkpoint(
    folder: Path, raw: dict[str, Any]
) -> tuple[SlimConfig, dict[str, torch.Tensor], list[str], None]:
    try:
        config = SlimConfig.from_dict(raw)
    except UserError as exc:
        raise UserError(f"{folder / 'config.json'}: {exc}") from exc
    return config, _load_weights(folder), [], None


def _list_keys(keys: Iterable[str], limit: int = 10) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (
        f" … and {len(keys) - limit} more ({len(keys)} in all)" if len(keys) > limit else ""
    )


def _check_match(
    folder: Path,
    expected: dict[str, torch.Tensor],
    provided: dict[str, torch.Tensor],
    allowed_missing: set[str],
    family: str,
) -> None:
    """Refuse weights that do not fit the model built from the config.

    Every config.json feature that changes a shape was translated or refused before
    this point, so a mismatch here means config.json describes another model; the
    message names the keys that set each wrong shape.
    """
    missing = [k for k in expected if k not in provided and k not in allowed_missing]
    unexpected = [k for k in provided if k not in expected]
    held = {int(m.group(1)) for k in provided if (m := re.match(r"layers\.(\d+)\.", k))}
    wanted = {int(m.group(1)) for k in expected if (m := re.match(r"layers\.(\d+)\.", k))}
    if held and held == set(range(len(held))) and held < wanted:
        # Whole top layers missing: config.json counts more layers than the file holds
        # (transformers would give them random weights).
        key = "layer_heads" if family == CONFIG_FORMAT else "num_hidden_layers"
        raise UserError(
            f"the weights in {folder} hold {len(held)} layers but config.json's {key} "
            f"gives {len(wanted)}; set {key} to match the weights, or copy the folder "
            "again if a weight file is missing."
        )
    wrong = [
        f"{k} (file {tuple(provided[k].shape)}, config {tuple(v.shape)}) "
        f"set by {shape_keys(k, family)}"
        for k, v in expected.items()
        if k in provided and provided[k].shape != v.shape
    ]
    not_float = [k for k in provided if k in expected and not provided[k].is_floating_point()]
    if not_float and not (wrong or missing or unexpected):
        raise UserError(
            f"the weights in {folder} hold integer tensors ({_list_keys(not_float)}), which "
            "is not supported: SlimPajama Studio reads float weights (a model quantized by "
            "another tool is not); use the unquantized model."
        )
    problems = []
    if wrong:
        problems.append(f"{len(wrong)} with the wrong shape: {_list_keys(wrong)}")
    if missing:
        problems.append(f"{len(missing)} missing: {_list_keys(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} not in the model: {_list_keys(unexpected)}")
    if not_float:
        problems.append(f"{len(not_float)} not floating point: {_list_keys(not_float)}")
    if problems:
        raise UserError(
            f"the weights in {folder} do not match its config.json — "
            + "; ".join(problems)
            + ". config.json and the weights describe different models; fix those keys in "
            "config.json, or copy the folder again from its source."
        )
