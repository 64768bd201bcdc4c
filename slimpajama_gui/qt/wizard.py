"""The compression wizard: model → data → techniques → settings → review → Run.

:class:`CompressWizard` is a plain :class:`QWizard` that fills a
:class:`~slimpajama_gui.core.plan.recipe.Recipe` and emits :attr:`CompressWizard.recipe_ready`
when the user clicks *Run*; the window that opens it queues the recipe (``JobsView.submit``).
Every check the engine makes on a step (``Step.validate``) is made here too, while the
user types, so a bad choice is a red sentence on its page and a disabled *Next* button,
not a failed job an hour later.

Nothing here loads weights. Model summaries come from safetensors headers
(:func:`~slimpajama_gui.core.model.catalog.inspect_model`), data is read on the thread pool,
and the size estimate on the review page is arithmetic on the model's shape.

Example:
    >>> wizard = CompressWizard()  # doctest: +SKIP
    >>> wizard.set_models(models_view.model.infos())  # doctest: +SKIP
    >>> wizard.set_current_model(models_view.selected_info().path)  # doctest: +SKIP
    >>> wizard.recipe_ready.connect(jobs_view.submit)  # doctest: +SKIP
    >>> wizard.open()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)
from superqt.utils import create_worker

from slimpajama_gui.core import data as data_mod
from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.catalog import ModelInfo, discover_models, inspect_model
from slimpajama_gui.core.model.tokenizers import load_tokenizer
from slimpajama_gui.core.paths import data_dir
from slimpajama_gui.core.plan.recipe import (
    Benchmark,
    Distill,
    Evaluate,
    FineTune,
    Prune,
    Quantize,
    Recipe,
    RecipeError,
    Step,
    dump_recipe,
    save_recipe,
    step_from_dict,
)
from slimpajama_gui.qt.models_view import heads_text, human_bytes, human_count

log = logging.getLogger(__name__)

PRESETS = ("fast", "balanced", "smallest")
#: Measured on SST-2 (docs/benchmarks.md, compress-sst2): against the fp32 teacher, with
#: an 8,000-row, 1-epoch training budget on 2 CPU cores.
PRESET_BLURBS = {
    "fast": "Fast — keep only the vocabulary the data uses, then int8 in onnxruntime. No "
    "training, minutes on a laptop; on SST-2 5.7× smaller and 4.9× faster, accuracy kept.",
    "balanced": "Balanced — distil into a 3-layer student (with hidden-state matching), "
    "prune the vocabulary, int8 in onnxruntime. On SST-2 8.6× smaller and 9.7× faster; "
    "the accuracy cost depends on training time (3.6 points after a short CPU run).",
    "smallest": "Smallest — a 2-layer student with half of its FFN neurons removed, "
    "vocabulary pruning and int8. On SST-2 12× smaller and 17× faster, 5.7 points lost "
    "after a short CPU run.",
}
#: Share of a BERT vocabulary an English sentence data set uses (SST-2 train: 11.6k of
#: 30.5k ids); the estimate's fallback until the real count is known.
VOCAB_SHARE_GUESS = 11_600 / 30_522
DEMO_SPEC: dict[str, Any] = {
    "train": data_mod.DEMO,
    "text_column": "sentence",
    "label_column": "label",
    "labels": ["negative", "positive"],
    "max_length": 64,
}
ERROR_STYLE = "color: #b3261e;"
WARNING_STYLE = "color: #8a5a00;"
NOTE_STYLE = "color: #5f6b78;"
LEARNING_RATES = ("1e-5", "2e-5", "3e-5", "5e-5", "1e-4", "2e-4", "5e-4")


# --------------------------------------------------------------------------- helpers


def default_student_layers(num_layers: int) -> list[int]:
    """Every second teacher layer from 1 (``[1, 3, 5]`` of 6), as ``core.distill`` picks.

    Kept here (not imported) because ``core.distill`` pulls in torch, which the GUI
    thread has no reason to import just to draw a page.
    """
    return list(range(1, num_layers, 2)) or list(range(min(num_layers, 1)))


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
        "quantize": "Quantize",
        "evaluate": "Evaluate",
        "benchmark": "Benchmark",
        "export": "Export to ONNX",
    }
    return titles.get(step.step_type, step.step_type)


def step_summary(step: Step) -> str:
    """One short line per step for the preset description and the review page."""
    title = step_title(step)
    if isinstance(step, FineTune):
        return f"{title} ({step.epochs:g} epochs)"
    if isinstance(step, Distill):
        layers = ", ".join(map(str, step.student_layers)) or "every second"
        extra = f", hidden MSE {step.hidden_mse:g}" if step.hidden_mse else ""
        return f"{title} into teacher layers {layers}{extra}"
    if isinstance(step, Prune):
        if step.method in ("heads", "ffn", "magnitude"):
            return f"{title} ({100 * step.amount:g} %)"
        if step.method == "layers":
            return f"{title} (keep {', '.join(map(str, step.keep_layers or []))})"
        return title
    if isinstance(step, Quantize):
        return f"{title} {step.method} ({step.backend})"
    return title


def trains(step: Step) -> bool:
    """Whether ``step`` runs a training loop (and so has epochs/LR/batch settings)."""
    if isinstance(step, (FineTune, Distill)):
        return True
    return isinstance(step, Prune) and step.method != "vocabulary"


def needs_finetune(info: ModelInfo | None, num_labels: int | None) -> bool:
    """A model without a classifier head (or with one of another size) must be fine-tuned."""
    if info is None:
        return False
    if info.num_labels is None:
        return True
    return num_labels is not None and info.num_labels != num_labels


def _code_preset(name: str) -> list[Step]:
    """The preset chains, for when a ``preset-*.yaml`` file is missing or unreadable."""
    vocab = Prune(method="vocabulary", recovery_epochs=0.0)
    quant = Quantize(method="dynamic_int8", backend="onnxruntime", per_channel=True)
    middle: list[Step]
    if name == "fast":
        middle = [vocab]
    elif name == "balanced":
        middle = [Distill(student_layers=[1, 3, 5], hidden_mse=1.0), vocab]
    else:
        middle = [Distill(student_layers=[1, 4], hidden_mse=1.0), Prune("ffn", 0.5), vocab]
    return [FineTune(), *middle, quant, Evaluate(), Benchmark()]


def load_preset(name: str) -> list[Step]:
    """The steps of ``resources/recipes/preset-NAME.yaml`` (or the same chain built in code).

    The file may be a whole recipe or just a ``steps:`` list; only its steps are used,
    the model, data and output come from the wizard.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    try:
        source = resources.files("slimpajama_gui.resources") / "recipes" / f"preset-{name}.yaml"
        if not source.is_file():
            return _code_preset(name)
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
        items = raw.get("steps") if isinstance(raw, dict) else raw
        if not isinstance(items, list) or not items:
            raise UserError(f"preset-{name}.yaml has no steps")
        return [step_from_dict(item, index=i) for i, item in enumerate(items)]
    except (OSError, yaml.YAMLError, UserError, TypeError, AttributeError) as exc:
        log.warning("Preset %s could not be read (%s); using the built-in chain", name, exc)
        return _code_preset(name)


def _fit_layers(layers: Sequence[int], n: int) -> list[int] | None:
    """Layer choices of a preset made for 6 layers, fitted to an ``n``-layer model.

    Returns None when no smaller selection exists (a 1-layer model).
    """
    kept = [i for i in layers if 0 <= i < n]
    if not kept or len(kept) >= n:
        kept = default_student_layers(n)
    return kept if 0 < len(kept) < n else None


def adapt_chain(
    steps: Sequence[Step], info: ModelInfo | None, num_labels: int | None
) -> tuple[list[Step], list[str]]:
    """Fit a preset to the chosen model: fine-tune only when needed, layers that exist.

    Returns:
        The adapted steps (copies) and sentences saying what was changed.
    """
    notes: list[str] = []
    needed = needs_finetune(info, num_labels)
    n = info.layers if info is not None else 0
    out: list[Step] = []
    for step in steps:
        step = dataclasses.replace(step)
        if isinstance(step, FineTune) and not needed:
            notes.append(
                "Fine-tuning is left out: the model already has a classifier head of the "
                "right size. Choose Custom to add it."
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
                    f"model's {n}."
                )
            step.student_layers = fitted
        out.append(step)
    if needed and not any(isinstance(s, FineTune) for s in out):
        out.insert(0, FineTune())
    if needed:
        reason = (
            "has no classifier head"
            if info is not None and info.num_labels is None
            else f"has a {info.num_labels if info else '?'}-class head and the data has "
            f"{num_labels} labels"
        )
        notes.insert(0, f"Fine-tuning comes first: the model {reason}.")
    return out, notes


# --------------------------------------------------------------------------- estimate


@dataclass
class Estimate:
    """What a chain should leave of a model, from its shape alone (no weights loaded)."""

    parameters_before: int
    parameters_after: int
    nonzero_after: int
    size_before: int
    size_after: int
    layers_before: int
    layers_after: int
    heads_before: list[int]
    heads_after: list[int]
    ffn_before: list[int]
    ffn_after: list[int]
    vocab_before: int
    vocab_after: int
    vocab_counted: bool
    weights_before: str
    weights_after: str
    notes: list[str] = field(default_factory=list)

    @property
    def size_ratio(self) -> float:
        return self.size_before / max(self.size_after, 1)

    def headline(self) -> str:
        """``"≈ 10.3 MB on disk, 8.8× smaller than 90.9 MB; ≈ 10.1 M parameters (−56 %)"``."""
        change = 100.0 * (self.parameters_after / max(self.parameters_before, 1) - 1.0)
        sign = "−" if change < 0 else "+"
        return (
            f"≈ {human_bytes(self.size_after)} on disk, {self.size_ratio:.1f}× smaller than "
            f"{human_bytes(self.size_before)}; ≈ {human_count(self.parameters_after)} "
            f"parameters ({sign}{abs(change):.0f} %)"
        )


