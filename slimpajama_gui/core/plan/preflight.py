"""Pre-flight: can this source model go through this chain, with these labels? Answered
before Run.

A variant saved as ONNX, or already quantized in PyTorch, holds no float weights to
train, prune or quantize again; a chain that asks for that used to fail in its first
step (with an internal error). A model whose classifier was trained for other classes
than the data's (``bad``/``good`` against ``negative``/``positive``) gets a new,
untrained head when it loads; a chain that uses the head before training it would
measure noise. The wizard (through the Draft and its review page) and ``pipeline.run``
both ask here first, from the model's header information only (no torch, safe on the
GUI thread).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from slimpajama_gui.core.model.inspection import ONNX_FILE, ModelInfo
from slimpajama_gui.core.plan.steps import Prune, Step
from slimpajama_gui.core.storage.variant import VariantRecord

#: The safetensors dtypes of weights that can be trained, pruned and quantized.
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")

#: Steps each kind of non-float source can go through. An ONNX model runs only in
#: ONNX Runtime; a PyTorch int8 model can also be exported (the export step says which
#: quantized formats ONNX takes).
STEPS_ON = {
    "onnx": ("evaluate", "benchmark"),
    "static": ("evaluate", "benchmark"),
    "quantized": ("evaluate", "benchmark", "export"),
}


def weights_kind(info: ModelInfo) -> str:
    """``"float"``, ``"onnx"``, ``"static"`` or ``"quantized"``: what a model's weights are."""
    # An ONNX variant is ONNX whatever its record says; float weights carry their
    # safetensors dtype ("F32"); a quantized variant carries its method ("dynamic_int8").
    if "onnx" in info.dtype.lower() or (info.path / ONNX_FILE).is_file():
        return "onnx"
    if info.dtype.startswith("static-"):  # static embeddings (inspection._static_counts)
        return "static"
    if info.dtype in FLOAT_DTYPES:
        return "float"
    return "quantized"


# --------------------------------------------------------------------------- labels


def _key(name: str) -> str:
    return str(name).strip().casefold()


def other_classes(info: ModelInfo | None, labels: Sequence[str] | None) -> bool:
    """Whether ``info``'s head was trained for other named classes than ``labels``.

    Names are compared as sets, without case or surrounding spaces: the same names in
    another order are the same classes (the job numbers the data as the head does). A
    head with placeholder names (``LABEL_0``) or of another size is not "other classes"
    here; :func:`head_reason` tells those apart.
    """
    if info is None or not labels or info.label_names is None:
        return False
    if len(info.label_names) != len(labels):
        return False
    return sorted(map(_key, info.label_names)) != sorted(map(_key, labels))


def head_reason(info: ModelInfo | None, labels: int | Sequence[str] | None) -> str | None:
    """Why ``info`` must be fine-tuned on data with ``labels`` (None: its head fits).

    Args:
        info: the source model (None: none chosen, nothing needed).
        labels: the data's label names in id order, or only their number, or None
            before the data is read.

    Returns:
        A clause to follow "the model", e.g. ``"has no classifier head"``.
    """
    if info is None:
        return None
    if info.num_labels is None:
        return "has no classifier head"
    names = None if labels is None or isinstance(labels, int) else list(labels)
    count = len(names) if names is not None else labels
    if count and info.num_labels != count:
        return f"has a {info.num_labels}-class head and the data has {count} labels"
    if names is not None and other_classes(info, names):
        # A head's row i means the class it was trained as id i; mapping "bad" onto
        # "negative" by position would be a guess, so the engine gives these labels a
        # new head (checkpoints.load_pretrained) and fine-tuning must train it.
        return (
            f"'s classifier was trained for {len(names)} labels "
            f"({_quoted(info.label_names or ())}), not for the data's {_quoted(names)}, so it "
            "gets a new head for these labels"
        )
    return None


