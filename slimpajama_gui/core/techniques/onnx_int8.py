"""int8 in ONNX: ORT's dynamic quantization of a float export, or PyTorch's own int8.

:func:`quantize_onnx` quantizes an fp32 export with ONNX Runtime's ``quantize_dynamic``.
:func:`export_pytorch_int8` keeps PyTorch's own int8 weights and scales, its uint8
embedding rows and its int8 pooler/classifier, so ONNX Runtime computes the integers
PyTorch computes. Activations are quantized at run time as PyTorch quantizes them on the
machine that exports (:mod:`slimpajama_gui.core.techniques.quantize.int8_path`): with ONNX's
``DynamicQuantizeLinear`` for 8 bits, and with a small subgraph that mirrors PyTorch's
``ChooseQuantizationParams`` for the 7 bits of x86 CPUs without VNNI (``DynamicQuantize
Linear`` only knows 0..255). A 7-bit file gives the same numbers on every CPU: 7-bit
activations cannot saturate the int16 pair sums of AVX2 int8 kernels, in PyTorch or in
ONNX Runtime. The file records its activation bits in its metadata.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.encoder import EncoderClassifier
from slimpajama_gui.core.storage.atomic import atomic_file

logger = logging.getLogger(__name__)

#: Operators quantize_dynamic makes int8: the linear layers ("MatMul"), the fused
#: attention with its query/key/value weights ("Attention") and the embedding tables
#: ("Gather": a quarter of their fp32 size, at no measured cost in speed or agreement).
DEFAULT_QUANT_OPS = ("MatMul", "Gather", "Attention")

#: ONNX metadata key: the activation bits of the file's int8 matrix products.
META_ACTIVATION_BITS = "slimpajama.activation_bits"

#: Bits a word-embedding table may be stored in by :func:`quantize_onnx`.
EMBEDDING_BITS = (8, 4)

#: Rows of the 4-bit word-embedding table are split into blocks of this many values, each
#: with its own scale and zero point. Chosen on SST-2 dev (3-layer student, 11,575 rows):
#: blocks of 32 asymmetric kept 88.30 % against 88.19 % for int8 rows; 64 symmetric also
#: 88.30 %, 128 symmetric 87.50 %. The scales add an eighth to the 4-bit table.
EMBEDDING_BLOCK = 32

#: The table 4-bit storage is for; the position and token-type tables are small.
WORD_EMBEDDING_TABLE = "word_embeddings"


@dataclass
class Int8Export:
    """How to write a PyTorch dynamic-int8 model as the same int8 model in ONNX."""

    twin: EncoderClassifier  # float copy holding exactly the dequantized int8 weights
    linears: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # name -> W^T, q^T, scale
    per_channel: bool
    embedding: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # uint8 rows, scale, zero
    embedding_float: np.ndarray | None = None  # the twin's table: (rows - zero) * scale


class _AsMatMul(nn.Module):
    """A linear applied to ``(batch, 1, features)``, so it exports as MatMul, not Gemm.

    The pooler and classifier see 2-D inputs and export as Gemm, which ONNX Runtime's
    dynamic quantizer leaves in float; PyTorch's int8 model has them in int8, and that
    alone moved logits by up to 0.5 on SST-2 dev. As MatMul they get the same int8
    treatment as in PyTorch. Numerically the same layer.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.unsqueeze(-2)).squeeze(-2) if x.dim() == 2 else self.linear(x)


