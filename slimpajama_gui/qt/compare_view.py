"""Compare: every saved variant on accuracy × latency × size, and any two in detail.

The table and the Pareto chart show the same list of :class:`Variant` rows: each
artifact in the job history (``JobStore.artifacts()``) with the figures from its
``slimpajama.json``, plus the source models the variants came from. A source model has
figures only if its job evaluated and benchmarked it before the first model-changing
step (those numbers are in the job's logged metrics); otherwise it is listed in the
table and left off the chart.

Picking two rows (or the two pickers) fills the detail panel: figures side by side,
both confusion matrices, and the eval examples whose prediction flips. The flips come
from real predictions: a worker loads both models and runs them on the eval split of
the dataset in the variant's recipe (at most :data:`MAX_FLIP_ROWS` rows).

Everything that reads a file or runs a model does so on the thread pool.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import create_worker

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.qt.models_view import human_bytes, human_count
from slimpajama_gui.qt.workers import WorkerSet

log = logging.getLogger(__name__)

#: Eval rows the flip list is computed on, at most.
MAX_FLIP_ROWS = 2000
#: Rows per forward pass when predicting the eval split.
EVAL_BATCH = 64
RESULT_FILE = "slimpajama.json"

#: Okabe-Ito colours, as in :mod:`slimpajama_gui.qt.charts`.
VARIANT_COLOR = "#0072B2"
SOURCE_COLOR = "#7F7F7F"
PARETO_COLOR = "#D55E00"
SELECTED_COLOR = "#CC79A7"

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
#: Role holding the row's position in :attr:`CompareView.variants`.
ROW_ROLE = Qt.ItemDataRole.UserRole + 2

_Index = QModelIndex | QPersistentModelIndex


# --------------------------------------------------------------------------- data


@dataclass
class Variant:
    """One row of the table and one point of the chart.

    Figures are ``None`` when they were never measured. Accuracy and macro-F1 are
    fractions (0..1); latencies in milliseconds; throughput in sentences per second.
    """

    path: Path
    name: str
    is_source: bool = False
    job_id: int | None = None
    job_name: str = ""
    step_index: int | None = None
    step_type: str = ""
    accuracy: float | None = None
    macro_f1: float | None = None
    size_bytes: int | None = None
    parameters: int | None = None
    nonzero_parameters: int | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    throughput: float | None = None
    confusion: list[list[int]] | None = None
    label_names: list[str] = field(default_factory=list)
    recipe: dict[str, Any] | None = None
    #: The folder the recipe's relative paths are read from, when the result says.
    recipe_base_dir: Path | None = None
    parent: Path | None = None
    source_model: Path | None = None
    created_at: str = ""
    note: str = ""  # why figures are missing (a damaged or deleted folder)
    #: For int8 variants: the CPU arithmetic its figures were measured with, e.g.
    #: "x86 with AVX512-VNNI (8-bit activations)"; accuracy can differ on another path.
    int8_arithmetic: str = ""

    #: The resolved folder, and those of the parent and the source model. Worked out
    #: once where the variant is built (a worker), since resolving touches the disk.
    key: str = field(default="", compare=False)
    parent_key: str = field(default="", compare=False)
    source_key: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        self.key = self.key or str(_resolved(self.path))
        if self.parent is not None and not self.parent_key:
            self.parent_key = str(_resolved(self.parent))
        if self.source_model is not None and not self.source_key:
            self.source_key = str(_resolved(self.source_model))

    @property
    def plotted(self) -> bool:
        return self.accuracy is not None and self.p50_ms is not None


def _resolved(path: Path | str) -> Path:
    try:
        return Path(path).expanduser().resolve()
    except OSError:
        return Path(path)


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = _num(value)
    return None if number is None else int(number)


@dataclass
class CompareData:
    variants: list[Variant]
    notes: list[str] = field(default_factory=list)


def _read_json(path: Path) -> tuple[dict[str, Any], str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, f"{path.parent} has no {path.name} (the folder was moved or deleted)"
    except (OSError, ValueError) as exc:
        return {}, f"{path} could not be read ({exc})"
    if not isinstance(data, dict):
        return {}, f"{path} does not hold a JSON object"
    return data, ""


def _variant_from_result(path: Path, info: dict[str, Any], fallback: dict[str, Any]) -> Variant:
    metrics = info.get("metrics") or fallback or {}
    ev = metrics.get("eval") or {}
    bench = metrics.get("benchmark") or {}
    training = metrics.get("training") or {}
    step = info.get("step") or {}
    accuracy = _num(ev.get("accuracy"))
    if accuracy is None:
        accuracy = _num(training.get("eval_accuracy"))
    size = _int(bench.get("size_bytes"))
    if size is None and path.is_dir():
        from slimpajama_gui.core.runtime.bench import size_on_disk

        size = size_on_disk(path)
    confusion = ev.get("confusion")
    return Variant(
        int8_arithmetic=_int8_arithmetic(info),
        path=path,
        name=f"{path.parent.name}/{path.name}",
        job_id=_int(info.get("job_id")),
        step_index=_int(info.get("step_index")),
        step_type=str(step.get("type", "")) if isinstance(step, dict) else "",
        accuracy=accuracy,
        macro_f1=_num(ev.get("macro_f1")),
        size_bytes=size,
        parameters=_int(info.get("parameters", bench.get("parameters"))),
        nonzero_parameters=_int(info.get("nonzero_parameters", bench.get("nonzero_parameters"))),
        p50_ms=_num(bench.get("latency_p50_ms")),
        p95_ms=_num(bench.get("latency_p95_ms")),
        throughput=_num(bench.get("throughput_per_s")),
        confusion=confusion if isinstance(confusion, list) else None,
        label_names=[str(x) for x in info.get("label_names") or []],
        recipe=info.get("recipe") if isinstance(info.get("recipe"), dict) else None,
        recipe_base_dir=Path(info["recipe_base_dir"]) if info.get("recipe_base_dir") else None,
        parent=Path(info["parent"]) if info.get("parent") else None,
        source_model=Path(info["source_model"]) if info.get("source_model") else None,
        created_at=str(info.get("created_at", "")),
    )


def _int8_arithmetic(info: dict[str, Any]) -> str:
    for key in ("quantization", "onnx"):
        section = info.get(key)
        if not isinstance(section, dict):
            continue
        path = section.get("int8_path")
        if isinstance(path, dict) and path.get("description"):
            return str(path["description"])
        bits = section.get("activation_bits")
        if key == "onnx" and isinstance(bits, int):
            return f"ONNX Runtime, {bits}-bit activations"
    return ""


#: Keys a job logs when it measures its source model before changing it.
_SOURCE_KEYS = {
    "eval_accuracy": "accuracy",
    "eval_macro_f1": "macro_f1",
    "latency_p50_ms": "p50_ms",
    "latency_p95_ms": "p95_ms",
    "throughput_per_s": "throughput",
    "size_bytes": "size_bytes",
    "parameters": "parameters",
}


def _source_figures(store: JobStore, job_id: int, first_artifact_step: int) -> dict[str, Any]:
    """Figures an evaluate/benchmark step measured before the job changed the model."""
    figures: dict[str, Any] = {}
    for m in store.metrics(job_id):
        if m.step_index >= first_artifact_step or m.step_type not in ("evaluate", "benchmark"):
            continue
        attr = _SOURCE_KEYS.get(m.key)
        if attr is not None and _num(m.value) is not None:
            figures[attr] = m.value
    for attr in ("size_bytes", "parameters"):
        if attr in figures:
            figures[attr] = int(figures[attr])
    return figures


def _source_variant(path: Path, figures: dict[str, Any]) -> Variant:
    from slimpajama_gui.core.runtime.loading import open_model

    name, size, params, note = path.name, None, None, ""
    try:
        info = open_model(path).info  # headers only; names the packaged MiniLM properly
        name, size, params = info.name, info.size_bytes, info.parameters
    except UserError as exc:
        note = str(exc)
    variant = Variant(path=path, name=name, is_source=True, size_bytes=size, parameters=params)
    variant.note = note
    for attr, value in figures.items():
        setattr(variant, attr, value)
    return variant


def load_variants(store: JobStore | None) -> CompareData:
    """Runs on a worker: the variants in the history, then the sources they came from."""
    own = store is None
    store = store or JobStore()
    try:
        return _load_variants(store)
    finally:
        if own:
            store.close()


def _load_variants(store: JobStore) -> CompareData:
    notes: list[str] = []
    variants: list[Variant] = []
    seen: set[Path] = set()
    first_step: dict[int, int] = {}
    job_names: dict[int, str] = {}
    sources: dict[Path, int] = {}  # source folder → a job that started from it
    for art in store.artifacts():
        if art.kind != "model":
            continue
        path = Path(art.path)
        key = _resolved(path)
        if key in seen:
            continue
        seen.add(key)
        info, problem = _read_json(path / RESULT_FILE)
        variant = _variant_from_result(path, info, art.metrics)
        if variant.job_id is None:
            variant.job_id = art.job_id
        if variant.step_index is None:
            variant.step_index = art.step_index
        if problem:
            variant.note = problem
            notes.append(f"{variant.name}: {problem}.")
        if art.job_id not in job_names:
            try:
                job_names[art.job_id] = store.get_job(art.job_id).name
            except (KeyError, LookupError, UserError):
                job_names[art.job_id] = ""
        variant.job_name = job_names[art.job_id]
        first_step[art.job_id] = min(first_step.get(art.job_id, 1 << 30), art.step_index)
        if variant.source_model is not None:
            sources.setdefault(_resolved(variant.source_model), art.job_id)
        variants.append(variant)
    for source, job_id in sources.items():
        if source in seen:
            continue  # a variant of an earlier job, already listed with its own figures
        seen.add(source)
        figures: dict[str, Any] = {}
        # The newest job that measured this source wins.
        for v in variants:
            if v.source_model is not None and _resolved(v.source_model) == source:
                found = _source_figures(store, v.job_id, first_step.get(v.job_id, 0))
                if found:
                    figures = found
                    break
        variant = _source_variant(source, figures)
        variant.job_id = job_id
        variant.job_name = job_names.get(job_id, "")
        if variant.note:
            notes.append(f"source model {source}: {variant.note}")
        variants.append(variant)
    return CompareData(variants, notes)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower x (latency), higher y (accuracy).

    A point is dominated when another is at least as good on both axes and better on
    one. Returned in order of increasing x.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best_y = -math.inf
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def default_pair(variants: Sequence[Variant]) -> tuple[int | None, int | None]:
    """(A, B): the newest variant as B; its parent, its source, or another row as A."""
    results = [i for i, v in enumerate(variants) if not v.is_source]
    if not results:
        return (0, None) if variants else (None, None)
    b = max(results, key=lambda i: (variants[i].created_at, -i))
    by_key = {v.key: i for i, v in enumerate(variants)}
    nb = variants[b]
    for candidate in (nb.parent_key, nb.source_key):
        a = by_key.get(candidate) if candidate else None
        if a is not None and a != b:
            return a, b
    others = [i for i in range(len(variants)) if i != b]
    return (others[0] if others else None), b


# --------------------------------------------------------------------------- flips


@dataclass
class FlipResult:
    """Both models' predictions on the same eval rows, and what changed between them."""

    a: Variant
    b: Variant
    diff: Any  # evaluate.PredictionDiff
    label_names: list[str]
    rows: int
    total: int
    dataset: str
    report_a: Any  # evaluate.EvalReport
    report_b: Any


