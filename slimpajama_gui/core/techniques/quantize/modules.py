"""The quantized building blocks a quantized :class:`EncoderClassifier` is made of.

Weight-only int8 and int4 linears and embeddings (integer weights with float scales,
turned back into float at every call; :class:`Int4WeightLinear` runs PyTorch's int4 CPU
kernel where its shapes fit), PyTorch's dynamic int8 linear on this machine's int8 path
(:class:`DynamicInt8Linear`), and the float32 / half-precision wrappers the cast methods
use. Each weight-only module lists its saved tensors (``export_tensors``) and rebuilds
itself from them (``import_tensors``), for :mod:`.folders`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torch.ao.nn.quantized.dynamic as nnqd
import torch.nn.functional as F
from torch import nn

from slimpajama_gui.core.techniques.quantize import int8_path

logger = logging.getLogger(__name__)


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


def _register_int4_rows(module: nn.Module, rows: int, cols: int, group_size: int) -> None:
    """The buffers of a (rows, cols) matrix stored as packed 4-bit values, one scale and
    zero point (bf16) per group of ``group_size`` columns; cols are padded to a group."""
    module.group_size = group_size
    padded = math.ceil(cols / group_size) * group_size
    groups = padded // group_size
    module.register_buffer("weight_int4", torch.zeros(rows, padded // 2, dtype=torch.uint8))
    module.register_buffer("weight_scale", torch.ones(rows, groups, dtype=torch.bfloat16))
    module.register_buffer("weight_zero", torch.zeros(rows, groups, dtype=torch.bfloat16))


def _fill_int4_rows(module: nn.Module, weight: torch.Tensor) -> None:
    """Quantize ``weight`` (rows, cols) into the buffers of :func:`_register_int4_rows`."""
    q, scale, zero = _int4_groups(weight, module.group_size)
    module.weight_int4.copy_(_pack_int4(q))
    module.weight_scale.copy_(scale)
    module.weight_zero.copy_(zero)


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
        self.in_features, self.out_features = in_features, out_features
        _register_int4_rows(self, out_features, in_features, group_size)
        self.register_buffer("bias", torch.zeros(out_features))
        self.register_buffer("_kernel_weight", None, persistent=False)
        self.register_buffer("_kernel_scale_zero", None, persistent=False)

    @classmethod
    def from_float(cls, linear: nn.Linear, group_size: int = 32) -> Int4WeightLinear:
        new = cls(linear.in_features, linear.out_features, group_size)
        _fill_int4_rows(new, linear.weight)
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
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        _register_int4_rows(self, num_embeddings, embedding_dim, group_size)

    @classmethod
    def from_float(cls, emb: nn.Embedding, group_size: int = 32) -> Int4WeightEmbedding:
        new = cls(emb.num_embeddings, emb.embedding_dim, group_size)
        _fill_int4_rows(new, emb.weight)
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
            (:func:`slimpajama_gui.core.techniques.quantize.int8_path.current`); False on VNNI and ARM.
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


def _device_of(module: nn.Module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")