def plan_int8_export(model: EncoderClassifier) -> Int8Export:
    """Split a PyTorch ``dynamic_int8`` model into a float twin and its int8 tensors.

    Raises:
        UserError: the model is quantized some other way (fp16, weight-only, ...).
    """
    import torch.ao.nn.quantized as nnq
    import torch.ao.nn.quantized.dynamic as nnqd

    spec = getattr(model, "quantization", None)
    if spec is None or getattr(spec, "method", None) != "dynamic_int8":
        method = getattr(spec, "method", "?")
        raise UserError(
            f"export: a model quantized with '{method}' in PyTorch has no ONNX form; "
            "export before that quantize step, or quantize with method dynamic_int8 "
            "(or 'backend: onnxruntime')."
        )
    twin = copy.deepcopy(model).cpu().eval()
    twin.quantization = None
    linears: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    embedding = embedding_float = None
    per_channel = True
    for name, module in list(twin.named_modules()):
        parent_name, _, attr = name.rpartition(".")
        parent = twin.get_submodule(parent_name) if parent_name else twin
        if isinstance(module, nnqd.Linear):
            w = module.weight()
            per_channel = w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
            scale = (
                w.q_per_channel_scales().float()
                if per_channel
                else torch.tensor([w.q_scale()], dtype=torch.float32)
            )
            dense = nn.Linear(
                module.in_features, module.out_features, bias=module.bias() is not None
            )
            with torch.no_grad():
                dense.weight.copy_(w.dequantize())
                if module.bias() is not None:
                    dense.bias.copy_(module.bias())
            setattr(parent, attr, dense if name.startswith("layers.") else _AsMatMul(dense))
            linears[name] = (
                dense.weight.detach().numpy().T.copy(),
                np.array(w.int_repr().numpy().T, copy=True),
                np.array(scale.tolist(), dtype=np.float32),
            )
        elif isinstance(module, nnq.Embedding):
            w = module.weight()
            dense = nn.Embedding(module.num_embeddings, module.embedding_dim)
            with torch.no_grad():
                dense.weight.copy_(w.dequantize())
            setattr(parent, attr, dense)
            embedding_float = dense.weight.detach().numpy().copy()
            # Copies: arrays viewing the temporary qparam tensors were read back as garbage.
            embedding = (
                np.array(w.int_repr().numpy(), copy=True),
                np.array(w.q_per_channel_scales().to(torch.float32).tolist(), dtype=np.float32),
                np.array(
                    w.q_per_channel_zero_points().to(torch.float32).tolist(), dtype=np.float32
                ),
            )
    return Int8Export(twin, linears, per_channel, embedding, embedding_float)


def _matmul_weights(graph) -> dict[str, np.ndarray]:
    """MatMul weight initializer name -> its array (the ``[in, out]`` side of a linear)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    found: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in inits:
            found[node.input[1]] = numpy_helper.to_array(inits[node.input[1]])
    return found


def _int8_embedding_graph(path: Path, plan: Int8Export) -> None:
    """Replace the float word-embedding Gather by the int8 rows PyTorch looks up.

    PyTorch keeps each row as uint8 with a float scale and zero point; ONNX Runtime's own
    Gather quantization is per tensor, which would change the numbers. So the table stays
    uint8 and each looked-up row is dequantized in the graph, as PyTorch does.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    q, scale, zero = plan.embedding
    proto = onnx.load(str(path))
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    target = None
    for node in graph.node:
        if node.op_type == "Gather" and node.input[0] in inits:
            table = inits[node.input[0]]
            if tuple(table.dims) == q.shape and np.array_equal(
                numpy_helper.to_array(table), plan.embedding_float
            ):
                target = node
                break
    if target is None:
        raise UserError("export: the int8 word embedding was not found in the exported graph.")
    base = target.input[0]
    graph.initializer.remove(inits[base])
    graph.initializer.extend(
        [
            numpy_helper.from_array(q, f"{base}_uint8"),
            numpy_helper.from_array(scale[:, None].astype(np.float32), f"{base}_row_scale"),
            numpy_helper.from_array(zero[:, None].astype(np.float32), f"{base}_row_zero"),
        ]
    )
    ids, out = target.input[1], target.output[0]
    nodes = [
        helper.make_node("Gather", [f"{base}_uint8", ids], [f"{out}_q"], axis=0),
        helper.make_node("Cast", [f"{out}_q"], [f"{out}_f"], to=TensorProto.FLOAT),
        helper.make_node("Gather", [f"{base}_row_zero", ids], [f"{out}_z"], axis=0),
        helper.make_node("Gather", [f"{base}_row_scale", ids], [f"{out}_s"], axis=0),
        helper.make_node("Sub", [f"{out}_f", f"{out}_z"], [f"{out}_c"]),
        helper.make_node("Mul", [f"{out}_c", f"{out}_s"], [out]),
    ]
    at = list(graph.node).index(target)
    graph.node.remove(target)
    for offset, node in enumerate(nodes):
        graph.node.insert(at + offset, node)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _pytorch_int8_values(path: Path, names: dict[str, str], plan: Int8Export) -> int:
    """Overwrite ONNX Runtime's int8 weights and scales with PyTorch's own; how many.

    quantize_dynamic recomputes the scales from the (dequantized) float weights, which
    can round a few values differently; writing PyTorch's integers and scales back makes
    the ONNX model compute what the PyTorch one does.
    """
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    inits = {i.name: i for i in proto.graph.initializer}
    replaced = 0
    for init_name, module_name in names.items():
        _w, q, scale = plan.linears[module_name]
        quantized, scales = inits.get(f"{init_name}_quantized"), inits.get(f"{init_name}_scale")
        if quantized is None or scales is None or tuple(quantized.dims) != q.shape:
            continue
        scale = scale.astype(np.float32).reshape(tuple(scales.dims))
        quantized.CopyFrom(numpy_helper.from_array(q.astype(np.int8), quantized.name))
        scales.CopyFrom(numpy_helper.from_array(scale, scales.name))
        replaced += 1
    onnx.save(proto, str(path))
    return replaced


