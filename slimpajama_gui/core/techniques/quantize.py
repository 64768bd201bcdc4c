"""Quantization of a :class:`SlimPajamaModel`: lower-precision weights, saved and reloaded as such.

Five methods, one handler each in :data:`METHODS` (a registry, as in torchao's
``quantize_``; never an if/elif chain):

=============  ===========================================================================
method         what happens
=============  ===========================================================================
dynamic_int8   ``nn.Linear`` -> PyTorch's dynamic int8 linear (int8 weights, per output
               channel by default; activations quantized per call), fbgemm/x86 kernels.
               Word embeddings -> int8 rows with a float scale and offset per row.
               CPU only. The fast one on CPU.
fp16 / bf16    weights cast to half precision and the model *runs* in it; LayerNorm keeps
               float32 weights and normalises in float32. bf16 is fast on CPUs with
               AVX512-BF16; fp16 matmuls on CPU are slow (meant for GPUs).
weight_int8    int8 weights with a float32 scale per output channel (or per tensor),
               turned back into float32 at every call: ~4x smaller file, slower on CPU.
weight_int4    4-bit weights, two per byte, a bf16 scale and offset per group of
               ``group_size`` input columns: ~6x smaller. On CPU, layers whose shapes
               fit PyTorch's int4 kernel run it (bf16 activations); others dequantize.
=============  ===========================================================================

A quantized model is still a :class:`SlimPajamaModel` (same forward, same outputs); only
some sub-modules are replaced, and ``model.quantization`` holds its :class:`QuantSpec`.
:func:`save_quantized` writes the integer tensors, scales and zero points to
safetensors (never pickle) and a ``"quantization"`` block into ``config.json``;
:func:`load_quantized` rebuilds the same structure and gives identical logits.
:func:`load_any` opens either kind of folder. :func:`guard_quantization` keeps the most
sensitive layers in float until the accuracy drop is within a tolerance.

Example:
    >>> result = quantize_model(model, "dynamic_int8")  # doctest: +SKIP
    >>> save_quantized(result.model, result, staging)  # doctest: +SKIP
    >>> again = load_any(staging)  # doctest: +SKIP
    >>> torch.equal(again(ids).logits, result.model(ids).logits)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import copy
import json
import logging
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.ao.nn.quantized as nnq
import torch.ao.nn.quantized.dynamic as nnqd
import torch.nn.functional as F
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.encoder import (
    CONFIG_FORMAT,
    WEIGHTS_NAME,
    SlimConfig,
    SlimPajamaModel,
    read_config,
)
from slimpajama_gui.core.model.hf_config import specific_label_names
from slimpajama_gui.core.storage.safe_io import (
    PICKLE_SUFFIXES,
    atomic_write_text,
    load_safetensors,
    refuse_pickle,
)
from slimpajama_gui.core.techniques import int8_path

logger = logging.getLogger(__name__)

#: Version of the ``"quantization"`` block in config.json.
QUANT_VERSION = 1
#: The one embedding table worth quantizing (position/type tables are tiny).
WORD_EMBEDDINGS = "embeddings.word_embeddings"
#: Group sizes the int4 format accepts (PyTorch's CPU int4 kernel takes these).
INT4_GROUP_SIZES = (32, 64, 128, 256)
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@contextmanager
def _quiet_torch_ao() -> Iterator[None]:
    # torch 2.13 marks torch.ao.quantization (and quantized tensors) deprecated in favour
    # of torchao, which is not a dependency; the eager API still works and is what we
    # want. The warnings would otherwise be attributed to this module and fail tests.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"(?s).*quantized tensor creation functions")
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        yield


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class QuantSpec:
    """How a model was quantized: everything needed to rebuild its structure.

    Attributes:
        method: a key of :data:`METHODS`.
        per_channel: one scale per output channel (dynamic_int8, weight_int8) instead
            of one per tensor. weight_int4 is always group-wise.
        embeddings: the word-embedding table was quantized too (int8/int4), or cast
            (fp16/bf16).
        group_size: input columns per scale in weight_int4.
        kept_float: quantizable modules left in float32 (by ``skip`` or the guard).
    """

    method: str
    per_channel: bool = True
    embeddings: bool = True
    group_size: int = 32
    kept_float: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The ``"quantization"`` block of config.json."""
        return {
            "method": self.method,
            "per_channel": self.per_channel,
            "embeddings": self.embeddings,
            "group_size": self.group_size,
            "kept_float": list(self.kept_float),
            "version": QUANT_VERSION,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "config.json") -> QuantSpec:
        """Read a block written by :meth:`to_dict`; only known keys and values.

        Raises:
            UserError: not an object, wrong version, unknown key or bad value.
        """
        if not isinstance(data, dict):
            raise UserError(f'{where}: "quantization" must be an object, not {data!r}.')
        data = dict(data)
        version = data.pop("version", None)
        if version != QUANT_VERSION:
            raise UserError(
                f'{where}: "quantization" version {version!r} is not one this SlimPajama '
                f"Studio reads (it reads version {QUANT_VERSION}); update the app."
            )
        unknown = sorted(
            set(data) - {"method", "per_channel", "embeddings", "group_size", "kept_float"}
        )
        if unknown:
            raise UserError(
                f'{where}: unknown key "quantization.{unknown[0]}"; it was written by another '
                "program or a newer version."
            )
        method = data.get("method")
        _method(method, f'{where}: "quantization.method"')
        for key in ("per_channel", "embeddings"):
            if not isinstance(data.get(key, True), bool):
                raise UserError(f'{where}: "quantization.{key}" must be true or false.')
        group = data.get("group_size", 32)
        _check_group_size(group, f'{where}: "quantization.group_size"')
        kept = data.get("kept_float", [])
        if not isinstance(kept, list) or not all(isinstance(k, str) for k in kept):
            raise UserError(f'{where}: "quantization.kept_float" must be a list of module names.')
        return cls(
            method=method,
            per_channel=data.get("per_channel", True),
            embeddings=data.get("embeddings", True),
            group_size=group,
            kept_float=tuple(kept),
        )


