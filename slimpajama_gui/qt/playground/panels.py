"""The Playground's panels: one side's answer (label, class bars, latency) and the batch tab.

The batch tab's rows come from a :class:`~slimpajama_gui.core.runtime.predictor.PairResult`
(computed on a worker by :func:`~slimpajama_gui.core.runtime.predictor.compare_texts`);
a proxy sorts by the raw values and can hide the rows where the models agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from slimpajama_gui.core.runtime.predictor import PairResult, Prediction
from slimpajama_gui.qt.widgets.panes import two_panes
from slimpajama_gui.qt.widgets.tables import RIGHT, change_filter, header_text, sortable_table

#: Bars shown per side; with more classes only the most likely ones are listed.
MAX_BARS = 8

_Index = QModelIndex | QPersistentModelIndex


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
    """One side's answer: state line, predicted label, class bars, latency, reading notes.

    The notes say how this side's model read the text (from the prediction's
    :class:`~slimpajama_gui.core.runtime.predictor.TextReading`): cut to its length, or
    words its vocabulary does not have (read as [UNK]); hidden when there is nothing
    to say.
    """

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
            "Time of this text's forward pass alone, at batch 1 on the CPU threads shown: "
            "tokenization excluded, and loading too. After a model is loaded or picked, "
            "the text first runs once untimed, so the figure is a warm pass like the others"
        )
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setTextFormat(Qt.TextFormat.PlainText)  # words come from the user's text
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note.setToolTip("How this model read the text: what it cut, what it did not know")
        self.note.hide()
        layout = QVBoxLayout(self)
        layout.addWidget(self.state)
        layout.addWidget(self.label)
        layout.addWidget(self.bars)
        layout.addWidget(self.latency)
        layout.addWidget(self.note)
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
        self._show_notes([])

    def _show_notes(self, notes: list[str]) -> None:
        self.note.setText("\n".join(f"⚠ {n}" for n in notes))
        self.note.setVisible(bool(notes))

    def show_loading(self) -> None:
        self.state.setText("<i>Loading…</i>")
        self.state.setStyleSheet("")

    def show_running(self) -> None:
        # The label and bars of the previous text stay (no flicker while typing); its
        # latency goes, as a figure beside the new text would be read as the new one's.
        self.latency.setText("measuring…")
        if self.result is None and not self.error:
            self.state.setText("<i>Predicting…</i>")
            self.state.setStyleSheet("")

    def show_prediction(self, pred: Prediction) -> None:
        self.result, self.error = pred, ""
        self.state.setText("")
        self.label.setText(pred.label)
        self.bars.show_probs(pred.label_names, pred.probs)
        self.latency.setText(pred.latency_text())
        self._show_notes(pred.reading.notes() if pred.reading is not None else [])

    def show_error(self, text: str) -> None:
        self.result, self.error = None, text
        self.state.setText(text)
        self.state.setStyleSheet("color: #a1261b;")
        self.label.setText("–")
        self.bars.show_probs([], None)
        self.latency.setText("")
        self._show_notes([])


# --------------------------------------------------------------------------- batch


_DISAGREE = QColor("#fbe3c8")


class BatchTableModel(QAbstractTableModel):
    """Text, label A, p A, label B, p B; rows where the models disagree are tinted."""

    HEADERS = ("Text", "Label A", "p A", "Label B", "p B")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.result: PairResult | None = None

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() or self.result is None else len(self.result.texts)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.HEADERS)

    def set_result(self, result: PairResult | None) -> None:
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
            return RIGHT
        return None

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        return header_text(self.HEADERS, section, orientation, role, numbered=True)


class _DisagreeFilter(QSortFilterProxyModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.only_disagreements = False

    def set_only(self, on: bool) -> None:
        change_filter(self, lambda: setattr(self, "only_disagreements", on))

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
        # Rows start in the order typed; a click on a header sorts.
        self.proxy, self.table = sortable_table(
            self.model, _DisagreeFilter(self), sort_role=Qt.ItemDataRole.UserRole
        )
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
        splitter = two_panes(left, right, Qt.Orientation.Horizontal, stretch=(2, 3))
        layout = QVBoxLayout(self)
        layout.addWidget(splitter, 1)
        self.only.toggled.connect(self.proxy.set_only)

    def lines(self) -> list[str]:
        return [line.strip() for line in self.input.toPlainText().splitlines() if line.strip()]


__all__ = ["MAX_BARS", "BatchPanel", "BatchTableModel", "PredictionPanel", "ProbabilityBars"]