def export_pytorch_int8(plan: Int8Export, fp32: Path, target: Path, activation_bits: int) -> None:
    """The fp32 export of ``plan.twin`` → the same int8 model in ONNX, at ``target``.

    Args:
        plan: from :func:`plan_int8_export`.
        fp32: the fp32 export of ``plan.twin`` (edited in place: int8 embedding rows).
        target: the int8 file to write (atomically).
        activation_bits: 8, or 7 to compute as PyTorch does on x86 CPUs without VNNI.
    """
    import onnx

    graph = onnx.load(str(fp32)).graph
    # Which MatMul belongs to which int8 linear: the twin's weights are exactly the
    # dequantized ones, so the exported initializers equal them bit for bit.
    by_shape: dict[tuple[int, ...], list[str]] = {}
    for name, (w, _q, _s) in plan.linears.items():
        by_shape.setdefault(w.shape, []).append(name)
    names: dict[str, str] = {}
    for init_name, array in _matmul_weights(graph).items():
        for module_name in by_shape.get(array.shape, []):
            if np.array_equal(array, plan.linears[module_name][0]):
                names[init_name] = module_name
                break
    float_nodes = [
        n.name
        for n in graph.node
        if n.op_type == "MatMul" and len(n.input) == 2 and n.input[1] not in names
    ]
    if plan.embedding is not None:
        _int8_embedding_graph(fp32, plan)
    with atomic_file(target) as tmp:
        quantize_onnx(
            fp32, tmp, per_channel=plan.per_channel, op_types=("MatMul",), exclude=float_nodes
        )
        replaced = _pytorch_int8_values(tmp, names, plan)
        set_activation_bits(tmp, activation_bits)
    if replaced != len(plan.linears):
        logger.warning(
            "ONNX export of the int8 model: %d of %d linears carry PyTorch's exact int8 "
            "weights; the others were re-quantized by onnxruntime.",
            replaced,
            len(plan.linears),
        )


