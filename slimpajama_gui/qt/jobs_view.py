"""The Jobs area: the queue and history of jobs, live progress, cancel, and charts.

The table model is a thin adapter over ``JobStore.list_jobs()`` plus the recipes
waiting in the :class:`~slimpajama_gui.qt.jobs.JobRunner` queue; the running job's
progress comes live from the bridge (the history holds it at most once a second). The
charts below the table show the selected job: live while it runs, from the history
(``JobStore.metrics``) once it has finished.

Job log: each job's messages (data warnings, step starts and ends, saved variants, how
it ended) are kept in memory while the app runs and appended, a line at a time, to
``<data dir>/logs/job-<id>.log`` from the GUI thread (a few short lines per step, so the
writes are negligible), so "Show log" works for jobs of earlier sessions too. Training
numbers are not written there; they live in the history database.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import QColor, QDesktopServices, QFont, QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.paths import data_dir
from slimpajama_gui.core.plan.recipe import dump_recipe, recipe_from_yaml
from slimpajama_gui.core.storage.history import JobRecord, JobStore
from slimpajama_gui.core.storage.leftovers import sweep_outputs
from slimpajama_gui.qt.charts import JobCharts
from slimpajama_gui.qt.jobs import NO_JOB, JobRunner, QueuedJob
from slimpajama_gui.qt.models_view import Banner
from slimpajama_gui.qt.widgets.workers import WorkerSet, start_worker

log = logging.getLogger(__name__)

_Index = QModelIndex | QPersistentModelIndex

#: Role holding the row's :class:`JobRow`.
ROW_ROLE = Qt.ItemDataRole.UserRole + 1
#: Role holding the progress as a fraction 0..1 (for the delegate).
PROGRESS_ROLE = Qt.ItemDataRole.UserRole + 2

STATUS_COLORS = {
    "queued": "#6b6b6b",
    "running": "#1565c0",
    "done": "#2e7d32",
    "failed": "#c62828",
    "cancelled": "#8a6d00",
    "interrupted": "#d84315",
}

COLUMNS = ("Name", "Status", "Progress", "Started", "Elapsed", "Remaining", "Output")
COL_NAME, COL_STATUS, COL_PROGRESS, COL_STARTED, COL_ELAPSED, COL_REMAINING, COL_OUTPUT = range(
    len(COLUMNS)
)


def human_duration(seconds: float | None) -> str:
    """75 → '1 min 15 s'; None → '–'."""
    if seconds is None or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass
class JobRow:
    """One line of the table: a job of the history, or a recipe still in the queue."""

    job_id: int | None  # None while only queued in the runner
    queue_key: int | None
    name: str
    status: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    progress: float = 0.0
    output: str | None = None
    error: str | None = None
    failed_step: str | None = None
    recipe_yaml: str = ""

    @classmethod
    def from_record(cls, job: JobRecord) -> JobRow:
        return cls(
            job_id=job.id,
            queue_key=None,
            name=job.name,
            status=job.status,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            progress=job.progress,
            output=job.output,
            error=job.error,
            failed_step=job.failed_step,
            recipe_yaml=job.recipe_yaml,
        )

    @classmethod
    def from_queued(cls, item: QueuedJob) -> JobRow:
        try:
            yaml_text = dump_recipe(item.recipe)
            output = str(item.recipe.resolve_path(item.recipe.output))
        except Exception:  # noqa: BLE001 - a queued row must still show
            yaml_text, output = "", item.recipe.output
        return cls(
            job_id=None,
            queue_key=item.key,
            name=item.name,
            status="queued",
            created_at=item.submitted_at,
            output=output,
            recipe_yaml=yaml_text,
        )

    @property
    def elapsed(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at if self.status != "running" else None
        return (end or time.time()) - self.started_at

    @property
    def remaining(self) -> float | None:
        """Seconds left, from the share done so far (only while running)."""
        elapsed = self.elapsed
        if self.status != "running" or elapsed is None or self.progress < 0.01:
            return None
        return elapsed * (1.0 - self.progress) / self.progress


class JobTableModel(QAbstractTableModel):
    """Read-only rows: queued recipes first, then the history, newest first."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._rows: list[JobRow] = []

    # Qt API ------------------------------------------------------------------
    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not (0 <= index.row() < len(self._rows)):
            return None
        row = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, col)
        if role == ROW_ROLE:
            return row
        if role == PROGRESS_ROLE:
            return float(row.progress)
        if role == Qt.ItemDataRole.ForegroundRole and col == COL_STATUS:
            return QColor(STATUS_COLORS.get(row.status, "#000000"))
        if role == Qt.ItemDataRole.FontRole and col == COL_STATUS:
            font = QFont()
            font.setBold(row.status in ("running", "failed"))
            return font
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row, col)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (COL_ELAPSED, COL_REMAINING):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def _display(row: JobRow, col: int) -> str:
        if col == COL_NAME:
            return row.name if row.job_id is None else f"{row.name}  (#{row.job_id})"
        if col == COL_STATUS:
            return row.status
        if col == COL_PROGRESS:
            return f"{100 * row.progress:.0f} %"
        if col == COL_STARTED:
            if row.started_at is None:
                return "–"
            return datetime.fromtimestamp(row.started_at).strftime("%Y-%m-%d %H:%M")
        if col == COL_ELAPSED:
            return human_duration(row.elapsed)
        if col == COL_REMAINING:
            remaining = row.remaining
            return "–" if remaining is None else f"~{human_duration(remaining)}"
        if col == COL_OUTPUT:
            return row.output or "–"
        return ""

    @staticmethod
    def _tooltip(row: JobRow, col: int) -> str:
        if row.status == "failed" and row.error:
            where = f" in {row.failed_step}" if row.failed_step else ""
            return f"Failed{where}: {row.error}"
        if col == COL_OUTPUT and row.output:
            return row.output
        if row.status == "queued":
            return "Waiting for the running job to finish"
        return row.error or row.name

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if (
            role == Qt.ItemDataRole.DisplayRole
            and orientation == Qt.Orientation.Horizontal
            and 0 <= section < len(COLUMNS)
        ):
            return COLUMNS[section]
        return None

    # our API -----------------------------------------------------------------
    def rows(self) -> list[JobRow]:
        return list(self._rows)

    def row_at(self, row: int) -> JobRow | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def set_rows(self, rows: list[JobRow]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def row_of_job(self, job_id: int) -> int | None:
        for i, row in enumerate(self._rows):
            if row.job_id == job_id:
                return i
        return None

    def row_of_queued(self, key: int) -> int | None:
        for i, row in enumerate(self._rows):
            if row.job_id is None and row.queue_key == key:
                return i
        return None

    def set_live_progress(self, job_id: int, fraction: float) -> None:
        """The running job's progress from the bridge (fresher than the history)."""
        i = self.row_of_job(job_id)
        if i is None:
            return
        fraction = min(1.0, max(0.0, fraction))
        row = self._rows[i]
        if abs(row.progress - fraction) < 1e-4:
            return  # only emit on change (Orange3 rule)
        row.progress = fraction
        self.dataChanged.emit(self.index(i, COL_PROGRESS), self.index(i, COL_REMAINING))

    def tick(self) -> None:
        """Refresh the elapsed / remaining cells of running jobs (a 1 s timer)."""
        for i, row in enumerate(self._rows):
            if row.status == "running":
                self.dataChanged.emit(self.index(i, COL_ELAPSED), self.index(i, COL_REMAINING))


class ProgressDelegate(QStyledItemDelegate):
    """Draws the progress column as a progress bar."""

    def paint(self, painter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        fraction = index.data(PROGRESS_ROLE)
        if fraction is None:
            super().paint(painter, option, index)
            return
        widget = option.widget
        style = widget.style() if widget is not None else QApplication.style()
        # Background and selection first, so a selected row still looks selected.
        style.drawPrimitive(QStyle.PrimitiveElement.PE_PanelItemViewItem, option, painter, widget)
        bar = QStyleOptionProgressBar()
        bar.rect = QRect(option.rect.adjusted(4, 4, -4, -4))
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = int(round(1000 * fraction))
        bar.text = f"{100 * fraction:.0f} %"
        bar.textVisible = True
        bar.textAlignment = Qt.AlignmentFlag.AlignCenter
        bar.state = option.state
        bar.palette = option.palette
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, widget)

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        hint = super().sizeHint(option, index)
        return QSize(max(hint.width(), 120), hint.height())


class TextDialog(QDialog):
    """Read-only text (a recipe or a log) with Copy and Close."""

    def __init__(
        self,
        title: str,
        text: str,
        parent: QWidget | None = None,
        *,
        note: str = "",
        wrap: bool = False,
    ):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(680, 520)
        layout = QVBoxLayout(self)
        if note:
            self.note = QLabel(note)
            self.note.setWordWrap(True)
            self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.note.setStyleSheet(
                "background: #fdecea; border: 1px solid #e57373; border-radius: 4px; "
                "padding: 6px; color: #7f1d1d;"
            )
            layout.addWidget(self.note)
        self.text = QPlainTextEdit(text)
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setLineWrapMode(
            QPlainTextEdit.LineWrapMode.WidgetWidth if wrap else QPlainTextEdit.LineWrapMode.NoWrap
        )
        layout.addWidget(self.text, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = buttons.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.clicked.connect(self.copy)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text.toPlainText())


class FailureBox(QFrame):
    """The selected job's failure (or cancellation) sentence, hard to miss."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("failure")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addWidget(self.label, 1)
        self.hide()

    def show_row(self, row: JobRow | None) -> None:
        if row is None or row.status not in ("failed", "cancelled", "interrupted"):
            self.hide()
            return
        failed = row.status == "failed"
        self.setStyleSheet(
            "#failure { background: %s; border: 1px solid %s; border-radius: 4px; }"
            "#failure QLabel { color: %s; }"
            % (("#fdecea", "#e57373", "#7f1d1d") if failed else ("#f3f1ea", "#c9bf99", "#4a4020"))
        )
        where = f" in {_escape(row.failed_step)}" if row.failed_step else ""
        title = {"failed": "failed", "cancelled": "was cancelled", "interrupted": "was interrupted"}
        text = _escape(row.error or "")
        self.label.setText(f"<b>Job #{row.job_id} {title[row.status]}{where}.</b> {text}")
        self.show()

    def text(self) -> str:
        return self.label.text()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class JobsView(QWidget):
    """The Jobs area: table of queued / running / finished jobs, actions, and charts.

    Args:
        store: the history; default ``JobStore.open()`` (a damaged file is moved aside
            and a banner says so; the view works either way).
        runner: the job runner; default one that records into ``store``.

    Signals:
        open_result(str path): "Open result" on a done job (its newest saved variant).
        status_message(str): a short sentence for the status bar.
    """

    open_result = Signal(str)
    status_message = Signal(str)

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        store: JobStore | None = None,
        runner: JobRunner | None = None,
    ) -> None:
        super().__init__(parent)
        notices: list[str] = []
        if store is None:
            store, notices = _open_store()
        self.store = store
        if store.interrupted_ids:
            ids = ", ".join(f"#{i}" for i in store.interrupted_ids)
            notices.append(
                f"Jobs {ids} were still running when the app last stopped; they are marked "
                "interrupted. Select one and click Re-run to run it again."
            )
        self.runner = runner or JobRunner(store, self)
        self._live_job: int | None = None
        self._follow_next = False  # select the next job that starts, whatever is selected
        self._live_fraction = 0.0
        self._refreshing = False
        self._step_count = 1
        self._step_index = 0
        self._messages: dict[int, list[str]] = {}
        self._charts_job: int | None = None
        self.error_dialog: QMessageBox | None = None
        self.dialog: TextDialog | None = None
        self._closing = False

        # widgets -------------------------------------------------------------
        self.banner = Banner()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running job (or take a queued one off the queue)")
        self.rerun_button = QPushButton("Re-run")
        self.rerun_button.setToolTip("Run the selected job's recipe again")
        self.open_folder_button = QPushButton("Open output folder")
        self.recipe_button = QPushButton("Show recipe")
        self.log_button = QPushButton("Show log")
        self.result_button = QPushButton("Open result")
        self.result_button.setToolTip("Show the job's newest saved model in the model browser")
        self.queue_label = QLabel()
        self.queue_label.setStyleSheet("color: palette(mid);")
        toolbar = QHBoxLayout()
        for button in (
            self.cancel_button,
            self.rerun_button,
            self.open_folder_button,
            self.recipe_button,
            self.log_button,
            self.result_button,
        ):
            toolbar.addWidget(button)
        toolbar.addStretch(1)
        toolbar.addWidget(self.queue_label)

        self.model = JobTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setItemDelegateForColumn(COL_PROGRESS, ProgressDelegate(self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for col, width in (
            (COL_NAME, 200),
            (COL_STATUS, 90),
            (COL_PROGRESS, 130),
            (COL_STARTED, 130),
            (COL_ELAPSED, 90),
            (COL_REMAINING, 90),
        ):
            self.table.setColumnWidth(col, width)
        self.empty_hint = QLabel(
            "No jobs yet. Design one in the Compress area, or run a recipe with "
            "“slimpajama run RECIPE”; it appears here.",
            alignment=Qt.AlignmentFlag.AlignCenter,
        )
        self.empty_hint.setWordWrap(True)

        self.failure = FailureBox()
        self.live_charts = JobCharts()
        self.history_charts = JobCharts()
        self.charts_stack = QStackedWidget()
        self.charts_stack.addWidget(self.live_charts)
        self.charts_stack.addWidget(self.history_charts)

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.banner)
        top_layout.addLayout(toolbar)
        top_layout.addWidget(self.table, 1)
        top_layout.addWidget(self.empty_hint)
        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bottom_layout.addWidget(self.failure)
        bottom_layout.addWidget(self.charts_stack, 1)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(top)
        self.splitter.addWidget(bottom)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setSizes([260, 440])
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)

        self._ticker = QTimer(self)
        self._ticker.setInterval(1000)
        self._ticker.timeout.connect(self.model.tick)

        # connections ---------------------------------------------------------
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.rerun_button.clicked.connect(self.rerun_selected)
        self.open_folder_button.clicked.connect(self.open_output_folder)
        self.recipe_button.clicked.connect(self.show_recipe)
        self.log_button.clicked.connect(self.show_log)
        self.result_button.clicked.connect(self._open_result)
        self.table.selectionModel().currentRowChanged.connect(self._on_current_changed)
        self.live_charts.hovered.connect(self.status_message)
        self.history_charts.hovered.connect(self.status_message)

        bridge = self.runner.bridge
        bridge.job_started.connect(self._on_job_started)
        bridge.message.connect(self._on_message)
        bridge.step_started.connect(self._on_step_started)
        bridge.progress.connect(self._on_progress)
        bridge.logged.connect(self.live_charts.add_metrics)
        bridge.evaluated.connect(self.live_charts.add_metrics)
        bridge.artifact.connect(self._on_artifact)
        bridge.step_finished.connect(self._on_step_finished)
        self.runner.queue_changed.connect(self.refresh)
        self.runner.job_finished.connect(self._on_job_finished)
        self.runner.errored.connect(self._on_errored)

        self.banner.show_messages(notices)
        self.refresh()
        if self.model.rowCount():
            self.table.selectRow(0)
        self._update_actions()
        self._workers = WorkerSet()
        self._clear_leftovers()

    # ------------------------------------------------------------------ public API
    def submit(self, recipe) -> None:
        """Queue a recipe (what the wizard calls); an invalid recipe raises UserError."""
        self.runner.submit(recipe)
        self._follow_next = True

    def selected_row(self) -> JobRow | None:
        index = self.table.currentIndex()
        return self.model.row_at(index.row()) if index.isValid() else None

    def select_job(self, job_id: int) -> None:
        row = self.model.row_of_job(job_id)
        if row is not None:
            self.table.selectRow(row)

    def current_charts(self) -> JobCharts:
        """The charts the user sees now (live or from the history)."""
        return self.charts_stack.currentWidget()  # type: ignore[return-value]

    def refresh(self) -> None:
        """Reload the history and the queue; the selection stays on the same job."""
        if self._closing:
            return
        selected = self.selected_row()
        try:
            records = self.store.list_jobs()
        except (UserError, RuntimeError) as exc:
            self.banner.show_messages([f"Could not read the job history: {exc}"])
            records = []
        rows = [JobRow.from_queued(q) for q in self.runner.pending]
        rows += [JobRow.from_record(r) for r in records]
        live = self.runner.current_job_id
        for row in rows:
            # The history holds progress at most once a second; the bridge is fresher.
            if row.job_id is not None and row.job_id == live and row.status == "running":
                row.progress = max(row.progress, self._live_fraction)
        # A reset clears the current index; handle the selection once, afterwards.
        self._refreshing = True
        try:
            self.model.set_rows(rows)
            target = None
            if selected is not None:
                target = (
                    self.model.row_of_job(selected.job_id)
                    if selected.job_id is not None
                    else self.model.row_of_queued(selected.queue_key or -1)
                )
            if target is not None:
                self.table.selectRow(target)
        finally:
            self._refreshing = False
        self._on_current_changed(self.table.currentIndex(), QModelIndex())
        self.empty_hint.setVisible(self.model.rowCount() == 0)
        waiting = len(self.runner.pending)
        self.queue_label.setText(f"{waiting} waiting" if waiting else "")

    # ------------------------------------------------------------------ actions
    def cancel_selected(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        if row.job_id is None and row.queue_key is not None:
            self.runner.remove_queued(row.queue_key)
            self.status_message.emit(f"{row.name} taken off the queue")
        elif row.job_id is not None and row.job_id == self.runner.current_job_id:
            self.runner.cancel()
            self.cancel_button.setEnabled(False)
            self.cancel_button.setText("Cancelling…")
            self._log(row.job_id, "cancel requested")
            self.status_message.emit(f"Cancelling job #{row.job_id}…")

    def rerun_selected(self) -> None:
        row = self.selected_row()
        if row is None or row.job_id is None:
            return
        recipe = self.runner.recipe_for(row.job_id)
        try:
            if recipe is None:
                # Relative paths of a job from an earlier session resolve against the
                # working folder; the history does not keep the recipe's folder.
                recipe = recipe_from_yaml(row.recipe_yaml, f"the recipe of job #{row.job_id}")
            self.runner.submit(recipe)
        except UserError as exc:
            self.banner.show_messages([f"Cannot re-run job #{row.job_id}: {exc}"])
            return
        self._follow_next = True
        self.status_message.emit(f"{row.name} queued again")

    def open_output_folder(self) -> None:
        row = self.selected_row()
        if row is None or not row.output:
            return
        folder = Path(row.output)
        if not folder.is_dir():
            self.banner.show_messages(
                [f"The output folder {folder} does not exist (yet): the job saved nothing there."]
            )
            return
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def show_recipe(self) -> TextDialog | None:
        row = self.selected_row()
        if row is None:
            return None
        title = f"Recipe of {row.name}" + (f" (#{row.job_id})" if row.job_id else "")
        return self._show_dialog(TextDialog(title, row.recipe_yaml, self))

    def show_log(self) -> TextDialog | None:
        row = self.selected_row()
        if row is None:
            return None
        if row.job_id is None:
            text = "This job has not started yet."
        else:
            text = self.log_text(row.job_id) or "Nothing was logged for this job."
        note = ""
        if row.status == "failed" and row.error:
            where = f" in {row.failed_step}" if row.failed_step else ""
            note = f"Failed{where}: {row.error}"
        title = f"Log of {row.name}" + (f" (#{row.job_id})" if row.job_id else "")
        return self._show_dialog(TextDialog(title, text, self, note=note, wrap=True))

    def log_text(self, job_id: int) -> str:
        """The job's log: the file if there is one (earlier sessions), else memory."""
        path = log_path(job_id)
        try:
            return path.read_text(encoding="utf-8")
        except OSError:
            return "\n".join(self._messages.get(job_id, []))

    def result_path(self, job_id: int) -> str | None:
        """The newest model the job saved, if any."""
        try:
            artifacts = self.store.artifacts(job_id)
        except (UserError, RuntimeError):
            return None
        models = [a for a in artifacts if a.kind == "model"]
        return models[0].path if models else None

    def _open_result(self) -> None:
        row = self.selected_row()
        if row is None or row.job_id is None:
            return
        path = self.result_path(row.job_id)
        if path is not None:
            self.open_result.emit(path)

    def _show_dialog(self, dialog: TextDialog) -> TextDialog:
        if self.dialog is not None:
            self.dialog.close()
        self.dialog = dialog
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        dialog.show()  # non-modal: the job keeps being shown while it is open
        return dialog

    # ------------------------------------------------------------------ selection
    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self._refreshing:
            return
        row = self.model.row_at(current.row()) if current.isValid() else None
        self._show_charts_for(row)
        self.failure.show_row(row)
        self._update_actions()

    def _show_charts_for(self, row: JobRow | None) -> None:
        if row is not None and row.job_id is not None and row.job_id == self._live_job:
            self.charts_stack.setCurrentWidget(self.live_charts)
            return
        self.charts_stack.setCurrentWidget(self.history_charts)
        job_id = row.job_id if row is not None else None
        if job_id == self._charts_job and row is not None and row.status != "running":
            return  # already shown
        self._charts_job = job_id
        if job_id is None:
            self.history_charts.clear()
            return
        try:
            self.history_charts.load_history(self.store.metrics(job_id))
        except (UserError, RuntimeError) as exc:
            self.history_charts.clear()
            self.banner.show_messages([f"Could not read the numbers of job #{job_id}: {exc}"])

    def _update_actions(self) -> None:
        row = self.selected_row()
        running = (
            row is not None
            and row.job_id is not None
            and (row.job_id == self.runner.current_job_id)
        )
        queued = row is not None and row.job_id is None
        cancelling = self.cancel_button.text() != "Cancel"
        self.cancel_button.setEnabled((running and not cancelling) or queued)
        if not running and cancelling:
            self.cancel_button.setText("Cancel")
            self.cancel_button.setEnabled(queued)
        has_job = row is not None and row.job_id is not None
        self.rerun_button.setEnabled(has_job and not self._closing)
        self.open_folder_button.setEnabled(row is not None and bool(row.output))
        self.recipe_button.setEnabled(row is not None and bool(row.recipe_yaml))
        self.log_button.setEnabled(row is not None)
        self.result_button.setEnabled(
            has_job and row.status == "done" and self.result_path(row.job_id) is not None
        )

    # ------------------------------------------------------------------ live job
    def _on_job_started(self, job_id: int) -> None:
        self._step_count, self._step_index = 1, 0
        self._live_fraction = 0.0
        self.live_charts.clear()
        previous = self.selected_row()
        previous_live, self._live_job = self._live_job, job_id
        self.refresh()
        # Follow the new job, unless the user is browsing an older job's results.
        browsing = (
            previous is not None
            and previous.job_id is not None
            and previous.job_id != previous_live
            and previous.status != "running"
        )
        if self._follow_next or not browsing:
            self.select_job(job_id)
        self._follow_next = False
        row = self.model.row_of_job(job_id)
        name = self.model.row_at(row).name if row is not None else "job"
        self._log(job_id, f"job #{job_id} started: {name}")
        self._ticker.start()
        self.status_message.emit(f"Job #{job_id} started")

    def _on_message(self, text: str) -> None:
        if self._live_job is not None:
            self._log(self._live_job, text)
        self.status_message.emit(text)

    def _on_step_started(self, index: int, step_type: str, count: int) -> None:
        self._step_index, self._step_count = index, max(1, count)
        if self._live_job is not None:
            self._log(self._live_job, f"step {index + 1}/{count}: {step_type}")
            self._set_live_fraction(index / self._step_count)

    def _on_progress(self, index: int, done: int, total: int) -> None:
        if self._live_job is None or total <= 0:
            return
        self._set_live_fraction((index + min(done, total) / total) / self._step_count)

    def _set_live_fraction(self, fraction: float) -> None:
        self._live_fraction = fraction
        if self._live_job is not None:
            self.model.set_live_progress(self._live_job, fraction)

    def _on_artifact(self, index: int, path: str, info: dict) -> None:
        if self._live_job is not None:
            self._log(self._live_job, f"step {index + 1}: saved {path}")

    def _on_step_finished(self, index: int, summary: dict) -> None:
        if self._live_job is None:
            return
        parts = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()
        )
        self._log(self._live_job, f"step {index + 1} finished" + (f": {parts}" if parts else ""))

    def _on_job_finished(self, job_id: int, status: str, error: str) -> None:
        if job_id != NO_JOB:
            self._log(job_id, f"job #{job_id} {status}" + (f": {error}" if error else ""))
        self._ticker.stop()
        self.live_charts.flush()
        self.cancel_button.setText("Cancel")
        self.refresh()  # the history has the final status and any failure sentence now
        verb = {"done": "finished", "failed": "failed", "cancelled": "was cancelled"}
        self.status_message.emit(f"Job #{job_id} {verb.get(status, status)}")

    def _on_errored(self, sentence: str) -> None:
        self.banner.show_messages([sentence])
        if self._closing:
            return
        # Non-modal, so a test or a busy user is never blocked by it.
        box = QMessageBox(QMessageBox.Icon.Critical, "The job failed", sentence, parent=self)
        box.setStandardButtons(QMessageBox.StandardButton.Ok)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.show()
        self.error_dialog = box

    def _log(self, job_id: int, text: str) -> None:
        line = f"{datetime.now().strftime('%Y-%m-%d %H:%M:%S')} {text}"
        self._messages.setdefault(job_id, []).append(line)
        try:
            path = log_path(job_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError as exc:  # the in-memory copy still serves "Show log"
            log.warning("Could not write the job log of #%s: %s", job_id, exc)

    # ------------------------------------------------------------------ closing
    def _clear_leftovers(self) -> None:
        """Clear what interrupted jobs left in their output folders (off the GUI thread)."""
        outputs = {r.output for r in self.model.rows() if r.status == "interrupted" and r.output}
        if not outputs:
            return
        # Bound methods, not lambdas: Qt drops the call if this view is gone by then.
        start_worker(
            sweep_outputs,
            sorted(outputs),
            workers=self._workers,
            returned=self._on_leftovers_cleared,
            errored=_log_sweep_error,
        )

    def _on_leftovers_cleared(self, paths: list) -> None:
        if paths and not self._closing:
            self.status_message.emit(
                f"Removed {len(paths)} unfinished save(s) that interrupted jobs left behind"
            )

    def shutdown(self, timeout_s: float = 10.0) -> bool:
        """Stop the running job and wait for it (see :meth:`JobRunner.shutdown`).

        Returns:
            True when no job is left running.
        """
        stopped = self.runner.shutdown(timeout_s)
        self._closing = True
        self._ticker.stop()
        if self.error_dialog is not None:
            self.error_dialog.close()
        if self.dialog is not None:
            self.dialog.close()
        if stopped:
            self.store.close()
        return stopped


def _log_sweep_error(exc: BaseException) -> None:
    log.warning("Could not clear what interrupted jobs left: %s", exc)


def log_path(job_id: int) -> Path:
    """Where a job's log lines are written: ``<data dir>/logs/job-<id>.log``."""
    return data_dir() / "logs" / f"job-{job_id}.log"


def _open_store() -> tuple[JobStore, list[str]]:
    """The history for the view; a damaged or unusable file never stops the app."""
    try:
        store, notice = JobStore.open()
    except UserError as exc:
        import tempfile

        fallback = Path(tempfile.mkdtemp(prefix="slimpajama-history-")) / "history.sqlite3"
        return JobStore(fallback), [
            f"{exc} Jobs run now are kept in a temporary history ({fallback}) until the app closes."
        ]
    return store, [str(notice)] if notice is not None else []