@dataclass
class QuantizedResult:
    """What :func:`quantize_model` returns.

    Attributes:
        model: the quantized copy (the input model is left untouched).
        method: the method used.
        kept_float: quantizable modules left in float32.
        note: a sentence on what the method does to size and speed, for the user.
        per_channel, embeddings, group_size: as passed to :func:`quantize_model`.
    """

    model: SlimPajamaModel
    method: str
    kept_float: list[str]
    note: str
    per_channel: bool = True
    embeddings: bool = True
    group_size: int = 32

    @property
    def spec(self) -> QuantSpec:
        return QuantSpec(
            self.method, self.per_channel, self.embeddings, self.group_size, tuple(self.kept_float)
        )


# --------------------------------------------------------------------------- modules


class _QuantModule(nn.Module):
    """Base of our weight-only modules: persistent buffers are the saved tensors."""

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return {
            k: v
            for k, v in self.named_buffers(recurse=False)
            if v is not None and k not in self._non_persistent_buffers_set
        }

    @torch.no_grad()
    def import_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        for key, value in tensors.items():
            getattr(self, key).copy_(value)
        self._rebuild()

    def _rebuild(self) -> None:
        """Recompute derived (non-persistent) state after the tensors changed."""


def _int8_symmetric(w: torch.Tensor, per_row: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``w ≈ q * scale`` with q in [-127, 127]; scale per row or one for all."""
    w = w.detach().float()
    amax = w.abs().amax(dim=1) if per_row else w.abs().amax().reshape(1)
    scale = (amax / 127.0).clamp(min=1e-12)  # an all-zero row keeps a usable scale
    q = torch.round(w / (scale[:, None] if per_row else scale)).clamp(-127, 127)
    return q.to(torch.int8), scale


class Int8WeightLinear(_QuantModule):
    """``y = x (q * s)^T + b`` with int8 ``q`` and a float32 scale per output row.

    The weight is turned back into float at every call (there is no int8 weight-only
    CPU kernel worth using), so this saves memory and disk, not time.
    """

    def __init__(self, in_features: int, out_features: int, per_channel: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer(
            "weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8)
        )
        self.register_buffer("weight_scale", torch.ones(out_features if per_channel else 1))
        self.register_buffer("bias", torch.zeros(out_features))

    @classmethod
    def from_float(cls, linear: nn.Linear, per_channel: bool = True) -> Int8WeightLinear:
        new = cls(linear.in_features, linear.out_features, per_channel)
        q, scale = _int8_symmetric(linear.weight, per_channel)
        new.weight_int8.copy_(q)
        new.weight_scale.copy_(scale)
        if linear.bias is not None:
            new.bias.copy_(linear.bias.detach())
        return new.to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight_int8 * self.weight_scale[:, None]  # (out, in) float32, one kernel
        return F.linear(x, w.to(x.dtype), self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        per = "channel" if self.weight_scale.numel() > 1 else "tensor"
        return f"in_features={self.in_features}, out_features={self.out_features}, per_{per}"


class Int8WeightEmbedding(_QuantModule):
    """An embedding table stored as int8 rows with a float32 scale per row."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.register_buffer(
            "weight_int8", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8)
        )
        self.register_buffer("weight_scale", torch.ones(num_embeddings))

    @classmethod
    def from_float(cls, emb: nn.Embedding) -> Int8WeightEmbedding:
        new = cls(emb.num_embeddings, emb.embedding_dim)
        q, scale = _int8_symmetric(emb.weight, per_row=True)
        new.weight_int8.copy_(q)
        new.weight_scale.copy_(scale)
        return new.to(emb.weight.device)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # Only the looked-up rows are dequantized, so this costs nothing measurable.
        rows = F.embedding(input_ids, self.weight_int8)  # (B, T, C) int8
        return rows * self.weight_scale[input_ids][..., None]  # (B, T, C) float32


