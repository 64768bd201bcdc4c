"""The Playground: type a sentence, see what two models predict, side by side.

Two pickers choose the models (only models with a trained classifier head are offered);
by default the original on the left and the newest compressed result on the right. As
the user types, a debounced request goes to the thread pool, one worker per side, so a
slow model never holds up the other. Loaded models stay cached per folder on the worker
side (:class:`PredictorCache`); the GUI thread neither loads nor runs a model.

Every request carries a generation number; a result for older text (or for a model no
longer picked) is dropped when it arrives. While a side is busy, only the newest request
waits behind it, so fast typing never piles up work.

The batch tab runs many lines through both models and lists where they disagree.

Predictions go through a small :class:`Predictor` interface so other backends (ONNX
Runtime) can slot in beside :class:`TorchPredictor`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QFont, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import create_worker

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.catalog import ModelInfo
from slimpajama_gui.core.runtime.inputs import model_inputs
from slimpajama_gui.core.runtime.loading import open_model
from slimpajama_gui.core.storage.variant import VariantRecord
from slimpajama_gui.qt.workers import WorkerSet

log = logging.getLogger(__name__)

#: Milliseconds of quiet typing before a prediction starts.
DEBOUNCE_MS = 300
#: Models kept loaded at once (switching pickers back and forth stays instant).
CACHE_SIZE = 4
#: Bars shown per side; with more classes only the most likely ones are listed.
MAX_BARS = 8
#: Lines per forward pass in batch mode.
BATCH_CHUNK = 32

SIDES = ("a", "b")

_Index = QModelIndex | QPersistentModelIndex


# --------------------------------------------------------------------------- predictors


class Predictor(Protocol):
    """Anything that turns texts into class probabilities.

    ``predict`` returns ``(probs, labels, ms)``: ``probs`` (N, C) float32 rows summing
    to 1, ``labels`` the C class names in column order, and ``ms`` the milliseconds the
    model itself took (tokenization excluded, as in :mod:`slimpajama_gui.core.runtime.bench`).
    Implementations must be safe to call from any worker thread.
    """

    label_names: list[str]

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, list[str], float]: ...


class TorchPredictor:
    """A :class:`~slimpajama_gui.core.model.encoder.SlimPajamaModel` and its tokenizer.

    Loading reads the folder's safetensors and tokenizer files; construct it on a worker.

    Raises:
        UserError: the folder cannot be opened, or its model has no trained classifier
            head (an encoder only), so its predictions would be noise.
    """

    backend = "pytorch"

    def __init__(self, path: Path | str, *, max_length: int = 128, batch_size: int = 32) -> None:
        handle = open_model(path)
        model = handle.load_model()
        report = getattr(model, "load_report", None)
        if report is not None and report.new_keys:
            raise UserError(
                f"{handle.info.name} has no trained classifier head (it is an encoder only); "
                "fine-tune it in Compress first, or pick another model."
            )
        self.path = Path(handle.info.path)
        self.name = handle.info.name
        self.model = model.eval()
        self.tokenizer = handle.load_tokenizer()
        self.inputs = model_inputs(model, self.tokenizer, self.name)
        self.max_length = self.inputs.fit_length(max_length)
        self.batch_size = batch_size
        config = model.config
        self.label_names = [str(config.id2label[i]) for i in range(config.num_labels)]
        # A fast tokenizer is not safe to share between threads ("Already borrowed"), and
        # the live and the batch tab may both use this model at once.
        self._lock = threading.Lock()

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, list[str], float]:
        import torch

        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, len(self.label_names)), np.float32), list(self.label_names), 0.0
        rows: list[np.ndarray] = []
        seconds = 0.0
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                inputs, _ = self.inputs.batch(
                    texts[start : start + self.batch_size], self.tokenizer, self.max_length
                )
                t0 = time.perf_counter()
                logits = self.model(**inputs).logits
                seconds += time.perf_counter() - t0
                rows.append(torch.softmax(logits.float(), dim=-1).numpy())
        return np.concatenate(rows).astype(np.float32), list(self.label_names), seconds * 1000


PredictorFactory = Callable[[Path], Predictor]


class PredictorCache:
    """Loaded predictors by folder, shared by worker threads; least recently used go first.

    Two workers asking for the same folder at once load it once: the second waits for
    the first. Only workers call :meth:`get`; the GUI thread may call :meth:`peek`.
    """

    def __init__(self, factory: PredictorFactory = TorchPredictor, size: int = CACHE_SIZE) -> None:
        self.factory = factory
        self.size = size
        self._items: OrderedDict[Path, Predictor] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Path, threading.Lock] = {}
        #: How many times each folder was loaded (tests check the cache works).
        self.loads: dict[Path, int] = {}

    @staticmethod
    def _key(path: Path | str) -> Path:
        return Path(path).expanduser().resolve()

    def peek(self, path: Path | str) -> Predictor | None:
        with self._lock:
            return self._items.get(self._key(path))

    def get(self, path: Path | str) -> Predictor:
        key = self._key(path)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            predictor = self.factory(key)
            with self._lock:
                self._items[key] = predictor
                self.loads[key] = self.loads.get(key, 0) + 1
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
                self._loading.pop(key, None)
        return predictor

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class _Request:
    side: str
    generation: int
    path: Path
    text: str


@dataclass(frozen=True)
class Prediction:
    """One side's answer for one text."""

    text: str
    path: Path
    label: str
    probs: np.ndarray  # (C,)
    label_names: list[str]
    ms: float


