"""Knowledge distillation: smaller students learn from a fine-tuned teacher.

Two ways to get a student:

* :func:`student_from_teacher` keeps some of the teacher's layers (DistilBERT-style):
  embeddings, the chosen layers, pooler and classifier are copied, so the student starts
  close to the teacher and training only has to close the gap the missing layers leave.
* :func:`small_student` builds a fresh, narrower or shallower SlimPajama transformer
  (random weights; the embeddings are copied when the width matches).

:class:`DistillLoss` is a ``train.LossFn``: it mixes the label loss with logit KD and,
optionally, hidden-state and attention-map matching, and reports every term so the
charts can draw each one. :func:`distill` puts it together with the pipeline's ``fit``.

Example:
    >>> student = student_from_teacher(teacher, [])  # doctest: +SKIP
    >>> student.distill_layers  # every second layer of a 6-layer teacher
    [1, 3, 5]
    >>> result = distill(student, teacher, fit, epochs=3, hidden_mse=1.0)  # doctest: +SKIP
    >>> result.best_metric
    0.9

A pipeline handler, in outline::

    student = student_from_teacher(ctx.model, step.student_layers)
    result = distill(student, ctx.model, fit, temperature=step.temperature,
                     alpha_kd=step.alpha_kd, hidden_mse=step.hidden_mse,
                     attention_mse=step.attention_mse, epochs=step.epochs,
                     train_batches_for_cache=cache_batches, control=ctx.control)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.encoder import SlimPajamaModel

# In model.shape, not here: the torch-free job plan (a sibling layer) needs it too.
from slimpajama_gui.core.model.shape import default_student_layers
from slimpajama_gui.core.techniques.train import Callbacks, Control, TrainResult

log = logging.getLogger(__name__)

Batch = Mapping[str, torch.Tensor]
#: ``fit(model, epochs, loss_fn=None, callbacks=()) -> TrainResult``, from the pipeline.
FitFn = Callable[..., TrainResult]

#: Attribute on a student built by :func:`student_from_teacher`: the teacher layers it
#: holds, in order. :class:`DistillLoss` matches student layer i with teacher layer
#: ``distill_layers[i]`` unless told otherwise.
LAYERS_ATTR = "distill_layers"
#: Name of the learned projection (student width -> teacher width) that
#: :meth:`DistillLoss.attach` registers on a narrower student for the hidden-state loss.
PROJECTION_ATTR = "distill_projection"

#: Teacher-logit caches larger than this are not built (see :func:`fits_in_memory`).
CACHE_BUDGET_BYTES = 512 * 2**20
#: Bytes a cache entry costs besides its logits: the dict slot, the int key and the
#: tensor object. Measured at ~650 bytes on CPython 3 / torch 2; rounded up.
CACHE_ROW_OVERHEAD_BYTES = 1024


# --------------------------------------------------------------------------- students


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


def student_from_teacher(teacher: SlimPajamaModel, layers: Sequence[int]) -> SlimPajamaModel:
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
    student = SlimPajamaModel(config)
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
    teacher: SlimPajamaModel,
    num_layers: int,
    hidden_size: int | None = None,
    heads: int | None = None,
    ffn: int | None = None,
    *,
    seed: int | None = None,
) -> SlimPajamaModel:
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
            student = SlimPajamaModel(config)
    else:
        student = SlimPajamaModel(config)
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


# --------------------------------------------------------------------------- teacher logits


def fits_in_memory(n_rows: int, num_labels: int) -> bool:
    """Whether a teacher-logit cache of ``n_rows`` rows is small enough to keep.

    The rule: ``n_rows * (4 * num_labels + CACHE_ROW_OVERHEAD_BYTES)`` (float32 logits
    plus the measured cost of a dict entry holding a small tensor, rounded up to 1 KiB)
    must stay within ``CACHE_BUDGET_BYTES`` (512 MiB). That is ~520,000 rows of a
    2-label task: SST-2's 67,349 training rows take ~70 MB.
    """
    return n_rows * (4 * num_labels + CACHE_ROW_OVERHEAD_BYTES) <= CACHE_BUDGET_BYTES


def cache_teacher_logits(
    teacher: nn.Module,
    batches: Iterable[Batch],
    *,
    control: Control | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> dict[int, torch.Tensor]:
    """The teacher's logits for every row of ``batches``, keyed by the batch ``index``.

    ``index`` holds each row's position in the dataset (as ``data.batches`` yields), so
    a later training batch in any order finds its rows. Logits are float32 on the CPU,
    one ``(num_labels,)`` tensor per row. The teacher runs in eval mode without
    gradients on its own device.

    Args:
        control: stops early when a stop is requested (the cache is then partial).
        on_batch: called with the number of batches done, for progress.

    Raises:
        ValueError: a batch has no ``index`` entry.
    """
    teacher.eval()
    device = _device_of(teacher)
    cache: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for done, batch in enumerate(batches, start=1):
            if control is not None and control.should_stop:
                break
            if "index" not in batch:
                raise ValueError("batches for the teacher-logit cache need an 'index' entry")
            logits = _forward(teacher, batch, device).logits.float().cpu()  # (B, K)
            for row, logit in zip(batch["index"].tolist(), logits, strict=True):
                cache[int(row)] = logit.clone()  # own storage, not a view of the batch
            if on_batch is not None:
                on_batch(done)
    return cache


def _forward(model: nn.Module, batch: Batch, device: torch.device, **kwargs: bool) -> Any:
    def get(name: str) -> torch.Tensor | None:
        value = batch.get(name)
        return None if value is None else value.to(device)

    return model(
        input_ids=get("input_ids"),
        attention_mask=get("attention_mask"),
        token_type_ids=get("token_type_ids"),
        **kwargs,
    )


# --------------------------------------------------------------------------- loss


class DistillLoss:
    """Distillation loss ``(student, batch) -> (loss, parts)``, a ``train.LossFn``.

    ``loss = (1 - alpha_kd) * ce + alpha_kd * T^2 * kd + hidden_mse * hidden
    + attention_mse * attention``, where

    * ``ce``: cross-entropy of the student's logits with the labels;
    * ``kd``: ``KL(softmax(t / T) || softmax(s / T))``, batch mean, teacher logits t,
      student logits s (T^2 keeps its gradient on the scale of ``ce``, Hinton et al.);
    * ``hidden``: MSE between student and teacher hidden states, the embeddings output
      and then student layer i against teacher layer ``layer_map[i]``, averaged over
      the pairs. A narrower student's states go through one learned ``nn.Linear``
      (``student.distill_projection``, registered by :meth:`attach`);
    * ``attention``: MSE between the attention probabilities of student layer i and
      teacher layer ``layer_map[i]``. With equal head counts heads are compared one by
      one; otherwise both maps are **averaged over heads** first. A layer whose heads
      were all pruned is skipped.

    Padding is excluded from ``hidden`` (only real tokens count) and ``attention``
    (only query/key pairs of real tokens count). ``parts`` holds each computed term
    unweighted ("ce", "kd", "hidden", "attention") plus the total ("loss"); "hidden" and
    "attention" appear only when their weight is above 0, "kd" whenever the teacher's
    logits were used.

    The teacher runs in eval mode under ``torch.no_grad`` and is never updated; it is
    moved to the batch's device if it is elsewhere. With ``teacher_logits_cache`` (see
    :func:`cache_teacher_logits`) and no hidden/attention term, a batch whose ``index``
    rows are all cached skips the teacher forward.

    Args:
        teacher: the model to imitate.
        temperature: T, > 0; higher shows the student more of the teacher's ranking of
            the wrong labels.
        alpha_kd: weight of KD against the labels, in [0, 1].
        hidden_mse: weight of the hidden-state loss, >= 0.
        attention_mse: weight of the attention-map loss, >= 0. Attention maps are
            probabilities (each row sums to 1), so this term is small; weights of 10 to
            100 are usual.
        layer_map: ``layer_map[i]`` = teacher layer matched with student layer i.
            Default: the layers the student was built from (``student.distill_layers``),
            else evenly spaced (:func:`evenly_spaced_layers`).
        teacher_logits_cache: row index -> teacher logits, to skip the teacher forward.

    Raises:
        UserError: a setting is out of range (the message names ``distill.<field>``).
    """

    def __init__(
        self,
        teacher: nn.Module,
        *,
        temperature: float = 2.0,
        alpha_kd: float = 0.5,
        hidden_mse: float = 0.0,
        attention_mse: float = 0.0,
        layer_map: list[int] | None = None,
        teacher_logits_cache: dict[int, torch.Tensor] | None = None,
    ) -> None:
        _check_number("temperature", temperature, low=0.0, low_open=True)
        _check_number("alpha_kd", alpha_kd, low=0.0, high=1.0)
        _check_number("hidden_mse", hidden_mse, low=0.0)
        _check_number("attention_mse", attention_mse, low=0.0)
        if layer_map is not None:
            layer_map = list(layer_map)
            if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in layer_map):
                raise UserError(
                    f"distill.layer_map: {layer_map} must list teacher layer numbers from 0."
                )
        self.teacher = teacher
        self.temperature = float(temperature)
        self.alpha_kd = float(alpha_kd)
        self.hidden_mse = float(hidden_mse)
        self.attention_mse = float(attention_mse)
        self.layer_map = layer_map
        self.teacher_logits_cache = teacher_logits_cache
        #: Batches answered from the cache / by running the teacher (for tests and logs).
        self.cache_hits = 0
        self.teacher_forwards = 0

    @property
    def needs_teacher_states(self) -> bool:
        """Hidden or attention terms are on, so every batch runs the teacher."""
        return self.hidden_mse > 0 or self.attention_mse > 0

    @property
    def needs_teacher(self) -> bool:
        return self.alpha_kd > 0 or self.needs_teacher_states

    def layer_map_for(self, student: nn.Module) -> list[int]:
        """Teacher layer matched with each student layer, checked against both models.

        Raises:
            UserError: the map has the wrong length or names a missing teacher layer.
        """
        m = student.config.num_layers
        n = self.teacher.config.num_layers
        if self.layer_map is not None:
            mapping, source = self.layer_map, "distill.layer_map"
        elif getattr(student, LAYERS_ATTR, None) is not None:
            mapping, source = list(getattr(student, LAYERS_ATTR)), "the student's layers"
        else:
            return evenly_spaced_layers(m, n)
        if len(mapping) != m:
            raise UserError(
                f"{source}: {mapping} has {len(mapping)} entries but the student has {m} "
                "layers; give one teacher layer per student layer."
            )
        bad = [i for i in mapping if i >= n]
        if bad:
            raise UserError(
                f"{source}: teacher layer {bad[0]} does not exist; the teacher has {n} "
                f"layers, numbered 0 to {n - 1}."
            )
        return mapping

    def attach(self, student: nn.Module) -> DistillLoss:
        """Check ``student`` against the teacher and add what training it needs.

        Call before the optimizer is built (``distill`` does): when the hidden-state
        term is on and the student is narrower or wider than the teacher, this
        registers ``student.distill_projection`` (an ``nn.Linear``) so the optimizer
        trains it. :meth:`detach` removes it again before the student is saved.

        Raises:
            UserError: the label counts differ, or the layer map does not fit.
        """
        self._check_pair(student)
        cs, ct = student.config.hidden_size, self.teacher.config.hidden_size
        if self.hidden_mse > 0 and cs != ct and getattr(student, PROJECTION_ATTR, None) is None:
            ref = next(student.parameters())
            projection = nn.Linear(cs, ct).to(device=ref.device, dtype=ref.dtype)
            student.add_module(PROJECTION_ATTR, projection)
        return self

    @staticmethod
    def detach(student: nn.Module) -> None:
        """Remove the projection :meth:`attach` added, so the student saves cleanly."""
        if PROJECTION_ATTR in student._modules:
            del student._modules[PROJECTION_ATTR]

    def _check_pair(self, student: nn.Module) -> None:
        ks, kt = student.config.num_labels, self.teacher.config.num_labels
        if ks != kt:
            raise UserError(
                f"distill: the student predicts {ks} labels but the teacher {kt}; both "
                "must classify into the same labels."
            )
        if self.needs_teacher_states:
            self.layer_map_for(student)

    def __call__(self, student: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        device = batch["input_ids"].device
        hidden_on, attention_on = self.hidden_mse > 0, self.attention_mse > 0
        projection = getattr(student, PROJECTION_ATTR, None)
        widths_differ = student.config.hidden_size != self.teacher.config.hidden_size
        if hidden_on and projection is None and widths_differ:
            # Creating it here would be too late: the optimizer would never train it.
            raise RuntimeError(
                "DistillLoss.attach(student) must run before training: the student's "
                "width differs from the teacher's and its projection is missing."
            )
        layer_map = self.layer_map_for(student) if hidden_on or attention_on else []

        out = _forward(
            student,
            batch,
            device,
            output_hidden_states=hidden_on,
            output_attentions=attention_on,
        )
        teacher_out = None
        t_logits = self._cached_logits(batch, device)
        if t_logits is None and self.needs_teacher:
            teacher_out = self._run_teacher(batch, device, hidden_on, attention_on)
            t_logits = teacher_out.logits

        s_logits = out.logits.float()  # (B, K)
        parts: dict[str, torch.Tensor] = {}
        total = s_logits.new_zeros(())
        if "labels" in batch:
            parts["ce"] = F.cross_entropy(s_logits, batch["labels"])
            total = total + (1.0 - self.alpha_kd) * parts["ce"]
        elif self.alpha_kd < 1:
            raise ValueError("batch has no 'labels' but alpha_kd < 1 needs them")
        if t_logits is not None:
            T = self.temperature
            parts["kd"] = F.kl_div(
                F.log_softmax(s_logits / T, dim=-1),
                F.log_softmax(t_logits.float() / T, dim=-1),
                reduction="batchmean",
                log_target=True,
            )
            total = total + self.alpha_kd * T * T * parts["kd"]

        keep = batch.get("attention_mask")
        keep = (
            torch.ones(s_logits.shape[0], batch["input_ids"].shape[1], device=device)
            if keep is None
            else keep.to(device=device, dtype=torch.float32)
        )  # (B, T)
        if hidden_on:
            parts["hidden"] = _hidden_mse(
                out.hidden_states, teacher_out.hidden_states, layer_map, keep, projection
            )
            total = total + self.hidden_mse * parts["hidden"]
        if attention_on:
            parts["attention"] = _attention_mse(
                out.attentions, teacher_out.attentions, layer_map, keep
            )
            total = total + self.attention_mse * parts["attention"]
        logged = {k: float(v.detach()) for k, v in parts.items()}
        logged["loss"] = float(total.detach())
        return total, logged

    def _cached_logits(self, batch: Batch, device: torch.device) -> torch.Tensor | None:
        cache = self.teacher_logits_cache
        if cache is None or self.needs_teacher_states or "index" not in batch:
            return None
        try:
            rows = [cache[int(i)] for i in batch["index"].tolist()]
        except KeyError:
            # Rows outside the cache (another split, a partial cache): ask the teacher.
            return None
        self.cache_hits += 1
        return torch.stack(rows).to(device)  # (B, K)

    def _run_teacher(self, batch: Batch, device: torch.device, hidden: bool, attention: bool):
        teacher = self.teacher
        if teacher.training:
            teacher.eval()
        if _device_of(teacher) != device:
            teacher.to(device)
        self.teacher_forwards += 1
        with torch.no_grad():
            return _forward(
                teacher, batch, device, output_hidden_states=hidden, output_attentions=attention
            )


def _hidden_mse(
    student_states: Sequence[torch.Tensor],
    teacher_states: Sequence[torch.Tensor],
    layer_map: Sequence[int],
    keep: torch.Tensor,
    projection: nn.Module | None,
) -> torch.Tensor:
    """Mean over layer pairs of the per-token MSE, over real tokens only."""
    # hidden_states[0] is the embeddings output; layer i's output is hidden_states[i + 1].
    pairs = [(0, 0)] + [(i + 1, t + 1) for i, t in enumerate(layer_map)]
    real = keep.sum().clamp(min=1.0)
    terms = []
    for si, ti in pairs:
        hs = student_states[si]  # (B, T, Cs)
        if projection is not None:
            hs = projection(hs)  # (B, T, Ct)
        diff = (hs.float() - teacher_states[ti].float()).pow(2).mean(dim=-1)  # (B, T)
        terms.append((diff * keep).sum() / real)
    return torch.stack(terms).mean()


def _attention_mse(
    student_maps: Sequence[torch.Tensor],
    teacher_maps: Sequence[torch.Tensor],
    layer_map: Sequence[int],
    keep: torch.Tensor,
) -> torch.Tensor:
    """Mean over layer pairs of the attention-probability MSE on real (query, key) pairs."""
    pair_mask = keep[:, None, :, None] * keep[:, None, None, :]  # (B, 1, T, T)
    cells = pair_mask.sum().clamp(min=1.0)
    terms = []
    for i, t in enumerate(layer_map):
        a_s, a_t = student_maps[i].float(), teacher_maps[t].float()  # (B, h, T, T)
        if a_s.shape[1] == 0 or a_t.shape[1] == 0:
            continue  # a layer with every head pruned has no map to compare
        if a_s.shape[1] != a_t.shape[1]:
            a_s, a_t = a_s.mean(dim=1, keepdim=True), a_t.mean(dim=1, keepdim=True)
        sq = (a_s - a_t).pow(2) * pair_mask  # (B, h, T, T)
        terms.append(sq.sum() / (cells * a_s.shape[1]))
    if not terms:
        return keep.new_zeros(())
    return torch.stack(terms).mean()


def _check_number(
    name: str,
    value: Any,
    *,
    low: float,
    high: float | None = None,
    low_open: bool = False,
) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and (value > low if low_open else value >= low)
        and (high is None or value <= high)
    )
    if not ok:
        if high is not None:
            rule = f"between {low:g} and {high:g}"
        else:
            rule = f"{'above' if low_open else 'at least'} {low:g}"
        raise UserError(f"distill.{name} must be a number {rule}, not {value!r}.")


# --------------------------------------------------------------------------- convenience


def distill(
    student: nn.Module,
    teacher: nn.Module,
    fit: FitFn,
    *,
    temperature: float = 2.0,
    alpha_kd: float = 0.5,
    hidden_mse: float = 0.0,
    attention_mse: float = 0.0,
    epochs: float = 3.0,
    cache: bool = True,
    train_batches_for_cache: Iterable[Batch] | None = None,
    layer_map: list[int] | None = None,
    callbacks: Callbacks | Iterable[Callbacks] = (),
    control: Control | None = None,
    on_cache_batch: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train ``student`` to imitate ``teacher`` with the pipeline's ``fit``.

    Builds a :class:`DistillLoss`, attaches it to the student, calls
    ``fit(student, epochs, loss_fn=loss, callbacks=callbacks)`` and removes the
    hidden-state projection afterwards, so the student saves as a plain model.

    The teacher's logits are cached first when all of these hold: ``cache`` is true,
    ``train_batches_for_cache`` is given (one pass over the training rows, with the
    same ``index`` numbering as fit's batches, in any order), only logit KD needs the
    teacher (``alpha_kd > 0``, no hidden/attention term), ``epochs > 1`` (with one
    epoch the cache costs as much as it saves) and the cache
    :func:`fits_in_memory`. Caching stops (and is discarded) as soon as it outgrows
    memory.

    Args:
        fit: ``fit(model, epochs, loss_fn=None, callbacks=()) -> TrainResult``.
        control: checked while caching; a stop returns a "cancelled" result.
        on_cache_batch: progress while caching (batches done).
        Others: as :class:`DistillLoss`.

    Returns:
        What ``fit`` returned (or a cancelled result with 0 steps).
    """
    loss = DistillLoss(
        teacher,
        temperature=temperature,
        alpha_kd=alpha_kd,
        hidden_mse=hidden_mse,
        attention_mse=attention_mse,
        layer_map=layer_map,
    )
    loss._check_pair(student)  # fail on a bad layer map before the teacher pass
    if (
        cache
        and train_batches_for_cache is not None
        and loss.alpha_kd > 0
        and not loss.needs_teacher_states
        and epochs > 1
    ):
        logits = _build_cache(teacher, train_batches_for_cache, control, on_cache_batch)
        if control is not None and control.should_stop:
            return TrainResult("cancelled", 0, None, None, {}, 0.0, 0.0)
        loss.teacher_logits_cache = logits
    loss.attach(student)
    try:
        return fit(student, epochs, loss_fn=loss, callbacks=callbacks)
    finally:
        loss.detach(student)


def _build_cache(
    teacher: nn.Module,
    batches: Iterable[Batch],
    control: Control | None,
    on_batch: Callable[[int], None] | None,
) -> dict[int, torch.Tensor] | None:
    num_labels = teacher.config.num_labels
    cache: dict[int, torch.Tensor] = {}
    for done, batch in enumerate(batches, start=1):
        if control is not None and control.should_stop:
            break
        cache.update(cache_teacher_logits(teacher, [batch]))
        if not fits_in_memory(len(cache), num_labels):
            log.info(
                "Teacher logits for %d+ rows do not fit in memory; the teacher runs on "
                "every batch instead.",
                len(cache),
            )
            return None
        if on_batch is not None:
            on_batch(done)
    log.info("Cached the teacher's logits for %d training rows.", len(cache))
    return cache