def _int4_groups(w: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric 4-bit, per group of ``group`` columns: ``w ≈ (q - 8) * scale + zero``.

    Returns:
        q (R, Kp) uint8 in [0, 15] with Kp = K rounded up to the group (zero-padded),
        scale and zero (R, Kp / group) bf16. The offset-8 form is the one PyTorch's
        int4 CPU kernel uses, so its packing needs no conversion of the scales.
    """
    R, K = w.shape
    Kp = math.ceil(K / group) * group
    g = F.pad(w.detach().float(), (0, Kp - K)).view(R, Kp // group, group)  # (R, G, group)
    lo, hi = g.amin(dim=-1), g.amax(dim=-1)
    scale = ((hi - lo) / 15.0).clamp(min=1e-8).to(torch.bfloat16)
    # Round with the bf16 scale/zero actually stored, so no error is added on reload.
    zero = (lo + 8.0 * scale.float()).to(torch.bfloat16)
    q = torch.round((g - zero.float()[..., None]) / scale.float()[..., None] + 8.0)
    return q.clamp(0, 15).to(torch.uint8).view(R, Kp), scale, zero


def _pack_int4(q: torch.Tensor) -> torch.Tensor:
    """(…, Kp) values in [0, 15] -> (…, Kp/2) bytes: even column low nibble, odd high."""
    return q[..., 0::2] | (q[..., 1::2] << 4)


def _unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    return torch.stack((packed & 15, packed >> 4), dim=-1).flatten(-2)  # (…, Kp)


def _dequant_int4(
    packed: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, cols: int
) -> torch.Tensor:
    """(…, Kp/2) packed + (…, G) scale/zero -> (…, cols) float32."""
    q = _unpack_int4(packed)  # (…, Kp)
    G = scale.shape[-1]
    q = q.unflatten(-1, (G, q.shape[-1] // G)).float()  # (…, G, group)
    w = (q - 8.0) * scale.float()[..., None] + zero.float()[..., None]
    return w.flatten(-2)[..., :cols]


_INT4_KERNEL = hasattr(torch, "_weight_int4pack_mm_for_cpu") and hasattr(
    torch, "_convert_weight_to_int4pack_for_cpu"
)


class Int4WeightLinear(_QuantModule):
    """4-bit weights, two per byte, with a bf16 scale and offset per group of columns.

    On CPU, when ``out_features`` is a multiple of 16 and ``in_features`` of the group,
    PyTorch's int4 matmul kernel runs it with bf16 activations (``use_kernel``);
    otherwise, or on a GPU, the weight is dequantized to float32 at every call.
    """

    #: Set False to force the dequantize path (for measuring or debugging).
    use_kernel: bool = True

    def __init__(self, in_features: int, out_features: int, group_size: int = 32) -> None:
        super().__init__()
        self.in_features, self.out_features, self.group_size = (
            in_features,
            out_features,
            group_size,
        )
        Kp = math.ceil(in_features / group_size) * group_size
        G = Kp // group_size
        self.register_buffer("weight_int4", torch.zeros(out_features, Kp // 2, dtype=torch.uint8))
        self.register_buffer("weight_scale", torch.ones(out_features, G, dtype=torch.bfloat16))
        self.register_buffer("weight_zero", torch.zeros(out_features, G, dtype=torch.bfloat16))
        self.register_buffer("bias", torch.zeros(out_features))
        self.register_buffer("_kernel_weight", None, persistent=False)
        self.register_buffer("_kernel_scale_zero", None, persistent=False)

    @classmethod
    def from_float(cls, linear: nn.Linear, group_size: int = 32) -> Int4WeightLinear:
        new = cls(linear.in_features, linear.out_features, group_size)
        q, scale, zero = _int4_groups(linear.weight, group_size)
        new.weight_int4.copy_(_pack_int4(q))
        new.weight_scale.copy_(scale)
        new.weight_zero.copy_(zero)
        if linear.bias is not None:
            new.bias.copy_(linear.bias.detach())
        new._rebuild()
        return new.to(linear.weight.device)

    def _rebuild(self) -> None:
        self._kernel_weight = self._kernel_scale_zero = None
        fits = self.out_features % 16 == 0 and self.in_features % self.group_size == 0
        if not (_INT4_KERNEL and fits and self.weight_int4.device.type == "cpu"):
            return
        q = _unpack_int4(self.weight_int4).to(torch.int32)  # (N, K)
        try:
            self._kernel_weight = torch._convert_weight_to_int4pack_for_cpu(q, 1)
        except RuntimeError:  # a build or CPU without the kernel: dequantize instead
            logger.debug("int4 CPU kernel unavailable; dequantizing on the fly", exc_info=True)
            return
        sz = torch.stack((self.weight_scale, self.weight_zero), dim=-1)  # (N, G, 2)
        self._kernel_scale_zero = sz.transpose(0, 1).contiguous()  # (G, N, 2) bf16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_kernel and self._kernel_weight is not None and x.device.type == "cpu":
            flat = x.reshape(-1, self.in_features).to(torch.bfloat16)  # (B*T, K)
            y = torch._weight_int4pack_mm_for_cpu(
                flat, self._kernel_weight, self.group_size, self._kernel_scale_zero
            )  # (B*T, N) bf16
            y = y.float() + self.bias
            return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        w = _dequant_int4(self.weight_int4, self.weight_scale, self.weight_zero, self.in_features)
        return F.linear(x, w.to(x.dtype), self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"group_size={self.group_size}, kernel={self._kernel_weight is not None}"
        )


class Int4WeightEmbedding(_QuantModule):
    """An embedding table stored as packed 4-bit rows, group-wise like :class:`Int4WeightLinear`."""

    def __init__(self, num_embeddings: int, embedding_dim: int, group_size: int = 32) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.group_size = (
            num_embeddings,
            embedding_dim,
            group_size,
        )
        Cp = math.ceil(embedding_dim / group_size) * group_size
        G = Cp // group_size
        self.register_buffer("weight_int4", torch.zeros(num_embeddings, Cp // 2, dtype=torch.uint8))
        self.register_buffer("weight_scale", torch.ones(num_embeddings, G, dtype=torch.bfloat16))
        self.register_buffer("weight_zero", torch.zeros(num_embeddings, G, dtype=torch.bfloat16))

    @classmethod
    def from_float(cls, emb: nn.Embedding, group_size: int = 32) -> Int4WeightEmbedding:
        new = cls(emb.num_embeddings, emb.embedding_dim, group_size)
        q, scale, zero = _int4_groups(emb.weight, group_size)
        new.weight_int4.copy_(_pack_int4(q))
        new.weight_scale.copy_(scale)
        new.weight_zero.copy_(zero)
        return new.to(emb.weight.device)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return _dequant_int4(
            self.weight_int4[input_ids],  # (B, T, Cp/2)
            self.weight_scale[input_ids],  # (B, T, G)
            self.weight_zero[input_ids],
            self.embedding_dim,
        )  # (B, T, C) float32


class DynamicInt8Linear(nnqd.Linear):
    """PyTorch's dynamic int8 Linear, with 8-bit activations where the CPU is exact.

    Attributes:
        reduce_range: quantize activations to 7 bits, as on x86 CPUs without VNNI
            (:func:`slimpajama_gui.core.techniques.int8_path.current`); False on VNNI and ARM.
            Decided when the module is built, on the machine that runs it; not part of
            the saved format.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reduce_range = int8_path.current().activation_bits < 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._packed_params.dtype != torch.qint8:
            return super().forward(x)
        y = torch.ops.quantized.linear_dynamic(
            x, self._packed_params._packed_params, reduce_range=self.reduce_range
        )
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, reduce_range={self.reduce_range}"


class Fp32LayerNorm(nn.LayerNorm):
    """LayerNorm with float32 weights that normalises in float32 whatever its input.

    In a half-precision model the mean/variance of 384 values in fp16 lose digits
    that matter; this returns the input's dtype so the rest of the model is unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps)
        return y.to(x.dtype)


class FloatLinear(nn.Linear):
    """A Linear kept in float32 inside a half-precision model (a guard's float island)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(self.weight.dtype), self.weight, self.bias).to(x.dtype)


class CastEmbedding(nn.Embedding):
    """A float32 embedding table whose output is cast to the model's half dtype."""

    out_dtype: torch.dtype = torch.float16

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids).to(self.out_dtype)


# --------------------------------------------------------------------------- handlers

#: (model, spec, names of the modules to quantize) -> None; changes ``model`` in place.
Handler = Callable[[SlimPajamaModel, QuantSpec, list[str]], None]


@dataclass(frozen=True)
class Method:
    """One quantization method: its handler and what the user should know about it."""

    name: str
    handler: Handler
    note: str
    cpu_only: bool = False


#: Quantization methods by name; :func:`quantize_model` looks handlers up here.
METHODS: dict[str, Method] = {}


def register_method(
    name: str, note: str, *, cpu_only: bool = False
) -> Callable[[Handler], Handler]:
    """Decorator adding a handler to :data:`METHODS`."""

    def register(fn: Handler) -> Handler:
        METHODS[name] = Method(name, fn, note, cpu_only)
        return fn

    return register


def _method(name: Any, field_name: str = "quantize.method") -> Method:
    if not isinstance(name, str) or name not in METHODS:
        raise UserError(
            f"{field_name}: {name!r} is not a quantization method; use one of {', '.join(METHODS)}."
        )
    return METHODS[name]


def _check_group_size(group: Any, field_name: str = "quantize.group_size") -> None:
    if isinstance(group, bool) or group not in INT4_GROUP_SIZES:
        raise UserError(
            f"{field_name} must be one of {', '.join(map(str, INT4_GROUP_SIZES))}, not {group!r}."
        )


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def use_int8_kernels() -> str:
    """Select the int8 path's kernels (fbgemm on x86, qnnpack on ARM); packed weights
    depend on them."""
    engine = int8_path.current().engine
    if engine not in torch.backends.quantized.supported_engines:
        raise UserError(
            "quantize.method: dynamic_int8 needs PyTorch's quantized CPU kernels (x86/fbgemm "
            "or qnnpack), which this PyTorch build lacks; use weight_int8 instead."
        )
    torch.backends.quantized.engine = engine
    return engine


@register_method(
    "dynamic_int8",
    "int8 weights (per channel unless per_channel=false) with activations quantized to "
    "8 bits at run time (7 on x86 CPUs without AVX512-VNNI) by PyTorch's kernels: about "
    "4x smaller linear layers and faster on CPU; runs on CPU only.",
    cpu_only=True,
)
def _dynamic_int8(model: SlimPajamaModel, spec: QuantSpec, targets: list[str]) -> None:
    from torch.ao.quantization import (
        default_dynamic_qconfig,
        float_qparams_weight_only_qconfig,
        per_channel_dynamic_qconfig,
        quantize_dynamic,
    )

    use_int8_kernels()
    linear = per_channel_dynamic_qconfig if spec.per_channel else default_dynamic_qconfig
    # Module names, not types, so that skipped layers stay float; embeddings can only
    # be weight-only (float scale and offset per row).
    qconfig = {
        name: float_qparams_weight_only_qconfig if name == WORD_EMBEDDINGS else linear
        for name in targets
    }
    if qconfig:
        quantize_dynamic(
            model,
            qconfig,
            mapping={nn.Linear: DynamicInt8Linear, nn.Embedding: nnq.Embedding},
            inplace=True,
        )


def _cast_handler(dtype: torch.dtype) -> Handler:
    def handler(model: SlimPajamaModel, spec: QuantSpec, targets: list[str]) -> None:
        chosen = set(targets)
        for name, module in list(model.named_modules()):
            if isinstance(module, nn.LayerNorm):
                new = Fp32LayerNorm(
                    module.normalized_shape,
                    eps=module.eps,
                    elementwise_affine=module.elementwise_affine,
                    bias=module.bias is not None,
                    device=_device_of(module),
                )
            elif isinstance(module, nn.Linear) and module.weight.numel() and name not in chosen:
                new = FloatLinear(
                    module.in_features, module.out_features, device=_device_of(module)
                )
            elif name == WORD_EMBEDDINGS and name not in chosen:
                assert isinstance(module, nn.Embedding)
                new = CastEmbedding(
                    module.num_embeddings,
                    module.embedding_dim,
                    padding_idx=module.padding_idx,
                    device=_device_of(module),
                )
                new.out_dtype = dtype
            else:
                continue
            new.load_state_dict(module.state_dict())
            _replace(model, name, new)
        kept = (Fp32LayerNorm, FloatLinear, CastEmbedding)
        for module in model.modules():
            if isinstance(module, kept):
                continue
            for param in module.parameters(recurse=False):
                param.data = param.data.to(dtype)

    return handler


register_method(
    "fp16",
    "weights and compute in float16 (LayerNorm in float32): half the size; fast on GPUs, "
    "but on most CPUs float16 matmuls are several times slower than float32.",
)(_cast_handler(torch.float16))
register_method(
    "bf16",
    "weights and compute in bfloat16 (LayerNorm in float32): half the size; as fast as or "
    "faster than float32 on CPUs with AVX512-BF16/AMX, slow on older CPUs.",
)(_cast_handler(torch.bfloat16))


def _weight_only_handler(bits: int) -> Handler:
    def handler(model: SlimPajamaModel, spec: QuantSpec, targets: list[str]) -> None:
        for name in targets:
            old = model.get_submodule(name)
            if isinstance(old, nn.Embedding):
                new = (
                    Int8WeightEmbedding.from_float(old)
                    if bits == 8
                    else Int4WeightEmbedding.from_float(old, spec.group_size)
                )
            else:
                new = (
                    Int8WeightLinear.from_float(old, spec.per_channel)
                    if bits == 8
                    else Int4WeightLinear.from_float(old, spec.group_size)
                )
            _replace(model, name, new)

    return handler


register_method(
    "weight_int8",
    "int8 weights with a float scale per channel, dequantized to float32 at every call: "
    "about 4x smaller file and memory, but slower than float32 on CPU (no int8 "
    "weight-only kernel); choose dynamic_int8 for speed.",
)(_weight_only_handler(8))
register_method(
    "weight_int4",
    "4-bit weights (two per byte) with a bf16 scale and offset per group of columns: "
    "about 6x smaller; on CPU the layers that fit PyTorch's int4 kernel run it with bf16 "
    "activations (about float32 speed), the others are dequantized at every call (slow).",
)(_weight_only_handler(4))


# --------------------------------------------------------------------------- quantize


def quantizable_modules(model: nn.Module, embeddings: bool = True) -> list[str]:
    """Names of the modules a method may quantize: every non-empty ``nn.Linear`` and,
    with ``embeddings``, the word-embedding table (first)."""
    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module.weight.numel() > 0
    ]
    if embeddings and isinstance(model.get_submodule(WORD_EMBEDDINGS), nn.Embedding):
        names.insert(0, WORD_EMBEDDINGS)
    return names


