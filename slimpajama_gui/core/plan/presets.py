"""The three preset chains, fitted to a model, and how a step is named to a person.

A preset is a list of steps read from ``resources/recipes/preset-NAME.yaml`` (built in
code when the file is missing or unreadable). :func:`adapt_chain` fits it to the chosen
model: fine-tuning only when the model has no head for these labels, distillation onto
layers that exist. Nothing here imports torch; the wizard calls it on the GUI thread.

Example:
    >>> steps, notes = adapt_chain(load_preset("fast"), None, None)  # no model: no head needed
    >>> [s.step_type for s in steps]
    ['quantize', 'evaluate', 'benchmark']
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Collection, Sequence
from importlib import resources
from typing import Any

import yaml

from slimpajama_gui.core import data as data_mod
from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.inspection import ModelInfo
from slimpajama_gui.core.model.shape import default_student_layers
from slimpajama_gui.core.plan.preflight import clause, head_reason
from slimpajama_gui.core.plan.steps import (
    LEARNING_RATE,
    Benchmark,
    Distill,
    Evaluate,
    FineTune,
    Prune,
    Quantize,
    Step,
    step_from_dict,
)

log = logging.getLogger(__name__)

PRESETS = ("fast", "balanced", "smallest")
#: What each preset does to the model, true whatever the chain is fitted to (whether
#: fine-tuning comes first depends on the model: :func:`preset_blurb` says it). The
#: figures were measured on SST-2 (docs/benchmarks.md, peers-sst2, and the out-of-domain
#: checks of 2026-12-03 on nine domains, 1,000 sentences each): against the fp32 teacher,
#: with an 8,000-row, 1-epoch training budget on 2 CPU cores. Speed-ups are given for the
#: two x86 CPUs they were measured on (an Intel Xeon and an AMD EPYC, both with VNNI):
#: int8 gains differ between CPUs. No time figure: how long a chain takes depends on the
#: data and the machine, and the job shows it.
PRESET_BLURBS = {
    "fast": "Fast — no distillation and every token kept: int8 in onnxruntime with 4-bit word "
    "embeddings. Measured on SST-2 against the fine-tuned teacher: 4.7× smaller and 3.2–4.5× "
    "faster (batch 1, 2 CPU threads, on two x86 CPUs), 0.3 test accuracy points lost; on "
    "review sentences from nine other domains (three check sets), within 0.3 points of the "
    "teacher on each set, 0.7 below on its worst domain.",
    "balanced": "Balanced — distil into a 4-layer student (logit KD and hidden-state MSE, on the "
    "train rows and two augmented copies of each), int8 in onnxruntime with 4-bit word "
    "embeddings; every token kept. Measured on SST-2 against the fine-tuned teacher: 5.8× "
    "smaller and 4.5–6.8× faster (batch 1, 2 CPU threads, on two x86 CPUs), 1.3 test accuracy "
    "points lost after a short CPU run; on review sentences from nine other domains (three "
    "check sets), within 0.2 points of the teacher on each set, 1.0 below on its worst domain.",
    "smallest": "Smallest — the balanced student, then vocabulary pruning (the data's tokens "
    "and 20,000 common ones) and int8 with 4-bit word embeddings. Measured on SST-2 against "
    "the fine-tuned teacher: 6.7× smaller and 4.4–6.4× faster (batch 1, 2 CPU threads, on two "
    "x86 CPUs), 1.4 test accuracy points lost after a short CPU run; on review sentences "
    "from nine other domains (three check sets), within 0.1 points of the teacher on each set, "
    "0.8 below on its worst domain.",
}
#: The recipe's ``dataset:`` mapping for the built-in demo data.
DEMO_SPEC: dict[str, Any] = {
    "train": data_mod.DEMO,
    "text_column": "sentence",
    "label_column": "label",
    "labels": ["negative", "positive"],
    "max_length": 64,
}


# --------------------------------------------------------------------------- naming


def slug(text: str) -> str:
    """A folder-safe name: ``"all-MiniLM-L6-v2 (packaged)"`` -> ``"all-MiniLM-L6-v2"``."""
    text = re.sub(r"\s*\(packaged\)\s*$", "", text)
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return text or "model"


def format_lr(value: float) -> str:
    """``1e-4`` -> ``"1e-4"``, ``2.5e-05`` -> ``"2.5e-5"`` (as people write them)."""
    if value <= 0 or not math.isfinite(value):
        return str(value)
    mantissa, exponent = f"{value:.3e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def parse_lr(text: str, where: str) -> float:
    """A learning rate typed by a person, e.g. ``"5e-5"``.

    Raises:
        UserError: not a number, or outside the recipe's range (above 0, at most 10);
            the sentence starts with ``where``.
    """
    problem = learning_rate_problem(text)
    if problem:
        raise UserError(f"{where} — learning rate: {problem}.")
    return float(text.strip())


def learning_rate_problem(text: str) -> str:
    """What is wrong with a learning rate typed by a person, as a clause to follow the
    field's name (``'fast' is not a number; type a number above 0 and at most 10, like
    5e-5``); "" when nothing."""
    # Worded as the wizard's number fields are: what is wrong, then the range.
    what = f"type a number above 0 and at most {LEARNING_RATE.high:g}, like 5e-5"
    typed = text.strip()
    if not typed:
        return f"it is empty; {what}"
    try:
        value = float(typed)
    except ValueError:
        return f"{typed!r} is not a number; {what}"
    if not LEARNING_RATE.admits(value):
        if math.isnan(value):
            size = "not a number"
        else:
            size = "too small" if value <= LEARNING_RATE.low else "too large"
        return f"{typed} is {size}; {what}"
    return ""


def step_title(step: Step) -> str:
    """The name a person sees for a step, e.g. ``"Prune attention heads"``."""
    if isinstance(step, Prune):
        return {
            "magnitude": "Prune weights",
            "heads": "Prune attention heads",
            "ffn": "Prune FFN neurons",
            "layers": "Drop layers",
            "vocabulary": "Prune vocabulary",
        }[step.method]
    titles = {
        "finetune": "Fine-tune",
        "distill": "Distill",
        "distill_static": "Distill to static embeddings",
        "quantize": "Quantize",
        "evaluate": "Evaluate",
        "benchmark": "Benchmark",
        "export": "Export to ONNX",
        "sensitivity": "Sensitivity analysis",
    }
    return titles.get(step.step_type, step.step_type)


def epochs(count: float, kind: str = "") -> str:
    """``"1 epoch"``, ``"3 epochs"``, ``"0.5 epochs"``, ``"2 recovery epochs"``."""
    return f"{count:g} {kind}epoch{'' if count == 1 else 's'}"


#: How :func:`step_summary` says a setting whose field holds a value the page refuses.
NOT_SET = "not set until its field is fixed"


def step_summary(step: Step, unset: Collection[str] = ()) -> str:
    """One short line per step for the preset description and the review page.

    ``unset`` names the keys whose fields hold a value the page refuses (out of range,
    no number, or against another field): the line says them as not set, never the
    refused value, so it describes only what would run.
    """
    title = step_title(step)
    if isinstance(step, FineTune):
        return f"{title} ({epochs(step.epochs)})"
    if isinstance(step, Distill):
        layers = ", ".join(map(str, step.student_layers)) or "every second"
        extra = ""
        for key, label in (("hidden_mse", "hidden MSE"), ("attention_mse", "attention MSE")):
            if key in unset:
                extra += f", {label} {NOT_SET}"
            elif getattr(step, key):
                extra += f", {label} {getattr(step, key):g}"
        if "ffn_fraction" in unset:
            extra += f", FFN removed {NOT_SET}"
        elif step.ffn_fraction:
            extra += f", {100 * step.ffn_fraction:g} % of its FFN removed"
        if "augment" in unset:
            extra += f", augmented copies {NOT_SET}"
        elif step.augment:
            copies = "copy" if step.augment == 1 else "copies"
            extra += f", {step.augment} augmented {copies} of the train rows"
        if step.ema_decay and "ema_decay" not in unset:
            extra += f", EMA of the weights (decay {step.ema_decay:g})"
        return f"{title} into teacher layers {layers}{extra}"
    if step.step_type == "distill_static":
        dims = f"dims {NOT_SET}" if "dims" in unset else f"{step.dims} dims"
        return f"{title} ({dims}, {step.storage})"
    if isinstance(step, Prune):
        if step.method in ("heads", "ffn", "magnitude"):
            if "amount" in unset:
                return f"{title} (amount {NOT_SET})"
            return f"{title} ({100 * step.amount:g} %)"
        if step.method == "layers":
            return f"{title} (keep {', '.join(map(str, step.keep_layers or []))})"
        return title
    if isinstance(step, Quantize):
        bits = ", 4-bit embeddings" if step.embedding_bits == 4 else ""
        return f"{title} {step.method} ({step.backend}{bits})"
    return title


def training_sentence(steps: Sequence[Step]) -> str:
    """What a chain trains, from its steps: ``"Trains: Fine-tune (3 epochs), Distill (4
    epochs)."`` or ``"No training."``; no duration (only a finished job measures one)."""
    parts = []
    for step in steps:
        if isinstance(step, (FineTune, Distill)) or step.step_type == "distill_static":
            parts.append(f"{step_title(step)} ({epochs(step.epochs)})")
        elif isinstance(step, Prune) and trains(step) and step.recovery_epochs:
            parts.append(f"{step_title(step)} ({epochs(step.recovery_epochs, 'recovery ')})")
    return f"Trains: {', '.join(parts)}." if parts else "No training."