def _recipe_base_dir(recipe: dict[str, Any], variant: Path) -> Path:
    """The folder a recipe's relative paths were read from, recovered from its output.

    ``slimpajama.json`` keeps the recipe but not its folder. A variant lives at
    ``base/<output>/NN-step``, so a relative ``output`` tells ``base`` back.
    """
    output = str(recipe.get("output", ""))
    parts = Path(output).parts
    folder = _resolved(variant).parent
    if output and "{data}" not in output and not Path(output).is_absolute() and ".." not in parts:
        parts = tuple(p for p in parts if p not in (".", ""))
        if parts and folder.parts[-len(parts) :] == parts:
            return folder.parents[len(parts) - 1]
    return Path.cwd()


def _dataset_text(spec: Any, n: int, total: int) -> str:
    where = (
        "the built-in demo set" if str(spec.train).lower() == "demo" else spec.eval or spec.train
    )
    capped = f"the first {n} of {total}" if n < total else f"all {n}"
    return f"{capped} eval rows of {where}"


def flip_job(a: Variant, b: Variant, max_rows: int = MAX_FLIP_ROWS) -> Iterator[tuple]:
    """Runs on a worker: both models on the eval split, then the prediction diff.

    Yields ``("status", text)`` and ``("progress", done, total)``; between any two
    batches the worker can be asked to stop.

    Raises:
        UserError: no recipe says which data to use, the data or a model cannot be
            read, or the models have another number of classes than the data.
    """
    from slimpajama_gui.core import data as data_mod
    from slimpajama_gui.core.runtime.evaluate import (
        Predictions,
        classification_report,
        predict,
        prediction_diff,
    )
    from slimpajama_gui.core.runtime.inputs import head_label_names, match_label_order, model_inputs
    from slimpajama_gui.core.runtime.loading import open_model

    owner = a if a.recipe else b
    if not owner.recipe or not isinstance(owner.recipe.get("dataset"), dict):
        raise UserError(
            f"neither {a.name} nor {b.name} records the dataset it was evaluated on "
            "(no recipe in slimpajama.json), so there are no eval examples to compare."
        )
    spec = data_mod.DatasetSpec.from_dict(owner.recipe["dataset"])
    yield ("status", "Reading the eval data…")
    base = owner.recipe_base_dir or _recipe_base_dir(owner.recipe, owner.path)
    dataset = data_mod.load_dataset(spec, base_dir=base)
    split = dataset.eval
    n = min(len(split), max_rows)
    sub = replace(
        split,
        texts=split.texts[:n],
        labels=split.labels[:n],
        pairs=split.pairs[:n] if split.pairs is not None else None,
        lines=split.lines[:n],
    )
    names = list(dataset.label_names)
    preds = []
    for side, variant in (("A", a), ("B", b)):
        yield ("status", f"Loading {side}: {variant.name}…")
        handle = open_model(variant.path)
        model = handle.load_model()
        report = getattr(model, "load_report", None)  # an ONNX variant has none
        if report is not None and report.new_keys:
            raise UserError(
                f"{variant.name} has no trained classifier head (it is an encoder only), so "
                "its predictions would be noise; fine-tune it first."
            )
        if model.config.num_labels != len(names):
            raise UserError(
                f"{variant.name} predicts {model.config.num_labels} classes but the eval data "
                f"has {len(names)} ({', '.join(names)}); compare models trained on the same "
                "labels."
            )
        # The job numbered the data as the model's head numbers its classes.
        matched, _ = match_label_order(
            replace(dataset, eval=sub), head_label_names(variant.path), variant.name
        )
        tokenizer = handle.load_tokenizer()
        inputs = model_inputs(model, tokenizer, variant.name)
        enc = inputs.encode_split(matched.eval, tokenizer, spec.max_length)
        total = math.ceil(n / EVAL_BATCH)
        logits, order = [], []
        batches = data_mod.batches(
            enc,
            matched.eval.labels,
            EVAL_BATCH,
            shuffle=False,
            seed=0,
            pad_id=tokenizer.pad_token_id or 0,
            sort_by_length=True,
        )
        for done, batch in enumerate(batches, start=1):
            part = predict(model, [batch])  # rows come back sorted by their index
            logits.append(part.logits)
            order.append(np.sort(batch["index"].numpy()))
            yield ("progress", side, done, total)
        back = np.argsort(np.concatenate(order), kind="stable")
        # Back to the data's own numbering, so A and B are compared class by class.
        keys = [n.strip().casefold() for n in matched.label_names]
        columns = [keys.index(n.strip().casefold()) for n in names]
        ordered = np.concatenate(logits)[back][:, columns]
        preds.append(Predictions(ordered, np.asarray(sub.labels)))
        del model
    diff = prediction_diff(preds[0], preds[1], sub.texts)
    return FlipResult(
        a=a,
        b=b,
        diff=diff,
        label_names=names,
        rows=n,
        total=len(split),
        dataset=_dataset_text(spec, n, len(split)),
        report_a=classification_report(preds[0], names),
        report_b=classification_report(preds[1], names),
    )


