"""The SlimPajama transformer: a compact Transformer encoder with a [CLS] classifier.

One readable file in the spirit of nanoGPT's ``model.py``: four small modules
(embeddings, self-attention, feed-forward, layer) and the model; its config is
:class:`~.config.EncoderConfig`. Unlike BERT, every layer has its *own* number of attention heads and its own FFN width, so
structured pruning removes heads and neurons physically and the result is still this
model. Reading Hugging Face BERT-family folders is in :mod:`.checkpoints` (with the
table of parameter names), writing folders in :mod:`.saving`; the model's
``from_pretrained`` / ``save_pretrained`` / ``export_transformers`` call them.

Attention is ``softmax(Q K^T / sqrt(d_k)) V`` with ``d_k = head_dim``; the fast path is
``torch.nn.functional.scaled_dot_product_attention``, and the explicit formula runs
only when attention maps are asked for (distillation), since SDPA does not return them.

Example:
    >>> model = EncoderClassifier.from_pretrained(minilm_path, num_labels=2)  # doctest: +SKIP
    >>> model.load_report.new_keys
    ['classifier.weight', 'classifier.bias']
    >>> out = model(input_ids, attention_mask)  # doctest: +SKIP
    >>> out.logits.shape
    torch.Size([8, 2])
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.config import (
    ACTIVATIONS,
    EncoderConfig,
)

if TYPE_CHECKING:
    from slimpajama_gui.core.model.checkpoints import LoadReport

# --------------------------------------------------------------------------- modules


def _linear(n_in: int, n_out: int) -> nn.Linear:
    # A pruned-away branch has a zero-sized weight; torch warns that initialising it is
    # a no-op, which is exactly what we want, so the warning is noise here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        return nn.Linear(n_in, n_out)


class Embeddings(nn.Module):
    """Word + token-type + position embeddings, then LayerNorm and dropout."""

    def __init__(self, config: EncoderConfig) -> None:
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

    def __init__(self, config: EncoderConfig, num_heads: int, ffn_width: int) -> None:
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
class ClassifierOutput:
    """What :meth:`EncoderClassifier.forward` returns.

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


class EncoderClassifier(nn.Module):
    """Transformer encoder + [CLS] classification head.

    Build one from an :class:`EncoderConfig` (random BERT-style initialisation) or load
    one with :meth:`from_pretrained`.

    Attributes:
        config: the model's :class:`EncoderConfig`.
        source_path: the resolved folder it was loaded from, or None; never written to.
        load_report: a :class:`LoadReport` after :meth:`from_pretrained`, else None.
    """

    def __init__(self, config: EncoderConfig) -> None:
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
    ) -> ClassifierOutput:
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
        return ClassifierOutput(
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

    # ------------------------------------------------------------------ files
    # The bodies live in checkpoints.py and saving.py, which import this module, so
    # they are imported when called.

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        num_labels: int | None = None,
        id2label: dict[int, str] | None = None,
    ) -> EncoderClassifier:
        """Load a BERT or RoBERTa Hugging Face folder, or one saved by this class.

        ``num_labels`` / ``id2label`` that differ from the checkpoint's replace its
        head (randomly initialised, listed in ``model.load_report.new_keys``). Raises
        UserError naming the file, key or tensors of a folder that cannot be used; see
        :func:`~slimpajama_gui.core.model.checkpoints.load_pretrained`.
        """
        from slimpajama_gui.core.model.checkpoints import load_pretrained

        return load_pretrained(cls, folder, num_labels, id2label)

    def save_pretrained(self, folder: str | Path, tokenizer_from: str | Path | None = None) -> Path:
        """Write ``model.safetensors`` + ``config.json`` atomically; returns the folder.

        See :func:`~slimpajama_gui.core.model.saving.save_pretrained` (UserError for a
        folder it must not replace).
        """
        from slimpajama_gui.core.model.saving import save_pretrained

        return save_pretrained(self, folder, tokenizer_from)

    def write_files(self, folder: str | Path) -> None:
        """Write weights and config into an existing folder, not atomically.

        See :func:`~slimpajama_gui.core.model.saving.write_files`.
        """
        from slimpajama_gui.core.model.saving import write_files

        write_files(self, folder)

    def export_transformers(
        self, folder: str | Path, tokenizer_from: str | Path | None = None
    ) -> Path:
        """Write a folder that plain ``transformers`` loads with identical logits.

        See :func:`~slimpajama_gui.core.model.saving.export_transformers` (UserError
        when the model cannot be expressed as a Hugging Face classifier).
        """
        from slimpajama_gui.core.model.saving import export_transformers

        return export_transformers(self, folder, tokenizer_from)


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
