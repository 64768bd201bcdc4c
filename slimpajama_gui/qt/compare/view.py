"""Compare: every saved variant on accuracy × latency × size, and any two in detail.

The table (:mod:`.table`) and the Pareto chart (:mod:`.pareto_plot`) show the rows of
the results index (:func:`slimpajama_gui.core.jobs.index.load_variants`). Picking two
rows (or the two pickers) fills the detail panel (:mod:`.details`): figures side by
side, both confusion matrices, and the eval examples whose prediction flips
(:func:`slimpajama_gui.core.jobs.flips.flip_job`: the predictions each evaluate step
stored, a side without them is run again).

Everything that reads a file or runs a model does so on the thread pool.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
)

from slimpajama_gui.core.jobs.flips import FlipResult, flip_job
from slimpajama_gui.core.jobs.index import CompareData, Variant, default_pair, load_variants
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.qt.compare.details import DetailsPanel
from slimpajama_gui.qt.compare.pareto_plot import ParetoPlot
from slimpajama_gui.qt.compare.table import VariantTableModel
from slimpajama_gui.qt.widgets.errors import error_sentence
from slimpajama_gui.qt.widgets.panes import two_panes
from slimpajama_gui.qt.widgets.tables import sortable_table
from slimpajama_gui.qt.widgets.workers import WorkerScreen, start_worker

log = logging.getLogger(__name__)


class CompareView(WorkerScreen):
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
        self._refresh_generation = 0
        self._flip_worker = None
        self._flip_generation = 0
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
        self.proxy, self.table = sortable_table(self.model)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setToolTip("Select two rows (Ctrl+click) to compare them below")
        self.table.setAlternatingRowColors(True)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.plot = ParetoPlot()
        self.details = DetailsPanel()

        # The table runs the full width so every figure is readable; below it the
        # chart and the pair in detail sit side by side.
        lower = two_panes(
            self.plot, self.details, Qt.Orientation.Horizontal, stretch=(4, 5), sizes=(460, 620)
        )
        self.splitter = two_panes(
            self.table, lower, Qt.Orientation.Vertical, stretch=(1, 3), sizes=(180, 540)
        )
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
        start_worker(
            load_variants,
            self.store,
            workers=self._workers,
            returned=lambda data, g=generation: self._on_loaded(data, g),
            errored=lambda exc, g=generation: self._on_load_error(exc, g),
        )

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
        text = error_sentence(exc, "Reading the job history", logger=log)
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
        self.details.progress.setRange(0, 0)
        self.details.progress.show()
        self.details.stop_button.show()
        self._flip_worker = start_worker(
            flip_job,
            a,
            b,
            workers=self._workers,
            yielded=lambda item, g=generation: self._on_flip_progress(item, g),
            returned=lambda result, g=generation: self._on_flips(result, g),
            errored=lambda exc, g=generation: self._on_flip_error(exc, g),
            finished=lambda g=generation: self._on_flip_finished(g),
        )

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
        text = error_sentence(exc, "Comparing predictions", logger=log)
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
    def on_shutdown(self) -> None:
        self._pair_timer.stop()