@dataclass
class _SideState:
    busy: bool = False
    pending: _Request | None = None
    generation: int = 0  # newest generation asked for


def _side_job(cache: PredictorCache, request: _Request) -> Iterator[tuple[str, _Request]]:
    """Runs on a worker: load the model if needed (saying so), then predict one text."""
    predictor = cache.peek(request.path)
    if predictor is None:
        yield ("loading", request)
        predictor = cache.get(request.path)
    probs, names, ms = predictor.predict([request.text])
    row = probs[0]
    return request, Prediction(
        text=request.text,
        path=request.path,
        label=names[int(np.argmax(row))],
        probs=row,
        label_names=names,
        ms=ms,
    )


def error_sentence(exc: BaseException, what: str) -> str:
    """A sentence for the panel; the traceback of a bug goes to the log."""
    if isinstance(exc, UserError):
        return str(exc)
    log.error("%s failed", what, exc_info=exc)
    return (
        f"{what} failed ({type(exc).__name__}: {exc}). The log has the details; please report it."
    )


# --------------------------------------------------------------------------- defaults


def _read_result(path: Path) -> VariantRecord:
    """The variant's record; an empty one (no date, no parent) when it cannot be read."""
    return VariantRecord.read_or_none(path) or VariantRecord(created_at="")


def choose_pair(infos: Sequence[ModelInfo]) -> tuple[Path | None, Path | None]:
    """The default (original, compressed) pair; reads ``slimpajama.json`` files.

    B is the newest result (by ``created_at``). A is, in order of preference, B's parent,
    the source model B came from, the first variant of B's job, any model that is not a
    result, or any other model; each only if it has a classifier head and is listed.
    """
    usable = [i for i in infos if i.num_labels]
    if not usable:
        return None, None
    by_path = {Path(i.path).resolve(): Path(i.path) for i in usable}

    def listed(value: Any) -> Path | None:
        if not value:
            return None
        try:
            return by_path.get(Path(str(value)).expanduser().resolve())
        except OSError:
            return None

    results = [(i, _read_result(i.path)) for i in usable if i.source == "result"]
    if not results:
        a = usable[0].path
        b = next((i.path for i in usable if i.path != a), a)
        return Path(a), Path(b)
    latest, meta = max(results, key=lambda r: str(r[1].created_at or ""))
    b = Path(latest.path)
    same_job = sorted(
        (m.step_index or 0, Path(i.path))
        for i, m in results
        if m.job_id is not None and m.job_id == meta.job_id
    )
    candidates = [
        listed(meta.parent),
        listed(meta.source_model),
        next((p for _, p in same_job if p != b), None),
        next((Path(i.path) for i in usable if i.source != "result"), None),
        next((Path(i.path) for i in usable if Path(i.path) != b), None),
    ]
    a = next((c for c in candidates if c is not None and c != b), b)
    return a, b