def set_activation_bits(path: Path, bits: int) -> int:
    """Make every ``DynamicQuantizeLinear`` of ``path`` quantize to ``bits`` bits; how many.

    8 keeps ONNX's operator (0..255). 7 replaces each by the same computation for
    0..127, following PyTorch's ``quant_utils::ChooseQuantizationParams`` (fbgemm's
    dynamic Linear): range widened to hold 0, scale = (max - min) / 127 (0.1 for an
    all-zero input, at least 6.1e-5 with the range scaled to match), and the zero point
    taken from whichever end has the smaller rounding error, rounded half to even and
    clamped. Either way the bit count is recorded in the metadata
    (:data:`META_ACTIVATION_BITS`).

    Raises:
        ValueError: ``bits`` is not 7 or 8.
    """
    import onnx
    from onnx import numpy_helper

    if bits not in (7, 8):
        raise ValueError(f"activation bits must be 7 or 8, not {bits!r}")
    proto = onnx.load(str(path))
    graph = proto.graph
    nodes = [n for n in graph.node if n.op_type == "DynamicQuantizeLinear"]
    if bits == 7 and nodes:
        qmax = float((1 << bits) - 1)
        consts = {
            "zero": 0.0, "qmax": qmax, "fallback": 0.1, "smallest": 6.1e-5,
        }  # fmt: skip
        graph.initializer.extend(
            numpy_helper.from_array(np.array(v, dtype=np.float32), f"act{bits}_{k}")
            for k, v in consts.items()
        )
        c = {k: f"act{bits}_{k}" for k in consts}
        for node in nodes:
            steps = _quantize_nodes(node, c)
            at = list(graph.node).index(node)
            graph.node.remove(node)
            for offset, new in enumerate(steps):
                graph.node.insert(at + offset, new)
    kept = [m for m in proto.metadata_props if m.key != META_ACTIVATION_BITS]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    proto.metadata_props.append(
        onnx.StringStringEntryProto(key=META_ACTIVATION_BITS, value=str(bits))
    )
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return len(nodes)


def _quantize_nodes(node, c: dict[str, str]) -> list:
    """The nodes replacing one ``DynamicQuantizeLinear``; ``c`` names the constants."""
    from onnx import TensorProto, helper

    x = node.input[0]
    q, scale, zero = node.output
    prefix = f"{node.name or x}_act"
    steps = []

    def add(kind: str, inputs: list[str], suffix: str, **attrs) -> str:
        out = f"{prefix}_{suffix}"
        steps.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    lo = add("Min", [add("ReduceMin", [x], "rmin", keepdims=0), c["zero"]], "min")
    hi = add("Max", [add("ReduceMax", [x], "rmax", keepdims=0), c["zero"]], "max")
    raw = add("Div", [add("Sub", [hi, lo], "range"), c["qmax"]], "raw")
    nonzero = add("Where", [add("Equal", [raw, c["zero"]], "is0"), c["fallback"], raw], "s0")
    s = add("Max", [nonzero, c["smallest"]], "s")
    grow = add("Div", [s, nonzero], "grow")  # 1 unless the scale was raised
    r_lo = add("Div", [add("Mul", [lo, grow], "lo2"), s], "rlo")
    r_hi = add("Div", [add("Mul", [hi, grow], "hi2"), s], "rhi")
    from_lo = add("Neg", [r_lo], "zlo")  # qmin - lo / s, with qmin = 0
    from_hi = add("Sub", [c["qmax"], r_hi], "zhi")
    err_lo = add("Neg", [add("Abs", [r_lo], "alo")], "elo")
    err_hi = add("Sub", [c["qmax"], add("Abs", [r_hi], "ahi")], "ehi")
    z = add("Where", [add("Less", [err_lo, err_hi], "pick"), from_lo, from_hi], "z")
    z = add("Clip", [add("Round", [z], "zr"), c["zero"], c["qmax"]], "zc")
    steps.append(helper.make_node("Cast", [z], [zero], to=TensorProto.UINT8))
    steps.append(helper.make_node("Identity", [s], [scale]))
    steps.append(helper.make_node("QuantizeLinear", [x, scale, zero], [q]))
    return steps


# --------------------------------------------------------------------------- quantize


