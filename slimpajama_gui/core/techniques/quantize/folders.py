"""Saving and loading quantized model folders, with the integer tensors kept as such.

:func:`save_quantized` writes the integer tensors, scales and zero points to safetensors
(never pickle) and a ``"quantization"`` block (a :class:`~.methods.QuantSpec`) into
``config.json``; :func:`load_quantized` rebuilds the same structure and gives identical
logits. :func:`load_any` opens either kind of folder, float or quantized.

Example:
    >>> save_quantized(result.model, result, staging)  # doctest: +SKIP
    >>> again = load_any(staging)  # doctest: +SKIP
    >>> torch.equal(again(ids).logits, result.model(ids).logits)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.ao.nn.quantized as nnq
import torch.ao.nn.quantized.dynamic as nnqd
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.checkpoints import WEIGHTS_NAME, mismatch_problems, read_config
from slimpajama_gui.core.model.config import CONFIG_FORMAT, EncoderConfig
from slimpajama_gui.core.model.encoder import EncoderClassifier
from slimpajama_gui.core.model.hf_config import specific_label_names
from slimpajama_gui.core.storage.atomic import atomic_write_text
from slimpajama_gui.core.storage.safe_io import load_safetensors, no_weights_error
from slimpajama_gui.core.techniques.quantize import int8_path
from slimpajama_gui.core.techniques.quantize.methods import (
    QUANT_VERSION,
    QuantizedResult,
    QuantSpec,
    _apply,
)
from slimpajama_gui.core.techniques.quantize.modules import _QuantModule, _quiet_torch_ao

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
    problems = mismatch_problems(
        wrong=wrong, missing=missing, unexpected=unexpected, wrong_what="shape or type"
    )
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
    model: EncoderClassifier,
    result_or_method_info: QuantizedResult | QuantSpec | Mapping[str, Any] | None,
    folder: str | Path,
) -> None:
    """Write a quantized model into an existing folder (not atomically).

    The caller stages the folder (``atomic.atomic_dir``) and adds tokenizer files and
    reports. Writes ``model.safetensors`` (integer weights, scales, zero points and
    float tensors; never pickle) and ``config.json`` with the model's EncoderConfig fields
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


def load_quantized(folder: str | Path) -> EncoderClassifier:
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
            "EncoderClassifier.from_pretrained or quantize.load_any."
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
        config = EncoderConfig.from_dict(raw)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from exc
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise no_weights_error(
            folder,
            f"no {WEIGHTS_NAME} in {folder}; a quantized model keeps its weights in one "
            "safetensors file. Copy the folder again.",
        )
    tensors = load_safetensors(weights)
    with torch.random.fork_rng():  # the random init below is thrown away; keep the seed
        model = EncoderClassifier(config)
    try:
        _apply(model, spec)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from exc
    _load_state(model, tensors, weights)
    model.source_path = folder.resolve()
    return model.eval()


def load_any(
    folder: str | Path, num_labels: int | None = None, id2label: dict[int, str] | None = None
) -> EncoderClassifier:
    """Open a float or a quantized model folder, whichever it is.

    Args:
        folder: a Hugging Face BERT/RoBERTa folder, a SlimPajama folder, or one written
            by :func:`save_quantized`.
        num_labels, id2label: as in :meth:`EncoderClassifier.from_pretrained`; a quantized
            model's classifier cannot be replaced, so they must match it.
    """
    folder = Path(folder)
    if not folder.is_dir() or "quantization" not in read_config(folder):
        return EncoderClassifier.from_pretrained(folder, num_labels=num_labels, id2label=id2label)
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
