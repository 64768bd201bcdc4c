"""The distillation loss: label loss plus logit KD, hidden-state and attention matching.

:class:`DistillLoss` is a ``train.LossFn``: it mixes the label loss with the KL
divergence to the teacher's softened logits and, optionally, the mean squared error
between hidden states (through a learned projection when the student is narrower) and
between attention maps, and reports every term so the charts can draw each one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.techniques.distill.students import (
    LAYERS_ATTR,
    _device_of,
    evenly_spaced_layers,
)

Batch = Mapping[str, torch.Tensor]
#: Name of the learned projection (student width -> teacher width) that
#: :meth:`DistillLoss.attach` registers on a narrower student for the hidden-state loss.
PROJECTION_ATTR = "distill_projection"


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
        teacher_logits_cache: row index -> teacher logits (a dict, or an (N, K) tensor
            whose row i is dataset row i), to skip the teacher forward.
        teacher_labels_from: rows whose ``index`` is at least this (augmented copies,
            see :mod:`.augment`) take the teacher's argmax as their label for ``ce``;
            needs ``alpha_kd > 0`` (the teacher's logits). None: every label is the data's.

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
        teacher_logits_cache: dict[int, torch.Tensor] | torch.Tensor | None = None,
        teacher_labels_from: int | None = None,
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
        if teacher_labels_from is not None and self.alpha_kd <= 0:
            raise UserError(
                "distill.augment: the altered copies learn from the teacher's logits, "
                "which alpha_kd 0 turns off; set alpha_kd above 0 or augment to 0."
            )
        self.teacher_labels_from = teacher_labels_from
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
            labels = batch["labels"].to(device)
            if self.teacher_labels_from is not None and t_logits is not None:
                from_teacher = batch["index"].to(device) >= self.teacher_labels_from  # (B,)
                labels = torch.where(from_teacher, t_logits.argmax(dim=-1), labels)
            parts["ce"] = F.cross_entropy(s_logits, labels)
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
        index = batch["index"]
        if isinstance(cache, torch.Tensor):  # (N, K): row i holds dataset row i
            if index.numel() and int(index.max()) >= cache.shape[0]:
                return None
            self.cache_hits += 1
            return cache[index.cpu()].to(device)  # (B, K)
        try:
            rows = [cache[int(i)] for i in index.tolist()]
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