def _expand(names: list[str], requested: Iterable[str], field_name: str) -> set[str]:
    """Module names or prefixes (``layers.3.ffn``) -> the quantizable modules they cover."""
    if isinstance(requested, str):
        requested = [requested]
    out: set[str] = set()
    for item in requested:
        hits = [n for n in names if n == item or n.startswith(f"{item}.")]
        if not hits:
            raise UserError(
                f"{field_name}: {item!r} names no quantizable module of this model; use a "
                "module name such as 'layers.0.ffn.intermediate' or a prefix such as "
                "'layers.0.ffn' or 'layers.0'."
            )
        out.update(hits)
    return out


def _apply(model: SlimPajamaModel, spec: QuantSpec) -> None:
    """Quantize ``model`` in place as ``spec`` says."""
    method = _method(spec.method)
    _check_group_size(spec.group_size)
    every = quantizable_modules(model, embeddings=True)
    kept = _expand(every, spec.kept_float, "quantize.kept_float")
    targets = [n for n in quantizable_modules(model, spec.embeddings) if n not in kept]
    with torch.no_grad(), _quiet_torch_ao():
        method.handler(model, spec, targets)
    model.quantization = spec


def quantize_model(
    model: SlimPajamaModel,
    method: str,
    *,
    per_channel: bool = True,
    embeddings: bool = True,
    skip: Iterable[str] = frozenset(),
    group_size: int = 32,
) -> QuantizedResult:
    """Quantize a copy of ``model``; the original is left as it was.

    Args:
        model: a float :class:`SlimPajamaModel`.
        method: a key of :data:`METHODS` ("dynamic_int8", "fp16", "bf16",
            "weight_int8", "weight_int4").
        per_channel: a scale per output channel (dynamic_int8, weight_int8).
        embeddings: quantize (or cast) the word-embedding table too.
        skip: modules to keep in float32, by name or prefix (``"classifier"``,
            ``"layers.3.ffn"``).
        group_size: columns per scale for weight_int4 (32, 64, 128 or 256).

    Returns:
        A :class:`QuantizedResult`; ``result.model`` is in eval mode (and on the CPU for
        dynamic_int8).

    Raises:
        UserError: an unknown method (names ``quantize.method``), group size or
            skipped module.

    Example:
        >>> r = quantize_model(model, "weight_int4", skip={"classifier"})  # doctest: +SKIP
        >>> r.kept_float
        ['classifier']
    """
    m = _method(method)
    _check_group_size(group_size)
    every = quantizable_modules(model, embeddings=True)
    kept = _expand(every, skip, "quantize.skip")
    spec = QuantSpec(
        method=method,
        per_channel=bool(per_channel),
        embeddings=bool(embeddings),
        group_size=group_size,
        kept_float=tuple(n for n in every if n in kept),
    )
    qmodel = copy.deepcopy(model).eval()
    if m.cpu_only:
        qmodel = qmodel.cpu()
    _apply(qmodel, spec)
    return QuantizedResult(
        model=qmodel,
        method=method,
        kept_float=list(spec.kept_float),
        note=m.note,
        per_channel=spec.per_channel,
        embeddings=spec.embeddings,
        group_size=spec.group_size,
    )