def _quoted(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(repr(str(n)) for n in list(names)[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


def first_untrained_use(steps: Sequence[Step]) -> str | None:
    """The first step that uses the classifier's outputs before any step trains it,
    e.g. ``"step 1 'distill'"``; None when training comes first (or nothing uses it)."""
    for index, step in enumerate(steps):
        if step.step_type == "finetune":
            return None
        # Static embeddings trained on the labels alone train their own head.
        if step.step_type == "distill_static" and getattr(step, "alpha_kd", 1.0) == 0:
            return None
        # Pruning weights by magnitude or dropping layers needs no labels; recovery then trains.
        if (
            isinstance(step, Prune)
            and step.method in ("magnitude", "layers")
            and step.recovery_epochs > 0
        ):
            return None
        if step.step_type != "benchmark":
            return f"step {index + 1} '{step.step_type}'"
    return None


# --------------------------------------------------------------------------- the check


def source_problems(
    info: ModelInfo, steps: Sequence[Step], labels: Sequence[str] | None = None
) -> list[str]:
    """Sentences saying what ``steps`` (with data labelled ``labels``) ask of the source
    model that it cannot do.

    Args:
        info: the source model's header summary.
        steps: the chain.
        labels: the data's label names in id order; None skips the label checks.

    Returns:
        ``[]`` when the chain can run on this source.
    """
    kind = weights_kind(info)
    out: list[str] = []
    reason = head_reason(info, labels) if labels else None
    if kind == "float" and not other_classes(info, labels):
        # A head of another size is refused later, with the ids that do not fit
        # (inputs.check_job_inputs); a missing head is what fine-tuning is for.
        reason = None
    if kind != "float":
        allowed = STEPS_ON[kind]
        refused = list(dict.fromkeys(s.step_type for s in steps if s.step_type not in allowed))
        what = _kind_words(info, kind)
        parent = _float_ancestor(info.path)
        source = (
            f"choose the float model it was made from ({parent}) as the source"
            if parent is not None
            else "choose the float model it was made from as the source"
        )
        if refused:
            out.append(
                f"{info.name} is {what}: it cannot be {_or(refused)}; keep only "
                f"{_or(allowed, verbs=False)} steps in the chain, or {source}."
            )
        elif reason is not None:
            out.append(
                f"{info.name}{clause(reason)}, and as {what} it cannot be fine-tuned to "
                f"learn it; {source} and start the chain with a finetune step."
            )
        return out
    if reason is not None:
        use = first_untrained_use(steps)
        if use is not None:
            out.append(
                f"{info.name}{clause(reason)}, which {use} would use before any training. "
                "Put a finetune step first."
            )
    return out


def clause(reason: str) -> str:
    """``reason`` after a model's name: ``"X has no head"``, ``"X's classifier ..."``."""
    return reason if reason.startswith("'") else f" {reason}"


def _kind_words(info: ModelInfo, kind: str) -> str:
    if kind == "static":
        return f"a static-embedding model ({info.dtype[len('static-') :]} vectors)"
    if kind == "onnx":
        fmt = info.dtype.lower()
        if "int8" in fmt:
            return "an ONNX int8 model"
        return "an ONNX model"
    return f"an already quantized model ({info.dtype})"


def _float_ancestor(folder: Path, limit: int = 16) -> Path | None:
    """The nearest float model up the variant's parent chain (its records), if any."""
    current = Path(folder)
    for _ in range(limit):
        record = VariantRecord.read_or_none(current)
        if record is None or not record.parent:
            return None
        parent = Path(record.parent)
        if not parent.is_absolute():
            parent = (current.parent / parent).resolve()
        if not parent.is_dir():
            return None
        if not (parent / ONNX_FILE).is_file():
            up = VariantRecord.read_or_none(parent)
            if up is None or up.weights_format == "fp32":
                return parent
        current = parent
    return None


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
    "distill_static": "distilled to static embeddings",
    "prune": "pruned",
    "quantize": "quantized",
    "sensitivity": "measured for sensitivity",
}

__all__ = [
    "FLOAT_DTYPES",
    "STEPS_ON",
    "clause",
    "first_untrained_use",
    "head_reason",
    "other_classes",
    "source_problems",
    "weights_kind",
]