def _attention_width(info: ModelInfo, layer: int) -> int:
    """Heads × head size of one layer, solved from its parameter count (exact for BERT).

    A BERT layer has ``4·H·A + 3·A + H`` attention, ``2·H·F + F + H`` FFN and ``4·H``
    LayerNorm parameters, where H is the hidden size, A the attention width, F the FFN width.
    """
    hidden = info.hidden
    heads = info.layer_heads[layer] if layer < len(info.layer_heads) else info.heads
    ffn = info.layer_ffn[layer] if layer < len(info.layer_ffn) else 4 * hidden
    fallback = heads * (hidden // max(info.heads, 1))
    if layer >= len(info.layer_params):
        return fallback
    width = (info.layer_params[layer] - 2 * hidden * ffn - ffn - 6 * hidden) / (4 * hidden + 3)
    if width > 0 and width.is_integer() and heads and int(width) % heads == 0:
        return int(width)
    return fallback


def estimate_chain(
    info: ModelInfo, steps: Sequence[Step], *, vocab_kept: int | None = None, num_labels: int = 2
) -> Estimate:
    """Parameters and size a chain should leave, from ``info`` and the steps only.

    Parameters follow the layer arithmetic of a BERT encoder; bytes per weight are 4
    (fp32), 2 (fp16/bf16), 1 (int8, plus a scale per row) or 0.625 (int4 with a bf16
    scale and offset per 32 weights). Unstructured pruning only zeroes weights, so it
    lowers the non-zero count, not the size.

    Args:
        info: the model's header summary.
        steps: the chain, in order.
        vocab_kept: token ids the training data uses, when counted; otherwise
            :data:`VOCAB_SHARE_GUESS` of the vocabulary.
        num_labels: classes of a new classifier head (when the model has none).
    """
    hidden = info.hidden
    n = info.layers
    heads = [info.layer_heads[i] if i < len(info.layer_heads) else info.heads for i in range(n)]
    ffn = [info.layer_ffn[i] if i < len(info.layer_ffn) else 4 * hidden for i in range(n)]
    head_dim = [_attention_width(info, i) / max(heads[i], 1) for i in range(n)]
    layers = [(heads[i], head_dim[i], ffn[i]) for i in range(n)]
    vocab = info.vocab
    notes: list[str] = []

    def layer_params(h: int, d: float, f: int) -> tuple[float, float]:
        """(all parameters, linear weights) of one layer."""
        width = h * d
        linear = 4 * hidden * width + 2 * hidden * f
        return linear + 3 * width + hidden + f + hidden + 4 * hidden, linear

    def totals(state: list[tuple[int, float, int]], vocab_size: int) -> tuple[float, float]:
        every = sum(layer_params(*s)[0] for s in state) + vocab_size * hidden
        linear = sum(layer_params(*s)[1] for s in state)
        return every, linear

    before_all, _ = totals(layers, vocab)
    other_emb = max(info.embedding_params - vocab * hidden, 0)
    head_extra = hidden * num_labels + num_labels if info.num_labels is None else 0
    vocab_counted = False
    sparsity = 0.0
    quant: Quantize | None = None
    for step in steps:
        if isinstance(step, Distill) and layers:
            keep = [i for i in (step.student_layers or default_student_layers(len(layers)))]
            layers = [layers[i] for i in keep if 0 <= i < len(layers)]
        elif isinstance(step, Prune):
            if step.method == "layers" and step.keep_layers:
                layers = [layers[i] for i in step.keep_layers if 0 <= i < len(layers)]
            elif step.method == "heads":
                layers = [(max(1, round(h * (1 - step.amount))), d, f) for h, d, f in layers]
            elif step.method == "ffn":
                layers = [(h, d, max(1, round(f * (1 - step.amount)))) for h, d, f in layers]
            elif step.method == "magnitude":
                sparsity = 1 - (1 - sparsity) * (1 - step.amount)
            elif step.method == "vocabulary":
                if vocab_kept is not None:
                    vocab, vocab_counted = min(vocab, vocab_kept), True
                else:
                    vocab = min(vocab, round(vocab * VOCAB_SHARE_GUESS))
                    notes.append(
                        "The vocabulary kept is a guess (about 38 % of a BERT vocabulary for "
                        "English sentences) until the training data has been counted."
                    )
        elif isinstance(step, Quantize):
            quant = step
    after_all, linear = totals(layers, vocab)
    parameters_after = max(int(round(info.parameters + head_extra + after_all - before_all)), 0)
    nonzero = int(round(parameters_after - sparsity * linear))
    if sparsity:
        notes.append(
            "Unstructured pruning sets weights to zero; the file keeps its size unless it is "
            "compressed, but the non-zero count drops."
        )

    per_weight = info.weights_bytes / info.parameters if info.parameters else 4.0
    if not info.weights_bytes:
        per_weight = 4.0
    word = vocab * hidden
    # Pooler and classifier are linear layers too; quantizers treat them as such.
    quantizable = linear + max(info.other_params, 0)
    rest = max(parameters_after - quantizable - word, 0)
    weights_before = {"f32": "fp32", "f16": "fp16"}.get(info.dtype.lower(), info.dtype.lower())
    if quant is None:
        weight_bytes = parameters_after * per_weight
        weights_after = weights_before
    elif quant.method in ("fp16", "bf16"):
        weight_bytes = parameters_after * 2.0
        weights_after = quant.method
    elif quant.backend == "onnxruntime":
        # onnxruntime's dynamic quantization makes every MatMul and Gather int8,
        # position and type tables included.
        rest = max(parameters_after - quantizable - word - other_emb, 0)
        weight_bytes = quantizable + word + other_emb + rest * 4.0
        weights_after = "int8 (onnxruntime)"
    else:
        per_q = 0.625 if quant.method == "weight_int4" else 1.0
        row_overhead = 8 * vocab if quant.embeddings else 0
        emb_bytes = word * per_q + row_overhead if quant.embeddings else word * per_weight
        weight_bytes = quantizable * per_q + emb_bytes + rest * per_weight
        weights_after = "int4" if quant.method == "weight_int4" else "int8"
    if quant is not None and quant.backend == "pytorch" and quant.tolerance < 100:
        notes.append(
            "The accuracy guard may keep a few sensitive layers in float, which makes the "
            "file somewhat larger."
        )
    extra = max(info.size_bytes - info.weights_bytes, 0)
    extra_after = extra * (vocab / info.vocab if info.vocab else 1.0)
    return Estimate(
        parameters_before=info.parameters,
        parameters_after=parameters_after,
        nonzero_after=nonzero,
        size_before=info.size_bytes,
        size_after=int(round(weight_bytes + extra_after)),
        layers_before=n,
        layers_after=len(layers),
        heads_before=heads,
        heads_after=[h for h, _, _ in layers],
        ffn_before=ffn,
        ffn_after=[f for _, _, f in layers],
        vocab_before=info.vocab,
        vocab_after=vocab,
        vocab_counted=vocab_counted,
        weights_before=weights_before,
        weights_after=weights_after,
        notes=notes,
    )


# --------------------------------------------------------------------------- worker tasks


@dataclass
class DataReport:
    """What the data page shows: the first rows, the mapping, and the label balance."""

    preview: data_mod.Preview
    text_column: str
    label_column: str
    label_names: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    eval_rows: int = 0
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    train_texts: list[str] = field(default_factory=list)


def inspect_data(generation: int, spec: dict[str, Any]) -> tuple[int, DataReport | str]:
    """Runs on a worker: preview the train file, then load and check the whole set.

    A problem the user can fix comes back as a sentence, not an exception, so the page
    can still show the preview and the columns to map.
    """
    try:
        demo = spec["train"] == data_mod.DEMO
        if demo:
            preview = data_mod.preview(data_mod.DatasetSpec(train=data_mod.DEMO), n=8)
        else:
            preview = data_mod.preview(Path(spec["train"]), n=8)
    except UserError as exc:
        return generation, str(exc)
    columns = preview.columns
    text = spec.get("text_column")
    label = spec.get("label_column")
    if text not in columns:
        text = preview.text_column or columns[0]
    if label not in columns:
        label = preview.label_column or columns[-1]
    report = DataReport(preview, text, label)
    try:
        full = data_mod.DatasetSpec.from_dict(dict(spec, text_column=text, label_column=label))
        dataset = data_mod.load_dataset(full)
    except UserError as exc:
        report.error = str(exc)
        return generation, report
    report.label_names = list(dataset.label_names)
    report.counts = data_mod.label_counts(dataset.train)
    report.eval_rows = len(dataset.eval)
    report.warnings = list(dataset.warnings)
    report.train_texts = list(dataset.train.texts)
    return generation, report


def count_vocabulary(key: tuple, folder: Path, texts: list[str]) -> tuple[tuple, int]:
    """Runs on a worker: token ids vocabulary pruning would keep (used + special)."""
    tokenizer = load_tokenizer(folder)
    used: set[int] = set()
    for start in range(0, len(texts), 2048):
        for ids in tokenizer(texts[start : start + 2048], add_special_tokens=True)["input_ids"]:
            used.update(ids)
    used.update(int(i) for i in tokenizer.all_special_ids)
    return key, len(used)


# --------------------------------------------------------------------------- small widgets


def _label(text: str = "", style: str | None = None, *, wrap: bool = True) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(wrap)
    if style:
        label.setStyleSheet(style)
    return label


def _error_label() -> QLabel:
    label = _label("", ERROR_STYLE)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setObjectName("error")
    label.hide()
    return label


def _show(label: QLabel, text: str) -> None:
    label.setText(text)
    label.setVisible(bool(text))


def _spin(low: float, high: float, value: float, *, decimals: int = 2, step: float = 0.1,
          suffix: str = "", tip: str = "") -> QDoubleSpinBox:  # fmt: skip
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    box.setSuffix(suffix)
    box.setToolTip(tip)
    box.setKeyboardTracking(True)
    box.setMaximumWidth(110)
    return box


def _combo(items: Iterable[tuple[str, str]], tip: str = "") -> QComboBox:
    box = QComboBox()
    for value, text in items:
        box.addItem(text, value)
    box.setToolTip(tip)
    return box


def _set_combo(box: QComboBox, value: Any) -> None:
    index = box.findData(value)
    if index >= 0:
        box.setCurrentIndex(index)


def _group(title: str, tip: str) -> QGroupBox:
    box = QGroupBox(title)
    box.setCheckable(True)
    box.setChecked(False)
    box.setToolTip(tip)
    return box


def _vbox(widget: QWidget) -> QVBoxLayout:
    layout = QVBoxLayout(widget)
    layout.setSpacing(4)
    return layout


def _percent(value: float, tip: str) -> QDoubleSpinBox:
    box = _spin(0, 100, value, decimals=0, step=5, suffix=" %", tip=tip)
    box.setMaximumWidth(90)
    return box


def _scope_combo(what: str) -> QComboBox:
    return _combo(
        [("global", "across the model"), ("layer", "in every layer")],
        f"Rank {what} across all layers (layers lose different amounts), or remove the same "
        "share from every layer",
    )


def _amount_row(box: QGroupBox, verb: str, amount: QDoubleSpinBox, scope: QComboBox) -> QVBoxLayout:
    row = QHBoxLayout()
    row.addWidget(QLabel(f"{verb}:"))
    row.addWidget(amount)
    row.addWidget(scope, 1)
    layout = _vbox(box)
    layout.addLayout(row)
    return layout


class LayerPicker(QWidget):
    """A row of toggle buttons, one per encoder layer: pressed = kept.

    Drawn as a little diagram, ``emb → L0 L1 … → head``, so it reads as the model.
    """

    changed = Signal()

    #: Buttons per row; a 24-layer model gets two rows.
    PER_ROW = 12

    _STYLE = (
        "QToolButton { min-width: 28px; min-height: 26px; border: 1px solid #9aa7b4;"
        " border-radius: 4px; background: #eef1f4; color: #7a8593; }"
        "QToolButton:checked { background: #2f7bbf; color: white; border-color: #1f5f99;"
        " font-weight: bold; }"
        "QToolButton:disabled { background: #f4f5f7; color: #b8bec6; }"
        "QToolButton:checked:disabled { background: #8fb3d6; color: #eef3f8; }"
    )

    def __init__(self, what: str = "kept", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.what = what
        self.buttons: list[QToolButton] = []
        self.setStyleSheet(self._STYLE)
        self._grid = QGridLayout()
        self._grid.setSpacing(3)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self.caption = _label("", NOTE_STYLE)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(self._grid)
        layout.addWidget(self.caption)

    def set_layers(self, count: int, selected: Iterable[int]) -> None:
        """Rebuild for ``count`` layers with ``selected`` pressed."""
        chosen = set(selected)
        while self._grid.count():
            item = self._grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.buttons = []
        self._grid.addWidget(_label("emb →", NOTE_STYLE, wrap=False), 0, 0)
        for i in range(count):
            button = QToolButton()
            button.setText(f"L{i}")
            button.setCheckable(True)
            button.setChecked(i in chosen)
            button.setToolTip(
                f"Encoder layer {i} (0 = nearest the embeddings): click to toggle whether it "
                f"is {self.what}."
            )
            button.toggled.connect(self._on_toggled)
            self.buttons.append(button)
            self._grid.addWidget(button, i // self.PER_ROW, 1 + i % self.PER_ROW)
        last = max(count - 1, 0)
        head = _label("→ head", NOTE_STYLE, wrap=False)
        self._grid.addWidget(head, last // self.PER_ROW, 2 + last % self.PER_ROW)
        self._grid.setColumnStretch(self.PER_ROW + 2, 1)
        self._update_caption()

    def selected(self) -> list[int]:
        return [i for i, b in enumerate(self.buttons) if b.isChecked()]

    def set_selected(self, layers: Iterable[int]) -> None:
        chosen = set(layers)
        for i, button in enumerate(self.buttons):
            button.blockSignals(True)
            button.setChecked(i in chosen)
            button.blockSignals(False)
        self._update_caption()

    def _on_toggled(self, _checked: bool) -> None:
        self._update_caption()
        self.changed.emit()

    def _update_caption(self) -> None:
        chosen = self.selected()
        listed = ", ".join(f"L{i}" for i in chosen) or "none"
        self.caption.setText(
            f"{self.what.capitalize()}: {listed} ({len(chosen)} of {len(self.buttons)})"
        )


class LabelBalance(QWidget):
    """Rows per label of the training split, as bars."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.counts: dict[str, int] = {}

    def set_counts(self, counts: dict[str, int]) -> None:
        self.counts = dict(counts)
        while self.form.rowCount():
            self.form.removeRow(0)
        total = max(sum(counts.values()), 1)
        for name, count in list(counts.items())[:12]:
            bar = QProgressBar()
            bar.setRange(0, total)
            bar.setValue(count)
            bar.setFormat(f"{count:,} rows ({100 * count / total:.0f} %)")
            bar.setMaximumHeight(18)
            bar.setMaximumWidth(260)
            self.form.addRow(f"{name}:", bar)
        if len(counts) > 12:
            self.form.addRow(_label(f"… and {len(counts) - 12} more labels", NOTE_STYLE))


# --------------------------------------------------------------------------- pages


class _Page(QWizardPage):
    """A page that knows its wizard as a :class:`CompressWizard` (not just QWizard)."""

    def __init__(self, wizard: CompressWizard, title: str, subtitle: str) -> None:
        super().__init__()
        self.wiz = wizard
        self.setTitle(title)
        self.setSubTitle(subtitle)

    def validatePage(self) -> bool:  # noqa: N802 (Qt override)
        # QWizard.next() (keyboard, code) asks only this; an incomplete page stays put.
        return self.isComplete()


class ModelPage(_Page):
    """(a) Which model: the browser's list, or a folder added here."""

    def __init__(self, wizard: CompressWizard) -> None:
        super().__init__(
            wizard,
            "Model",
            "Choose the model to compress. Only its headers are read now; the weights load "
            "when the job runs.",
        )
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setAlternatingRowColors(True)
        self.add_button = QPushButton("Add folder…")
        self.add_button.setToolTip(
            "Add a Hugging Face model folder (config.json, tokenizer and .safetensors)"
        )
        self.busy = _label("", NOTE_STYLE)
        self.error = _error_label()
        self.summary = _label()
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.summary.setMinimumWidth(300)
        self._wanted: Path | None = None
        self._discovering = False

        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.busy, 1)
        left = QVBoxLayout()
        left.addWidget(self.list, 1)
        left.addLayout(buttons)
        left.addWidget(self.error)
        box = QGroupBox("Selected model")
        box_layout = QVBoxLayout(box)
        box_layout.addWidget(self.summary)
        box_layout.addStretch(1)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 3)
        layout.addWidget(box, 2)

        self.list.currentItemChanged.connect(self._on_current_changed)
        self.add_button.clicked.connect(self._choose_folder)
        self._on_current_changed(None, None)

    # -- model list ------------------------------------------------------------------
    def set_models(self, infos: Sequence[ModelInfo]) -> None:
        current = self.selected_info()
        wanted = self._wanted or (current.path if current else None)
        self.list.clear()
        for info in infos:
            self._add_item(info)
        if wanted is not None:
            self.select_path(wanted)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)

    def _add_item(self, info: ModelInfo) -> QListWidgetItem:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if _same_path(item.data(Qt.ItemDataRole.UserRole).path, info.path):
                item.setData(Qt.ItemDataRole.UserRole, info)
                return item
        item = QListWidgetItem(
            f"{info.name}   ·   {human_count(info.parameters)} parameters, "
            f"{info.layers} layers, {info.source}"
        )
        item.setToolTip(str(info.path))
        item.setData(Qt.ItemDataRole.UserRole, info)
        self.list.addItem(item)
        return item

    def infos(self) -> list[ModelInfo]:
        return [self.list.item(r).data(Qt.ItemDataRole.UserRole) for r in range(self.list.count())]

    def select_path(self, path: Path | str) -> bool:
        self._wanted = Path(path)
        for row in range(self.list.count()):
            if _same_path(self.list.item(row).data(Qt.ItemDataRole.UserRole).path, path):
                self.list.setCurrentRow(row)
                self._wanted = None
                return True
        return False

    def selected_info(self) -> ModelInfo | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def initializePage(self) -> None:  # noqa: N802 (Qt override)
        # Opened without a list from the browser: find the packaged model and the cache.
        if not self.list.count() and not self._discovering:
            self._discovering = True
            self.busy.setText("Looking for models…")
            self.wiz.start_worker(
                discover_models, [], returned=self._on_discovered, errored=self._on_error
            )

    def _on_discovered(self, result: tuple[list[ModelInfo], list[str]]) -> None:
        self._discovering = False
        self.busy.setText("")
        infos, _skipped = result
        if not self.list.count():
            self.set_models(infos)

    # -- adding a folder -------------------------------------------------------------
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a model folder")
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: Path | str) -> None:
        """Inspect ``folder`` on the thread pool, then list and select it."""
        _show(self.error, "")
        self.busy.setText(f"Reading {Path(folder).name}…")
        self.add_button.setEnabled(False)
        self.wiz.start_worker(
            inspect_model, Path(folder), returned=self._on_inspected, errored=self._on_error
        )
        self.completeChanged.emit()

    def _on_inspected(self, info: ModelInfo) -> None:
        self.busy.setText("")
        self.add_button.setEnabled(True)
        item = self._add_item(info)
        self.list.setCurrentItem(item)
        self.completeChanged.emit()

    def _on_error(self, exc: BaseException) -> None:
        self._discovering = False
        self.busy.setText("")
        self.add_button.setEnabled(True)
        if isinstance(exc, UserError):
            _show(self.error, str(exc))
        else:
            log.error("Reading a model failed", exc_info=exc)
            _show(self.error, f"Could not read the model: {type(exc).__name__}: {exc}")
        self.completeChanged.emit()

    # -- summary ---------------------------------------------------------------------
    def _on_current_changed(self, *_args: Any) -> None:
        info = self.selected_info()
        if info is None:
            self.summary.setText("<i>Select a model, or add a folder.</i>")
        else:
            share = 100.0 * info.embedding_params / max(info.parameters, 1)
            if info.num_labels is None:
                head = (
                    "<b>none</b> — an encoder only. Fine-tuning on your data is required and "
                    "will be the first step of every chain."
                )
            else:
                head = f"yes, {info.num_labels} classes"
            rows = [
                ("Parameters", f"{info.parameters:,} ({human_count(info.parameters)})"),
                ("Embeddings", f"{human_count(info.embedding_params)} ({share:.0f} %)"),
                ("Size on disk", human_bytes(info.size_bytes)),
                ("Layers", str(info.layers)),
                ("Heads per layer", heads_text(info)),
                ("Hidden size", str(info.hidden)),
                ("Vocabulary", f"{info.vocab:,} tokens"),
                ("Classifier head", head),
                ("Family", info.family),
            ]
            table = "".join(
                f"<tr><td style='padding-right:10px'>{k}:</td><td>{v}</td></tr>" for k, v in rows
            )
            self.summary.setText(f"<h3>{_escape(info.name)}</h3><table>{table}</table>")
        self.wiz.model_changed()
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # noqa: N802 (Qt override)
        return self.selected_info() is not None and self.add_button.isEnabled()


