"""Compare: every saved variant on accuracy × latency × size, and any two in detail.

The table (:mod:`.table`) and the Pareto chart (:mod:`.pareto_plot`) show the rows of
the results index (:func:`slimpajama_gui.core.jobs.index.load_variants`). Picking two
rows (or the two pickers) fills the detail panel (:mod:`.details`): figures side by
side, both confusion matrices, and the eval examples whose prediction flips
(:func:`slimpajama_gui.core.jobs.flips.flip_job`: the predictions each evaluate step
stored, a side without them is run again).

Accuracies are shown for one eval set at a time (the filter above the table, by
default the newest job's): a model measured on other rows shows "–" and says where it
was measured. Pareto marks are given only among comparable points
(:func:`slimpajama_gui.core.jobs.index.comparable_front`). The source model of a job is
the baseline; *Benchmark* (a button in the details, the table's context menu, and
"Benchmark the source model" when the baseline has no latency yet) measures any row on
a worker (:func:`slimpajama_gui.core.jobs.remeasure.measure_model`).

Everything that reads a file or runs a model does so on the thread pool.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

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
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
)

from slimpajama_gui.core.jobs.flips import FlipResult, flip_job
from slimpajama_gui.core.jobs.index import (
    CompareData,
    Variant,
    baseline_of,
    can_classify,
    default_pair,
    eval_sets,
    load_variants,
)
from slimpajama_gui.core.jobs.remeasure import (
    Measurement,
    measure_model,
    save_measurement,
)
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.qt.compare.details import DetailsPanel
from slimpajama_gui.qt.compare.pareto_plot import ParetoPlot
from slimpajama_gui.qt.compare.row_actions import RowActions
from slimpajama_gui.qt.compare.table import VariantTableModel
from slimpajama_gui.qt.widgets.combos import NO_HEAD, add_unpickable
from slimpajama_gui.qt.widgets.errors import error_sentence
from slimpajama_gui.qt.widgets.panes import two_panes
from slimpajama_gui.qt.widgets.tables import sortable_table
from slimpajama_gui.qt.widgets.workers import WorkerScreen, start_worker

log = logging.getLogger(__name__)


class CompareView(RowActions, WorkerScreen):
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
    #: A Benchmark action ended: the sentence shown (measured and saved, or why not).
    benchmark_done = Signal(str)
    #: "Open in Playground": (model A, model B) folders; A is B's parent or source.
    open_in_playground = Signal(object, object)
    #: A result folder was deleted from Compare's menu (its path).
    result_deleted = Signal(Path)

    def __init__(
        self,
        store: JobStore | None = None,
        parent=None,
        *,
        load_on_start: bool = True,
        bench_config: Any = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        #: BenchConfig of the Benchmark action (None: a recipe's benchmark step defaults).
        self.bench_config = bench_config
        self._benchmarking: set[str] = set()
        self._bench_stop = _Stop()
        self.variants: list[Variant] = []
        self._load_on_start = load_on_start
        self._loaded_once = False
        self._refresh_generation = 0
        self._flip_worker = None
        self._flip_generation = 0
        self._syncing = False
        #: Whether the user picked the pair on screen (pickers, two rows, set_pair); a
        #: default pair is picked again when the list changes (a job saved a variant).
        self._pair_chosen = False

        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Read the job history and the saved variants again")
        self.summary = QLabel("<i>Reading the job history…</i>")
        # Wrapped: at 1280 px beside the eval-set picker and the buttons, one line cut
        # the sentence off in the middle.
        self.summary.setWordWrap(True)
        self.summary.setMinimumWidth(240)
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        self.notes.setStyleSheet("color: #7a5b00;")
        self.notes.hide()
        self.eval_filter = QComboBox()
        self.eval_filter.setToolTip(
            "Accuracies are shown for one eval set at a time: models evaluated on other "
            "rows are not on the same scale"
        )
        self.eval_filter.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.eval_filter.setMinimumContentsLength(24)
        self.baseline_button = QPushButton("Benchmark the source model")
        self.baseline_button.hide()
        self.bench_status = QLabel()
        self.bench_status.setWordWrap(True)
        self.bench_status.hide()
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(QLabel("Accuracy on:"))
        top.addWidget(self.eval_filter)
        top.addWidget(self.baseline_button)
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
        layout.addWidget(self.bench_status)
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
        for combo in (self.details.combo_a, self.details.combo_b):
            combo.currentIndexChanged.connect(self._pair_timer.start)
            combo.currentIndexChanged.connect(self._update_bench_buttons)
        for combo in (self.details.combo_a, self.details.combo_b):
            combo.activated.connect(self._on_pair_picked)  # the user's pick, not ours
        self.details.stop_button.clicked.connect(self.stop_flips)
        self.details.bench_a.clicked.connect(lambda: self._benchmark_side(0))
        self.details.bench_b.clicked.connect(lambda: self._benchmark_side(1))
        self.baseline_button.clicked.connect(self._benchmark_baseline)
        self.eval_filter.currentIndexChanged.connect(self._show_eval_set)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.details.show_pair(None, None)
        self._update_bench_buttons()

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
        keep_a, keep_b = self.pair() if self._pair_chosen else (None, None)
        keep_a = keep_a.key if keep_a else None
        keep_b = keep_b.key if keep_b else None
        self.variants = data.variants
        self._fill_eval_filter()
        self._show_eval_set()
        self.table.resizeColumnsToContents()
        if self.table.columnWidth(0) > 260:
            self.table.setColumnWidth(0, 260)
        self.notes.setText("\n".join(data.notes))
        self.notes.setVisible(bool(data.notes))
        self._fill_combos(keep_a, keep_b)
        self.loaded.emit(len(self.variants))

    def _fill_eval_filter(self) -> None:
        """One entry per eval set; keep the chosen one, else the newest job's."""
        keep = self.eval_filter.currentData()
        sets = eval_sets(self.variants)
        _a, b = default_pair(self.variants)
        newest = self.variants[b].eval_set if b is not None else ""
        self.eval_filter.blockSignals(True)
        self.eval_filter.clear()
        for key, label in sets.items():
            self.eval_filter.addItem(label, key)
            self.eval_filter.setItemData(
                self.eval_filter.count() - 1, key.split("#")[0], Qt.ItemDataRole.ToolTipRole
            )
        if not sets:
            self.eval_filter.addItem("no model is evaluated yet", "")
        if newest.endswith("#?"):
            # The newest job did not record its row count: the same split with a count
            # is the set with figures to compare.
            counted = [k for k in sets if k.rpartition("#")[0] == newest[:-2] and k != newest]
            newest = counted[0] if counted else newest
        pick = keep if keep in sets else newest if newest in sets else next(iter(sets), "")
        self.eval_filter.setCurrentIndex(max(0, self.eval_filter.findData(pick)))
        self.eval_filter.setEnabled(len(sets) > 1)
        self.eval_filter.blockSignals(False)

    def eval_set(self) -> str:
        """The key of the eval set whose accuracies are shown."""
        return self.eval_filter.currentData() or ""

    def _show_eval_set(self, *_args) -> None:
        key = self.eval_set()
        front = set(self.plot.set_variants(self.variants, key))
        self.model.set_variants(
            self.variants,
            front,
            eval_set=key,
            eval_label=self.eval_filter.currentText() if key else "",
            unranked=self.plot.ranking.unranked,
        )
        n_var = sum(not v.is_source for v in self.variants)
        n_src = len(self.variants) - n_var
        if self.variants:
            unranked = len(self.plot.ranking.unranked)
            self.summary.setText(
                f"{n_var} variant{'s' if n_var != 1 else ''} and {n_src} source model"
                f"{'s' if n_src != 1 else ''}; {len(self.plot.plotted)} on the chart (an "
                f"accuracy on this eval set and a measured latency), {len(front)} "
                f"Pareto-optimal (bold)"
                + (f", {unranked} too small to rank (hollow)" if unranked else "")
                + ". Right-click a row to benchmark it; select two rows to compare them."
            )
        else:
            self.summary.setText(
                "<i>No saved variants yet. Run a compression job (Compress, or "
                "<code>slimpajama run RECIPE</code>); its results appear here.</i>"
            )
        self._offer_baseline()

    def current_baseline(self) -> int | None:
        """The row of the newest job's source model (the chart's baseline), if listed."""
        _a, b = default_pair(self.variants)
        return None if b is None else baseline_of(self.variants, b)

    def _offer_baseline(self) -> None:
        row = self.current_baseline()
        missing = row is not None and self.variants[row].p50_ms is None
        self.baseline_button.setVisible(missing)
        if missing:
            self.baseline_button.setToolTip(
                f"{self.variants[row].name} has no measured latency yet, so the chart has no "
                "baseline and nothing is compared with it: time it now (on a worker)"
            )
            self.baseline_button.setEnabled(self.variants[row].key not in self._benchmarking)

    def _on_load_error(self, exc: BaseException, generation: int) -> None:
        if self._closing or generation != self._refresh_generation:
            return
        self.refresh_button.setEnabled(True)
        text = error_sentence(exc, "Reading the job history", logger=log)
        self.summary.setText(f'<span style="color:#a1261b">{text}</span>')
        self.loaded.emit(len(self.variants))

    def _fill_combos(self, keep_a: str | None, keep_b: str | None) -> None:
        """Fill the pickers; keep the user's pair if both are still listed, else the
        default pair (:func:`~slimpajama_gui.core.jobs.index.default_pair`)."""
        keys = [v.key for v in self.variants]
        a, b = default_pair(self.variants)
        if keep_a in keys and keep_b in keys:
            a, b = keys.index(keep_a), keys.index(keep_b)
        else:
            self._pair_chosen = False
        for combo, pick in ((self.details.combo_a, a), (self.details.combo_b, b)):
            combo.blockSignals(True)
            combo.clear()
            for i, v in enumerate(self.variants):
                text = v.name + (" (source)" if v.is_source else "")
                if can_classify(v):
                    combo.addItem(text, i)
                else:
                    add_unpickable(combo, text + NO_HEAD, i, _no_head_sentence([v]))
            combo.setCurrentIndex(-1 if pick is None else pick)
            combo.blockSignals(False)
            combo.update_tip()
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
        """Compare ``variants[a]`` (A) with ``variants[b]`` (B); kept over refreshes."""
        self._pair_chosen = True
        for combo, row in ((self.details.combo_a, a), (self.details.combo_b, b)):
            combo.setCurrentIndex(-1 if row is None else row)
        self._pair_timer.start()

    def _on_pair_picked(self, _index: int) -> None:
        self._pair_chosen = True

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
            self._update_bench_buttons()
            self.details.status.setText("")
            sentence = self._no_pair_sentence(a, b)
            if sentence:
                self.details.flip_summary.setText(f"<i>{sentence}</i>")
            return
        self.details.show_pair(a, b)
        self._update_bench_buttons()
        if a.key == b.key:
            self.details.flip_summary.setText("<i>A and B are the same model: nothing flips.</i>")
            return
        # The pickers grey such a model out, but two table rows can still pair it; running
        # it would only end in the loader's error.
        headless = [(side, v) for side, v in (("A", a), ("B", b)) if not can_classify(v)]
        if headless:
            sides = " and ".join(side for side, _v in headless)
            has = "has" if len(headless) == 1 else "have"
            self.details.end_computing(f"{sides} {has} no classifier head")
            sentence = _no_head_sentence([v for _side, v in headless], figures=True)
            self.details.flip_summary.setText(f"<i>{sentence}</i>")
            return
        self._start_flips(a, b)

    def _no_pair_sentence(self, a: Variant | None, b: Variant | None) -> str:
        """What to do when a side is empty because no second model can classify."""
        picked = a or b
        usable = [v for v in self.variants if can_classify(v)]
        headless = [v.name for v in self.variants if not can_classify(v)]
        if picked is None or len(usable) > 1 or not headless:
            return ""
        one = len(headless) == 1
        has, encoder = ("has", "an encoder only") if one else ("have", "encoders only")
        return (
            f"Nothing to compare {picked.name} with yet: {', '.join(headless)} {has} no "
            f"classifier head ({encoder}), so there are no predictions to compare with. "
            "Compare picks a pair when a job saves a second result (a running job's next "
            "step, or another compression job); sizes and latencies are in the table above."
        )

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
        self.details.end_computing("see the message above")
        self.flips_failed.emit(text)

    def _on_flip_finished(self, generation: int) -> None:
        if generation == self._flip_generation and not self._closing:
            self._flip_worker = None
            self.details.progress.hide()
            self.details.stop_button.hide()
            # Neither a result nor an error came (the worker was stopped): never leave a
            # "computing…" on screen.
            self.details.end_computing("stopped before it finished")

    def stop_flips(self) -> None:
        """Ask the running flip computation to stop (it ends after its current batch)."""
        if self._flip_worker is not None:
            self._flip_worker.quit()
            self._flip_worker = None
            self.details.progress.hide()
            self.details.stop_button.hide()
            self.details.status.setText("<i>Stopped.</i>")
            self.details.end_computing("stopped")

    # ------------------------------------------------------------------ benchmark
    def benchmark(self, row: int) -> None:
        """Measure ``variants[row]`` on a worker, save the figures, then refresh.

        Latency at batch 1 (and accuracy on its job's eval set when it has a classifier
        head); a folder the app wrote gets them in its record, any other folder is left
        untouched and they go to the app's data folder. Ends with :attr:`benchmark_done`.
        """
        v = self.variants[row]
        if v.key in self._benchmarking:
            return
        self._benchmarking.add(v.key)
        self._offer_baseline()
        self._update_bench_buttons()
        self._bench_text(f"<i>Benchmarking {v.name}…</i>")
        start_worker(
            self._measure_and_save,
            v,
            workers=self._workers,
            yielded=self._on_bench_progress,
            returned=self._on_benchmarked,
            errored=lambda exc, v=v: self._on_bench_error(v, exc),
            finished=lambda key=v.key: self._on_bench_finished(key),
        )

    def _measure_and_save(self, v: Variant):
        # On the worker: measure, then save (a file write and a history update).
        measurement = yield from measure_model(v, self.bench_config, self._bench_stop)
        store = self.store or JobStore()
        try:
            where = save_measurement(v, measurement, store)
        finally:
            if store is not self.store:
                store.close()
        return v, measurement, where

    def _bench_text(self, html: str) -> None:
        self.bench_status.setText(html)
        self.bench_status.setVisible(bool(html))

    def _on_bench_progress(self, item: tuple) -> None:
        if self._closing:
            return
        if item[0] == "status":
            self._bench_text(f"<i>{item[1]}</i>")
        elif item[0] == "progress":
            self._bench_text(f"<i>Evaluating: batch {item[2]} of {item[3]}…</i>")

    def _on_benchmarked(self, result: tuple[Variant, Measurement, str]) -> None:
        if self._closing:
            return
        v, m, where = result
        b = m.benchmark
        accuracy = (
            f"accuracy {100 * m.evaluation['accuracy']:.2f} % on {m.evaluation['eval_set_label']}"
            if m.evaluation
            # The note under the summary already says why (no classifier head) and what
            # to do; this line said it again.
            else "latency and size only"
            if not m.has_head
            else f"no accuracy ({m.note.rstrip('.')})"
            if m.note
            else "no accuracy"
        )
        text = (
            f"Benchmarked {v.name}: p50 {b['latency_p50_ms']:.2f} ms at batch 1 "
            f"({b['threads']} threads, {b['backend']}); {accuracy}. Figures {where}."
        )
        self._bench_text(text)
        self.status_message.emit(f"Benchmarked {v.name}")
        self.benchmark_done.emit(text)
        self.refresh()

    def _on_bench_error(self, v: Variant, exc: BaseException) -> None:
        if self._closing:
            return
        text = error_sentence(exc, f"Benchmarking {v.name}", logger=log)
        self._bench_text(f'<span style="color:#a1261b">{text}</span>')
        self.benchmark_done.emit(text)

    def _on_bench_finished(self, key: str) -> None:
        self._benchmarking.discard(key)
        if not self._closing:
            self._offer_baseline()
            self._update_bench_buttons()

    def _update_bench_buttons(self, *_args) -> None:
        """Benchmark A / B are on only with a model on their side that is not being
        measured already; off, their tooltip says why (a click did nothing)."""
        details = self.details
        for button, v, side in zip(
            (details.bench_a, details.bench_b), self.pair(), "AB", strict=True
        ):
            if v is None:
                why = (
                    f"no model is picked as {side}"
                    if self.variants
                    else "no results yet (run a compression job in Compress)"
                )
                button.setToolTip(f"Nothing to benchmark: {why}")
            elif v.key in self._benchmarking:
                button.setToolTip(f"Benchmarking {v.name}…")
            else:
                button.setToolTip(details.bench_tips[side])
            button.setEnabled(v is not None and v.key not in self._benchmarking)

    def _benchmark_side(self, side: int) -> None:
        combo = (self.details.combo_a, self.details.combo_b)[side]
        row = combo.currentData()
        if row is not None and row < len(self.variants):
            self.benchmark(row)

    def _benchmark_baseline(self) -> None:
        row = self.current_baseline()
        if row is not None:
            self.benchmark(row)

    # ------------------------------------------------------------------ lifetime
    def on_shutdown(self) -> None:
        self._pair_timer.stop()
        self._bench_stop.should_stop = True


def _no_head_sentence(variants: list[Variant], *, figures: bool = False) -> str:
    """Why these models cannot be compared on predictions, and what to do; ``figures``
    adds that the figures of the pair on screen still compare."""
    names = " and ".join(v.name for v in variants)
    if len(variants) == 1:
        has, what, it = "has", "an encoder only", "it"
    else:
        has, what, it = "have", "encoders only", "them"
    return (
        f"{names} {has} no classifier head ({what}), so there are no predictions to "
        f"compare. Fine-tune {it} first (Compress), then compare the result"
        + ("; sizes and latencies are in the figures above." if figures else ".")
    )


class _Stop:
    """What :func:`~slimpajama_gui.core.runtime.bench.benchmark` checks between calls."""

    should_stop = False