# --------------------------------------------------------------------------- widgets


def _name_for(info: ModelInfo) -> str:
    return info.name if info.source != "result" else f"{info.name} (result)"


class ProbabilityBars(QWidget):
    """One labelled horizontal bar per class."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setColumnStretch(1, 1)
        self._rows: list[tuple[QLabel, QProgressBar, QLabel]] = []

    def _ensure_rows(self, n: int) -> None:
        while len(self._rows) < n:
            row = len(self._rows)
            name, value = QLabel(), QLabel()
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            value.setMinimumWidth(value.fontMetrics().horizontalAdvance("100.0 %") + 4)
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setTextVisible(False)
            bar.setFixedHeight(14)
            self._grid.addWidget(name, row, 0)
            self._grid.addWidget(bar, row, 1)
            self._grid.addWidget(value, row, 2)
            self._rows.append((name, bar, value))
        for i, widgets in enumerate(self._rows):
            for w in widgets:
                w.setVisible(i < n)

    def show_probs(self, names: Sequence[str], probs: np.ndarray | None) -> None:
        if probs is None:
            self._ensure_rows(0)
            return
        order = list(range(len(names)))
        if len(order) > MAX_BARS:  # many classes: the likeliest ones, best first
            order = [int(i) for i in np.argsort(-probs)[:MAX_BARS]]
        best = int(np.argmax(probs))
        self._ensure_rows(len(order))
        for (name, bar, value), c in zip(self._rows, order, strict=False):
            p = float(probs[c])
            name.setText(str(names[c]))
            bar.setValue(round(p * 1000))
            value.setText(f"{100 * p:.1f} %")
            font = name.font()
            font.setBold(c == best)
            name.setFont(font)

    def values(self) -> dict[str, float]:
        """What the bars show, by class name (for tests and screen readers)."""
        return {
            name.text(): bar.value() / 1000 for name, bar, _ in self._rows if name.isVisibleTo(self)
        }


class PredictionPanel(QGroupBox):
    """One side's answer: state line, predicted label, class bars, latency."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self.state = QLabel()
        self.state.setWordWrap(True)
        self.state.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label = QLabel("–")
        font = QFont(self.label.font())
        font.setPointSizeF(font.pointSizeF() * 1.8)
        font.setBold(True)
        self.label.setFont(font)
        self.bars = ProbabilityBars()
        self.latency = QLabel()
        self.latency.setStyleSheet("color: #5f6b76;")
        self.latency.setToolTip(
            "Time of the model's forward pass at batch 1 (tokenization excluded)"
        )
        layout = QVBoxLayout(self)
        layout.addWidget(self.state)
        layout.addWidget(self.label)
        layout.addWidget(self.bars)
        layout.addWidget(self.latency)
        #: The prediction on screen, or None.
        self.result: Prediction | None = None
        #: The sentence on screen when an error is shown, else "".
        self.error = ""
        self.show_idle("Type a sentence above.")

    def show_idle(self, text: str) -> None:
        self.result, self.error = None, ""
        self.state.setText(f"<i>{text}</i>")
        self.state.setStyleSheet("")
        self.label.setText("–")
        self.bars.show_probs([], None)
        self.latency.setText("")

    def show_loading(self) -> None:
        self.state.setText("<i>Loading…</i>")
        self.state.setStyleSheet("")

    def show_running(self) -> None:
        if self.result is None and not self.error:
            self.state.setText("<i>Predicting…</i>")
            self.state.setStyleSheet("")

    def show_prediction(self, pred: Prediction) -> None:
        self.result, self.error = pred, ""
        self.state.setText("")
        self.label.setText(pred.label)
        self.bars.show_probs(pred.label_names, pred.probs)
        self.latency.setText(f"{pred.ms:.1f} ms")

    def show_error(self, text: str) -> None:
        self.result, self.error = None, text
        self.state.setText(text)
        self.state.setStyleSheet("color: #a1261b;")
        self.label.setText("–")
        self.bars.show_probs([], None)
        self.latency.setText("")