# --------------------------------------------------------------------------- tensors
# Saved names: a module's own float tensors keep their state_dict names; a quantized
# module writes "<name>.weight_int8|weight_uint8|weight_int4", "<name>.weight_scale",
# "<name>.weight_zero_point|weight_zero" and "<name>.bias".


def _torch_codecs() -> dict[type, tuple[Callable, Callable]]:
    def export_linear(m: nn.Module) -> dict[str, torch.Tensor]:
        w, b = m.weight(), m.bias()
        out = {"weight_int8": w.int_repr()}
        if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            scale, zero = w.q_per_channel_scales(), w.q_per_channel_zero_points()
        else:
            scale, zero = torch.tensor([w.q_scale()]), torch.tensor([w.q_zero_point()])
        # The observers compute scales in float32 and zero points fit int8, so the
        # narrower types are exact (torch widens them to float64/int64 on the way out).
        out["weight_scale"] = scale.to(torch.float32)
        out["weight_zero_point"] = zero.to(torch.int32)
        if b is not None:
            out["bias"] = b
        return out

    def import_linear(m: nn.Module, t: Mapping[str, torch.Tensor]) -> None:
        if m.weight().qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            w = torch._make_per_channel_quantized_tensor(
                t["weight_int8"], t["weight_scale"].double(), t["weight_zero_point"].long(), 0
            )
        else:
            w = torch._make_per_tensor_quantized_tensor(
                t["weight_int8"], float(t["weight_scale"][0]), int(t["weight_zero_point"][0])
            )
        m.set_weight_bias(w, t.get("bias"))

    def export_embedding(m: nn.Module) -> dict[str, torch.Tensor]:
        w = m.weight()
        return {
            "weight_uint8": w.int_repr(),
            "weight_scale": w.q_per_channel_scales(),
            "weight_zero_point": w.q_per_channel_zero_points(),
        }

    def import_embedding(m: nn.Module, t: Mapping[str, torch.Tensor]) -> None:
        w = torch._make_per_channel_quantized_tensor(
            t["weight_uint8"], t["weight_scale"], t["weight_zero_point"], 0
        )
        m.set_weight(w)

    return {
        nnqd.Linear: (export_linear, import_linear),
        nnq.Embedding: (export_embedding, import_embedding),
    }


