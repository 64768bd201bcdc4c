"""Running ONNX variants with ONNX Runtime: the fast CPU backend.

:class:`OrtRunner` runs a ``model.onnx`` with the interface of
:class:`~slimpajama_gui.core.runtime.bench.TorchRunner` (numpy inputs → numpy logits), so
benchmarks, evaluation and the Playground pick a backend by name; :class:`OnnxClassifier`
puts it behind the ``model(input_ids, ...).logits`` call of a PyTorch model.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.checkpoints import read_config
from slimpajama_gui.core.model.config import EncoderConfig
from slimpajama_gui.core.storage.safe_io import resolve_inside
from slimpajama_gui.core.techniques.onnx_export import (
    META_LABELS,
    META_MAX_TOKENS,
    ONNX_NAME,
    OUTPUT_NAME,
)


def is_onnx_variant(folder: Path) -> bool:
    """True if ``folder`` holds an ONNX variant (``model.onnx``)."""
    return (Path(folder) / ONNX_NAME).is_file()


def load_onnx_runner(folder: Path, threads: int = 2) -> OrtRunner:
    """An :class:`OrtRunner` for an ONNX variant folder, with its :class:`EncoderConfig`.

    Raises:
        UserError: no ``model.onnx`` in the folder, or its config or model is unusable.
    """
    folder = Path(folder)
    path = resolve_inside(folder / ONNX_NAME, folder)  # P1: never a file outside the folder
    if not path.is_file():
        raise UserError(
            f"no {ONNX_NAME} in {folder}; choose the folder of an ONNX variant "
            "(or export the model to ONNX first)."
        )
    config = None
    if (folder / "config.json").is_file():
        try:
            config = EncoderConfig.from_dict(read_config(folder))
        except UserError as exc:
            raise UserError(f"{folder / 'config.json'}: {exc}") from exc
    return OrtRunner(path, threads=threads, config=config)


# --------------------------------------------------------------------------- parameters

#: Suffixes of onnxruntime's quantization bookkeeping (a weight's scale and zero point,
#: and the per-block ones of its 4-bit weight-only quantizer): metadata of a parameter,
#: not parameters; and the unpacking constants of a packed 4-bit table.
_QUANT_META = ("_scale", "_zero_point", "_scales", "_zero_points", "_Q4shift", "_Q4mask")


#: Operators that quantize an activation with a scale computed from the whole input
#: tensor at run time (onnxruntime's dynamic int8), before and after its graph fusion.
_DYNAMIC_ACTIVATION_OPS = {"DynamicQuantizeLinear", "DynamicQuantizeMatMul"}


def quantizes_activations_dynamically(path: Path) -> bool:
    """Whether an ONNX file quantizes activations at run time over the whole input.

    Raises:
        UserError: the file cannot be read as ONNX.
    """
    graph = _graph(path, weights=False)
    return any(node.op_type in _DYNAMIC_ACTIVATION_OPS for node in graph.node)


def _graph(path: Path, *, weights: bool):
    """The graph of an ONNX file (with its external weights when ``weights``).

    Raises:
        UserError: the file cannot be read as ONNX.
    """
    import onnx

    try:
        return onnx.load(str(path), load_external_data=weights).graph
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise UserError(f"{path} cannot be read as ONNX ({type(exc).__name__}).") from exc


def onnx_parameters(path: Path) -> tuple[int, int]:
    """(parameters, non-zero parameters) stored in an ONNX file's initializers.

    Counts the elements of every weight initializer (float or 8-bit), so an int8 graph
    has the parameters of the float model it came from: integer shape constants and the
    ``*_scale`` / ``*_zero_point`` tensors of onnxruntime's quantization are not
    parameters. A quantized weight is zero where it equals its zero point. Identical
    tensors the exporter stored once (a random model's LayerNorm ones) count once, as
    the file holds them.

    Raises:
        UserError: the file cannot be read as ONNX.
    """
    import onnx
    from onnx import numpy_helper

    graph = _graph(path, weights=True)
    weights = {
        t.name: t
        for t in graph.initializer
        if t.data_type not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
        and not t.name.endswith(_QUANT_META)
    }
    zero_points = {t.name: t for t in graph.initializer if t.name.endswith("_zero_point")}
    widths = {
        t.name: numpy_helper.to_array(t) for t in graph.initializer if t.name.endswith("_Q4width")
    }
    total = nonzero = 0
    for name, tensor in weights.items():
        values = numpy_helper.to_array(tensor)
        total += values.size
        if tensor.data_type in (onnx.TensorProto.UINT4, onnx.TensorProto.INT4):
            nonzero += values.size  # 4-bit embedding rows: zero only per block; dense
            continue
        if name.endswith("_Q4packed"):  # two 4-bit values a byte, rows padded to blocks
            width = widths.get(name.removesuffix("_Q4packed") + "_Q4width")
            count = values.shape[0] * (int(width[0]) if width is not None else 2 * values.shape[1])
            total += count - values.size
            nonzero += count
            continue
        base = name.removesuffix("_quantized")
        zp = zero_points.get(f"{base}_zero_point") or zero_points.get(f"{name}_zero_point")
        zero = numpy_helper.to_array(zp) if zp is not None else 0
        try:
            nonzero += int(np.count_nonzero(values != zero))
        except ValueError:  # a per-channel zero point along an axis that does not broadcast
            nonzero += values.size
    return total, nonzero


# --------------------------------------------------------------------------- runners


def session_options(threads: int):
    """The ``onnxruntime.SessionOptions`` every ONNX timing and prediction uses: ``threads``
    intra-op threads (the pool spins between operators, ONNX Runtime's default), one
    inter-op thread, operators in sequence, every graph optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # its warnings are about graph details, not for users
    return options


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = session_options(threads)
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors derive from Exception only
        if not Path(path).is_file():
            raise UserError(f"{path} not found; export the model to ONNX first.") from exc
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(
            f"ONNX Runtime cannot load {path} ({first_line}); the file is damaged or was "
            "written by a newer exporter. Export the model again."
        ) from exc


class OrtRunner:
    """Runs an ONNX classifier with ONNX Runtime on CPU (numpy inputs → numpy logits).

    Same interface as :class:`~slimpajama_gui.core.runtime.bench.TorchRunner`. Inputs the graph
    does not have are dropped (a tokenizer's ``token_type_ids`` for a model without
    token types); a missing ``attention_mask`` means all tokens are real and missing
    ``token_type_ids`` are zeros, as in PyTorch.

    Args:
        path: the ``.onnx`` file.
        threads: ONNX Runtime intra-op threads (the benchmark's thread count).
        config: the model's config, if known (label names).

    Attributes:
        input_names: the graph's inputs.
        max_tokens: the longest input the position table allows, from the file's
            metadata (None for files not written by :func:`export_onnx`).
        id2label: label names by id.
    """

    name = "onnxruntime"

    def __init__(self, path: Path, threads: int = 2, config: EncoderConfig | None = None) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise UserError(f"threads must be a whole number >= 1, not {threads!r}.")
        self.path = Path(path)
        self.threads = threads
        self.config = config
        self.session = _session(self.path, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        meta = self.session.get_modelmeta().custom_metadata_map
        self.max_tokens = int(meta[META_MAX_TOKENS]) if META_MAX_TOKENS in meta else None
        if config is not None:
            self.id2label = dict(config.id2label)
        elif META_LABELS in meta:
            self.id2label = {int(k): v for k, v in json.loads(meta[META_LABELS]).items()}
        else:
            self.id2label = {}

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        ids = np.asarray(inputs["input_ids"])
        if self.max_tokens is not None and ids.shape[-1] > self.max_tokens:
            raise UserError(
                f"the input has {ids.shape[-1]} tokens but this model reads at most "
                f"{self.max_tokens}; truncate the text (tokenizer max_length)."
            )
        feed: dict[str, np.ndarray] = {}
        for name in self.input_names:
            if name in inputs:
                feed[name] = np.ascontiguousarray(inputs[name], dtype=np.int64)
            elif name == "attention_mask":
                feed[name] = np.ones(ids.shape, dtype=np.int64)
            elif name == "token_type_ids":
                feed[name] = np.zeros(ids.shape, dtype=np.int64)
            else:
                raise UserError(f"{self.path} needs an input {name!r} that was not given.")
        return self.session.run([OUTPUT_NAME], feed)[0]

    def parameters(self) -> tuple[int, int]:
        """(parameters, non-zero parameters) of the graph, from its initializers
        (:func:`onnx_parameters`)."""
        return onnx_parameters(self.path)

    @functools.cached_property
    def dynamic_activations(self) -> bool:
        """Whether a row's logits depend on the other rows of its batch (dynamic int8:
        :func:`quantizes_activations_dynamically`); read from the file once."""
        return quantizes_activations_dynamically(self.path)


@dataclass
class OnnxOutput:
    """The part of :class:`~slimpajama_gui.core.model.encoder.ClassifierOutput` ONNX gives."""

    logits: torch.Tensor  # (B, num_labels)


class OnnxClassifier(nn.Module):
    """An :class:`OrtRunner` behind the ``model(input_ids, attention_mask, ...)`` call.

    So code written for an :class:`EncoderClassifier` that only needs ``.logits`` — such as
    ``evaluate.predict`` — runs an ONNX variant unchanged. It holds one empty parameter
    because ``predict`` reads the device from the first parameter.

    Example:
        >>> preds = predict(OnnxClassifier(load_onnx_runner(folder)), batches)  # doctest: +SKIP
    """

    def __init__(self, runner: OrtRunner) -> None:
        super().__init__()
        self.runner = runner
        self.config = runner.config
        self.device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    @property
    def batch_dependent(self) -> bool:
        """See :func:`slimpajama_gui.core.runtime.evaluate.batch_dependent`."""
        return self.runner.dynamic_activations

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **_: object,
    ) -> OnnxOutput:
        inputs = {"input_ids": input_ids.detach().cpu().numpy()}
        if attention_mask is not None:
            inputs["attention_mask"] = attention_mask.detach().cpu().numpy()
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids.detach().cpu().numpy()
        return OnnxOutput(logits=torch.from_numpy(self.runner(inputs)))