# --------------------------------------------------------------------------- table


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f} ms"


# column title, display text, sort value, right-aligned
_COLUMNS: tuple[tuple[str, Any, Any, bool], ...] = (
    ("Name", lambda v: v.name, lambda v: v.name.lower(), False),
    (
        "Job",
        lambda v: "source model" if v.is_source else f"#{v.job_id} {v.job_name}".strip(),
        lambda v: -1 if v.is_source else v.job_id or 0,
        False,
    ),
    (
        "Step",
        lambda v: "–" if v.step_index is None else f"{v.step_index + 1} · {v.step_type}",
        lambda v: -1 if v.step_index is None else v.step_index,
        False,
    ),
    ("Accuracy", lambda v: _pct(v.accuracy), lambda v: v.accuracy, True),
    ("Macro-F1", lambda v: _pct(v.macro_f1), lambda v: v.macro_f1, True),
    (
        "Size on disk",
        lambda v: "–" if v.size_bytes is None else human_bytes(v.size_bytes),
        lambda v: v.size_bytes,
        True,
    ),
    (
        "Parameters",
        lambda v: "–" if v.parameters is None else human_count(v.parameters),
        lambda v: v.parameters,
        True,
    ),
    ("p50 latency", lambda v: _ms(v.p50_ms), lambda v: v.p50_ms, True),
    ("p95", lambda v: _ms(v.p95_ms), lambda v: v.p95_ms, True),
    (
        "Throughput",
        lambda v: "–" if v.throughput is None else f"{v.throughput:,.0f}/s",
        lambda v: v.throughput,
        True,
    ),
)
COLUMN_TITLES = tuple(c[0] for c in _COLUMNS)