def preset_blurb(name: str, steps: Sequence[Step]) -> str:
    """A preset's description for the chain actually shown (``steps``, as adapted).

    :data:`PRESET_BLURBS` says what the preset does to the model; the sentence after it
    says what this chain trains, so a chain that fine-tunes first is never described as
    one without training.

    Raises:
        KeyError: ``name`` is not one of :data:`PRESETS`.
    """
    return f"{PRESET_BLURBS[name]} {training_sentence(steps)}"


def trains(step: Step) -> bool:
    """Whether ``step`` runs a training loop (and so has epochs/LR/batch settings)."""
    if isinstance(step, (FineTune, Distill)) or step.step_type == "distill_static":
        return True
    return isinstance(step, Prune) and step.method != "vocabulary"


# --------------------------------------------------------------------------- presets


def needs_finetune(info: ModelInfo | None, labels: int | Sequence[str] | None) -> bool:
    """A model without a classifier head for these labels must be fine-tuned first.

    ``labels`` is the data's label names (compared with the head's, see
    :func:`~slimpajama_gui.core.plan.preflight.head_reason`) or only their number.
    """
    return head_reason(info, labels) is not None


def code_preset(name: str) -> list[Step]:
    """The preset chains, for when a ``preset-*.yaml`` file is missing or unreadable."""
    vocab = Prune(method="vocabulary", recovery_epochs=0.0)
    quant = Quantize(method="dynamic_int8", backend="onnxruntime", per_channel=True)
    middle: list[Step]
    quant = dataclasses.replace(quant, embedding_bits=4)
    if name == "fast":
        middle = []
    else:
        student = Distill(student_layers=[0, 1, 2, 5], augment=2, hidden_mse=1.0)
        middle = [student] if name == "balanced" else [student, vocab]
    return [FineTune(), *middle, quant, Evaluate(), Benchmark()]


