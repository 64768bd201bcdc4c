"""The selected job's details below the table: its failure sentence, its charts, its log.

:class:`JobDetails` shows the failure (or cancellation) box and the charts: live while
the job runs, from the history (``JobStore.metrics``) once it has finished.
:class:`JobLog` keeps each job's messages (data warnings, step starts and ends, saved
variants, how it ended) in memory while the app runs and appends them, a line at a
time, to ``<data dir>/logs/job-<id>.log`` from the GUI thread (a few short lines per
step, so the writes are negligible), so "Show log" works for jobs of earlier sessions
too. Training numbers are not written there; they live in the history database.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import (
    Qt,
)
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.handlers.sensitivity import job_reports
from slimpajama_gui.core.paths import data_dir
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.qt.charts import JobCharts
from slimpajama_gui.qt.jobs_table import JobRow

log = logging.getLogger(__name__)


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


class _NoticeBox(QFrame):
    """A framed, selectable, word-wrapped sentence about the selected job, hidden until
    it has something to say."""

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addWidget(self.label, 1)
        self.hide()


class FailureBox(_NoticeBox):
    """The selected job's failure (or cancellation) sentence, hard to miss."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("failure", parent)

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
        if row.status == "cancelled" and text.lower().startswith("cancelled"):
            # The engine's reason ("cancelled during distill") already says what the title
            # would: one sentence, not "was cancelled. cancelled during distill".
            self.label.setText(f"<b>Job #{row.job_id} was {text}.</b>")
        else:
            self.label.setText(f"<b>Job #{row.job_id} {title[row.status]}{where}.</b> {text}")
        self.show()

    def text(self) -> str:
        return self.label.text()


class WarningBox(_NoticeBox):
    """The selected job's warnings, in full: the status bar shows only a short form,
    and only until the next message replaces it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("warnings", parent)
        self.setStyleSheet(
            "#warnings { background: #fff8e1; border: 1px solid #e0b84a; border-radius: 4px; }"
            "#warnings QLabel { color: #4a3500; }"
        )

    def show_row(self, row: JobRow | None) -> None:
        warnings = row.warnings if row is not None else []
        if not warnings:
            self.hide()
            return
        head = f"⚠ {len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
        lines = "<br>".join(_escape(w) for w in warnings)
        self.label.setText(f"<b>{head}:</b><br>{lines}")
        self.show()

    def text(self) -> str:
        return self.label.text()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class JobDetails(QWidget):
    """The failure box over the charts of the selected job (live or from the history).

    Attributes:
        failure: the :class:`FailureBox`.
        live_charts: the charts the running job feeds.
        history_charts: the charts of a job read back from the history.
        charts_stack: shows one of the two.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.failure = FailureBox()
        self.warnings = WarningBox()
        self.live_charts = JobCharts()
        self.history_charts = JobCharts()
        self.charts_stack = QStackedWidget()
        self.charts_stack.addWidget(self.live_charts)
        self.charts_stack.addWidget(self.history_charts)
        self._charts_job: int | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.failure)
        layout.addWidget(self.warnings)
        layout.addWidget(self.charts_stack, 1)

    def current_charts(self) -> JobCharts:
        """The charts the user sees now (live or from the history)."""
        return self.charts_stack.currentWidget()  # type: ignore[return-value]

    def show_row(self, row: JobRow | None, live_job: int | None, store: JobStore) -> str | None:
        """Show ``row``'s failure and charts: live if it is ``live_job``, else from ``store``.

        Returns:
            A sentence when the history could not be read (the charts are cleared), else
            None.
        """
        self.failure.show_row(row)
        self.warnings.show_row(row)
        if row is not None and row.job_id is not None and row.job_id == live_job:
            self.charts_stack.setCurrentWidget(self.live_charts)
            return None
        self.charts_stack.setCurrentWidget(self.history_charts)
        job_id = row.job_id if row is not None else None
        if job_id == self._charts_job and row is not None and row.status != "running":
            return None  # already shown
        self._charts_job = job_id
        if job_id is None:
            self.history_charts.clear()
            return None
        try:
            self.history_charts.load_history(store.metrics(job_id))
        except (UserError, RuntimeError) as exc:
            self.history_charts.clear()
            return f"Could not read the numbers of job #{job_id}: {exc}"
        reports = job_reports(row.output, row.recipe_yaml)
        if reports:
            try:
                # The last sensitivity step's report: it measured the latest model.
                self.history_charts.load_sensitivity(reports[-1])
            except UserError as exc:
                return f"Could not show the sensitivity of job #{job_id}: {exc}"
        return None


#: How a warning's line starts in a job's log, after the time.
WARNING_MARK = "warning: "


class JobLog:
    """Each job's log lines: kept in memory and appended to ``logs/job-<id>.log``.

    Warnings are lines marked "warning:"; :meth:`warnings` gives them back in full for
    the Jobs list and the job's details, this session's from memory and an earlier
    session's from the file (read once).
    """

    def __init__(self) -> None:
        self._messages: dict[int, list[str]] = {}
        self._warnings: dict[int, list[str]] = {}

    def warn(self, job_id: int, text: str) -> list[str]:
        """Log ``text`` as a warning of the job; returns all of the job's warnings."""
        found = self.warnings(job_id)
        self.append(job_id, WARNING_MARK + text)
        found.append(text)
        return list(found)

    def warnings(self, job_id: int) -> list[str]:
        """The job's warnings, in full, oldest first."""
        if job_id not in self._warnings:
            if job_id in self._messages:
                lines = self._messages[job_id]
            else:
                try:
                    lines = log_path(job_id).read_text(encoding="utf-8").splitlines()
                except OSError:
                    lines = []
            # A line is "<date> <time> <text>"; the text may itself hold a mark.
            texts = [line.split(" ", 2)[-1] for line in lines]
            self._warnings[job_id] = [
                t[len(WARNING_MARK) :] for t in texts if t.startswith(WARNING_MARK)
            ]
        return self._warnings[job_id]

    def append(self, job_id: int, text: str) -> None:
        """Add ``text`` with a timestamp; a file that cannot be written is only warned of."""
        line = f"{datetime.now().strftime('%Y-%m-%d %H:%M:%S')} {text}"
        self._messages.setdefault(job_id, []).append(line)
        try:
            path = log_path(job_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError as exc:  # the in-memory copy still serves "Show log"
            log.warning("Could not write the job log of #%s: %s", job_id, exc)

    def text(self, job_id: int) -> str:
        """The job's log: the file if there is one (earlier sessions), else memory."""
        try:
            return log_path(job_id).read_text(encoding="utf-8")
        except OSError:
            return "\n".join(self._messages.get(job_id, []))


def log_dialog(row: JobRow, text: str, parent: QWidget | None = None) -> TextDialog:
    """The "Show log" dialog of ``row`` showing ``text``, with its failure on top."""
    if row.job_id is None:
        text = "This job has not started yet."
    else:
        text = text or "Nothing was logged for this job."
    note = ""
    if row.status == "failed" and row.error:
        where = f" in {row.failed_step}" if row.failed_step else ""
        note = f"Failed{where}: {row.error}"
    title = f"Log of {row.name}" + (f" (#{row.job_id})" if row.job_id else "")
    return TextDialog(title, text, parent, note=note, wrap=True)


def log_path(job_id: int) -> Path:
    """Where a job's log lines are written: ``<data dir>/logs/job-<id>.log``."""
    return data_dir() / "logs" / f"job-{job_id}.log"