class VariantTableModel(QAbstractTableModel):
    """One row per :class:`Variant`; read-only."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._variants: list[Variant] = []
        self.pareto: set[int] = set()

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._variants)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(_COLUMNS)

    def set_variants(self, variants: Sequence[Variant], pareto: set[int]) -> None:
        self.beginResetModel()
        self._variants = list(variants)
        self.pareto = set(pareto)
        self.endResetModel()

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._variants):
            return None
        row = index.row()
        v = self._variants[row]
        _title, display, sort, right = _COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return display(v)
        if role == SORT_ROLE:
            value = sort(v)
            # Missing figures sort below every real one, whichever way.
            return -math.inf if value is None else value
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [v.name, str(v.path)]
            if v.nonzero_parameters is not None and v.parameters:
                lines.append(f"{v.parameters:,} parameters ({v.nonzero_parameters:,} non-zero)")
            if row in self.pareto:
                lines.append("Pareto-optimal: nothing else is both faster and more accurate")
            if v.note:
                lines.append(v.note)
            return "\n".join(lines)
        if role == Qt.ItemDataRole.FontRole and (v.is_source or row in self.pareto):
            font = QFont()
            font.setItalic(v.is_source)
            font.setBold(row in self.pareto)
            return font
        if role == Qt.ItemDataRole.ForegroundRole and v.note:
            return QBrush(QColor("#8a8a8a"))
        if role == Qt.ItemDataRole.TextAlignmentRole and right:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if (
            role == Qt.ItemDataRole.DisplayRole
            and orientation == Qt.Orientation.Horizontal
            and 0 <= section < len(_COLUMNS)
        ):
            return _COLUMNS[section][0]
        return None


# --------------------------------------------------------------------------- chart


def describe(v: Variant) -> str:
    """The numbers of one point, for its tooltip."""
    lines = [v.name + (" (source model)" if v.is_source else "")]
    lines.append(f"accuracy {_pct(v.accuracy)} · macro-F1 {_pct(v.macro_f1)}")
    lines.append(f"latency p50 {_ms(v.p50_ms)} · p95 {_ms(v.p95_ms)}")
    size = "–" if v.size_bytes is None else human_bytes(v.size_bytes)
    params = "–" if v.parameters is None else human_count(v.parameters)
    lines.append(f"size {size} · {params} parameters")
    if v.throughput is not None:
        lines.append(f"throughput {v.throughput:,.0f} sentences/s")
    if v.int8_arithmetic:
        lines.append(f"int8 measured on {v.int8_arithmetic}")
    return "\n".join(lines)


class ParetoPlot(pg.PlotWidget):
    """Accuracy against latency; point area ∝ size on disk; the frontier as a step line.

    Items are created once and updated with ``setData``.
    """

    #: A point was clicked: its row in the variant list.
    point_clicked = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent, background=None)
        self.setMinimumSize(320, 240)
        self.setMenuEnabled(False)
        self.hideButtons()
        item = self.getPlotItem()
        item.setLabel("bottom", "latency p50, batch 1 (ms)")
        item.setLabel("left", "eval accuracy (%)")
        item.showGrid(x=True, y=True, alpha=0.2)
        self.legend = item.addLegend(offset=(-8, -8), labelTextSize="8pt")
        self.legend.setBrush(pg.mkBrush(255, 255, 255, 210))
        self.legend.setPen(pg.mkPen("#c8c8c8"))
        self._variants: list[Variant] = []

        def tip(x: float, y: float, data: Any) -> str:
            return describe(self._variants[int(data)]) if data is not None else ""

        self.frontier = pg.PlotDataItem(
            pen=pg.mkPen(PARETO_COLOR, width=1.5, style=Qt.PenStyle.DashLine),
            name="Pareto frontier",
        )
        self.variant_item = pg.ScatterPlotItem(
            symbol="o", hoverable=True, tip=tip, name="variant", pxMode=True
        )
        self.source_item = pg.ScatterPlotItem(
            symbol="star", hoverable=True, tip=tip, name="source model", pxMode=True
        )
        self.variant_item.setData(
            [], [], brush=pg.mkBrush(VARIANT_COLOR), pen=pg.mkPen("w"), size=12
        )
        self.source_item.setData([], [], brush=pg.mkBrush(SOURCE_COLOR), pen=pg.mkPen("w"), size=16)
        # Only for the legend: what a Pareto-optimal point looks like.
        self.pareto_key = pg.ScatterPlotItem(
            symbol="o",
            size=12,
            brush=pg.mkBrush(VARIANT_COLOR),
            pen=pg.mkPen(PARETO_COLOR, width=3),
            name="Pareto-optimal",
        )
        self.selected_item = pg.ScatterPlotItem(
            symbol="o", brush=None, pen=pg.mkPen(SELECTED_COLOR, width=3), pxMode=True
        )
        self.selected_item.setZValue(10)
        for it in (self.frontier, self.variant_item, self.source_item, self.pareto_key):
            item.addItem(it)
        item.addItem(self.selected_item)
        for scatter in (self.variant_item, self.source_item, self.selected_item):
            scatter.sigClicked.connect(self._on_clicked)
        self.empty = pg.TextItem(
            html=(
                "<div style='text-align:center; color:#5f6b76'>No measured variants yet.<br>"
                "Run a recipe with evaluate and<br>benchmark steps to see them here.</div>"
            ),
            anchor=(0.5, 0.5),
        )
        item.addItem(self.empty)
        #: Rows of the variant list drawn, and the Pareto-optimal ones among them.
        self.plotted: list[int] = []
        self.front: list[int] = []
        self._selected: int | None = None

    def set_variants(self, variants: Sequence[Variant]) -> list[int]:
        """Draw the measured variants; returns the rows that are Pareto-optimal."""
        self._variants = list(variants)
        self.plotted = [i for i, v in enumerate(self._variants) if v.plotted]
        points = [
            (self._variants[i].p50_ms, 100 * self._variants[i].accuracy) for i in self.plotted
        ]
        self.front = [self.plotted[k] for k in pareto_front(points)]
        sizes = [self._variants[i].size_bytes or 0 for i in self.plotted]
        biggest = max(sizes, default=0) or 1
        front = set(self.front)

        def spots(source: bool) -> dict[str, list]:
            rows = [i for i in self.plotted if self._variants[i].is_source == source]
            base = VARIANT_COLOR if not source else SOURCE_COLOR
            return {
                "x": [self._variants[i].p50_ms for i in rows],
                "y": [100 * self._variants[i].accuracy for i in rows],
                # Area, not diameter, follows the size on disk.
                "size": [
                    10 + 30 * math.sqrt((self._variants[i].size_bytes or 0) / biggest) for i in rows
                ],
                "data": rows,
                "brush": [pg.mkBrush(base) for _ in rows],
                "pen": [
                    pg.mkPen(PARETO_COLOR, width=3) if i in front else pg.mkPen("w", width=1)
                    for i in rows
                ],
            }

        self.variant_item.setData(**spots(False))
        self.source_item.setData(**spots(True))
        fx, fy = [], []
        for k, i in enumerate(self.front):
            x, y = self._variants[i].p50_ms, 100 * self._variants[i].accuracy
            if k:
                fx.append(x)
                fy.append(fy[-1])
            fx.append(x)
            fy.append(y)
        self.frontier.setData(fx, fy)
        self.empty.setVisible(not self.plotted)
        self.legend.setVisible(bool(self.plotted))
        self._fit()
        self.select(self._selected if self._selected in self.plotted else None)
        return list(self.front)

    def _fit(self) -> None:
        if not self.plotted:
            self.setXRange(0, 1, padding=0)
            self.setYRange(0, 1, padding=0)
            self.empty.setPos(0.5, 0.5)
            return
        xs = [self._variants[i].p50_ms for i in self.plotted]
        ys = [100 * self._variants[i].accuracy for i in self.plotted]
        x0, x1 = min(xs), max(xs)
        y0, y1 = min(ys), max(ys)
        dx = max(x1 - x0, 0.1 * max(abs(x1), 1e-3))
        dy = max(y1 - y0, 1.0)
        # Room for the biggest markers and for the legend in the lower right.
        self.setXRange(max(0.0, x0 - 0.15 * dx), x1 + 0.2 * dx, padding=0)
        self.setYRange(y0 - 0.45 * dy, y1 + 0.15 * dy, padding=0)

    def select(self, row: int | None) -> None:
        """Ring the point of ``row`` (or none)."""
        self._selected = row
        if row is None or row not in self.plotted:
            self.selected_item.setData([], [])
            return
        v = self._variants[row]
        biggest = max((self._variants[i].size_bytes or 0 for i in self.plotted), default=0) or 1
        size = 10 + 30 * math.sqrt((v.size_bytes or 0) / biggest) + 10
        self.selected_item.setData([v.p50_ms], [100 * v.accuracy], size=size, data=[row])

    def point_position(self, row: int):
        """The view coordinates of ``row``'s point (for tests and for scrolling to it)."""
        v = self._variants[row]
        return v.p50_ms, 100 * v.accuracy

    def _on_clicked(self, _item, points, _ev) -> None:
        if len(points):
            data = points[0].data()
            if data is not None:
                self.point_clicked.emit(int(data))