# --------------------------------------------------------------------------- batch


@dataclass
class BatchResult:
    texts: list[str]
    probs_a: np.ndarray
    names_a: list[str]
    probs_b: np.ndarray
    names_b: list[str]
    ms_a: float = 0.0
    ms_b: float = 0.0
    pred_a: np.ndarray = field(init=False)
    pred_b: np.ndarray = field(init=False)
    disagree: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.pred_a = self.probs_a.argmax(axis=1)
        self.pred_b = self.probs_b.argmax(axis=1)
        if self.names_a == self.names_b or len(self.names_a) != len(self.names_b):
            labels_a = np.asarray(self.names_a, dtype=object)[self.pred_a]
            labels_b = np.asarray(self.names_b, dtype=object)[self.pred_b]
            self.disagree = labels_a != labels_b
        else:
            # Same number of classes under other names (LABEL_0 vs negative): by id.
            self.disagree = self.pred_a != self.pred_b

    @property
    def disagreements(self) -> int:
        return int(self.disagree.sum())


def _batch_job(
    cache: PredictorCache, path_a: Path, path_b: Path, texts: list[str]
) -> Iterator[tuple[int, int]]:
    """Runs on a worker: both models over ``texts`` in chunks, abortable between chunks."""
    yield (0, len(texts))
    a, b = cache.get(path_a), cache.get(path_b)
    parts: dict[str, list[np.ndarray]] = {"a": [], "b": []}
    names: dict[str, list[str]] = {}
    ms = {"a": 0.0, "b": 0.0}
    for start in range(0, len(texts), BATCH_CHUNK):
        chunk = texts[start : start + BATCH_CHUNK]
        for side, predictor in (("a", a), ("b", b)):
            probs, labels, took = predictor.predict(chunk)
            parts[side].append(probs)
            names[side] = labels
            ms[side] += took
        yield (start + len(chunk), len(texts))
    return BatchResult(
        texts,
        np.concatenate(parts["a"]),
        names["a"],
        np.concatenate(parts["b"]),
        names["b"],
        ms["a"],
        ms["b"],
    )


_DISAGREE = QColor("#fbe3c8")


class BatchTableModel(QAbstractTableModel):
    """Text, label A, p A, label B, p B; rows where the models disagree are tinted."""

    HEADERS = ("Text", "Label A", "p A", "Label B", "p B")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.result: BatchResult | None = None

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() or self.result is None else len(self.result.texts)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.HEADERS)

    def set_result(self, result: BatchResult | None) -> None:
        self.beginResetModel()
        self.result = result
        self.endResetModel()

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        r = self.result
        if r is None or not index.isValid() or not 0 <= index.row() < len(r.texts):
            return None
        row, col = index.row(), index.column()
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.UserRole):
            sort = role == Qt.ItemDataRole.UserRole
            if col == 0:
                return r.texts[row]
            if col in (1, 3):
                names, pred = (r.names_a, r.pred_a) if col == 1 else (r.names_b, r.pred_b)
                return names[int(pred[row])]
            probs, pred = (r.probs_a, r.pred_a) if col == 2 else (r.probs_b, r.pred_b)
            p = float(probs[row, int(pred[row])])
            return p if sort else f"{p:.3f}"
        if role == Qt.ItemDataRole.BackgroundRole and bool(r.disagree[row]):
            return QBrush(_DISAGREE)
        if role == Qt.ItemDataRole.ForegroundRole and bool(r.disagree[row]):
            return QBrush(QColor("#3b2200"))
        if role == Qt.ItemDataRole.ToolTipRole:
            return r.texts[row] if col == 0 else None
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (2, 4):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Vertical:
            return str(section + 1)
        return None


