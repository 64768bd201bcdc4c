"""The Jobs table: one row per queued, running or finished job, and its progress bars.

:class:`JobTableModel` is a thin adapter over ``JobStore.list_jobs()`` plus the recipes
waiting in the :class:`~slimpajama_gui.qt.jobs.JobRunner` queue; the running job's
progress comes live from the bridge (the history holds it at most once a second), and a
one-second tick moves the elapsed and remaining times on. The time left is the engine's
(:mod:`slimpajama_gui.core.jobs.progress`): "estimating…" until the job has measured its
speed, "≈ … (estimate)" while it rests on expected step costs, "~…" once measured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
)
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHeaderView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QTableView,
)

from slimpajama_gui.core.plan.recipe import dump_recipe
from slimpajama_gui.core.storage.history import JobRecord
from slimpajama_gui.core.units import human_duration
from slimpajama_gui.qt.jobs import QueuedJob
from slimpajama_gui.qt.widgets.tables import Column, RowTableModel

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
#: The Remaining column's header tooltip: what its two notations mean.
REMAINING_TIP = (
    "~2 min 10 s: measured, from the current step's own rate (and this job's speed for the "
    "steps after it).\n≈ 2 min (estimate): from the expected cost of the steps, before the "
    "current step has run long enough to measure, or when most of what is left has not "
    "started.\nestimating…: the job has not measured its speed yet."
)
COL_NAME, COL_STATUS, COL_PROGRESS, COL_STARTED, COL_ELAPSED, COL_REMAINING, COL_OUTPUT = range(
    len(COLUMNS)
)
#: Whole rows the Jobs list always has room for, whatever the charts below would take.
ROWS_SHOWN = 4


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
    #: Seconds left as the engine last sent them (None: not measurable yet), whether
    #: measured, and when they were received (time.time()).
    remaining_s: float | None = None
    remaining_measured: bool = False
    remaining_at: float | None = None
    #: The job's resumes (``JobRecord.resume_log``), oldest first.
    resumes: list = field(default_factory=list)
    #: The warnings the job gave, in full (from its log).
    warnings: list[str] = field(default_factory=list)

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
            resumes=job.resume_log,
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
        """Seconds left while running, as the engine measured or estimated them; None
        before it could (a share of the bar says nothing about the time of what is left)."""
        if self.status != "running" or self.remaining_s is None:
            return None
        since = time.time() - (self.remaining_at or time.time())
        return max(self.remaining_s - since, 0.0)

    def remaining_text(self) -> str:
        """'~2 min 10 s' (measured), '≈ 2 min (estimate)', 'estimating…' or '–'."""
        if self.status != "running":
            return "–"
        remaining = self.remaining
        if remaining is None:
            return "estimating…"
        if self.remaining_measured:
            return f"~{human_duration(remaining)}"
        return f"≈ {human_duration(remaining)} (estimate)"


class JobTableModel(RowTableModel[JobRow]):
    """Read-only rows: queued recipes first, then the history, newest first."""

    def __init__(self, parent=None) -> None:
        super().__init__(
            [
                Column(title, lambda r, c=c: self._display(r, c), lambda r, c=c: self._display(r, c),
                       c in (COL_ELAPSED, COL_REMAINING))
                for c, title in enumerate(COLUMNS)
            ],
            parent,
        )  # fmt: skip

    def headerData(  # noqa: N802 (Qt override)
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if (
            role == Qt.ItemDataRole.ToolTipRole
            and orientation == Qt.Orientation.Horizontal
            and section == COL_REMAINING
        ):
            return REMAINING_TIP
        return super().headerData(section, orientation, role)

    def role_data(self, row: JobRow, _row: int, col: int, role: int) -> Any:
        if role == ROW_ROLE:
            return row
        if role == PROGRESS_ROLE:
            return float(row.progress)
        if role == Qt.ItemDataRole.ForegroundRole and col == COL_STATUS:
            return QColor(STATUS_COLORS.get(row.status, "#000000"))
        if role == Qt.ItemDataRole.DecorationRole and col == COL_STATUS and row.warnings:
            return _warning_icon()
        if role == Qt.ItemDataRole.FontRole and col == COL_STATUS:
            font = QFont()
            font.setBold(row.status in ("running", "failed"))
            return font
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = self._tooltip(row, col)
            if col == COL_STATUS and row.warnings:
                tip = "\n\n".join([tip, warnings_text(row.warnings)])
            return tip
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
            return row.remaining_text()
        if col == COL_OUTPUT:
            return row.output or "–"
        return ""

    @staticmethod
    def _tooltip(row: JobRow, col: int) -> str:
        if col == COL_REMAINING and row.status == "running":
            if row.remaining is None:
                return "Shown once the job has measured how fast it runs on this machine"
            if row.remaining_measured:
                return "Measured: the current step's own rate, and this job's speed for the rest"
            return "An estimate from the expected cost of the steps and this job's speed so far"
        if col == COL_STATUS and row.resumes:
            last = row.resumes[-1]
            reused = last.get("reused") or []
            steps = f"steps 1–{len(reused)}" if len(reused) > 1 else "step 1"
            return (
                f"Resumed at step {int(last.get('from_step', 0)) + 1}"
                + (f"; {steps} reused from the earlier attempt" if reused else "")
                + (f" ({last['previous_status']})" if last.get("previous_status") else "")
            )
        if row.status == "failed" and row.error:
            where = f" in {row.failed_step}" if row.failed_step else ""
            return f"Failed{where}: {row.error}"
        if col == COL_OUTPUT and row.output:
            return row.output
        if row.status == "queued":
            return "Waiting for the running job to finish"
        return row.error or row.name

    # our API -----------------------------------------------------------------
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

    def set_live_progress(
        self,
        job_id: int,
        fraction: float,
        remaining_s: float | None = None,
        measured: bool = False,
    ) -> None:
        """The running job's progress and time left from the bridge (fresher than the
        history, which holds no time left)."""
        i = self.row_of_job(job_id)
        if i is None:
            return
        fraction = min(1.0, max(0.0, fraction))
        row = self._rows[i]
        row.remaining_s, row.remaining_measured = remaining_s, measured
        row.remaining_at = time.time()
        row.progress = fraction
        self.dataChanged.emit(self.index(i, COL_PROGRESS), self.index(i, COL_REMAINING))

    def set_warnings(self, job_id: int, warnings: list[str]) -> None:
        """The running job's warnings so far (the bridge's, fresher than its log's)."""
        i = self.row_of_job(job_id)
        if i is None:
            return
        self._rows[i].warnings = list(warnings)
        self.dataChanged.emit(self.index(i, COL_STATUS), self.index(i, COL_STATUS))

    def tick(self) -> None:
        """Refresh the elapsed / remaining cells of running jobs (a 1 s timer)."""
        for i, row in enumerate(self._rows):
            if row.status == "running":
                self.dataChanged.emit(self.index(i, COL_ELAPSED), self.index(i, COL_REMAINING))