def _codec(module: nn.Module, torch_codecs: dict) -> tuple[Callable, Callable] | None:
    if isinstance(module, _QuantModule):
        return type(module).export_tensors, type(module).import_tensors
    for kind, codec in torch_codecs.items():
        if isinstance(module, kind):
            return codec
    return None


def _walk(model: nn.Module) -> Iterator[tuple[str, nn.Module, tuple[Callable, Callable] | None]]:
    """Modules that own saved tensors, each with its codec (None = plain tensors)."""
    codecs = _torch_codecs()
    inside: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(f"{p}.") for p in inside):
            continue  # packed-params children of a quantized module
        codec = _codec(module, codecs)
        if codec is not None:
            inside.append(name)
        yield name, module, codec


def _plain_tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    yield from module.named_parameters(recurse=False)
    for key, buf in module.named_buffers(recurse=False):
        if buf is not None and key not in module._non_persistent_buffers_set:
            yield key, buf


def quantized_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor :func:`save_quantized` writes, by saved name (no packed objects)."""
    state: dict[str, torch.Tensor] = {}
    with _quiet_torch_ao():
        for name, module, codec in _walk(model):
            prefix = f"{name}." if name else ""
            items = codec[0](module).items() if codec else _plain_tensors(module)
            for key, tensor in items:
                state[prefix + key] = tensor.detach()
    return state


@torch.no_grad()
def _load_state(model: nn.Module, tensors: Mapping[str, torch.Tensor], where: Path) -> None:
    expected = quantized_state(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k} (file {tensors[k].dtype} {tuple(tensors[k].shape)}, expected "
        f"{v.dtype} {tuple(v.shape)})"
        for k, v in expected.items()
        if k in tensors and (tensors[k].shape != v.shape or tensors[k].dtype != v.dtype)
    ]
    problems = []
    if wrong:
        problems.append(f"{len(wrong)} with the wrong shape or type: {', '.join(wrong[:5])}")
    if missing:
        problems.append(f"{len(missing)} missing: {', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"{len(unexpected)} not in the model: {', '.join(unexpected[:5])}")
    if problems:
        raise UserError(
            f"the weights in {where} do not match the quantized model its config.json "
            "describes — " + "; ".join(problems) + ". Copy the folder again from its source."
        )
    with _quiet_torch_ao():
        for name, module, codec in _walk(model):
            prefix = f"{name}." if name else ""
            if codec is not None:
                own = {
                    k[len(prefix) :]: v
                    for k, v in tensors.items()
                    if k.startswith(prefix) and "." not in k[len(prefix) :]
                }
                codec[1](module, own)
            else:
                for key, tensor in _plain_tensors(module):
                    tensor.copy_(tensors[prefix + key])


# --------------------------------------------------------------------------- save / load


def _spec_of(model: nn.Module, info: Any) -> QuantSpec:
    if isinstance(info, QuantizedResult):
        return info.spec
    if isinstance(info, QuantSpec):
        return info
    if isinstance(info, Mapping):
        return QuantSpec.from_dict({"version": QUANT_VERSION, **info}, "quantization info")
    spec = getattr(model, "quantization", None)
    if isinstance(spec, QuantSpec):
        return spec
    raise ValueError("save_quantized needs a QuantizedResult, a QuantSpec or a quantized model")


def save_quantized(
    model: SlimPajamaModel,
    result_or_method_info: QuantizedResult | QuantSpec | Mapping[str, Any] | None,
    folder: str | Path,
) -> None:
    """Write a quantized model into an existing folder (not atomically).

    The caller stages the folder (``safe_io.atomic_dir``) and adds tokenizer files and
    reports. Writes ``model.safetensors`` (integer weights, scales, zero points and
    float tensors; never pickle) and ``config.json`` with the model's SlimConfig fields
    plus a ``"quantization"`` block (method, per_channel, embeddings, group_size,
    kept_float, version).

    Args:
        model: the quantized model (``result.model``).
        result_or_method_info: the :class:`QuantizedResult` (or :class:`QuantSpec`, or
            its dict); None uses ``model.quantization``.
        folder: an existing folder, normally a staging folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    spec = _spec_of(model, result_or_method_info)
    actual = getattr(model, "quantization", None)
    if actual is not None and actual != spec:
        # The folder would not load: its config would describe another structure.
        raise ValueError(f"the model was quantized as {actual}, not as {spec}")
    # Clone: safetensors refuses tensors that share storage, and packed-weight
    # accessors may return views.
    state = {k: v.cpu().contiguous().clone() for k, v in quantized_state(model).items()}
    save_file(
        state,
        str(folder / WEIGHTS_NAME),
        metadata={"format": "pt", "quantization": spec.method},
    )
    config = {
        "model_type": CONFIG_FORMAT,
        **model.config.to_dict(),
        "quantization": spec.to_dict(),
    }
    atomic_write_text(folder / "config.json", json.dumps(config, indent=2) + "\n")


