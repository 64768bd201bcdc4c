"""Pre-flight: can this source model go through this chain? Answered before Run.

A variant saved as ONNX, or already quantized in PyTorch, holds no float weights to
train, prune or quantize again; a chain that asks for that used to fail in its first
step (with an internal error). The wizard's review page and ``pipeline.run`` both ask
here first, from the model's header information only (no torch, safe on the GUI thread).
"""

from __future__ import annotations

from collections.abc import Sequence

from slimpajama_gui.core.model.inspection import ONNX_FILE, ModelInfo
from slimpajama_gui.core.plan.steps import Step

#: The safetensors dtypes of weights that can be trained, pruned and quantized.
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")

#: Steps each kind of non-float source can go through. An ONNX model runs only in
#: ONNX Runtime; a PyTorch int8 model can also be exported (the export step says which
#: quantized formats ONNX takes).
STEPS_ON = {
    "onnx": ("evaluate", "benchmark"),
    "quantized": ("evaluate", "benchmark", "export"),
}


def weights_kind(info: ModelInfo) -> str:
    """``"float"``, ``"onnx"`` or ``"quantized"``: what a model's weights are."""
    # Float weights carry their safetensors dtype ("F32"); a quantized or ONNX variant
    # carries its method or format ("dynamic_int8", "fp16", "onnx-int8").
    if info.dtype in FLOAT_DTYPES:
        return "float"
    if "onnx" in info.dtype.lower() or (info.path / ONNX_FILE).is_file():
        return "onnx"
    return "quantized"


def source_problems(info: ModelInfo, steps: Sequence[Step]) -> list[str]:
    """One sentence when ``steps`` ask of the source model what its weights cannot do.

    Returns:
        ``[]`` for a float model, or when every step is one its kind allows.
    """
    kind = weights_kind(info)
    if kind == "float":
        return []
    allowed = STEPS_ON[kind]
    refused = list(dict.fromkeys(s.step_type for s in steps if s.step_type not in allowed))
    if not refused:
        return []
    what = "an ONNX model" if kind == "onnx" else f"already quantized ({info.dtype})"
    return [
        f"{info.name} is {what}: it can only be {_or(allowed)}, not {_or(refused)}. Choose "
        "the float model it was made from as the source (the earlier step of the same job), "
        f"or keep only {_or(allowed, verbs=False)} steps in the chain."
    ]


def _or(names: Sequence[str], *, verbs: bool = True) -> str:
    """``a``, ``a or b``, ``a, b or c``; step types as participles when ``verbs``."""
    words = [_DONE.get(n, n) for n in names] if verbs else list(names)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


_DONE = {
    "evaluate": "evaluated",
    "benchmark": "benchmarked",
    "export": "exported",
    "finetune": "fine-tuned",
    "distill": "distilled",
    "prune": "pruned",
    "quantize": "quantized",
}

__all__ = ["FLOAT_DTYPES", "STEPS_ON", "source_problems", "weights_kind"]