def load_preset(name: str) -> list[Step]:
    """The steps of ``resources/recipes/preset-NAME.yaml`` (or the same chain built in code).

    The file may be a whole recipe or just a ``steps:`` list; only its steps are used,
    the model, data and output come from the wizard.

    Raises:
        ValueError: ``name`` is not one of :data:`PRESETS`.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    try:
        source = resources.files("slimpajama_gui.resources") / "recipes" / f"preset-{name}.yaml"
        if not source.is_file():
            return code_preset(name)
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
        items = raw.get("steps") if isinstance(raw, dict) else raw
        if not isinstance(items, list) or not items:
            raise UserError(f"preset-{name}.yaml has no steps")
        return [step_from_dict(item, index=i) for i, item in enumerate(items)]
    except (OSError, yaml.YAMLError, UserError, TypeError, AttributeError) as exc:
        log.warning("Preset %s could not be read (%s); using the built-in chain", name, exc)
        return code_preset(name)


def _fit_layers(layers: Sequence[int], n: int) -> list[int] | None:
    """Layer choices of a preset made for 6 layers, fitted to an ``n``-layer model.

    Returns None when no smaller selection exists (a 1-layer model).
    """
    kept = [i for i in layers if 0 <= i < n]
    if not kept or len(kept) >= n:
        kept = default_student_layers(n)
    return kept if 0 < len(kept) < n else None


def adapt_chain(
    steps: Sequence[Step], info: ModelInfo | None, labels: int | Sequence[str] | None
) -> tuple[list[Step], list[str]]:
    """Fit a preset to the chosen model: fine-tune only when needed, layers that exist.

    ``labels``: the data's label names (or their number), as for :func:`needs_finetune`.

    Returns:
        The adapted steps (copies) and sentences saying what was changed.
    """
    notes: list[str] = []
    reason = head_reason(info, labels)
    needed = reason is not None
    n = info.layers if info is not None else 0
    out: list[Step] = []
    for step in steps:
        step = dataclasses.replace(step)
        if isinstance(step, FineTune) and not needed:
            names = info.label_names if info is not None else None
            head = (
                f"a classifier head for these labels ({', '.join(map(repr, names))})"
                if names
                else "a classifier head of the right size"
            )
            notes.append(
                f"Fine-tuning is left out: the model already has {head}. Choose Custom to add it."
            )
            continue
        if isinstance(step, Distill) and n:
            fitted = _fit_layers(step.student_layers or default_student_layers(n), n)
            if fitted is None:
                notes.append("Distillation is left out: the model has a single layer.")
                continue
            if fitted != list(step.student_layers):
                notes.append(
                    f"The student keeps teacher layers {', '.join(map(str, fitted))} of this "
                    f"model's {n} (numbered from 0)."
                )
            step.student_layers = fitted
        out.append(step)
    if needed and not any(isinstance(s, FineTune) for s in out):
        out.insert(0, FineTune())
    if reason is not None:
        notes.insert(0, f"Fine-tuning comes first: the model{clause(reason)}.")
    return out, notes


#: Step fields the wizard's Settings page edits (and a preset sets): an edit of the
#: techniques builds the steps anew, and these must not fall back to the step defaults.
TRAINING_FIELDS = ("epochs", "learning_rate", "batch_size", "warmup_ratio", "recovery_epochs")


def keep_training_settings(steps: list[Step], previous: list[Step]) -> list[Step]:
    """``steps`` with each training setting taken from the same kind of step in
    ``previous`` (a preset's epochs, learning rate and warm-up, or the user's own).

    The wizard builds a custom chain anew from its technique boxes on every edit; this
    keeps what the Settings page or the preset set on the steps that stay.
    """

    def kind(step: Step) -> tuple[str, str]:
        return step.step_type, str(getattr(step, "method", ""))

    earlier = {kind(step): step for step in previous}
    kept = []
    for step in steps:
        old = earlier.get(kind(step))
        if old is not None:
            values = {
                name: getattr(old, name)
                for name in TRAINING_FIELDS
                if hasattr(old, name) and hasattr(step, name)
            }
            step = dataclasses.replace(step, **values)
        kept.append(step)
    return kept
