"""ONNX export: the fast CPU backend's model file.

A :class:`~slimpajama_gui.core.model.encoder.EncoderClassifier` is exported to one ONNX
file that maps ``input_ids``, ``attention_mask`` (and ``token_type_ids``, unless the
model has no token types) — int64, any batch size, any length — to ``logits``, and can
be quantized to int8 with ``onnxruntime.quantization.quantize_dynamic``
(:func:`~slimpajama_gui.core.techniques.onnx_int8.quantize_onnx`).
:class:`~slimpajama_gui.core.runtime.onnx_runner.OrtRunner` runs such a file with the
interface of :class:`~slimpajama_gui.core.runtime.bench.TorchRunner` (numpy inputs →
numpy logits), so benchmarks, evaluation and the playground can use either.

An ONNX *variant* is a folder holding ``model.onnx``, the tokenizer files and our
``config.json`` (for the label names); it has no ``model.safetensors``.

Exports then go through ONNX Runtime's BERT optimizer (``onnxruntime.transformers``):
attention is exported in the explicit form it recognises (``SelfAttention.fusable_export``)
and fused into one ``Attention`` operator per layer, which int8 quantization turns into
``QAttention``. On the SST-2 MiniLM teacher this took batch-1 int8 latency from 3.8 to
about 2 ms on 2 cores, as fast as ORT's own documented BERT path (benchmarks/peers_sst2.py).
A model exported from PyTorch int8 (:mod:`slimpajama_gui.core.techniques.onnx_int8`) is not
fused: its per-linear int8 weights must stay where PyTorch has them.

Example:
    >>> info = export_and_quantize(model, Path("out/onnx"))  # doctest: +SKIP
    >>> runner = OrtRunner(info.path, threads=2)  # doctest: +SKIP
    >>> runner(encode_for_bench(tokenizer, ["a fine film"], 128)[0]).shape  # doctest: +SKIP
    (1, 2)
"""

from __future__ import annotations

import copy
import json
import logging
import os
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.config import CONFIG_FORMAT, EncoderConfig
from slimpajama_gui.core.model.encoder import EncoderClassifier, SelfAttention
from slimpajama_gui.core.model.saving import copy_tokenizer_files
from slimpajama_gui.core.storage.atomic import atomic_file, atomic_write_text
from slimpajama_gui.core.techniques.onnx_int8 import _quiet_quantizer, quantize_onnx

logger = logging.getLogger(__name__)

#: The model file of an ONNX variant folder.
ONNX_NAME = "model.onnx"
DEFAULT_OPSET = 17
#: An fp32 export computes the same logits as PyTorch up to float rounding: at most this
#: much apart, relative to the largest logit (at least 1). Measured 4.4e-6 on MiniLM,
#: SST-2 dev (docs/benchmarks.md, "ONNX export").
FP32_EXPORT_TOLERANCE = 1e-4
#: Graph inputs, in order; ``token_type_ids`` only when ``type_vocab_size > 0``.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "logits"

# Keys of the metadata stored in the ONNX file, read back by OrtRunner.
META_MAX_TOKENS = "slimpajama.max_tokens"
META_LABELS = "slimpajama.id2label"

Exporter = Literal["auto", "torchscript", "dynamo"]


# --------------------------------------------------------------------------- export


def onnx_input_names(config: EncoderConfig) -> tuple[str, ...]:
    """The graph inputs a model with ``config`` is exported with."""
    return INPUT_NAMES if config.type_vocab_size > 0 else INPUT_NAMES[:2]