def quantize_onnx(
    src: Path,
    dst: Path,
    *,
    per_channel: bool = True,
    reduce_range: bool = False,
    op_types: Sequence[str] = DEFAULT_QUANT_OPS,
    exclude: Sequence[str] = (),
    embedding_bits: int = 8,
) -> Path:
    """Dynamic int8 quantization of an fp32 ONNX classifier (``quantize_dynamic``).

    Weights become QInt8, symmetric; activations are quantized on the fly at run time.
    Nodes whose weights are empty (a pruned-away branch) stay fp32; they cost nothing.
    With ``embedding_bits=4`` the word-embedding table is stored in 4 bits instead
    (ONNX Runtime's block-wise weight-only quantizer, looked up as packed bytes; blocks of
    :data:`EMBEDDING_BLOCK` values along the hidden size, asymmetric): in a 3-layer
    student the table is over half of the int8 file, and 4 bits halve it.

    Args:
        src: an fp32 file from :func:`export_onnx`.
        dst: where the int8 file goes (written atomically; may equal ``src``).
        per_channel: one scale per output channel. Per tensor is no faster on x86 and,
            on MiniLM fine-tuned for SST-2, flipped 4x as many predictions (42 of 872
            against 11; -1.4 accuracy points against -0.1).
        reduce_range: 7-bit weights; only for x86 CPUs without VNNI (before ~2019),
            where 8-bit weights can saturate the int8 multiply-add. With VNNI it only
            costs accuracy (19 flips against 11 above).
        op_types: operators to quantize; see :data:`DEFAULT_QUANT_OPS`.
        exclude: names of nodes to keep in fp32.
        embedding_bits: 8, or 4 for the word-embedding table (see above).

    Returns:
        ``dst``.

    Raises:
        UserError: ``src`` does not exist, ``embedding_bits`` is not 8 or 4, or 4 bits
            were asked and the file has no word-embedding lookup to store in 4 bits.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise UserError(f"{src} not found; export the model to ONNX first.")
    if embedding_bits not in EMBEDDING_BITS:
        raise UserError(f"embedding_bits: 8 or 4, got {embedding_bits!r}.")
    word_lookup = _word_embedding_lookup(src) if embedding_bits == 4 else None
    if embedding_bits == 4 and word_lookup is None:
        raise UserError(
            f"embedding_bits: {src.name} has no word-embedding lookup (a Gather reading "
            f"a '{WORD_EMBEDDING_TABLE}' table) to store in 4 bits; use embedding_bits 8."
        )
    if word_lookup is not None:
        exclude = [*exclude, word_lookup]
    with atomic_file(dst) as tmp:
        with warnings.catch_warnings(), _quiet_quantizer():
            warnings.simplefilter("ignore")
            quantize_dynamic(
                src,
                tmp,
                op_types_to_quantize=list(op_types),
                per_channel=per_channel,
                reduce_range=reduce_range,
                weight_type=QuantType.QInt8,
                # The quantizer cannot scale an empty weight (0 heads, FFN width 0).
                nodes_to_exclude=[*_nodes_with_empty_weights(src), *exclude],
                # Fused contrib operators have no ONNX type inference; their outputs
                # are float (quantize_dynamic's own error message asks for this).
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
            if word_lookup is not None:
                _embedding_to_4_bits(tmp, word_lookup)
        _copy_metadata(src, tmp)
    return dst


def _word_embedding_lookup(path: Path) -> str | None:
    """The name of the Gather node that reads the word-embedding table, if there is one."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    tables = {i.name for i in graph.initializer if len(i.dims) == 2}
    for node in graph.node:
        if (
            node.op_type == "Gather"
            and node.input[0] in tables
            and WORD_EMBEDDING_TABLE in node.input[0]
        ):
            return node.name
    return None


def _embedding_to_4_bits(path: Path, node_name: str) -> None:
    """Rewrite ``path`` in place with node ``node_name``'s table in 4 bits.

    ONNX Runtime's weight-only quantizer does this (opset 21 and IR 10 for the int4
    type); every other Gather is excluded so that only the word embeddings change.
    """
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    model = onnx.load(str(path))
    others = [n.name for n in model.graph.node if n.op_type == "Gather" and n.name != node_name]
    config = DefaultWeightOnlyQuantConfig(
        block_size=EMBEDDING_BLOCK, is_symmetric=False, bits=4,
        op_types_to_quantize=("Gather",), quant_axes=(("Gather", 1),),
    )  # fmt: skip
    quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=others, algo_config=config)
    with _quiet_quantizer(), _quiet_logger("onnxruntime.quantization.matmul_nbits_quantizer"):
        quantizer.process()
    model = quantizer.model.model
    _unpack_in_graph(model)
    onnx.save(model, str(path))