class DataPage(_Page):
    """(b) Which data: the built-in demo, or a file with a column mapping."""

    def __init__(self, wizard: CompressWizard) -> None:
        super().__init__(
            wizard,
            "Data",
            "Choose the labelled texts to fine-tune, distil and measure on.",
        )
        self.demo_radio = QRadioButton(
            "Built-in demo data — 440 short review sentences labelled positive or negative "
            "(for trying the app, not a benchmark)"
        )
        self.file_radio = QRadioButton("My own file: CSV, TSV, JSON Lines or Parquet")
        self.demo_radio.setChecked(True)
        self.train_edit = QLineEdit()
        self.train_edit.setPlaceholderText("training file")
        self.train_browse = QPushButton("Browse…")
        self.eval_edit = QLineEdit()
        self.eval_edit.setPlaceholderText(
            "optional — without it, 10 % of the training rows are held out for evaluation"
        )
        self.eval_browse = QPushButton("Browse…")
        self.text_combo = QComboBox()
        self.text_combo.setToolTip("The column holding the text to classify")
        self.label_combo = QComboBox()
        self.label_combo.setToolTip("The column holding each row's label (a number or a name)")
        for combo in (self.text_combo, self.label_combo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
            combo.setMinimumWidth(140)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        self.table.setAlternatingRowColors(True)
        self.balance = LabelBalance()
        self.status = _label("", NOTE_STYLE)
        self.warnings = _label("", WARNING_STYLE)
        self.warnings.hide()
        self.error = _error_label()

        files = QGridLayout()
        files.addWidget(QLabel("Train:"), 0, 0)
        files.addWidget(self.train_edit, 0, 1)
        files.addWidget(self.train_browse, 0, 2)
        files.addWidget(QLabel("Eval:"), 1, 0)
        files.addWidget(self.eval_edit, 1, 1)
        files.addWidget(self.eval_browse, 1, 2)
        files.setContentsMargins(24, 0, 0, 0)
        self.files_box = QWidget()
        self.files_box.setLayout(files)
        mapping = QHBoxLayout()
        mapping.addWidget(QLabel("Text column:"))
        mapping.addWidget(self.text_combo)
        mapping.addSpacing(16)
        mapping.addWidget(QLabel("Label column:"))
        mapping.addWidget(self.label_combo)
        mapping.addStretch(1)
        balance_box = QGroupBox("Label balance (train)")
        balance_layout = QVBoxLayout(balance_box)
        balance_layout.addWidget(self.balance)
        balance_layout.addStretch(1)
        preview_box = QGroupBox("First rows")
        preview_layout = QVBoxLayout(preview_box)
        preview_layout.addLayout(mapping)
        preview_layout.addWidget(self.table, 1)
        lower = QHBoxLayout()
        lower.addWidget(preview_box, 3)
        lower.addWidget(balance_box, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.demo_radio)
        layout.addWidget(self.file_radio)
        layout.addWidget(self.files_box)
        layout.addLayout(lower, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.warnings)
        layout.addWidget(self.error)

        self._generation = 0
        self._loading = False
        self.report: DataReport | None = None
        self._loaded_spec: dict[str, Any] | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(250)  # typing a path: read once the user pauses
        self._timer.timeout.connect(self.refresh)
        self.demo_radio.toggled.connect(self._on_source_changed)
        self.train_edit.textChanged.connect(self._schedule)
        self.eval_edit.textChanged.connect(self._schedule)
        self.text_combo.activated.connect(self.refresh)
        self.label_combo.activated.connect(self.refresh)
        self.train_browse.clicked.connect(lambda: self._browse(self.train_edit, "training"))
        self.eval_browse.clicked.connect(lambda: self._browse(self.eval_edit, "evaluation"))
        self._on_source_changed()

    # -- what the user chose ---------------------------------------------------------
    def use_demo(self) -> bool:
        return self.demo_radio.isChecked()

    def spec(self) -> dict[str, Any]:
        """The recipe's ``dataset:`` mapping for the current choice."""
        if self.use_demo():
            return dict(DEMO_SPEC, labels=list(DEMO_SPEC["labels"]))
        spec: dict[str, Any] = {"train": str(Path(self.train_edit.text().strip()).expanduser())}
        if self.eval_edit.text().strip():
            spec["eval"] = str(Path(self.eval_edit.text().strip()).expanduser())
        if self.text_combo.currentText():
            spec["text_column"] = self.text_combo.currentText()
        if self.label_combo.currentText():
            spec["label_column"] = self.label_combo.currentText()
        return spec

    def num_labels(self) -> int | None:
        return len(self.report.label_names) if self.report and self.report.label_names else None

    def _browse(self, edit: QLineEdit, what: str) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            f"Choose the {what} file",
            str(Path(edit.text()).parent) if edit.text() else "",
            "Data files (*.csv *.tsv *.tab *.jsonl *.ndjson *.json *.parquet *.pq);;All files (*)",
        )
        if path:
            edit.setText(path)

    def _on_source_changed(self, *_args: Any) -> None:
        demo = self.use_demo()
        self.files_box.setEnabled(not demo)
        self.text_combo.setEnabled(not demo)
        self.label_combo.setEnabled(not demo)
        self.refresh()

    # -- reading ---------------------------------------------------------------------
    def _schedule(self, *_args: Any) -> None:
        self._timer.start()
        self.completeChanged.emit()

    def refresh(self) -> None:
        """Read the chosen data again on the thread pool (older reads are ignored)."""
        self._timer.stop()
        self._generation += 1
        spec = self.spec()
        self.report = None
        _show(self.error, "")
        self.warnings.hide()
        if not self.use_demo() and not self.train_edit.text().strip():
            self._loading = False
            self.status.setText("Choose a training file, or use the demo data.")
            self._clear_preview()
            self.completeChanged.emit()
            return
        self._loading = True
        self.status.setText("Reading the data…")
        self.wiz.start_worker(
            inspect_data,
            self._generation,
            spec,
            returned=self._on_inspected,
            errored=self._on_error,
        )
        self.completeChanged.emit()

    def _clear_preview(self) -> None:
        for combo in (self.text_combo, self.label_combo):
            combo.clear()
        self.table.clear()
        self.table.setRowCount(0)
        self.table.setColumnCount(0)
        self.balance.set_counts({})

    def _on_inspected(self, result: tuple[int, DataReport | str]) -> None:
        generation, report = result
        if generation != self._generation or self.wiz.closing:
            return
        self._loading = False
        if isinstance(report, str):
            self._clear_preview()
            self.status.setText("")
            _show(self.error, report)
            self.completeChanged.emit()
            return
        self._fill_columns(report)
        self._fill_table(report.preview)
        self.balance.set_counts(report.counts)
        if report.error:
            self.status.setText(
                f"{report.preview.total_rows:,} rows in {report.preview.path.name}."
            )
            _show(self.error, report.error)
        else:
            self.report = report
            self._loaded_spec = self.spec()
            total = sum(report.counts.values())
            self.status.setText(
                f"{total:,} training rows, {report.eval_rows:,} evaluation rows, "
                f"{len(report.label_names)} labels: {', '.join(report.label_names[:8])}"
                + (" …" if len(report.label_names) > 8 else "")
            )
            _show(self.warnings, "\n".join(report.warnings))
            self.wiz.request_vocabulary_count()
        self.completeChanged.emit()

    def _on_error(self, exc: BaseException) -> None:
        if self.wiz.closing:
            return
        self._loading = False
        log.error("Reading the data failed", exc_info=exc)
        _show(self.error, f"Could not read the data: {type(exc).__name__}: {exc}")
        self.completeChanged.emit()

    def _fill_columns(self, report: DataReport) -> None:
        for combo, value in ((self.text_combo, report.text_column),
                             (self.label_combo, report.label_column)):  # fmt: skip
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(report.preview.columns)
            combo.setCurrentText(value)
            combo.blockSignals(False)

    def _fill_table(self, preview: data_mod.Preview) -> None:
        self.table.clear()
        self.table.setColumnCount(len(preview.columns))
        self.table.setRowCount(len(preview.rows))
        self.table.setHorizontalHeaderLabels(preview.columns)
        for r, row in enumerate(preview.rows):
            for c, value in enumerate(row):
                item = QTableWidgetItem(value)
                item.setToolTip(value)
                self.table.setItem(r, c, item)
        header = self.table.horizontalHeader()
        for c in range(len(preview.columns)):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        # The text column takes the room left; the others stay as wide as their values.
        text_index = preview.columns.index(self.text_combo.currentText()) if (
            self.text_combo.currentText() in preview.columns
        ) else 0  # fmt: skip
        header.setSectionResizeMode(text_index, QHeaderView.ResizeMode.Stretch)

    def initializePage(self) -> None:  # noqa: N802 (Qt override)
        if self.report is None and not self._loading:
            self.refresh()
        else:
            self.wiz.request_vocabulary_count()

    def is_loading(self) -> bool:
        return self._loading or self._timer.isActive()

    def isComplete(self) -> bool:  # noqa: N802 (Qt override)
        return not self.is_loading() and self.report is not None and not self.error.text()