class _DisagreeFilter(QSortFilterProxyModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.only_disagreements = False
        self.setSortRole(Qt.ItemDataRole.UserRole)

    def set_only(self, on: bool) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.9
            self.beginFilterChange()
            self.only_disagreements = on
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.only_disagreements = on
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: _Index) -> bool:  # noqa: N802
        result = self.sourceModel().result
        if not self.only_disagreements or result is None:
            return True
        return bool(result.disagree[source_row])


class BatchPanel(QWidget):
    """Many lines in, one row per line out, with the disagreements counted."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.input = QPlainTextEdit()
        self.input.setPlaceholderText("One text per line…")
        self.run_button = QPushButton("Predict all")
        self.run_button.setToolTip("Run both models on every line (Ctrl+Return)")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.count = QLabel("<i>Paste or type lines, then “Predict all”.</i>")
        self.count.setWordWrap(True)
        self.only = QCheckBox("Only disagreements")
        self.model = BatchTableModel(self)
        self.proxy = _DisagreeFilter(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        # Rows start in the order typed; a click on a header sorts.
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, len(BatchTableModel.HEADERS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.input, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.progress, 1)
        left_layout.addLayout(buttons)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(self.count, 1)
        top.addWidget(self.only)
        right_layout.addLayout(top)
        right_layout.addWidget(self.table, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter, 1)
        self.only.toggled.connect(self.proxy.set_only)

    def lines(self) -> list[str]:
        return [line.strip() for line in self.input.toPlainText().splitlines() if line.strip()]


# --------------------------------------------------------------------------- view


class PlaygroundView(QWidget):
    """Two models side by side on the same text, live or on many lines at once.

    Args:
        parent: the parent widget.
        factory: builds a :class:`Predictor` for a model folder (on a worker thread);
            :class:`TorchPredictor` by default.
    """

    #: One side ("a" or "b") showed a new prediction.
    prediction_shown = Signal(str, object)
    #: One side ("a" or "b") shows an error sentence.
    prediction_failed = Signal(str, str)
    #: The default pair was picked after :meth:`set_models` (paths or None).
    defaults_chosen = Signal(object, object)
    #: A batch run ended: (disagreements, rows).
    batch_finished = Signal(int, int)
    #: A short sentence for the status bar.
    status_message = Signal(str)

    def __init__(
        self, parent: QWidget | None = None, *, factory: PredictorFactory = TorchPredictor
    ) -> None:
        super().__init__(parent)
        self.cache = PredictorCache(factory)
        self._infos: list[ModelInfo] = []
        self._state = {s: _SideState() for s in SIDES}
        self._generation = 0
        self._workers = WorkerSet()
        self._batch_worker = None
        self._models_generation = 0
        self._closing = False
        #: Results dropped because newer text or another model was asked for meanwhile.
        self.stale_dropped = 0

        self.text = QLineEdit()
        self.text.setPlaceholderText(
            "Type a sentence; both models predict as you type (Enter: now)"
        )
        self.text.setClearButtonEnabled(True)
        #: The model pickers, shared by the live and the batch tab.
        self.pickers: dict[str, QComboBox] = {}
        pickers = QHBoxLayout()
        for side in SIDES:
            combo = QComboBox()
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(18)
            combo.setToolTip(f"Model {side.upper()}: only models with a classifier head are listed")
            title = QLabel(f"Model <b>{side.upper()}</b>:")
            title.setBuddy(combo)
            pickers.addWidget(title)
            pickers.addWidget(combo, 1)
            if side == "a":
                pickers.addSpacing(16)
            self.pickers[side] = combo
        self.panels = {s: PredictionPanel(f"Model {s.upper()}") for s in SIDES}
        self.verdict = QLabel()
        self.verdict.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.hide()

        live = QWidget()
        live_layout = QVBoxLayout(live)
        live_layout.addWidget(self.text)
        sides = QHBoxLayout()
        sides.addWidget(self.panels["a"], 1)
        sides.addWidget(self.panels["b"], 1)
        live_layout.addLayout(sides)
        live_layout.addWidget(self.verdict)
        live_layout.addStretch(1)

        self.batch = BatchPanel()
        self.tabs = QTabWidget()
        self.tabs.addTab(live, "Live")
        self.tabs.addTab(self.batch, "Batch")

        layout = QVBoxLayout(self)
        layout.addLayout(pickers)
        layout.addWidget(self.hint)
        layout.addWidget(self.tabs, 1)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.predict_now)
        self.text.textChanged.connect(self._on_text_changed)
        self.text.returnPressed.connect(self.predict_now)
        for side in SIDES:
            self.pickers[side].currentIndexChanged.connect(
                lambda _i, s=side: self._on_model_changed(s)
            )
        self.batch.run_button.clicked.connect(self.run_batch)
        shortcut = QShortcut(QKeySequence("Ctrl+Return"), self.batch.input)
        shortcut.activated.connect(self.run_batch)
        self._update_hint()

    # ------------------------------------------------------------------ models
    def set_models(self, infos: Sequence[ModelInfo]) -> None:
        """Offer these models (those without a classifier head are left out).

        The pickers keep their choice if it is still listed; otherwise the default pair
        is chosen on a worker (it reads ``slimpajama.json`` files) and
        :attr:`defaults_chosen` is emitted.
        """
        self._infos = [i for i in infos if i.num_labels]
        self._models_generation += 1
        keep = {s: self.path(s) for s in SIDES}
        for side in SIDES:
            combo = self.pickers[side]
            combo.blockSignals(True)
            combo.clear()
            for info in self._infos:
                combo.addItem(_name_for(info), str(info.path))
                combo.setItemData(
                    combo.count() - 1,
                    f"{info.name}\n{info.path}\n{info.num_labels} classes",
                    Qt.ItemDataRole.ToolTipRole,
                )
            combo.setCurrentIndex(-1)
            combo.blockSignals(False)
            self._state[side].generation += 1  # answers from the old models are stale
            self.panels[side].show_idle("Pick a model.")
        self._update_verdict()
        self._update_hint()
        still = all(p is not None and self._combo_index(p) >= 0 for p in keep.values())
        if still:
            self.set_pair(keep["a"], keep["b"])
            return
        generation = self._models_generation
        worker = create_worker(
            choose_pair, list(self._infos), _start_thread=False, _ignore_errors=True
        )
        worker.returned.connect(lambda pair, g=generation: self._on_defaults(pair, g))
        worker.errored.connect(lambda exc: self._on_defaults_error(exc, generation))
        self._track(worker)
        worker.start()

    def _on_defaults(self, pair: tuple[Path | None, Path | None], generation: int) -> None:
        if self._closing or generation != self._models_generation:
            return
        a, b = pair
        self.set_pair(a, b)
        self.defaults_chosen.emit(a, b)

    def _on_defaults_error(self, exc: BaseException, generation: int) -> None:
        log.error("Choosing the default models failed", exc_info=exc)
        if self._closing or generation != self._models_generation:
            return
        first = self._infos[0].path if self._infos else None
        self.set_pair(first, first)
        self.defaults_chosen.emit(first, first)

    def set_pair(self, a: Path | str | None, b: Path | str | None) -> None:
        """Pick models A and B by folder (each must be one of the offered models)."""
        for side, path in (("a", a), ("b", b)):
            combo = self.pickers[side]
            index = self._combo_index(path) if path is not None else -1
            if index != combo.currentIndex():
                combo.setCurrentIndex(index)  # → _on_model_changed

    def path(self, side: str) -> Path | None:
        """The folder of the model picked on ``side`` ("a" or "b"), or None."""
        value = self.pickers[side].currentData()
        return Path(value) if value else None

    def models(self) -> list[ModelInfo]:
        return list(self._infos)

    def _combo_index(self, path: Path | str) -> int:
        # Paths come from the offered ModelInfos, so equal paths are equal objects here;
        # no resolve(), which would touch the disk on the GUI thread.
        target = str(Path(path))
        combo = self.pickers["a"]
        for i in range(combo.count()):
            if combo.itemData(i) == target:
                return i
        return -1

    def _update_hint(self) -> None:
        if self._infos:
            self.hint.hide()
            return
        self.hint.setText(
            "<b>No model with a classifier head yet.</b> Fine-tune one in Compress, or add a "
            "fine-tuned model folder in Models; it will appear here."
        )
        self.hint.show()

    def _on_model_changed(self, side: str) -> None:
        panel = self.panels[side]
        self._update_verdict()
        if self.path(side) is None:
            self._state[side].generation += 1  # anything in flight for it is stale now
            panel.show_idle("Pick a model.")
            return
        panel.show_idle("Type a sentence above.")
        if self.text.text().strip():
            self._request(side, self.text.text())

    # ------------------------------------------------------------------ live
    def _on_text_changed(self, text: str) -> None:
        if not text.strip():
            self._debounce.stop()
            self._generation += 1
            for side in SIDES:
                self._state[side].generation = self._generation
                self._state[side].pending = None
                self.panels[side].show_idle(
                    "Type a sentence above." if self.path(side) else "Pick a model."
                )
            self._update_verdict()
            return
        self._debounce.start()

    def predict_now(self) -> None:
        """Predict the current text with both models (Enter, or after typing stops)."""
        self._debounce.stop()
        text = self.text.text()
        if not text.strip():
            return
        for side in SIDES:
            self._request(side, text)

    def _request(self, side: str, text: str) -> None:
        path = self.path(side)
        if path is None:
            return
        self._generation += 1
        state = self._state[side]
        state.generation = self._generation
        request = _Request(side, self._generation, path, text)
        self.panels[side].show_running()
        if state.busy:
            state.pending = request  # only the newest waits; older text is not worth running
            return
        self._start(request)

    def _start(self, request: _Request) -> None:
        state = self._state[request.side]
        state.busy = True
        worker = create_worker(
            _side_job, self.cache, request, _start_thread=False, _ignore_errors=True
        )
        worker.yielded.connect(self._on_side_yielded)
        worker.returned.connect(self._on_side_returned)
        worker.errored.connect(lambda exc, r=request: self._on_side_error(r, exc))
        worker.finished.connect(lambda s=request.side: self._on_side_finished(s))
        self._track(worker)
        worker.start()

    def _current(self, request: _Request) -> bool:
        state = self._state[request.side]
        path = self.path(request.side)
        return (
            not self._closing
            and request.generation == state.generation
            and path is not None
            and Path(path) == request.path
        )

    def _on_side_yielded(self, item: tuple[str, _Request]) -> None:
        what, request = item
        if what == "loading" and self._current(request):
            self.panels[request.side].show_loading()
            self.status_message.emit(f"Loading {request.path.name}…")

    def _on_side_returned(self, item: tuple[_Request, Prediction]) -> None:
        request, pred = item
        if not self._current(request):
            self.stale_dropped += 1
            return
        self.panels[request.side].show_prediction(pred)
        self._update_verdict()
        self.prediction_shown.emit(request.side, pred)

    def _update_verdict(self) -> None:
        a, b = self.panels["a"].result, self.panels["b"].result
        if a is None or b is None or a.text != b.text:
            self.verdict.setText("")
        elif a.label == b.label:
            self.verdict.setText(f"Both models say <b>{a.label}</b>.")
        else:
            self.verdict.setText(
                f'<span style="color:#8a4b00">The models disagree: <b>{a.label}</b> '
                f"against <b>{b.label}</b>.</span>"
            )

    def _on_side_error(self, request: _Request, exc: BaseException) -> None:
        if not self._current(request):
            self.stale_dropped += 1
            return
        text = error_sentence(exc, f"Predicting with {request.path.name}")
        self.panels[request.side].show_error(text)
        self._update_verdict()
        self.prediction_failed.emit(request.side, text)

    def _on_side_finished(self, side: str) -> None:
        state = self._state[side]
        state.busy = False
        if state.pending is not None and not self._closing:
            pending, state.pending = state.pending, None
            # Not from inside the finished handler itself (Orange3's rule): next tick.
            QTimer.singleShot(0, self, lambda r=pending: self._start_if_current(r))

    def _start_if_current(self, request: _Request) -> None:
        state = self._state[request.side]
        if self._closing or state.busy or request.generation != state.generation:
            return
        self._start(request)

    # ------------------------------------------------------------------ batch
    def run_batch(self) -> None:
        """Run both models on every line of the batch box."""
        lines = self.batch.lines()
        a, b = self.path("a"), self.path("b")
        if not lines:
            self.batch.count.setText("<i>Type or paste some lines first, one text per line.</i>")
            return
        if a is None or b is None:
            self.batch.count.setText("<i>Pick model A and model B above first.</i>")
            return
        if self._batch_worker is not None:
            self._batch_worker.quit()
        self.batch.model.set_result(None)
        self.batch.progress.setRange(0, len(lines))
        self.batch.progress.setValue(0)
        self.batch.progress.show()
        self.batch.count.setText(f"<i>Running both models on {len(lines)} lines…</i>")
        worker = create_worker(
            _batch_job, self.cache, a, b, lines, _start_thread=False, _ignore_errors=True
        )
        self._batch_worker = worker
        worker.yielded.connect(lambda p, w=worker: self._on_batch_progress(w, p))
        worker.returned.connect(lambda r, w=worker: self._on_batch_done(w, r))
        worker.errored.connect(lambda exc, w=worker: self._on_batch_error(w, exc))
        self._track(worker)
        worker.start()

    def _on_batch_progress(self, worker, progress: tuple[int, int]) -> None:
        if worker is self._batch_worker and not self._closing:
            done, total = progress
            self.batch.progress.setRange(0, max(total, 1))
            self.batch.progress.setValue(done)

    def _on_batch_done(self, worker, result: BatchResult) -> None:
        if worker is not self._batch_worker or self._closing:
            return
        self._batch_worker = None
        self.batch.progress.hide()
        self.batch.model.set_result(result)
        n, m = result.disagreements, len(result.texts)
        self.batch.count.setText(
            f"<b>{n} of {m}</b> disagree"
            + (f" ({100 * n / m:.0f} %)" if m else "")
            + f" · {result.ms_a / max(m, 1):.1f} ms vs {result.ms_b / max(m, 1):.1f} ms per line"
        )
        self.batch_finished.emit(n, m)

    def _on_batch_error(self, worker, exc: BaseException) -> None:
        if worker is not self._batch_worker or self._closing:
            return
        self._batch_worker = None
        self.batch.progress.hide()
        text = error_sentence(exc, "The batch run")
        self.batch.count.setText(f'<span style="color:#a1261b">{text}</span>')

    # ------------------------------------------------------------------ lifetime
    def _track(self, worker) -> None:
        self._workers.track(worker)

    def busy(self) -> bool:
        return bool(self._workers)

    def shutdown(self) -> None:
        """Stop listening to workers and ask the batch run to stop; call before closing."""
        if self._closing:
            return
        self._closing = True
        self._debounce.stop()
        self._workers.quit_all()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.shutdown()
        super().closeEvent(event)


__all__ = [
    "BatchResult",
    "PlaygroundView",
    "Prediction",
    "PredictionPanel",
    "Predictor",
    "PredictorCache",
    "TorchPredictor",
    "choose_pair",
]