# --------------------------------------------------------------------------- details


def fit_height(table: QTableWidget) -> None:
    """Make a small table exactly as tall as its rows, so no space is left blank."""
    table.resizeRowsToContents()
    height = table.horizontalHeader().height() + table.verticalHeader().length()
    table.setFixedHeight(height + 2 * table.frameWidth() + 2)


class ConfusionTable(QTableWidget):
    """Counts with rows = true label and columns = predicted; shaded by row share."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.setToolTip("Rows: true label · columns: predicted label")
        self.matrix: list[list[int]] | None = None

    def show_matrix(self, matrix: list[list[int]] | None, names: Sequence[str]) -> None:
        self.matrix = matrix
        self.clear()
        self.setVisible(bool(matrix))
        if not matrix:
            self.setRowCount(0)
            self.setColumnCount(0)
            return
        k = len(matrix)
        names = list(names) if len(names) == k else [str(i) for i in range(k)]
        self.setRowCount(k)
        self.setColumnCount(k)
        self.setHorizontalHeaderLabels([f"→ {n}" for n in names])
        self.setVerticalHeaderLabels(names)
        for r, row in enumerate(matrix):
            total = sum(row) or 1
            for c, count in enumerate(row):
                cell = QTableWidgetItem(f"{count:,}")
                cell.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                share = count / total
                good = r == c
                base = (0, 114, 178) if good else (213, 94, 0)
                alpha = int(40 + 170 * share) if count else 0
                cell.setBackground(QColor(*base, alpha))
                if alpha > 150:
                    cell.setForeground(QColor("white"))
                cell.setToolTip(f"true {names[r]}, predicted {names[c]}: {count} ({share:.0%})")
                self.setItem(r, c, cell)
        fit_height(self)


class FlipTableModel(QAbstractTableModel):
    """The examples whose prediction differs between A and B."""

    HEADERS = ("Row", "Text", "Gold", "A", "p A", "B", "p B", "Change")
    _FIXED = QColor("#d9efe2")
    _BROKEN = QColor("#f8dcd5")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.flips: list[Any] = []
        self.names: list[str] = []

    def set_flips(self, flips: Sequence[Any], names: Sequence[str]) -> None:
        self.beginResetModel()
        self.flips, self.names = list(flips), list(names)
        self.endResetModel()

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.flips)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.HEADERS)

    def _name(self, i: int) -> str:
        return self.names[i] if 0 <= i < len(self.names) else str(i)

    @staticmethod
    def change(f: Any) -> str:
        if f.after == f.label:
            return "fixed"
        if f.before == f.label:
            return "broken"
        return "both wrong"

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.flips):
            return None
        f = self.flips[index.row()]
        col = index.column()
        if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
            values = (
                f.index + 1,
                f.text,
                self._name(f.label),
                self._name(f.before),
                f.confidence_before,
                self._name(f.after),
                f.confidence_after,
                self.change(f),
            )
            value = values[col]
            if role == Qt.ItemDataRole.DisplayRole and col in (4, 6):
                return f"{value:.3f}"
            if role == Qt.ItemDataRole.DisplayRole and col == 0:
                return str(value)
            return value
        if role == Qt.ItemDataRole.BackgroundRole:
            change = self.change(f)
            if change == "fixed":
                return QBrush(self._FIXED)
            if change == "broken":
                return QBrush(self._BROKEN)
        if role == Qt.ItemDataRole.ToolTipRole and col == 1:
            return f.text
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (0, 4, 6):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None


_METRIC_ROWS = (
    "Accuracy",
    "Macro-F1",
    "Size on disk",
    "Parameters",
    "Latency p50",
    "Latency p95",
    "Throughput",
)


def _ratio(a: float | None, b: float | None, smaller: str, larger: str) -> str:
    if a is None or b is None or a <= 0 or b <= 0:
        return "–"
    if abs(a - b) / a < 0.005:
        return "same"
    return f"{a / b:.1f}× {smaller}" if b < a else f"{b / a:.1f}× {larger}"


def _points(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "–"
    return f"{100 * (b - a):+.2f} pt"


def metric_cells(a: Variant, b: Variant) -> list[tuple[str, str, str, str]]:
    """(figure, A, B, B against A) rows of the side-by-side table."""

    def size(v: Variant) -> str:
        return "–" if v.size_bytes is None else human_bytes(v.size_bytes)

    def params(v: Variant) -> str:
        return "–" if v.parameters is None else f"{v.parameters:,}"

    def tput(v: Variant) -> str:
        return "–" if v.throughput is None else f"{v.throughput:,.0f}/s"

    return [
        ("Accuracy", _pct(a.accuracy), _pct(b.accuracy), _points(a.accuracy, b.accuracy)),
        ("Macro-F1", _pct(a.macro_f1), _pct(b.macro_f1), _points(a.macro_f1, b.macro_f1)),
        (
            "Size on disk",
            size(a),
            size(b),
            _ratio(a.size_bytes, b.size_bytes, "smaller", "larger"),
        ),
        (
            "Parameters",
            params(a),
            params(b),
            _ratio(a.parameters, b.parameters, "fewer", "more"),
        ),
        (
            "Latency p50",
            _ms(a.p50_ms),
            _ms(b.p50_ms),
            _ratio(a.p50_ms, b.p50_ms, "faster", "slower"),
        ),
        (
            "Latency p95",
            _ms(a.p95_ms),
            _ms(b.p95_ms),
            _ratio(a.p95_ms, b.p95_ms, "faster", "slower"),
        ),
        (
            "Throughput",
            tput(a),
            tput(b),
            _ratio(b.throughput, a.throughput, "higher", "lower"),
        ),
    ] + (
        [("int8 measured on", a.int8_arithmetic or "–", b.int8_arithmetic or "–", "")]
        if a.int8_arithmetic or b.int8_arithmetic
        else []
    )


class DetailsPanel(QWidget):
    """Two pickers, figures side by side, both confusion matrices, the flip list."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.combo_a = QComboBox()
        self.combo_b = QComboBox()
        for combo in (self.combo_a, self.combo_b):
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(16)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(160)
        self.progress.hide()
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop computing the flipped predictions")
        self.stop_button.hide()
        pickers = QHBoxLayout()
        pickers.addWidget(QLabel("<b>A</b>:"))
        pickers.addWidget(self.combo_a, 1)
        pickers.addWidget(QLabel("against <b>B</b>:"))
        pickers.addWidget(self.combo_b, 1)
        pickers.addWidget(self.progress)
        pickers.addWidget(self.stop_button)

        self.metrics = QTableWidget(len(_METRIC_ROWS), 3)
        self.metrics.setHorizontalHeaderLabels(["A", "B", "B against A"])
        self.metrics.setToolTip("Figures of A and B; the last column says how B compares with A")
        self.metrics.setVerticalHeaderLabels(list(_METRIC_ROWS))
        self.metrics.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.metrics.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.metrics.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.metrics.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.metrics.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.metrics.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.confusion_a = ConfusionTable()
        self.confusion_b = ConfusionTable()
        self.caption_a = QLabel("Confusion A")
        self.caption_b = QLabel("Confusion B")
        for caption in (self.caption_a, self.caption_b):
            caption.setWordWrap(True)
        confusions = QVBoxLayout()
        for caption, table in (
            (self.caption_a, self.confusion_a),
            (self.caption_b, self.confusion_b),
        ):
            confusions.addWidget(caption)
            confusions.addWidget(table)
        confusions.addStretch(1)
        figures = QWidget()
        figures_layout = QHBoxLayout(figures)
        figures_layout.setContentsMargins(0, 0, 0, 0)
        figures_layout.addWidget(self.metrics, 3, Qt.AlignmentFlag.AlignTop)
        figures_layout.addLayout(confusions, 2)

        self.flip_summary = QLabel()
        self.flip_summary.setWordWrap(True)
        self.flips = FlipTableModel(self)
        self.flip_proxy = QSortFilterProxyModel(self)
        self.flip_proxy.setSourceModel(self.flips)
        self.flip_proxy.setSortRole(SORT_ROLE)
        self.flip_table = QTableView()
        self.flip_table.setModel(self.flip_proxy)
        self.flip_table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.flip_table.setSortingEnabled(True)
        self.flip_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.flip_table.verticalHeader().hide()
        self.flip_table.setWordWrap(False)
        header = self.flip_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        flips = QWidget()
        flips_layout = QVBoxLayout(flips)
        flips_layout.setContentsMargins(0, 0, 0, 0)
        flips_layout.addWidget(self.flip_summary)
        flips_layout.addWidget(self.flip_table, 1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(pickers)
        layout.addWidget(self.status)
        layout.addWidget(figures)
        layout.addWidget(flips, 1)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        # Row heights computed before the panel was first shown can use the unpolished
        # font, which left the last rows of the figures clipped at 1920x1080: fit again.
        super().showEvent(event)
        fit_height(self.metrics)
        for table in (self.confusion_a, self.confusion_b):
            if table.isVisibleTo(self):
                fit_height(table)

    def show_pair(self, a: Variant | None, b: Variant | None) -> None:
        """Figures and stored confusion matrices; the flips come later."""
        self.flips.set_flips([], [])
        if a is None or b is None:
            self.metrics.setRowCount(len(_METRIC_ROWS))
            self.metrics.setVerticalHeaderLabels(list(_METRIC_ROWS))
            for r in range(len(_METRIC_ROWS)):
                for c in range(3):
                    self.metrics.setItem(r, c, QTableWidgetItem("–"))
            self.confusion_a.show_matrix(None, [])
            self.confusion_b.show_matrix(None, [])
            self.caption_a.setText("Confusion A: –")
            self.caption_b.setText("Confusion B: –")
            self.flip_summary.setText("<i>Pick two variants to compare.</i>")
            fit_height(self.metrics)
            return
        for col, v in ((0, a), (1, b)):
            self.metrics.horizontalHeaderItem(col).setToolTip(f"{v.name}\n{v.path}")
        cells = metric_cells(a, b)  # an int8 row only where one of them is int8
        self.metrics.setRowCount(len(cells))
        self.metrics.setVerticalHeaderLabels([name for name, *_ in cells])
        for r, (_name, va, vb, delta) in enumerate(cells):
            for c, text in enumerate((va, vb, delta)):
                cell = QTableWidgetItem(text)
                cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.metrics.setItem(r, c, cell)
        for v, table, caption, side in (
            (a, self.confusion_a, self.caption_a, "A"),
            (b, self.confusion_b, self.caption_b, "B"),
        ):
            table.show_matrix(v.confusion, v.label_names)
            caption.setText(
                f"Confusion {side} (from its evaluate step)"
                if v.confusion
                else f"Confusion {side}: <i>computing on the eval rows…</i>"
            )
        self.flip_summary.setText("<i>Running both models on the eval rows…</i>")
        fit_height(self.metrics)

    def show_flips(self, result: FlipResult) -> None:
        d = result.diff
        names = result.label_names
        self.flips.set_flips(d.flips, names)
        n = len(d.flips)
        self.flip_summary.setText(
            f"<b>{n} of {result.rows}</b> predictions flip ({100 * (1 - d.agreement):.1f} %): "
            f"<span style='background:#d9efe2'>&nbsp;{d.fixed} fixed&nbsp;</span>, "
            f"<span style='background:#f8dcd5'>&nbsp;{d.broken} broken&nbsp;</span> by B. "
            f"On {result.dataset}; mean shift in the gold class's probability "
            f"{d.mean_confidence_shift:.3f}."
        )
        for v, table, caption, report, side in (
            (result.a, self.confusion_a, self.caption_a, result.report_a, "A"),
            (result.b, self.confusion_b, self.caption_b, result.report_b, "B"),
        ):
            if not v.confusion:
                table.show_matrix(report.confusion, names)
                caption.setText(
                    f"Confusion {side} (on these {result.rows} rows: "
                    f"accuracy {100 * report.accuracy:.1f} %)"
                )


# --------------------------------------------------------------------------- view


class CompareView(QWidget):
    """The Compare area: table and Pareto chart of every variant, and a pair in detail.

    Args:
        store: the job history to read; by default the app's history file, opened on
            a worker at each refresh.
        parent: the parent widget.
        load_on_start: read the history when first shown (the app); tests call
            :meth:`refresh` themselves.
    """

    #: A refresh finished: the number of rows listed.
    loaded = Signal(int)
    #: The flip list for the current pair is on screen.
    flips_ready = Signal(object)
    #: Computing the flip list failed: the sentence shown.
    flips_failed = Signal(str)
    #: A short sentence for the status bar.
    status_message = Signal(str)

    def __init__(
        self, store: JobStore | None = None, parent=None, *, load_on_start: bool = True
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.variants: list[Variant] = []
        self._load_on_start = load_on_start
        self._loaded_once = False
        self._workers = WorkerSet()
        self._refresh_generation = 0
        self._flip_worker = None
        self._flip_generation = 0
        self._closing = False
        self._syncing = False

        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Read the job history and the saved variants again")
        self.summary = QLabel("<i>Reading the job history…</i>")
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        self.notes.setStyleSheet("color: #7a5b00;")
        self.notes.hide()
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.refresh_button)

        self.model = VariantTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setToolTip("Select two rows (Ctrl+click) to compare them below")
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        self.table.setAlternatingRowColors(True)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.plot = ParetoPlot()
        self.details = DetailsPanel()

        # The table runs the full width so every figure is readable; below it the
        # chart and the pair in detail sit side by side.
        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(self.plot)
        lower.addWidget(self.details)
        lower.setStretchFactor(0, 4)
        lower.setStretchFactor(1, 5)
        lower.setSizes([460, 620])
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(lower)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setSizes([180, 540])
        self.lower = lower
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.notes)
        layout.addWidget(self.splitter, 1)

        self._pair_timer = QTimer(self)
        self._pair_timer.setSingleShot(True)
        self._pair_timer.setInterval(0)
        self._pair_timer.timeout.connect(self._show_pair)

        self.refresh_button.clicked.connect(self.refresh)
        self.plot.point_clicked.connect(self.select_row)
        selection = self.table.selectionModel()
        selection.currentRowChanged.connect(self._on_current_changed)
        selection.selectionChanged.connect(self._on_selection_changed)
        self.details.combo_a.currentIndexChanged.connect(self._pair_timer.start)
        self.details.combo_b.currentIndexChanged.connect(self._pair_timer.start)
        self.details.stop_button.clicked.connect(self.stop_flips)
        self.details.show_pair(None, None)

    # ------------------------------------------------------------------ loading
    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().showEvent(event)
        if self._load_on_start and not self._loaded_once:
            self.refresh()

    def refresh(self) -> None:
        """Read the history and every variant's ``slimpajama.json`` on a worker."""
        self._loaded_once = True
        self._refresh_generation += 1
        generation = self._refresh_generation
        self.refresh_button.setEnabled(False)
        worker = create_worker(load_variants, self.store, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda data, g=generation: self._on_loaded(data, g))
        worker.errored.connect(lambda exc, g=generation: self._on_load_error(exc, g))
        self._track(worker)
        worker.start()

    def _on_loaded(self, data: CompareData, generation: int) -> None:
        if self._closing or generation != self._refresh_generation:
            return
        self.refresh_button.setEnabled(True)
        keep_a, keep_b = self.pair()
        keep_a = keep_a.key if keep_a else None
        keep_b = keep_b.key if keep_b else None
        self.variants = data.variants
        front = set(self.plot.set_variants(self.variants))
        self.model.set_variants(self.variants, front)
        self.table.resizeColumnsToContents()
        if self.table.columnWidth(0) > 260:
            self.table.setColumnWidth(0, 260)
        n_var = sum(not v.is_source for v in self.variants)
        n_src = len(self.variants) - n_var
        if self.variants:
            self.summary.setText(
                f"{n_var} variant{'s' if n_var != 1 else ''} and {n_src} source model"
                f"{'s' if n_src != 1 else ''}; {len(self.plot.plotted)} measured on the chart, "
                f"{len(front)} Pareto-optimal (bold). Hover a point for its numbers, click it to "
                "select its row; select two rows to compare them."
            )
        else:
            self.summary.setText(
                "<i>No saved variants yet. Run a compression job (Compress, or "
                "<code>slimpajama run RECIPE</code>); its results appear here.</i>"
            )
        self.notes.setText("\n".join(data.notes))
        self.notes.setVisible(bool(data.notes))
        self._fill_combos(keep_a, keep_b)
        self.loaded.emit(len(self.variants))

    def _on_load_error(self, exc: BaseException, generation: int) -> None:
        if self._closing or generation != self._refresh_generation:
            return
        self.refresh_button.setEnabled(True)
        if isinstance(exc, UserError):
            text = str(exc)
        else:
            log.error("Reading the variants failed", exc_info=exc)
            text = f"Reading the job history failed ({type(exc).__name__}: {exc}); see the log."
        self.summary.setText(f'<span style="color:#a1261b">{text}</span>')
        self.loaded.emit(len(self.variants))

    def _fill_combos(self, keep_a: str | None, keep_b: str | None) -> None:
        keys = [v.key for v in self.variants]
        a, b = default_pair(self.variants)
        if keep_a in keys and keep_b in keys:
            a, b = keys.index(keep_a), keys.index(keep_b)
        for combo, pick in ((self.details.combo_a, a), (self.details.combo_b, b)):
            combo.blockSignals(True)
            combo.clear()
            for i, v in enumerate(self.variants):
                combo.addItem(v.name + (" (source)" if v.is_source else ""), i)
            combo.setCurrentIndex(-1 if pick is None else pick)
            combo.blockSignals(False)
        self._pair_timer.start()

    # ------------------------------------------------------------------ selection
    def select_row(self, row: int) -> None:
        """Select the table row of ``self.variants[row]`` (as a click on its point does)."""
        index = self.proxy.mapFromSource(self.model.index(row, 0))
        if not index.isValid():
            return
        self.table.selectionModel().setCurrentIndex(
            index,
            QItemSelectionModel.SelectionFlag.ClearAndSelect
            | QItemSelectionModel.SelectionFlag.Rows,
        )
        self.table.scrollTo(index)

    def selected_rows(self) -> list[int]:
        """Selected rows as positions in :attr:`variants`, in selection order."""
        rows = []
        for index in self.table.selectionModel().selectedRows():
            row = self.proxy.mapToSource(index).row()
            if row not in rows:
                rows.append(row)
        return rows

    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        row = self.proxy.mapToSource(current).row() if current.isValid() else None
        self.plot.select(row)

    def _on_selection_changed(self, _sel: QItemSelection, _desel: QItemSelection) -> None:
        rows = self.selected_rows()
        if len(rows) == 2:
            self.set_pair(rows[0], rows[1])

    def set_pair(self, a: int | None, b: int | None) -> None:
        """Compare ``variants[a]`` (A) with ``variants[b]`` (B)."""
        for combo, row in ((self.details.combo_a, a), (self.details.combo_b, b)):
            combo.setCurrentIndex(-1 if row is None else row)
        self._pair_timer.start()

    def pair(self) -> tuple[Variant | None, Variant | None]:
        out = []
        for combo in (self.details.combo_a, self.details.combo_b):
            row = combo.currentData()
            out.append(self.variants[row] if row is not None and row < len(self.variants) else None)
        return out[0], out[1]

    # ------------------------------------------------------------------ details
    def _show_pair(self) -> None:
        if self._closing:
            return
        a, b = self.pair()
        self.stop_flips()
        self._flip_generation += 1
        if a is None or b is None:
            self.details.show_pair(None, None)
            self.details.status.setText("")
            return
        self.details.show_pair(a, b)
        if a.key == b.key:
            self.details.flip_summary.setText("<i>A and B are the same model: nothing flips.</i>")
            return
        self._start_flips(a, b)

    def _start_flips(self, a: Variant, b: Variant) -> None:
        generation = self._flip_generation
        worker = create_worker(flip_job, a, b, _start_thread=False, _ignore_errors=True)
        self._flip_worker = worker
        worker.yielded.connect(lambda item, g=generation: self._on_flip_progress(item, g))
        worker.returned.connect(lambda result, g=generation: self._on_flips(result, g))
        worker.errored.connect(lambda exc, g=generation: self._on_flip_error(exc, g))
        worker.finished.connect(lambda g=generation: self._on_flip_finished(g))
        self._track(worker)
        self.details.progress.setRange(0, 0)
        self.details.progress.show()
        self.details.stop_button.show()
        worker.start()

    def _on_flip_progress(self, item: tuple, generation: int) -> None:
        if self._closing or generation != self._flip_generation:
            return
        if item[0] == "status":
            self.details.status.setText(f"<i>{item[1]}</i>")
        elif item[0] == "progress":
            _kind, side, done, total = item
            self.details.progress.setRange(0, 2 * total)
            self.details.progress.setValue(done + (total if side == "B" else 0))
            self.details.status.setText(f"<i>Predicting with {side}: batch {done} of {total}…</i>")

    def _on_flips(self, result: FlipResult, generation: int) -> None:
        if self._closing or generation != self._flip_generation:
            return
        self.details.status.setText("")
        self.details.show_flips(result)
        self.flips_ready.emit(result)

    def _on_flip_error(self, exc: BaseException, generation: int) -> None:
        if self._closing or generation != self._flip_generation:
            return
        if isinstance(exc, UserError):
            text = str(exc)
        else:
            log.error("Comparing predictions failed", exc_info=exc)
            text = (
                f"Comparing predictions failed ({type(exc).__name__}: {exc}). The log has the "
                "details; please report it."
            )
        self.details.status.setText(f'<span style="color:#a1261b">{text}</span>')
        self.details.flip_summary.setText("")
        for caption, side in ((self.details.caption_a, "A"), (self.details.caption_b, "B")):
            if "computing" in caption.text():  # it will not come: say so
                caption.setText(f"Confusion {side}: <i>not computed (see the message above)</i>")
        self.flips_failed.emit(text)

    def _on_flip_finished(self, generation: int) -> None:
        if generation == self._flip_generation and not self._closing:
            self._flip_worker = None
            self.details.progress.hide()
            self.details.stop_button.hide()

    def stop_flips(self) -> None:
        """Ask the running flip computation to stop (it ends after its current batch)."""
        if self._flip_worker is not None:
            self._flip_worker.quit()
            self._flip_worker = None
            self.details.progress.hide()
            self.details.stop_button.hide()
            self.details.status.setText("<i>Stopped.</i>")

    # ------------------------------------------------------------------ lifetime
    def _track(self, worker) -> None:
        self._workers.track(worker)

    def busy(self) -> bool:
        return bool(self._workers)

    def shutdown(self) -> None:
        """Stop listening to workers and ask them to stop; call before closing."""
        if self._closing:
            return
        self._closing = True
        self._pair_timer.stop()
        self._workers.quit_all()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.shutdown()
        super().closeEvent(event)


__all__ = [
    "CompareData",
    "CompareView",
    "FlipResult",
    "ParetoPlot",
    "Variant",
    "default_pair",
    "flip_job",
    "load_variants",
    "pareto_front",
]