class TechniquesPage(_Page):
    """(c) What to do: a preset, or a custom chain of techniques."""

    def __init__(self, wizard: CompressWizard) -> None:
        super().__init__(
            wizard,
            "Techniques",
            "Pick a preset, or tick techniques to build your own chain. Steps run in this "
            "order: column by column, top to bottom.",
        )
        self._loading = False
        self._layers = 0
        self._preset_steps: list[Step] = []
        self._preset_notes: list[str] = []
        self._needed = False

        self.preset_buttons: dict[str, QRadioButton] = {}
        self.preset_group = QButtonGroup(self)
        presets = QHBoxLayout()
        presets.addWidget(QLabel("Preset:"))
        for name in (*PRESETS, "custom"):
            button = QRadioButton(name.capitalize())
            button.setToolTip(PRESET_BLURBS.get(name, "Choose the techniques yourself below."))
            self.preset_group.addButton(button)
            self.preset_buttons[name] = button
            presets.addWidget(button)
        presets.addStretch(1)
        self.preset_buttons["balanced"].setChecked(True)
        self.description = _label()
        self.description.setTextFormat(Qt.TextFormat.RichText)

        # fine-tune
        self.finetune_box = _group("Fine-tune", "Train the whole model on your data first")
        self.finetune_note = _label("Trains the whole model on your data first.", NOTE_STYLE)
        _vbox(self.finetune_box).addWidget(self.finetune_note)

        # distill
        self.distill_box = _group(
            "Distill into a smaller student",
            "Build a shallower student from some of the teacher's layers and train it to "
            "imitate the teacher",
        )
        self.student_picker = LayerPicker("kept in the student")
        self.temperature = _spin(0.5, 20, 2.0, decimals=1, step=0.5,
                                 tip="Temperature: softens both models' outputs for the "
                                 "KD loss")  # fmt: skip
        self.alpha_kd = _spin(0, 1, 0.5, step=0.1,
                              tip="Weight of the teacher's soft labels (KD); the rest goes to "
                              "the true labels")  # fmt: skip
        self.hidden_mse = _spin(0, 100, 0.0, step=0.5,
                                tip="Weight of matching the teacher's hidden states layer by "
                                "layer (1.0 helped on SST-2)")  # fmt: skip
        self.attention_mse = _spin(0, 100, 0.0, step=0.5,
                                   tip="Weight of matching the teacher's attention maps")  # fmt: skip
        knobs = QGridLayout()
        knobs.addWidget(QLabel("Temperature:"), 0, 0)
        knobs.addWidget(self.temperature, 0, 1)
        knobs.addWidget(QLabel("KD weight:"), 0, 2)
        knobs.addWidget(self.alpha_kd, 0, 3)
        knobs.addWidget(QLabel("Hidden MSE:"), 1, 0)
        knobs.addWidget(self.hidden_mse, 1, 1)
        knobs.addWidget(QLabel("Attention MSE:"), 1, 2)
        knobs.addWidget(self.attention_mse, 1, 3)
        knobs.setColumnStretch(4, 1)
        distill_layout = _vbox(self.distill_box)
        distill_layout.addWidget(_label("Teacher layers; pressed ones are kept:", wrap=False))
        distill_layout.addWidget(self.student_picker)
        distill_layout.addLayout(knobs)

        # drop layers
        self.layers_box = _group("Drop whole layers", "Remove encoder layers, then recover")
        self.keep_picker = LayerPicker("kept")
        _vbox(self.layers_box).addWidget(self.keep_picker)

        # heads / FFN / weights
        self.heads_box = _group("Prune attention heads",
                                "Remove the least important heads; one always stays per layer")  # fmt: skip
        self.heads_amount = _percent(30, "Share of all attention heads removed")
        self.heads_scope = _scope_combo("heads")
        _amount_row(self.heads_box, "Remove", self.heads_amount, self.heads_scope)

        self.ffn_box = _group("Prune FFN neurons", "Remove the least important FFN neurons")
        self.ffn_amount = _percent(50, "Share of all feed-forward neurons removed")
        self.ffn_scope = _scope_combo("neurons")
        _amount_row(self.ffn_box, "Remove", self.ffn_amount, self.ffn_scope)

        self.magnitude_box = _group(
            "Prune weights (unstructured)",
            "Zero the smallest weights of the encoder's linear layers. The file keeps its "
            "size; sparse runtimes can use the zeros.",
        )
        self.magnitude_amount = _percent(50, "Share of encoder weights set to zero")
        self.magnitude_scope = _scope_combo("weights")
        self.magnitude_schedule = _combo(
            [("oneshot", "all at once"), ("gradual", "gradually")],
            "Gradual pruning raises sparsity step by step during the recovery training",
        )
        mag_layout = _amount_row(
            self.magnitude_box, "Zero", self.magnitude_amount, self.magnitude_scope
        )
        schedule_row = QHBoxLayout()
        schedule_row.addWidget(QLabel("Schedule:"))
        schedule_row.addWidget(self.magnitude_schedule)
        schedule_row.addStretch(1)
        mag_layout.addLayout(schedule_row)

        self.vocab_box = _group("Prune vocabulary", "Keep only the tokens the training data uses")
        _vbox(self.vocab_box).addWidget(
            _label(
                "Keeps the token ids the training texts use; others become [UNK].", NOTE_STYLE
            )  # fmt: skip
        )

        # quantize
        self.quant_box = _group("Quantize", "Store (and compute) the weights in fewer bits")
        self.quant_method = _combo(
            [
                ("dynamic_int8", "dynamic int8"),
                ("weight_int8", "weight-only int8"),
                ("weight_int4", "weight-only int4"),
                ("fp16", "fp16"),
                ("bf16", "bf16"),
            ],
            "dynamic int8: fast on CPU; weight-only int8/int4: smaller files, dequantized at "
            "run time; fp16/bf16: half precision (fp16 is for GPUs)",
        )
        self.quant_backend = _combo(
            [("onnxruntime", "onnxruntime"), ("pytorch", "PyTorch")],
            "onnxruntime: exports to ONNX, the fastest on CPU, dynamic int8 only. "
            "PyTorch: every method, with an accuracy guard",
        )
        self.per_channel = QCheckBox("Per-channel scales")
        self.per_channel.setChecked(True)
        self.per_channel.setToolTip("One scale per output channel: more accurate, same speed")
        self.quant_embeddings = QCheckBox("Quantize embeddings")
        self.quant_embeddings.setChecked(True)
        self.quant_embeddings.setToolTip(
            "The word-embedding table is often half of a small model (PyTorch backend; "
            "onnxruntime always quantizes it)"
        )
        self.tolerance = _spin(0, 100, 1.0, decimals=1, step=0.5, suffix=" pt",
                               tip="Accuracy guard: the most accuracy (in points) this step "
                               "may cost; sensitive layers stay in float until it fits, else "
                               "the step fails")  # fmt: skip
        quant_form = QFormLayout(self.quant_box)
        quant_form.addRow("Method:", self.quant_method)
        quant_form.addRow("Backend:", self.quant_backend)
        quant_form.addRow(self.per_channel)
        quant_form.addRow(self.quant_embeddings)
        quant_form.addRow("Max. loss:", self.tolerance)

        # measure
        self.measure_box = QGroupBox("Measure the result")
        self.evaluate_check = QCheckBox("Accuracy on the eval split")
        self.evaluate_check.setChecked(True)
        self.benchmark_check = QCheckBox("Size and CPU latency")
        self.benchmark_check.setChecked(True)
        measure_layout = _vbox(self.measure_box)
        measure_layout.addWidget(self.evaluate_check)
        measure_layout.addWidget(self.benchmark_check)

        columns = QHBoxLayout()
        for boxes, stretch in (
            ((self.finetune_box, self.distill_box, self.layers_box), 5),
            ((self.heads_box, self.ffn_box, self.magnitude_box, self.vocab_box), 4),
            ((self.quant_box, self.measure_box), 3),
        ):
            column = QVBoxLayout()
            for box in boxes:
                column.addWidget(box)
            column.addStretch(1)
            columns.addLayout(column, stretch)
        inner = QWidget()
        inner.setLayout(columns)
        self.scroll = QScrollArea()
        self.scroll.setWidget(inner)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)

        self.error = _error_label()
        layout = QVBoxLayout(self)
        layout.addLayout(presets)
        layout.addWidget(self.description)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(self.error)
        self.preset_group.buttonToggled.connect(self._on_preset_toggled)
        for box in (self.finetune_box, self.distill_box, self.layers_box, self.heads_box,
                    self.ffn_box, self.magnitude_box, self.vocab_box, self.quant_box):  # fmt: skip
            box.toggled.connect(self._on_edited)
        for spin in (self.temperature, self.alpha_kd, self.hidden_mse, self.attention_mse,
                     self.heads_amount, self.ffn_amount, self.magnitude_amount,
                     self.tolerance):  # fmt: skip
            spin.valueChanged.connect(self._on_edited)
        for combo in (self.heads_scope, self.ffn_scope, self.magnitude_scope,
                      self.magnitude_schedule, self.quant_method, self.quant_backend):  # fmt: skip
            combo.currentIndexChanged.connect(self._on_edited)
        for check in (self.per_channel, self.quant_embeddings, self.evaluate_check,
                      self.benchmark_check):  # fmt: skip
            check.toggled.connect(self._on_edited)
        self.student_picker.changed.connect(self._on_edited)
        self.keep_picker.changed.connect(self._on_edited)

    # -- state -----------------------------------------------------------------------
    def preset(self) -> str:
        """``"fast"``, ``"balanced"``, ``"smallest"`` or ``"custom"``."""
        for name, button in self.preset_buttons.items():
            if button.isChecked():
                return name
        return "custom"

    def choose(self, name: str) -> None:
        """Select a preset (or ``"custom"``) as if its button were clicked."""
        self.preset_buttons[name].setChecked(True)

    def chain(self) -> list[Step]:
        """The steps chosen, with training settings still at their defaults."""
        if self.preset() != "custom":
            return [dataclasses.replace(s) for s in self._preset_steps]
        return self._custom_steps()

    def _custom_steps(self) -> list[Step]:
        steps: list[Step] = []
        if self.finetune_box.isChecked():
            steps.append(FineTune())
        if self.distill_box.isChecked():
            steps.append(
                Distill(
                    student_layers=self.student_picker.selected(),
                    temperature=self.temperature.value(),
                    alpha_kd=self.alpha_kd.value(),
                    hidden_mse=self.hidden_mse.value(),
                    attention_mse=self.attention_mse.value(),
                )
            )
        if self.layers_box.isChecked():
            steps.append(Prune(method="layers", keep_layers=self.keep_picker.selected()))
        if self.heads_box.isChecked():
            steps.append(Prune(method="heads", amount=self.heads_amount.value() / 100,
                               scope=self.heads_scope.currentData()))  # fmt: skip
        if self.ffn_box.isChecked():
            steps.append(Prune(method="ffn", amount=self.ffn_amount.value() / 100,
                               scope=self.ffn_scope.currentData()))  # fmt: skip
        if self.magnitude_box.isChecked():
            steps.append(
                Prune(
                    method="magnitude",
                    amount=self.magnitude_amount.value() / 100,
                    scope=self.magnitude_scope.currentData(),
                    schedule=self.magnitude_schedule.currentData(),
                )
            )
        if self.vocab_box.isChecked():
            steps.append(Prune(method="vocabulary", recovery_epochs=0.0))
        if self.quant_box.isChecked():
            steps.append(
                Quantize(
                    method=self.quant_method.currentData(),
                    per_channel=self.per_channel.isChecked(),
                    embeddings=self.quant_embeddings.isChecked(),
                    tolerance=self.tolerance.value(),
                    backend=self.quant_backend.currentData(),
                )
            )
        if self.evaluate_check.isChecked():
            steps.append(Evaluate())
        if self.benchmark_check.isChecked():
            steps.append(Benchmark())
        return steps

    def problems(self) -> list[str]:
        """Sentences saying what is wrong with the current choice (empty: all fine)."""
        out: list[str] = []
        steps = self.chain()
        custom = self.preset() == "custom"
        techniques = [s for s in steps if not isinstance(s, (Evaluate, Benchmark))]
        if not techniques:
            out.append("Choose at least one technique, or pick a preset.")
        n = self._layers
        for box, picker, what in (
            (self.distill_box, self.student_picker, "Distill"),
            (self.layers_box, self.keep_picker, "Drop whole layers"),
        ):
            if not custom or not box.isChecked():
                continue
            chosen = picker.selected()
            if not chosen:
                out.append(f"{what}: select at least one layer to keep (click its button).")
            elif n and len(chosen) >= n:
                out.append(
                    f"{what}: all {n} layers are selected, so nothing gets smaller; "
                    "leave at least one layer out."
                )
        if custom and self.distill_box.isChecked() and self.layers_box.isChecked():
            out.append(
                "Choose either distillation or dropping layers: both decide which layers "
                "stay, and the second would count layers of the first one's result."
            )
        if self._needed and not any(isinstance(s, FineTune) for s in steps):
            out.append("Fine-tune: this model needs fine-tuning on your data first.")
        for step in steps:
            try:
                dataclasses.replace(step).validate()
            except RecipeError as exc:
                out.append(f"{step_title(step)} — {exc}")
        return out

    # -- reacting --------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802 (Qt override)
        info = self.wiz.model_info()
        self._needed = needs_finetune(info, self.wiz.data_page.num_labels())
        layers = info.layers if info is not None else 0
        if layers != self._layers or not self.student_picker.buttons:
            self._layers = layers
            self._loading = True
            self.student_picker.set_layers(layers, default_student_layers(layers))
            self.keep_picker.set_layers(layers, default_student_layers(layers))
            self._loading = False
        self._enforce_finetune()
        if self._needed:
            self.finetune_note.setText(
                "Required: this model has no classifier head for your labels yet, so the "
                "chain starts by training one."
            )
        else:
            self.finetune_note.setText("Trains the whole model on your data first.")
        if self.preset() != "custom":
            self._apply_preset(self.preset())
        else:
            self._update()

    def _enforce_finetune(self) -> None:
        """Keep fine-tuning ticked while the model needs it (no head for these labels)."""
        if self._needed and not self.finetune_box.isChecked():
            loading, self._loading = self._loading, True
            self.finetune_box.setChecked(True)
            self._loading = loading

    def _on_preset_toggled(self, button: QRadioButton, checked: bool) -> None:
        if not checked or self._loading:
            return
        name = self.preset()
        if name != "custom":
            self._apply_preset(name)
        else:
            self._update()

    def _apply_preset(self, name: str) -> None:
        info = self.wiz.model_info()
        self._preset_steps, self._preset_notes = adapt_chain(
            load_preset(name), info, self.wiz.data_page.num_labels()
        )
        self._show_chain(self._preset_steps)
        self._update()

    def _show_chain(self, steps: Sequence[Step]) -> None:
        """Set the custom controls to show ``steps``, so Custom starts from the preset."""
        self._loading = True
        try:
            first = _first_of(steps)
            self.finetune_box.setChecked(first(FineTune) is not None or self._needed)
            distill = first(Distill)
            self.distill_box.setChecked(distill is not None)
            if distill is not None:
                self.student_picker.set_selected(
                    distill.student_layers or default_student_layers(self._layers)
                )
                self.temperature.setValue(distill.temperature)
                self.alpha_kd.setValue(distill.alpha_kd)
                self.hidden_mse.setValue(distill.hidden_mse)
                self.attention_mse.setValue(distill.attention_mse)
            prunes = {s.method: s for s in steps if isinstance(s, Prune)}
            layers = prunes.get("layers")
            self.layers_box.setChecked(layers is not None)
            if layers is not None:
                self.keep_picker.set_selected(layers.keep_layers or [])
            for method, box, amount, scope in (
                ("heads", self.heads_box, self.heads_amount, self.heads_scope),
                ("ffn", self.ffn_box, self.ffn_amount, self.ffn_scope),
                ("magnitude", self.magnitude_box, self.magnitude_amount, self.magnitude_scope),
            ):
                step = prunes.get(method)
                box.setChecked(step is not None)
                if step is not None:
                    amount.setValue(100 * step.amount)
                    _set_combo(scope, step.scope)
                    if method == "magnitude":
                        _set_combo(self.magnitude_schedule, step.schedule)
            self.vocab_box.setChecked("vocabulary" in prunes)
            quant = first(Quantize)
            self.quant_box.setChecked(quant is not None)
            if quant is not None:
                _set_combo(self.quant_method, quant.method)
                _set_combo(self.quant_backend, quant.backend)
                self.per_channel.setChecked(quant.per_channel)
                self.quant_embeddings.setChecked(quant.embeddings)
                self.tolerance.setValue(quant.tolerance)
            self.evaluate_check.setChecked(first(Evaluate) is not None)
            self.benchmark_check.setChecked(first(Benchmark) is not None)
        finally:
            self._loading = False

    def _on_edited(self, *_args: Any) -> None:
        if self._loading:
            return
        self._enforce_finetune()
        if self.preset() != "custom":
            # Changing a technique makes the chain the user's own.
            self._loading = True
            self.preset_buttons["custom"].setChecked(True)
            self._loading = False
        self._update()

    def _update(self) -> None:
        steps = self.chain()
        lines = " → ".join(step_summary(s) for s in steps) or "no steps"
        if self.preset() == "custom":
            text = f"<b>Custom:</b> {_escape(lines)}"
        else:
            text = f"<b>{_escape(PRESET_BLURBS[self.preset()])}</b><br>{_escape(lines)}"
        notes = self._preset_notes if self.preset() != "custom" else []
        if notes:
            text += "<br><span style='color:#6b7785'>" + _escape(" ".join(notes)) + "</span>"
        self.description.setText(text)
        _show(self.error, "\n".join(self.problems()))
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # noqa: N802 (Qt override)
        return not self.problems()


