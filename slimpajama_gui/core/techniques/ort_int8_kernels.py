"""Whether ONNX Runtime's int8 products on this CPU are exact for 8-bit activations.

An int8 ONNX file multiplies uint8 activations by int8 weights (``MatMulInteger`` and
the fused operators ONNX Runtime makes of it). On x86 CPUs without VNNI, ONNX Runtime's
kernels add pairs of those products in a saturating int16 (``vpmaddubsw``), as PyTorch's
fbgemm does there: with activations up to 255 a pair can exceed 32767 and the sum is
clipped. ONNX Runtime documents this ("quantization on x86-64 with AVX2/AVX512: U8S8 may
suffer from saturation", onnxruntime.ai/docs/performance/model-optimizations/
quantization.html). With VNNI, on ARM and for 7-bit activations the products are exact.

So a file with 8-bit activations (ONNX Runtime's own int8, or PyTorch int8 exported on a
VNNI or ARM machine) computes other numbers on such a CPU than where it was made. Its
figures measured there are still what ONNX Runtime computes there; the export records
:func:`saturates_8bit_products` so reports label them. The answer comes from running one
product, not from the CPU's name: ONNX Runtime picks its kernel at run time.

The probe sets up its own minimal session rather than calling
``runtime.onnx_runner.session_options``: ``techniques`` sits below ``runtime`` in the
engine's layers, and one ``MatMulInteger`` needs none of those settings.
"""

from __future__ import annotations

import functools

import numpy as np

#: Depth of the probe product: long enough to hold several pairs whose sum overflows.
_PROBE_K = 64


@functools.cache
def saturates_8bit_products() -> bool:
    """True when ONNX Runtime here clips uint8 x int8 pair sums (x86 without VNNI).

    Runs one ``MatMulInteger`` of activations 255 by weights -128 and 127 (the extremes,
    whose pair sums 2 x 255 x 128 do not fit int16) and compares it with the exact
    integer product. Decided once per process; a few milliseconds.

    Returns:
        False when the product is exact (VNNI, ARM), True when it differs.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weights = np.empty((_PROBE_K, 2), dtype=np.int8)
    weights[:, 0], weights[:, 1] = -128, 127
    activations = np.full((1, _PROBE_K), 255, dtype=np.uint8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "W"], ["Y"])],
        "probe",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [1, _PROBE_K])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [1, 2])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by every onnxruntime the app supports
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    product = session.run(None, {"A": activations})[0]
    exact = activations.astype(np.int64) @ weights.astype(np.int64)
    return not np.array_equal(product, exact)
