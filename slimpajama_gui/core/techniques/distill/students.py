"""Distillation students: a copy of some of the teacher's layers, or a fresh small model.

* :func:`student_from_teacher` keeps some of the teacher's layers (DistilBERT-style):
  embeddings, the chosen layers, pooler and classifier are copied, so the student starts
  close to the teacher and training only has to close the gap the missing layers leave.
* :func:`small_student` builds a fresh, narrower or shallower SlimPajama transformer
  (random weights; the embeddings are copied when the width matches).

Example:
    >>> student = student_from_teacher(teacher, [])  # doctest: +SKIP
    >>> student.distill_layers  # every second layer of a 6-layer teacher
    [1, 3, 5]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.encoder import EncoderClassifier

# In model.shape, not here: the torch-free job plan (a sibling layer) needs it too.
from slimpajama_gui.core.model.shape import default_student_layers

#: Attribute on a student built by :func:`student_from_teacher`: the teacher layers it
#: holds, in order. :class:`DistillLoss` matches student layer i with teacher layer
#: ``distill_layers[i]`` unless told otherwise.
LAYERS_ATTR = "distill_layers"


def _check_student_layers(layers: Sequence[Any], num_layers: int) -> list[int]:
    field = "distill.student_layers"
    out = []
    for value in layers:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{field}: {value!r} is not a layer number; use whole numbers from 0.")
        if not 0 <= value < num_layers:
            raise UserError(
                f"{field}: layer {value} does not exist; the teacher has {num_layers} "
                f"layers, numbered 0 to {num_layers - 1}."
            )
        out.append(value)
    if len(set(out)) != len(out):
        raise UserError(f"{field}: {out} lists a layer twice; name each teacher layer once.")
    if out != sorted(out):
        raise UserError(
            f"{field}: {out} is not in increasing order; layers run in the teacher's order, "
            f"so write {sorted(out)}."
        )
    return out


def student_from_teacher(teacher: EncoderClassifier, layers: Sequence[int]) -> EncoderClassifier:
    """A shallower copy of ``teacher`` that keeps the chosen layers (DistilBERT-style).

    Embeddings, the chosen layers (with their own head counts and FFN widths, so a
    pruned teacher works too), the pooler and the classifier are copied exactly; nothing
    is shared with the teacher. The kept layers are stored on the student as
    ``student.distill_layers`` so :class:`DistillLoss` can match its layers with theirs.

    Args:
        teacher: the fine-tuned model; left unchanged.
        layers: teacher layers to keep, 0-based, in increasing order. Empty: every
            second layer (see :func:`default_student_layers`), e.g. ``[1, 3, 5]`` of 6.

    Returns:
        The student on the teacher's device, in eval mode, with no ``source_path``.

    Raises:
        UserError: a layer number is out of range, repeated or out of order; the
            message names ``distill.student_layers``.

    Example:
        >>> student = student_from_teacher(teacher, [0, 2])  # doctest: +SKIP
        >>> student.config.num_layers, student.distill_layers
        (2, [0, 2])
    """
    n = teacher.config.num_layers
    if n == 0:
        raise UserError(
            "distill.student_layers: the teacher has no encoder layers to build a student from."
        )
    layers = _check_student_layers(layers, n) if layers else default_student_layers(n)
    cfg = teacher.config
    config = replace(
        cfg,
        layer_heads=[cfg.layer_heads[i] for i in layers],
        layer_ffn=[cfg.layer_ffn[i] for i in layers],
    )
    student = EncoderClassifier(config)
    source = teacher.state_dict()
    mapped = {}
    for key in student.state_dict():
        if key.startswith("layers."):
            _, j, rest = key.split(".", 2)
            mapped[key] = source[f"layers.{layers[int(j)]}.{rest}"]
        else:
            mapped[key] = source[key]
    student.load_state_dict(mapped, strict=True)  # copies; the student owns its tensors
    setattr(student, LAYERS_ATTR, list(layers))
    return student.to(_device_of(teacher)).eval()


def small_student(
    teacher: EncoderClassifier,
    num_layers: int,
    hidden_size: int | None = None,
    heads: int | None = None,
    ffn: int | None = None,
    *,
    seed: int | None = None,
) -> EncoderClassifier:
    """A fresh, smaller SlimPajama transformer for ``teacher``'s task (random weights).

    Vocabulary, positions, activation, labels and dropout follow the teacher. When the
    width equals the teacher's, the embeddings (word, position, token type and their
    LayerNorm) are copied, which saves the student from learning them from scratch.

    Args:
        num_layers: encoder layers (>= 1).
        hidden_size: width of the residual stream; default the teacher's.
        heads: attention heads per layer; default keeps the teacher's head width
            (``hidden_size // teacher.config.head_dim``, lowered to a divisor of
            ``hidden_size``). ``hidden_size`` must be a multiple of it.
        ffn: FFN width per layer; default the teacher's FFN/hidden ratio (4 for BERT).
        seed: seeds the random initialisation; None uses torch's current RNG state.

    Raises:
        UserError: a size is not a positive whole number, or the width is not a
            multiple of the heads.
    """
    cfg = teacher.config
    _check_size("num_layers", num_layers, 1)
    hidden = cfg.hidden_size if hidden_size is None else hidden_size
    _check_size("hidden_size", hidden, 1)
    if heads is None:
        heads = max(1, hidden // cfg.head_dim)
        while hidden % heads:
            heads -= 1
    _check_size("heads", heads, 1)
    if hidden % heads:
        raise UserError(
            f"student: hidden_size {hidden} is not a multiple of heads {heads}; pick a "
            "hidden size that the number of heads divides."
        )
    if ffn is None:
        widest = max(cfg.layer_ffn, default=0)
        ffn = max(1, round(hidden * widest / cfg.hidden_size)) if widest else 4 * hidden
    _check_size("ffn", ffn, 0)
    config = replace(
        cfg,
        hidden_size=hidden,
        layer_heads=[heads] * num_layers,
        head_dim=hidden // heads,
        layer_ffn=[ffn] * num_layers,
        has_pooler=True,
    )
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            student = EncoderClassifier(config)
    else:
        student = EncoderClassifier(config)
    if hidden == cfg.hidden_size:
        embeddings = teacher.embeddings.state_dict()
        student.embeddings.load_state_dict(embeddings, strict=True)
    return student.to(_device_of(teacher)).eval()


def _check_size(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"student: {name} must be a whole number >= {minimum}, not {value!r}.")


def evenly_spaced_layers(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer matched with each student layer when the student says nothing.

    Student layer ``i`` (of m) is matched with teacher layer ``(i + 1) * n // m - 1``,
    so the last layers always meet: 3 of 6 gives ``[1, 3, 5]``, 2 of 6 gives ``[2, 5]``.
    """
    m, n = student_layers, teacher_layers
    return [max(0, (i + 1) * n // m - 1) for i in range(m)]


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