class _LogitsOnly(nn.Module):
    """The model as ONNX sees it: int64 tensors in, logits out."""

    def __init__(self, model: EncoderClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.model(input_ids, attention_mask, token_type_ids).logits  # (B, num_labels)


def _example_inputs(config: EncoderConfig) -> tuple[torch.Tensor, ...]:
    # Two rows, the second padded, so the mask arithmetic is traced as data, not constant.
    T = min(8, config.max_position_embeddings - config.position_offset)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (2, T), generator=g)
    mask = torch.ones_like(ids)
    mask[1, max(1, T // 2) :] = 0
    ids[1, max(1, T // 2) :] = config.pad_token_id if config.pad_token_id < config.vocab_size else 0
    inputs = (ids, mask)
    if config.type_vocab_size > 0:
        inputs += (torch.zeros_like(ids),)
    return inputs


def _exportable(model: EncoderClassifier) -> EncoderClassifier:
    """``model`` itself if it is a CPU fp32 model, else a CPU fp32 copy."""
    for module in model.modules():
        if "quantized" in type(module).__module__:
            raise UserError(
                "this model has been quantized with PyTorch and cannot be exported to ONNX; "
                "export the fp32 model and quantize it with ONNX Runtime instead "
                "(quantize_onnx / an ONNX variant)."
            )
    params = list(model.parameters())
    if all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params):
        return model
    return copy.deepcopy(model).to(device="cpu", dtype=torch.float32)


def _torchscript_export(
    wrapper: nn.Module, args: tuple[torch.Tensor, ...], names: Sequence[str], out: Path, opset: int
) -> None:
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes[OUTPUT_NAME] = {0: "batch"}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one but is
        # still the fast, exact one for this model; the tracer also warns that the
        # length check in forward() is baked in, which OrtRunner re-checks instead.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            wrapper,
            args,
            str(out),
            dynamo=False,
            opset_version=opset,
            input_names=list(names),
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            do_constant_folding=True,
        )


def _dynamo_export(
    wrapper: nn.Module,
    args: tuple[torch.Tensor, ...],
    names: Sequence[str],
    out: Path,
    opset: int,
    max_tokens: int,
) -> None:
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=max(max_tokens, 2))
    shapes = {name: {0: batch, 1: sequence} for name in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # axis-naming and pytree deprecation chatter
        program = torch.onnx.export(
            wrapper,
            args,
            dynamo=True,
            opset_version=max(opset, 18),  # the dynamo exporter starts at opset 18
            input_names=list(names),
            output_names=[OUTPUT_NAME],
            dynamic_shapes=shapes,
            verbose=False,
        )
    program.save(str(out), external_data=False)


def _set_metadata(model, config: EncoderConfig) -> None:
    meta = {
        META_MAX_TOKENS: str(config.max_position_embeddings - config.position_offset),
        META_LABELS: json.dumps({str(k): v for k, v in sorted(config.id2label.items())}),
    }
    kept = [p for p in model.metadata_props if p.key not in meta]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def export_onnx(
    model: EncoderClassifier,
    path: Path,
    *,
    opset: int = DEFAULT_OPSET,
    exporter: Exporter = "auto",
) -> Path:
    """Export ``model`` to one ONNX file: int64 inputs with dynamic batch and length → logits.

    Works for structured-pruned models with different heads and FFN widths per layer
    (including layers with no heads or no FFN). The file is checked with
    ``onnx.checker`` and written atomically (staged beside ``path``, then renamed).

    Args:
        model: the classifier; a GPU or half-precision model is exported from a CPU
            fp32 copy; the model itself is left as it was.
        path: the ``.onnx`` file to write; its folder is created if needed.
        opset: ONNX opset (17 for the TorchScript exporter; the dynamo one uses >= 18).
        exporter: "torchscript" (``torch.onnx.export(dynamo=False)``: fast and exact for
            this model), "dynamo" (``torch.export`` + onnxscript), or "auto": TorchScript,
            and dynamo if this PyTorch no longer has the TorchScript exporter.

    Returns:
        ``path``.

    Raises:
        UserError: the model was quantized with PyTorch (export the fp32 model instead).

    Example:
        >>> export_onnx(model, Path("out/model.onnx"))  # doctest: +SKIP
        PosixPath('out/model.onnx')
    """
    import onnx

    if exporter not in ("auto", "torchscript", "dynamo"):
        raise ValueError(f"exporter must be auto, torchscript or dynamo, not {exporter!r}")
    path = Path(path)
    source = _exportable(model)
    config = source.config
    names = onnx_input_names(config)
    args = _example_inputs(config)
    was_training = source.training
    source.eval()
    wrapper = _LogitsOnly(source).eval()
    attention = [m for m in source.modules() if isinstance(m, SelfAttention)]
    for module in attention:
        module.fusable_export = True
    try:
        with atomic_file(path) as tmp, torch.no_grad():
            if exporter in ("auto", "torchscript"):
                try:
                    _torchscript_export(wrapper, args, names, tmp, opset)
                except Exception as exc:
                    if exporter == "torchscript":
                        raise
                    logger.warning(
                        "TorchScript ONNX export failed (%s); using the dynamo exporter.", exc
                    )
                    exporter = "dynamo"
            if exporter == "dynamo":
                limit = config.max_position_embeddings - config.position_offset
                _dynamo_export(wrapper, args, names, tmp, opset, limit)
            proto = onnx.load(str(tmp))
            _set_metadata(proto, config)
            onnx.checker.check_model(proto, full_check=True)
            onnx.save(proto, str(tmp))
    finally:
        source.train(was_training)
        for module in attention:
            module.fusable_export = False
    return path


def optimize_onnx(path: Path) -> dict[str, int]:
    """Fuse ``path`` in place with ONNX Runtime's BERT optimizer; the fused operators.

    Attention, skip + LayerNorm and bias + GELU become single operators. A model the
    optimizer cannot handle is left as it was (it still runs, only unfused).
    """
    from onnxruntime.transformers.optimizer import optimize_model

    path = Path(path)
    try:
        with warnings.catch_warnings(), _quiet_quantizer():
            warnings.simplefilter("ignore")
            # num_heads / hidden_size 0: read from each layer's own reshape, because a
            # structured-pruned model has a different head count per layer.
            optimized = optimize_model(str(path), model_type="bert", num_heads=0, hidden_size=0)
            with atomic_file(path) as tmp:
                optimized.save_model_to_file(str(tmp))
    except Exception as exc:  # the optimizer is an optimisation, never a failure
        logger.warning("ONNX Runtime's optimizer left %s unfused: %s", path.name, exc)
        return {}
    fused = optimized.get_fused_operator_statistics()
    return {op: int(n) for op, n in fused.items() if n}


# --------------------------------------------------------------------------- variants


@dataclass
class OnnxVariantInfo:
    """What :func:`export_and_quantize` wrote, for reports (``slimpajama.json``)."""

    path: Path
    quantized: bool
    per_channel: bool | None  # None when not quantized
    size_bytes: int
    fp32_size_bytes: int
    opset: int
    versions: str
    #: Bits of the int8 activations (None for fp32). 8 for ONNX Runtime's own int8 and
    #: for PyTorch int8 exported on VNNI or ARM; 7 when exported where PyTorch uses 7.
    activation_bits: int | None = None
    #: For a PyTorch int8 export: the int8 path it reproduces (``Int8Path.to_dict``).
    int8_path: dict | None = None
    #: Bits of the stored word-embedding table: 4 or 8 when quantized, None in fp32.
    embedding_bits: int | None = None
    #: True when ONNX Runtime on the exporting machine clips this file's 8-bit products
    #: (x86 without VNNI; :mod:`~slimpajama_gui.core.techniques.ort_int8_kernels`), so the
    #: figures measured with it there are those of the clipped products.
    ort_saturates: bool = False

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


def _versions() -> str:
    import onnx
    import onnxruntime

    return (
        f"torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}"
    )


def export_and_quantize(
    model: EncoderClassifier,
    folder: Path,
    *,
    quantize: bool = True,
    per_channel: bool = True,
    opset: int = DEFAULT_OPSET,
    optimize: bool = True,
    embedding_bits: int = 8,
) -> OnnxVariantInfo:
    """Write ``folder/model.onnx``: the exported model, by default dynamic int8.

    The fp32 export is staged in the same folder and removed afterwards; the folder is
    created if needed.

    Args:
        quantize: dynamic int8 with :func:`quantize_onnx`; False keeps fp32.
        per_channel, embedding_bits: see :func:`quantize_onnx` (ignored for a model
            already quantized in PyTorch, whose embedding rows stay int8).
        optimize: fuse with :func:`optimize_onnx` first (not for PyTorch int8 models).

    A PyTorch ``dynamic_int8`` model is written as the same int8 model, with the
    activation bits PyTorch uses on this machine (:mod:`slimpajama_gui.core.techniques.quantize.int8_path`),
    so the file reproduces what PyTorch computes here; ``quantize`` and ``per_channel``
    are then the model's own.

    Returns:
        Where the file went and how it was made.

    Raises:
        UserError: the model was quantized in PyTorch some other way than dynamic_int8.
    """
    from slimpajama_gui.core.techniques import onnx_int8, ort_int8_kernels
    from slimpajama_gui.core.techniques.quantize import int8_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / ONNX_NAME
    staged = folder / f".{target.stem}.{uuid.uuid4().hex[:8]}.fp32.onnx"
    quantized_in_torch = getattr(model, "quantization", None) is not None
    plan = onnx_int8.plan_int8_export(model) if quantized_in_torch else None
    bits, path_info = (8 if quantize else None), None
    try:
        export_onnx(plan.twin if plan else model, staged, opset=opset)
        fp32_size = staged.stat().st_size
        if plan is None and optimize:
            optimize_onnx(staged)
        if plan is not None:
            path = int8_path.current()
            bits, path_info = path.activation_bits, path.to_dict()
            onnx_int8.export_pytorch_int8(plan, staged, target, bits)
            quantize, per_channel, embedding_bits = True, plan.per_channel, 8
        elif quantize:
            quantize_onnx(staged, target, per_channel=per_channel, embedding_bits=embedding_bits)
        else:
            with atomic_file(target) as tmp:
                os.replace(staged, tmp)
    finally:
        staged.unlink(missing_ok=True)
    saturates = bits == 8 and ort_int8_kernels.saturates_8bit_products()
    return OnnxVariantInfo(
        path=target,
        quantized=quantize,
        per_channel=per_channel if quantize else None,
        size_bytes=target.stat().st_size,
        fp32_size_bytes=fp32_size,
        opset=opset,
        versions=_versions(),
        activation_bits=bits,
        int8_path=path_info,
        embedding_bits=embedding_bits if quantize else None,
        ort_saturates=saturates,
    )


def save_onnx_variant(
    model: EncoderClassifier,
    tokenizer_src: Path,
    folder: Path,
    *,
    quantized: bool = True,
    per_channel: bool = True,
    embedding_bits: int = 8,
) -> OnnxVariantInfo:
    """Write an ONNX variant into an existing (staging) folder.

    The folder receives ``model.onnx``, the tokenizer files of ``tokenizer_src`` and
    ``config.json`` (our :class:`EncoderConfig`, so the label names travel along). The
    folder as a whole is not written atomically: wrap the call in
    :func:`~slimpajama_gui.core.storage.atomic.atomic_dir`.

    Raises:
        UserError: ``folder`` does not exist.

    Example:
        >>> with atomic_dir(out / "04-onnx") as staging:  # doctest: +SKIP
        ...     info = save_onnx_variant(model, tokenizer_folder, staging, quantized=True)
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder; cannot write the ONNX variant there.")
    info = export_and_quantize(
        model, folder, quantize=quantized, per_channel=per_channel, embedding_bits=embedding_bits
    )
    copy_tokenizer_files(tokenizer_src, folder)
    config = {"model_type": CONFIG_FORMAT, **model.config.to_dict()}
    atomic_write_text(folder / "config.json", json.dumps(config, indent=2) + "\n")
    return info