def _two_a_byte(values: np.ndarray, width: int) -> np.ndarray:
    """Rows of 4-bit values (0-15), zero-padded to ``width`` (even), two a byte.

    Byte ``j`` holds value ``j`` in its low nibble and value ``j + width/2`` in its high
    one, so unpacking the lows, then the highs, and concatenating gives the row back.
    Returns uint8 of shape (rows, width / 2).
    """
    v = np.pad(values.astype(np.int32), ((0, 0), (0, width - values.shape[1])))
    return (v[:, : width // 2] | (v[:, width // 2 :] << 4)).astype(np.uint8)


def _unpack_in_graph(model) -> None:
    """Replace the ``GatherBlockQuantized`` lookup with a Gather of packed bytes + unpack.

    The values, blocks and zero points stay those ONNX Runtime's quantizer chose; only
    the lookup changes. Why not its ``GatherBlockQuantized``: in ONNX Runtime 1.32 it
    took 63-71 µs for 24 ids of a 13,394 x 384 table on this project's 2-core CPU,
    whatever the block size, sign or zero points, against 15 µs for this subgraph and
    6 µs for an int8 Gather — a tenth of a 4-layer student's 0.6 ms at batch 1.

    Layout: byte ``j`` of a row holds value ``j`` in its low nibble and value
    ``j + P/2`` in its high one (``P``: the row padded to whole blocks), so the unpacked
    halves concatenate back in order. Per block the quantizer's float32 scale and its
    4-bit zero point, packed the same way (block ``b`` low, block ``b + B/2`` high, ``B``
    blocks padded to even): ``value = (q - zero_point) * scale``, the rows
    ``GatherBlockQuantized`` gives, bit for bit. Packing the zero points saves half a
    byte a block (89 KB on a 14,813-row table); float16 scales would save 0.3 MB more,
    but they change the values and moved int8 activations enough to flip sentences.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    node = next(n for n in graph.node if n.op_type == "GatherBlockQuantized")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    block = int(attrs.get("block_size", EMBEDDING_BLOCK))
    inits = {t.name: t for t in graph.initializer}
    data_name, ids, scale_name = node.input[0], node.input[1], node.input[2]
    zp_name = node.input[3] if len(node.input) > 3 and node.input[3] else None
    q = numpy_helper.to_array(inits[data_name]).astype(np.int32)  # (V, D), 0..15
    scales = numpy_helper.to_array(inits[scale_name]).astype(np.float32)  # (V, blocks)
    if zp_name is not None:
        zero = numpy_helper.to_array(inits[zp_name]).astype(np.float32)
    else:  # uint4 without zero points is centred on 8
        zero = np.full_like(scales, 8.0)
    rows, width = q.shape
    blocks = scales.shape[1]
    padded = blocks * block
    packed = _two_a_byte(q, padded)
    zero_packed = _two_a_byte(zero, blocks + blocks % 2)
    base = data_name.removesuffix("_Q4")
    names = {
        "packed": f"{base}_Q4packed",
        "scales": f"{base}_scales",
        "zero": f"{base}_zero_points",
    }
    for name in (data_name, scale_name, zp_name):
        if name is not None:
            graph.initializer.remove(inits[name])
    out = node.output[0]
    p = f"{node.name or base}_unpack"
    constants = {
        f"{base}_Q4shift": np.array(4, np.uint8),  # not parameters (onnx_parameters)
        f"{base}_Q4mask": np.array(15, np.uint8),
        f"{p}_blocks": np.array([0, 0, blocks, block], np.int64),
        f"{p}_row": np.array([0, 0, padded], np.int64),
        f"{p}_zaxis": np.array([-1], np.int64),
        f"{p}_zstart": np.array([0], np.int64),
        f"{p}_zend": np.array([blocks], np.int64),
    }
    graph.initializer.extend(
        [
            numpy_helper.from_array(packed, names["packed"]),
            numpy_helper.from_array(scales[:, :, None], names["scales"]),
            numpy_helper.from_array(zero_packed, names["zero"]),
            *(numpy_helper.from_array(v, k) for k, v in constants.items()),
        ]
    )
    row = f"{p}_values" if padded != width else out

    def unpacked(table: str, tag: str) -> list:
        """Gather ``table``'s rows (two values a byte) and lay out low nibbles, then high."""
        raw, lo, hi = f"{p}_{tag}bytes", f"{p}_{tag}lo", f"{p}_{tag}hi"
        return [
            helper.make_node("Gather", [table, ids], [raw], name=f"{p}_{tag}gather"),
            helper.make_node("BitwiseAnd", [raw, f"{base}_Q4mask"], [lo], name=lo),
            helper.make_node(
                "BitShift", [raw, f"{base}_Q4shift"], [hi], direction="RIGHT", name=hi
            ),
            helper.make_node("Concat", [lo, hi], [f"{p}_{tag}all"], axis=-1, name=f"{p}_{tag}cat"),
        ]

    nodes = [
        *unpacked(names["packed"], "q"),
        helper.make_node(
            "Cast", [f"{p}_qall"], [f"{p}_qf"], to=TensorProto.FLOAT, name=f"{p}_cast"
        ),
        helper.make_node("Reshape", [f"{p}_qf", f"{p}_blocks"], [f"{p}_qb"], name=f"{p}_blk"),
        *unpacked(names["zero"], "z"),
        helper.make_node(
            "Slice",
            [f"{p}_zall", f"{p}_zstart", f"{p}_zend", f"{p}_zaxis"],
            [f"{p}_z8"],
            name=f"{p}_zslice",
        ),
        helper.make_node("Unsqueeze", [f"{p}_z8", f"{p}_zaxis"], [f"{p}_z8b"], name=f"{p}_zun"),
        helper.make_node("Cast", [f"{p}_z8b"], [f"{p}_z"], to=TensorProto.FLOAT, name=f"{p}_cz"),
        helper.make_node("Sub", [f"{p}_qb", f"{p}_z"], [f"{p}_centred"], name=f"{p}_sub"),
        helper.make_node("Gather", [names["scales"], ids], [f"{p}_s"], name=f"{p}_gs"),
        helper.make_node("Mul", [f"{p}_centred", f"{p}_s"], [f"{p}_deq"], name=f"{p}_mul"),
        helper.make_node("Reshape", [f"{p}_deq", f"{p}_row"], [row], name=f"{p}_reshape"),
    ]
    if padded != width:
        # onnx_parameters reads the row width from this name (the rest is padding).
        starts, ends = f"{p}_start", f"{base}_Q4width"
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array([0], np.int64), starts),
                numpy_helper.from_array(np.array([width], np.int64), ends),
                numpy_helper.from_array(np.array([-1], np.int64), f"{p}_axis"),
            ]
        )
        nodes.append(
            helper.make_node("Slice", [row, starts, ends, f"{p}_axis"], [out], name=f"{p}_slice")
        )
    at = list(graph.node).index(node)
    graph.node.remove(node)
    for offset, new in enumerate(nodes):
        graph.node.insert(at + offset, new)
    onnx.checker.check_model(model)


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    # The weight-only quantizer logs every node it skips (INFO) and that it raises the
    # opset to 21 for int4 (WARNING): notes for people writing quantization scripts.
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


class _FromOnnxRuntime(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return f"{os.sep}onnxruntime{os.sep}" not in record.pathname


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    # quantize_dynamic logs advice on pre-processing straight to the root logger; it is
    # for people writing quantization scripts, not for our users.
    quiet = _FromOnnxRuntime()
    logging.root.addFilter(quiet)
    try:
        yield
    finally:
        logging.root.removeFilter(quiet)


def _nodes_with_empty_weights(path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(path)).graph
    empty = {i.name for i in graph.initializer if 0 in i.dims}
    return [n.name for n in graph.node if any(name in empty for name in n.input)]


def _copy_metadata(src: Path, dst: Path) -> None:
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    model = onnx.load(str(dst))
    have = {p.key for p in model.metadata_props}
    missing = {k: v for k, v in meta.items() if k not in have}
    if missing:
        model.metadata_props.extend(
            onnx.StringStringEntryProto(key=k, value=v) for k, v in missing.items()
        )
        onnx.save(model, str(dst))