@dataclass
class _TrainingRow:
    """The widgets of one training step's settings row."""

    index: int
    epochs: QDoubleSpinBox
    learning_rate: QComboBox
    batch_size: QSpinBox


class SettingsPage(_Page):
    """(d) How to run: training settings per step, device, threads, output folder."""

    def __init__(self, wizard: CompressWizard) -> None:
        super().__init__(
            wizard,
            "Settings",
            "Training settings for each step that trains, and where the job runs and writes.",
        )
        self.rows: list[_TrainingRow] = []
        self._signature: tuple | None = None
        self._output_edited = False
        self._name_edited = False

        self.training_box = QGroupBox("Training")
        self.training_grid = QGridLayout(self.training_box)

        self.name_edit = QLineEdit()
        self.name_edit.setToolTip("How the job is listed in the Jobs area and its history")
        self.device = QComboBox()
        self.device.addItem("auto — a GPU if there is one, else the CPU", "auto")
        self.device.addItem("CPU", "cpu")
        self.device.addItem("CUDA GPU", "cuda")
        self.device.setToolTip("Where training runs; latency is always measured on the CPU")
        if not _cuda_available():
            item = self.device.model().item(2)
            item.setEnabled(False)
            tip = "No CUDA GPU is available here (torch.cuda.is_available() is False)."
            item.setToolTip(tip)
            self.device.setItemData(2, tip, Qt.ItemDataRole.ToolTipRole)
        self.threads = QSpinBox()
        self.threads.setMinimumWidth(80)
        self.threads.setRange(0, max(os.cpu_count() or 1, 1))
        self.threads.setSpecialValueText("auto")
        self.threads.setToolTip(
            "CPU threads for PyTorch and for the latency benchmark; auto = PyTorch's default "
            "(the benchmark then uses 2)"
        )
        self.output_edit = QLineEdit()
        self.output_edit.setToolTip(
            "Folder that receives one sub-folder per saved variant. {data} is the app's data "
            "folder."
        )
        self.output_browse = QPushButton("Browse…")
        self.output_resolved = _label("", NOTE_STYLE, wrap=False)
        self.output_resolved.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        output_row = QHBoxLayout()
        output_row.addWidget(self.output_edit, 1)
        output_row.addWidget(self.output_browse)
        run_box = QGroupBox("Job")
        form = QFormLayout(run_box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.addRow("Name:", self.name_edit)
        form.addRow("Device:", self.device)
        form.addRow("Threads:", self.threads)
        form.addRow("Output folder:", output_row)
        form.addRow("", self.output_resolved)
        self.error = _error_label()
        layout = QVBoxLayout(self)
        layout.addWidget(self.training_box)
        layout.addWidget(run_box)
        layout.addStretch(1)
        layout.addWidget(self.error)

        self.name_edit.textEdited.connect(self._on_name_edited)
        self.output_edit.textEdited.connect(self._on_output_edited)
        self.output_edit.textChanged.connect(self._update)
        self.name_edit.textChanged.connect(self._update)
        self.output_browse.clicked.connect(self._browse)

    # -- rows ------------------------------------------------------------------------
    def _rebuild_rows(self, steps: Sequence[Step]) -> None:
        while self.training_grid.count():
            item = self.training_grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.rows = []
        headers = ("Step", "Epochs", "Learning rate", "Batch size")
        for col, text in enumerate(headers):
            self.training_grid.addWidget(_label(f"<b>{text}</b>", wrap=False), 0, col)
        line = 1
        for index, step in enumerate(steps):
            if not trains(step):
                continue
            is_prune = isinstance(step, Prune)
            epochs = _spin(0 if is_prune else 0.05, 100,
                           step.recovery_epochs if is_prune else step.epochs,
                           step=0.5,
                           tip="Passes over the training data; fractions allowed (0.5)"
                           + ("; 0 = no recovery training" if is_prune else ""))  # fmt: skip
            lr = QComboBox()
            lr.setEditable(True)
            lr.addItems(LEARNING_RATES)
            lr.setCurrentText(format_lr(step.learning_rate))
            lr.setToolTip("Peak learning rate of AdamW, e.g. 5e-5 for fine-tuning, 1e-4 for "
                          "distillation")  # fmt: skip
            lr.setMaximumWidth(140)
            batch = QSpinBox()
            batch.setMaximumWidth(110)
            batch.setRange(1, 4096)
            batch.setValue(step.batch_size)
            batch.setToolTip("Examples per optimizer step; lower it if memory runs out")
            title = step_title(step) + (" — recovery" if is_prune else "")
            self.training_grid.addWidget(QLabel(title), line, 0)
            self.training_grid.addWidget(epochs, line, 1)
            self.training_grid.addWidget(lr, line, 2)
            self.training_grid.addWidget(batch, line, 3)
            epochs.valueChanged.connect(self._update)
            lr.currentTextChanged.connect(self._update)
            batch.valueChanged.connect(self._update)
            self.rows.append(_TrainingRow(index, epochs, lr, batch))
            line += 1
        if not self.rows:
            self.training_grid.addWidget(
                _label("No step of this chain trains.", NOTE_STYLE), 1, 0, 1, 4
            )
        self.training_grid.setColumnStretch(0, 2)
        for col in (1, 2, 3):
            self.training_grid.setColumnStretch(col, 1)

    def row_for(self, step_type: str, method: str | None = None) -> _TrainingRow | None:
        """The settings row of the first step of that type (tests and the lead's code)."""
        steps = self.wiz.techniques_page.chain()
        for row in self.rows:
            step = steps[row.index] if row.index < len(steps) else None
            if (
                step is not None
                and step.step_type == step_type
                and (method is None or getattr(step, "method", None) == method)
            ):
                return row
        return None

    def apply(self, steps: list[Step]) -> list[Step]:
        """``steps`` with this page's training settings written into them.

        Raises:
            UserError: a learning rate that is not a number.
        """
        out = [dataclasses.replace(s) for s in steps]
        for row in self.rows:
            if row.index >= len(out):
                continue
            step = out[row.index]
            lr = _parse_lr(row.learning_rate.currentText(), step_title(step))
            if isinstance(step, Prune):
                step.recovery_epochs = row.epochs.value()
            else:
                step.epochs = row.epochs.value()
            step.learning_rate = lr
            step.batch_size = row.batch_size.value()
        if self.threads.value():
            for step in out:
                if isinstance(step, Benchmark):
                    step.threads = self.threads.value()
        return out

    # -- page ------------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802 (Qt override)
        steps = self.wiz.techniques_page.chain()
        signature = (
            self.wiz.techniques_page.preset(),
            tuple((s.step_type, getattr(s, "method", None)) for s in steps),
        )
        if signature != self._signature:
            # A new chain: start from its own values (a preset's epochs, say).
            self._signature = signature
            self._rebuild_rows(steps)
        info = self.wiz.model_info()
        base = slug(info.name) if info is not None else "model"
        if not self._name_edited:
            self.name_edit.setText(f"{base}-{self.wiz.techniques_page.preset()}")
        if not self._output_edited:
            stamp = datetime.now().strftime("%Y%m%d-%H%M")
            self.output_edit.setText(f"{{data}}/results/{base}-{stamp}")
        self._update()

    def _on_name_edited(self, _text: str) -> None:
        self._name_edited = True

    def _on_output_edited(self, _text: str) -> None:
        self._output_edited = True

    def _browse(self) -> None:
        start = str(self.resolved_output().parent)
        folder = QFileDialog.getExistingDirectory(self, "Choose the output folder", start)
        if folder:
            self._output_edited = True
            self.output_edit.setText(folder)

    def resolved_output(self) -> Path:
        text = self.output_edit.text().strip().replace("{data}", str(data_dir()))
        return Path(text).expanduser()

    def device_value(self) -> str:
        return self.device.currentData()

    def threads_value(self) -> int | None:
        return self.threads.value() or None

    def problems(self) -> list[str]:
        out = []
        if not self.name_edit.text().strip():
            out.append("Name: give the job a name.")
        if not self.output_edit.text().strip():
            out.append("Output folder: choose where the results go.")
        try:
            steps = self.apply(self.wiz.techniques_page.chain())
        except UserError as exc:
            return [*out, str(exc)]
        for step in steps:
            try:
                step.validate()
            except RecipeError as exc:
                out.append(f"{step_title(step)} — {exc}")
        if not out:
            # The recipe's own checks too, e.g. an output folder inside the source model.
            try:
                self.wiz.recipe()
            except UserError as exc:
                out.append(str(exc))
        return out

    def _update(self, *_args: Any) -> None:
        self.output_resolved.setText(f"= {self.resolved_output()}")
        _show(self.error, "\n".join(self.problems()))
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # noqa: N802 (Qt override)
        return not self.problems()


class ReviewPage(_Page):
    """(e) What will happen: the estimate, the recipe as YAML, and Run."""

    def __init__(self, wizard: CompressWizard) -> None:
        super().__init__(
            wizard,
            "Review",
            "Check the plan. The figures are an estimate from the model's shape; the job "
            "measures the real ones. Click Run to queue the job.",
        )
        self.setFinalPage(True)
        self.estimate: Estimate | None = None
        self._recipe: Recipe | None = None
        self.headline = _label()
        self.headline.setStyleSheet("font-size: 14px; font-weight: bold;")
        self.chain_label = _label()
        self.chain_label.setTextFormat(Qt.TextFormat.RichText)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Now", "After (estimate)"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.notes = _label("", NOTE_STYLE)
        self.yaml = QPlainTextEdit()
        self.yaml.setReadOnly(True)
        self.yaml.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.yaml.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the recipe to the clipboard")
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip(
            "Save the recipe as a YAML file; run it headless with `slimpajama run FILE`"
        )
        self.saved = _label("", NOTE_STYLE)
        self.error = _error_label()

        left = QVBoxLayout()
        left.addWidget(self.headline)
        left.addWidget(self.table)
        left.addWidget(self.notes)
        left.addWidget(_label("<b>Steps</b>"))
        left.addWidget(self.chain_label)
        left.addStretch(1)
        yaml_box = QGroupBox("Recipe")
        yaml_layout = QVBoxLayout(yaml_box)
        yaml_layout.addWidget(self.yaml, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.saved, 1)
        yaml_layout.addLayout(buttons)
        body = QHBoxLayout()
        body.addLayout(left, 1)
        body.addWidget(yaml_box, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(body, 1)
        layout.addWidget(self.error)

        self.copy_button.clicked.connect(self.copy_yaml)
        self.save_button.clicked.connect(self._save)

    def initializePage(self) -> None:  # noqa: N802 (Qt override)
        self.saved.setText("")
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the recipe, the YAML and the estimate from the earlier pages."""
        self._recipe = None
        try:
            recipe = self.wiz.recipe()
        except UserError as exc:
            _show(self.error, str(exc))
            self.yaml.setPlainText("")
        else:
            _show(self.error, "")
            self._recipe = recipe
            self.yaml.setPlainText(dump_recipe(recipe))
        info = self.wiz.model_info()
        if info is not None:
            try:
                steps = self.wiz.steps()
            except UserError:
                steps = self.wiz.techniques_page.chain()
            items = "".join(f"<li>{_escape(step_summary(s))}</li>" for s in steps)
            self.chain_label.setText(f"<ol style='margin-left:-20px'>{items}</ol>")
            self.show_estimate(
                estimate_chain(
                    info,
                    steps,
                    vocab_kept=self.wiz.vocabulary_count(),
                    num_labels=self.wiz.data_page.num_labels() or 2,
                )
            )
        self.completeChanged.emit()

    def show_estimate(self, est: Estimate) -> None:
        self.estimate = est
        self.headline.setText(est.headline())

        def widths(values: Sequence[int]) -> str:
            if not values:
                return "–"
            return str(values[0]) if len(set(values)) == 1 else "/".join(map(str, values))

        vocab_after = f"{est.vocab_after:,}" + ("" if est.vocab_counted or
                                               est.vocab_after == est.vocab_before else " (guess)")  # fmt: skip
        rows = [
            ("Size on disk", human_bytes(est.size_before), "≈ " + human_bytes(est.size_after)),
            ("Parameters", f"{est.parameters_before:,}", f"≈ {est.parameters_after:,}"),
            ("Non-zero parameters", f"{est.parameters_before:,}", f"≈ {est.nonzero_after:,}"),
            ("Layers", str(est.layers_before), str(est.layers_after)),
            ("Heads per layer", widths(est.heads_before), widths(est.heads_after)),
            ("FFN width per layer", widths(est.ffn_before), widths(est.ffn_after)),
            ("Vocabulary", f"{est.vocab_before:,}", vocab_after),
            ("Weights", est.weights_before, est.weights_after),
        ]
        if est.nonzero_after == est.parameters_after:
            rows.pop(2)
        self.table.setRowCount(len(rows))
        self.table.setVerticalHeaderLabels([r[0] for r in rows])
        for r, (_name, now, after) in enumerate(rows):
            for c, text in enumerate((now, after)):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        self.table.resizeRowsToContents()
        height = self.table.horizontalHeader().height() + 2 * self.table.frameWidth()
        height += sum(self.table.rowHeight(r) for r in range(len(rows)))
        self.table.setFixedHeight(height)
        self.notes.setText("\n".join(est.notes))

    def recipe_to_run(self) -> Recipe | None:
        return self._recipe

    def copy_yaml(self) -> None:
        QGuiApplication.clipboard().setText(self.yaml.toPlainText())
        self.saved.setText("Copied to the clipboard.")

    def _save(self) -> None:
        if self._recipe is None:
            return
        name = slug(self._recipe.name) + ".yaml"
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the recipe", str(Path.home() / name), "Recipes (*.yaml *.yml)"
        )
        if path:
            self.save_to(path)

    def save_to(self, path: str | Path) -> None:
        """Write the recipe to ``path`` (atomically); a failure is shown on the page."""
        if self._recipe is None:
            return
        try:
            save_recipe(self._recipe, path)
        except (UserError, OSError) as exc:
            _show(self.error, f"Could not save the recipe to {path}: {exc}")
            return
        self.saved.setText(f"Saved to {path}")

    def validatePage(self) -> bool:  # noqa: N802 (Qt override)
        self.refresh()
        return self._recipe is not None

    def isComplete(self) -> bool:  # noqa: N802 (Qt override)
        return self._recipe is not None


# --------------------------------------------------------------------------- the wizard


class CompressWizard(QWizard):
    """Model → data → techniques → settings → review; *Run* emits :attr:`recipe_ready`.

    Works as a dialog (``open()`` / ``exec()``), or embedded in a layout after
    ``setWindowFlags(Qt.WindowType.Widget)``: embedded, *Run* and *Cancel* start it over
    instead of hiding it. Make a new wizard for each job when it is a dialog.
    """

    #: The recipe to run (a :class:`~slimpajama_gui.core.plan.recipe.Recipe`), on *Run*.
    recipe_ready = Signal(object)

    PAGE_MODEL, PAGE_DATA, PAGE_TECHNIQUES, PAGE_SETTINGS, PAGE_REVIEW = range(5)

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        models: Sequence[ModelInfo] | None = None,
        current_model: Path | str | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("New compression job")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setButtonText(QWizard.WizardButton.FinishButton, "Run")
        self.button(QWizard.WizardButton.FinishButton).setToolTip("Queue the job and close")
        self.closing = False
        self._workers: set = set()
        self._vocab: dict[tuple, int] = {}
        self._vocab_pending: set[tuple] = set()

        self.model_page = ModelPage(self)
        self.data_page = DataPage(self)
        self.techniques_page = TechniquesPage(self)
        self.settings_page = SettingsPage(self)
        self.review_page = ReviewPage(self)
        for page_id, page in enumerate((self.model_page, self.data_page, self.techniques_page,
                                        self.settings_page, self.review_page)):  # fmt: skip
            self.setPage(page_id, page)
        self.setStartId(self.PAGE_MODEL)
        # Fits a 1280x800 screen; below 960x640 the techniques page would scroll sideways.
        self.setMinimumSize(960, 640)
        self.resize(1040, 740)
        if models is not None:
            self.set_models(models)
        if current_model is not None:
            self.set_current_model(current_model)

    # -- inputs from the app ---------------------------------------------------------
    def set_models(self, infos: Sequence[ModelInfo]) -> None:
        """The models to choose from (the browser's list)."""
        self.model_page.set_models(infos)

    def set_current_model(self, path: Path | str) -> None:
        """Preselect the model in ``path`` (now, or when it shows up in the list)."""
        self.model_page.select_path(path)

    # -- what the user chose ---------------------------------------------------------
    def model_info(self) -> ModelInfo | None:
        return self.model_page.selected_info()

    def steps(self) -> list[Step]:
        """The chain with the settings page applied.

        Raises:
            UserError: a setting that is not a valid value.
        """
        return self.settings_page.apply(self.techniques_page.chain())

    def recipe(self) -> Recipe:
        """The validated recipe the pages describe.

        Raises:
            UserError: a sentence naming the field to fix.
        """
        info = self.model_info()
        if info is None:
            raise UserError("Choose a model on the first page.")
        recipe = Recipe(
            name=self.settings_page.name_edit.text().strip() or slug(info.name),
            model="packaged" if info.source == "packaged" else str(info.path),
            dataset=self.data_page.spec(),
            output=self.settings_page.output_edit.text().strip(),
            steps=self.steps(),
            device=self.settings_page.device_value(),
            threads=self.settings_page.threads_value(),
        )
        recipe.validate()
        return recipe

    # -- shared services -------------------------------------------------------------
    def start_worker(
        self,
        func: Callable[..., Any],
        *args: Any,
        returned: Callable[[Any], None],
        errored: Callable[[BaseException], None],
    ) -> None:
        """Run ``func(*args)`` on the thread pool; results come back to the GUI thread."""
        worker = create_worker(
            func, *args, _start_thread=False, _connect={"returned": returned, "errored": errored}
        )
        # superqt keeps the worker alive while it runs; this set only answers busy().
        workers = self._workers
        workers.add(worker)
        worker.finished.connect(lambda w=worker: workers.discard(w))
        worker.start()

    def busy(self) -> bool:
        """Whether a worker (model header, data, vocabulary count) is still running."""
        return bool(self._workers)

    def model_changed(self) -> None:
        """A different model was selected: the vocabulary count belongs to the old one."""
        if self.currentId() > self.PAGE_DATA:
            self.request_vocabulary_count()

    def _vocab_key(self) -> tuple | None:
        info = self.model_info()
        report = self.data_page.report
        if info is None or report is None:
            return None
        return (str(info.path), repr(sorted(self.data_page.spec().items())))

    def vocabulary_count(self) -> int | None:
        """Token ids the training data uses with this model's tokenizer, once counted."""
        key = self._vocab_key()
        return self._vocab.get(key) if key is not None else None

    def request_vocabulary_count(self) -> None:
        """Count the vocabulary the data uses, on the thread pool (for the estimate)."""
        key = self._vocab_key()
        if key is None or key in self._vocab or key in self._vocab_pending:
            return
        info = self.model_info()
        report = self.data_page.report
        assert info is not None and report is not None
        self._vocab_pending.add(key)
        self.start_worker(
            count_vocabulary,
            key,
            Path(info.path),
            report.train_texts,
            returned=self._on_vocab_counted,
            errored=self._on_vocab_error,
        )

    def _on_vocab_counted(self, result: tuple[tuple, int]) -> None:
        key, count = result
        self._vocab_pending.discard(key)
        self._vocab[key] = count
        if not self.closing and self.currentId() == self.PAGE_REVIEW:
            self.review_page.refresh()

    def _on_vocab_error(self, exc: BaseException) -> None:
        # Only the estimate needs it; it falls back to a typical share of the vocabulary.
        log.warning("Counting the vocabulary failed: %s", exc)
        self._vocab_pending.clear()

    # -- finishing -------------------------------------------------------------------
    def done(self, result: int) -> None:
        if result == QDialog.DialogCode.Accepted:
            if not self.validateCurrentPage():
                return
            recipe = self.review_page.recipe_to_run()
            if recipe is None:
                return
            self.recipe_ready.emit(recipe)
            if not self.isWindow():
                self.restart()
                return
        if not self.isWindow():
            self.restart()
            return
        self.closing = True
        super().done(result)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.closing = False  # opened again after Cancel or Run
        super().showEvent(event)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.closing = True
        super().closeEvent(event)


# --------------------------------------------------------------------------- little helpers


def _first_of(steps: Sequence[Step]) -> Callable[[type], Any]:
    def first(kind: type) -> Any:
        return next((s for s in steps if isinstance(s, kind)), None)

    return first


def _same_path(a: Path | str, b: Path | str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return str(a) == str(b)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _parse_lr(text: str, where: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise UserError(
            f"{where} — learning rate: {text.strip()!r} is not a number; write it like 5e-5."
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{where} — learning rate: must be above 0, got {text.strip()}.")
    return value


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # the GUI can draw without torch; jobs cannot run then anyway
        return False
    return bool(torch.cuda.is_available())
