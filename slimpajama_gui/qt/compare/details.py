"""The pair in detail: two pickers, figures side by side, confusion matrices, flips."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
)
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QBoxLayout,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from slimpajama_gui.core.jobs.flips import FlipResult
from slimpajama_gui.core.jobs.index import Variant, can_classify
from slimpajama_gui.core.units import human_bytes, human_count
from slimpajama_gui.qt.compare.table import ms, pct
from slimpajama_gui.qt.widgets.combos import ElidedComboBox
from slimpajama_gui.qt.widgets.tables import RIGHT, SORT_ROLE, header_text, sortable_table

_Index = QModelIndex | QPersistentModelIndex


#: The details panel's width (px) from which the figures and the confusion matrices sit
#: side by side; below it they are stacked.
SIDE_BY_SIDE_PX = 640


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
            return RIGHT
        return None

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        return header_text(self.HEADERS, section, orientation, role)


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


def _score_delta(a: Variant, b: Variant, fa: float | None, fb: float | None) -> str:
    """B against A for a score (accuracy, macro-F1) measured on eval rows.

    A side without a classifier head has no score at all, which is what the cell says:
    'other eval sets' would suggest that a score exists somewhere. Scores on different
    eval rows are not comparable, so no difference is given for them.
    """
    headless = [side for side, v in (("A", a), ("B", b)) if not can_classify(v)]
    if headless:
        has = "has" if len(headless) == 1 else "have"
        return f"– ({' and '.join(headless)} {has} no classifier head)"
    if fa is None or fb is None:
        return "–"
    if a.eval_set == b.eval_set and bool(a.eval_set):
        return _points(fa, fb)
    return "other eval sets"


def metric_cells(a: Variant, b: Variant) -> list[tuple[str, str, str, str]]:
    """(figure, A, B, B against A) rows of the side-by-side table."""

    def size(v: Variant) -> str:
        return "–" if v.size_bytes is None else human_bytes(v.size_bytes)

    def params(v: Variant) -> str:
        # Short form: the full count ("22,713,216") was cut to "22,7…" in a 960 px
        # window; the cell's tooltip has it exactly.
        return "–" if v.parameters is None else human_count(v.parameters)

    def tput(v: Variant) -> str:
        return "–" if v.throughput is None else f"{v.throughput:,.0f}/s"

    return [
        ("Accuracy", pct(a.accuracy), pct(b.accuracy), _score_delta(a, b, a.accuracy, b.accuracy)),
        ("Macro-F1", pct(a.macro_f1), pct(b.macro_f1), _score_delta(a, b, a.macro_f1, b.macro_f1)),
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
            ms(a.p50_ms),
            ms(b.p50_ms),
            _ratio(a.p50_ms, b.p50_ms, "faster", "slower"),
        ),
        (
            "Latency p95",
            ms(a.p95_ms),
            ms(b.p95_ms),
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
        self.combo_a = ElidedComboBox(tip="Model A: the one compared against")
        self.combo_b = ElidedComboBox(tip="Model B: its predictions are checked against A's")
        for combo in (self.combo_a, self.combo_b):
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(16)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(160)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop computing the flipped predictions")
        # On the status line, their space kept while hidden: in the picker row they
        # squeezed the pickers ("all-Mi…netune") and moved the panes while models loaded.
        for widget in (self.progress, self.stop_button):
            policy = widget.sizePolicy()
            policy.setRetainSizeWhenHidden(True)
            widget.setSizePolicy(policy)
            widget.hide()
        pickers = QHBoxLayout()
        pickers.addWidget(QLabel("<b>A</b>:"))
        pickers.addWidget(self.combo_a, 1)
        pickers.addWidget(QLabel("against <b>B</b>:"))
        pickers.addWidget(self.combo_b, 1)
        self.bench_a = QPushButton("Benchmark A")
        self.bench_b = QPushButton("Benchmark B")
        #: Each Benchmark button's tooltip while it has a model to time.
        self.bench_tips = {
            side: f"Time {side} at batch 1 (and evaluate it on its job's eval set if it can "
            "classify); a source model's figures are kept in the app's data, never in its "
            "folder"
            for side in "AB"
        }
        status = QHBoxLayout()
        status.addWidget(self.status, 1)
        status.addWidget(self.progress)
        status.addWidget(self.stop_button)
        # Under the pickers, not beside them: at 960 px the two buttons left each picker
        # room for "pre…une".
        for button, side in ((self.bench_a, "A"), (self.bench_b, "B")):
            button.setToolTip(self.bench_tips[side])
            status.addWidget(button)

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
        # Qt sizes word-wrapped rows once: when the columns narrow (a window or splitter
        # resized) a row's text wraps onto more lines than its height holds, and the last
        # row ("int8 measured on") was cut off with no scroll bar. Refit after a resize.
        self._refit_timer = QTimer(self)
        self._refit_timer.setSingleShot(True)
        self._refit_timer.setInterval(0)
        self._refit_timer.timeout.connect(self._refit_figures)
        self.metrics.horizontalHeader().sectionResized.connect(self._refit_timer.start)
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
        self.figures_layout = figures_layout = QBoxLayout(QBoxLayout.Direction.LeftToRight, figures)
        figures_layout.setContentsMargins(0, 0, 0, 0)
        figures_layout.addWidget(self.metrics, 3, Qt.AlignmentFlag.AlignTop)
        figures_layout.addLayout(confusions, 2)
        # Scrolls when the window is short: at 960x640 the figures and both confusion
        # matrices need more height than the pane has, and Qt then drew Confusion B over
        # Confusion A's second row and cut the figures' last rows.
        self.figures_scroll = QScrollArea()
        self.figures_scroll.setWidget(figures)
        self.figures_scroll.setWidgetResizable(True)
        self.figures_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.figures_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        self.flip_summary = QLabel()
        self.flip_summary.setWordWrap(True)
        self.flips = FlipTableModel(self)
        self.flip_proxy, self.flip_table = sortable_table(self.flips)
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
        layout.addLayout(status)
        # Equal shares when the window is short; when it is tall the figures stop at
        # their own height (set_figures_height) and the flip list takes the rest.
        layout.addWidget(self.figures_scroll, 1)
        layout.addWidget(flips, 1)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        # Row heights computed before the panel was first shown can use the unpolished
        # font, which left the last rows of the figures clipped at 1920x1080: fit again.
        super().showEvent(event)
        fit_height(self.metrics)
        for table in (self.confusion_a, self.confusion_b):
            if table.isVisibleTo(self):
                fit_height(table)
        self._cap_figures()

    def _refit_figures(self) -> None:
        fit_height(self.metrics)
        self._cap_figures()

    def _cap_figures(self) -> None:
        """The figures' pane is never taller than what it shows."""
        figures = self.figures_scroll.widget()
        # The captions wrap, so the height depends on the width the pane has now.
        width = self.figures_scroll.viewport().width()
        wrapped = figures.heightForWidth(width) if figures.hasHeightForWidth() else -1
        height = (
            max(wrapped, figures.minimumSizeHint().height()) + 2 * self.figures_scroll.frameWidth()
        )
        self.figures_scroll.setMaximumHeight(height)
        # In a short window the flip list's table took all the height it was short of
        # from the figures, which kept two rows: they get at least half of what is left.
        below = self.height() - self.figures_scroll.geometry().top()
        self.figures_scroll.setMinimumHeight(max(0, min(height, below // 2)))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        # Side by side below this width the figures wrapped ("90.00 / %"), the last
        # column read "5.8× smal…" and the matrices' headers "› negativ": stacked, each
        # gets the whole width and the pane scrolls.
        direction = (
            QBoxLayout.Direction.LeftToRight
            if event.size().width() >= SIDE_BY_SIDE_PX
            else QBoxLayout.Direction.TopToBottom
        )
        if self.figures_layout.direction() != direction:
            self.figures_layout.setDirection(direction)
            self._refit_timer.start()
        self._cap_figures()

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
            self._cap_figures()
            return
        for col, v in ((0, a), (1, b)):
            self.metrics.horizontalHeaderItem(col).setToolTip(f"{v.name}\n{v.path}")
        cells = metric_cells(a, b)  # an int8 row only where one of them is int8
        self.metrics.setRowCount(len(cells))
        self.metrics.setVerticalHeaderLabels([name for name, *_ in cells])
        for r, (name, va, vb, delta) in enumerate(cells):
            for c, text in enumerate((va, vb, delta)):
                cell = QTableWidgetItem(text)
                exact = (a, b)[c].parameters if name == "Parameters" and c < 2 else None
                cell.setToolTip(f"{exact:,} parameters" if exact is not None else text)
                cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.metrics.setItem(r, c, cell)
        for v, table, caption, side in (
            (a, self.confusion_a, self.caption_a, "A"),
            (b, self.confusion_b, self.caption_b, "B"),
        ):
            table.show_matrix(v.confusion, v.label_names)
            if v.confusion:
                caption.setText(f"Confusion {side} (from its evaluate step)")
            elif a.key == b.key:
                caption.setText(f"Confusion {side}: <i>none stored (A and B are the same)</i>")
            else:
                caption.setText(f"Confusion {side}: <i>computing on the eval rows…</i>")
        self.flip_summary.setText("<i>Running both models on the eval rows…</i>")
        fit_height(self.metrics)
        self._cap_figures()

    def end_computing(self, why: str) -> None:
        """The flips will not come (an error, a stop): every "computing…" says so."""
        for caption, side in ((self.caption_a, "A"), (self.caption_b, "B")):
            if "computing" in caption.text():
                caption.setText(f"Confusion {side}: <i>not computed ({why})</i>")
        if "Running both models" in self.flip_summary.text():
            self.flip_summary.setText(f"<i>No flip list ({why}).</i>")

    def show_flips(self, result: FlipResult) -> None:
        d = result.diff
        names = result.label_names
        self.flips.set_flips(d.flips, names)
        n = len(d.flips)
        self.flip_summary.setText(
            f"<b>{n} of {result.rows}</b> predictions flip ({100 * (1 - d.agreement):.1f} %): "
            f"<span style='background:#d9efe2'>&nbsp;{d.fixed} fixed&nbsp;</span> and "
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
        self._cap_figures()
