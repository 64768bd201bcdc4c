"""Knowledge distillation: smaller students learn from a fine-tuned teacher.

Three modules: :mod:`.students` builds a student (some of the teacher's layers, or a
fresh small model), :mod:`.loss` is :class:`DistillLoss` (label loss, logit KD, hidden
states, attention maps), and :mod:`.run` has :func:`distill`, which trains a student
with that loss through the pipeline's ``fit`` (and caches the teacher's logits when
they fit in memory). Their public names are gathered here.

Example:
    >>> student = student_from_teacher(teacher, [])  # doctest: +SKIP
    >>> result = distill(student, teacher, fit, epochs=3, hidden_mse=1.0)  # doctest: +SKIP
    >>> result.best_metric
    0.9
"""

from slimpajama_gui.core.techniques.distill.loss import PROJECTION_ATTR, Batch, DistillLoss
from slimpajama_gui.core.techniques.distill.run import (
    CACHE_BUDGET_BYTES,
    CACHE_ROW_OVERHEAD_BYTES,
    FitFn,
    cache_teacher_logits,
    distill,
    fits_in_memory,
)
from slimpajama_gui.core.techniques.distill.students import (
    LAYERS_ATTR,
    default_student_layers,
    evenly_spaced_layers,
    small_student,
    student_from_teacher,
)

__all__ = [
    "CACHE_BUDGET_BYTES",
    "CACHE_ROW_OVERHEAD_BYTES",
    "LAYERS_ATTR",
    "PROJECTION_ATTR",
    "Batch",
    "DistillLoss",
    "FitFn",
    "cache_teacher_logits",
    "default_student_layers",
    "distill",
    "evenly_spaced_layers",
    "fits_in_memory",
    "small_student",
    "student_from_teacher",
]
