"""Quantization methods: what each does, the registry of handlers, and quantize_model.

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

A quantized model is still an :class:`EncoderClassifier` (same forward, same outputs); only
some sub-modules are replaced, and ``model.quantization`` holds its :class:`QuantSpec`.
Saving and loading such a model is in :mod:`.folders`, the accuracy guard in :mod:`.guard`.

Example:
    >>> result = quantize_model(model, "dynamic_int8")  # doctest: +SKIP
    >>> result.model.quantization.method  # doctest: +SKIP
    'dynamic_int8'
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.ao.nn.quantized as nnq
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.encoder import EncoderClassifier
from slimpajama_gui.core.techniques.quantize import int8_path
from slimpajama_gui.core.techniques.quantize.modules import (
    CastEmbedding,
    DynamicInt8Linear,
    FloatLinear,
    Fp32LayerNorm,
    Int4WeightEmbedding,
    Int4WeightLinear,
    Int8WeightEmbedding,
    Int8WeightLinear,
    _device_of,
    _quiet_torch_ao,
)

#: Version of the ``"quantization"`` block in config.json.
QUANT_VERSION = 1
#: The one embedding table worth quantizing (position/type tables are tiny).
WORD_EMBEDDINGS = "embeddings.word_embeddings"
#: Group sizes the int4 format accepts (PyTorch's CPU int4 kernel takes these).
INT4_GROUP_SIZES = (32, 64, 128, 256)


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

    model: EncoderClassifier
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


# --------------------------------------------------------------------------- handlers

#: (model, spec, names of the modules to quantize) -> None; changes ``model`` in place.
Handler = Callable[[EncoderClassifier, QuantSpec, list[str]], None]


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
def _dynamic_int8(model: EncoderClassifier, spec: QuantSpec, targets: list[str]) -> None:
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
    def handler(model: EncoderClassifier, spec: QuantSpec, targets: list[str]) -> None:
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
    def handler(model: EncoderClassifier, spec: QuantSpec, targets: list[str]) -> None:
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


def _apply(model: EncoderClassifier, spec: QuantSpec) -> None:
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
    model: EncoderClassifier,
    method: str,
    *,
    per_channel: bool = True,
    embeddings: bool = True,
    skip: Iterable[str] = frozenset(),
    group_size: int = 32,
) -> QuantizedResult:
    """Quantize a copy of ``model``; the original is left as it was.

    Args:
        model: a float :class:`EncoderClassifier`.
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