def warnings_text(warnings: list[str]) -> str:
    """'1 warning: …' or '2 warnings:' with one line each, in full."""
    head = f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
    if len(warnings) == 1:
        return f"{head}: {warnings[0]}"
    return head + ":\n" + "\n".join(f"• {w}" for w in warnings)


def _warning_icon():
    return QApplication.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)


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
        # Qt 6 reads a progress bar's orientation from State_Horizontal: without it
        # Fusion fills the cell from the bottom up, which reads as an empty white box.
        bar.state = option.state | QStyle.StateFlag.State_Horizontal
        bar.palette = option.palette
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, widget)

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        hint = super().sizeHint(option, index)
        return QSize(max(hint.width(), 120), hint.height())


def jobs_table_view(model: JobTableModel) -> QTableView:
    """A table view of ``model``: one selected row, progress bars, sized columns."""
    table = QTableView()
    table.setModel(model)
    table.setItemDelegateForColumn(COL_PROGRESS, ProgressDelegate(table))
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setAlternatingRowColors(True)
    table.verticalHeader().hide()
    table.setWordWrap(False)
    table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    header.setStretchLastSection(True)
    for col, width in (
        (COL_NAME, 200),
        (COL_STATUS, 90),
        (COL_PROGRESS, 130),
        (COL_STARTED, 130),
        (COL_ELAPSED, 90),
        (COL_REMAINING, remaining_width(table)),
    ):
        table.setColumnWidth(col, width)
    # At 1280×800 the charts' share of the splitter left about a row and a half, the
    # second job cut in half.
    rows = ROWS_SHOWN * table.verticalHeader().defaultSectionSize()
    header = header.sizeHint().height()
    table.setMinimumHeight(header + rows + 2 * table.frameWidth())
    return table


def remaining_width(table: QTableView) -> int:
    """Pixels for the Remaining column: its longest usual text whole, in the table's font."""
    longest = f"≈ {human_duration(59 * 60 + 59)} (estimate)"
    return table.fontMetrics().horizontalAdvance(longest) + 24