def is_quantized_folder(folder: str | Path) -> bool:
    """True when ``folder/config.json`` has a ``"quantization"`` block."""
    return "quantization" in read_config(Path(folder))


def load_quantized(folder: str | Path) -> SlimPajamaModel:
    """Rebuild a model saved by :func:`save_quantized`, still quantized.

    The float structure comes from config.json, the same quantization is applied,
    then the saved integer tensors replace the freshly made ones, so the logits are
    identical to those of the model that was saved.

    Raises:
        UserError: the folder is not a quantized SlimPajama model, its config is
            invalid, or its weights do not match it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder; choose the folder that holds config.json.")
    where = folder / "config.json"
    raw = read_config(folder)
    block = raw.pop("quantization", None)
    if block is None:
        raise UserError(
            f"{where} has no quantization block: this is a float model; open it with "
            "SlimPajamaModel.from_pretrained or quantize.load_any."
        )
    if raw.get("model_type") != CONFIG_FORMAT:
        raise UserError(
            f'{where}: a quantized model must have model_type "{CONFIG_FORMAT}", not '
            f"{raw.get('model_type')!r}."
        )
    spec = QuantSpec.from_dict(block, str(where))
    if spec.method == "dynamic_int8":
        int8_path.current()  # an environment problem, not this folder's: unprefixed
    try:
        config = SlimConfig.from_dict(raw)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from exc
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise refuse_pickle(pickles[0])
        raise UserError(
            f"no {WEIGHTS_NAME} in {folder}; a quantized model keeps its weights in one "
            "safetensors file. Copy the folder again."
        )
    tensors = load_safetensors(weights)
    with torch.random.fork_rng():  # the random init below is thrown away; keep the seed
        model = SlimPajamaModel(config)
    try:
        _apply(model, spec)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from exc
    _load_state(model, tensors, weights)
    model.source_path = folder.resolve()
    return model.eval()


def load_any(
    folder: str | Path, num_labels: int | None = None, id2label: dict[int, str] | None = None
) -> SlimPajamaModel:
    """Open a float or a quantized model folder, whichever it is.

    Args:
        folder: a Hugging Face BERT/RoBERTa folder, a SlimPajama folder, or one written
            by :func:`save_quantized`.
        num_labels, id2label: as in :meth:`SlimPajamaModel.from_pretrained`; a quantized
            model's classifier cannot be replaced, so they must match it.
    """
    folder = Path(folder)
    if not folder.is_dir() or "quantization" not in read_config(folder):
        return SlimPajamaModel.from_pretrained(folder, num_labels=num_labels, id2label=id2label)
    model = load_quantized(folder)
    labels = len(id2label) if id2label is not None else num_labels
    if labels is not None and labels != model.config.num_labels:
        raise UserError(
            f"{folder} is a quantized model with {model.config.num_labels} labels; its "
            f"classifier cannot be replaced by one with {labels}. Quantize after fine-tuning."
        )
    trained = specific_label_names(model.config.id2label)
    if id2label is not None and trained is not None:
        wanted = [str(id2label[i]) for i in sorted(id2label)]
        if [n.strip().casefold() for n in trained] != [n.strip().casefold() for n in wanted]:
            raise UserError(
                f"{folder} is a quantized model whose classifier was trained for the labels "
                f"{', '.join(trained)} (in that order), not {', '.join(wanted)}; its head "
                "cannot be replaced. Use data with its labels, or fine-tune the float model "
                "on this data and quantize after that."
            )
        model.config.id2label = dict(id2label)  # the same names, as the caller spells them
    return model


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
        tolerance: the allowed drop (a fraction, like the accuracies).
    """

    baseline: float
    quantized: float
    final: float
    kept_float: list[str]
    tried: list[tuple[str, float]]
    result: QuantizedResult
    sensitivity: dict[str, float] = field(default_factory=dict)
    sensitivity_measure: str = ""
    tolerance: float = 0.005

    @property
    def drop(self) -> float:
        return self.baseline - self.final

    @property
    def ok(self) -> bool:
        """The final drop is within the tolerance."""
        return self.drop <= self.tolerance + 1e-12


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


def _device_of(module: nn.Module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


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
    model: SlimPajamaModel,
    method: str,
    evaluate: Callable[[nn.Module], float],
    tolerance: float = 0.005,
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
    ``baseline - accuracy <= tolerance`` or no candidate is left (``report.ok`` is then
    False). One score per candidate suffices because quantizing only one module does
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
        tolerance: allowed accuracy drop as a fraction (0.005 = 0.5 point).
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
