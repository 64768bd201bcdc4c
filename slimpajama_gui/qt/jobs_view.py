"""The Jobs area: the queue and history of jobs, live progress, cancel, and charts.

The table (:mod:`.jobs_table`) lists queued, running and finished jobs; the details
below it (:mod:`.job_details`) show the selected job's failure sentence and charts, live
while it runs. This view wires both to the :class:`~slimpajama_gui.qt.jobs.JobRunner`
and its bridge, and holds the actions (cancel, re-run, resume, show recipe or log, open
result, delete result), as buttons and in the table's context menu.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.resume import (
    ResumePlan,
)
from slimpajama_gui.core.storage.history import FINAL_STATUSES, JobStore
from slimpajama_gui.core.storage.leftovers import RECOVERY_JOBS, sweep_outputs
from slimpajama_gui.qt.charts import JobCharts
from slimpajama_gui.qt.job_actions import JobActions
from slimpajama_gui.qt.job_details import JobDetails, JobLog, TextDialog
from slimpajama_gui.qt.jobs import NO_JOB, JobRunner
from slimpajama_gui.qt.jobs_table import JobRow, JobTableModel, jobs_table_view
from slimpajama_gui.qt.models_view import Banner
from slimpajama_gui.qt.widgets.panes import two_panes
from slimpajama_gui.qt.widgets.workers import WorkerSet, start_worker

log = logging.getLogger(__name__)

_Index = QModelIndex | QPersistentModelIndex
#: How often the Jobs area looks whether another process (the CLI) wrote the history.
HISTORY_POLL_MS = 2000


class JobsView(JobActions, QWidget):
    """The Jobs area: table of queued / running / finished jobs, actions, and charts.

    Args:
        store: the history; default ``JobStore.open()`` (a damaged file is moved aside
            and a banner says so; the view works either way).
        runner: the job runner; default one that records into ``store``.

    Signals:
        open_result(str path): "Open result" on a done job (its newest saved variant).
        status_message(str): a short sentence for the status bar.
        status_warning(str short, str full): a job's warning, cut short for the status
            bar, and in full (its tooltip); the job's details keep it in full.
        external_job_finished(int job_id): a job another process (the CLI) ran ended
            while the app was open; its results are new on disk.
    """

    open_result = Signal(str)
    status_message = Signal(str)
    status_warning = Signal(str, str)
    external_job_finished = Signal(int)

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
                "interrupted. Select one and click Resume to continue from its saved steps, "
                "or Re-run to run it again."
            )
        self.runner = runner or JobRunner(store, self)
        self._live_job: int | None = None
        self._follow_next = False  # select the next job that starts, whatever is selected
        # The job the user cancelled here: the view stays on it when the next job starts,
        # so a second click on Cancel cannot land on a job the user did not choose.
        self._cancelled_here: int | None = None
        self._live_fraction = 0.0
        self._live_remaining: tuple[float | None, bool, float] | None = None
        self._resume_plans: dict[tuple[int, str], ResumePlan | str] = {}
        self._refreshing = False
        self._step_count = 1
        self._step_index = 0
        self.job_log = JobLog()
        self.error_dialog: QMessageBox | None = None
        self.dialog: TextDialog | None = None
        #: Cancel's question while it is open (a job that has run a while), else None.
        self.cancel_question: QMessageBox | None = None
        self._closing = False

        # widgets -------------------------------------------------------------
        self.banner = Banner()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running job (or take a queued one off the queue)")
        self.rerun_button = QPushButton("Re-run")
        self.rerun_button.setToolTip("Run the selected job's recipe again")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip(
            "Continue a failed or cancelled job at its first unfinished step"
        )
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
            self.resume_button,
            self.open_folder_button,
            self.recipe_button,
            self.log_button,
            self.result_button,
        ):
            toolbar.addWidget(button)
        toolbar.addStretch(1)
        toolbar.addWidget(self.queue_label)

        self.model = JobTableModel(self)
        self.table = jobs_table_view(self.model)
        self.empty_hint = QLabel(
            "No jobs yet. Design one in the Compress area, or run a recipe with "
            "“slimpajama run RECIPE”; it appears here.",
            alignment=Qt.AlignmentFlag.AlignCenter,
        )
        self.empty_hint.setWordWrap(True)

        self.details = JobDetails()
        self.failure = self.details.failure
        self.live_charts = self.details.live_charts
        self.history_charts = self.details.history_charts

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.banner)
        top_layout.addLayout(toolbar)
        top_layout.addWidget(self.table, 1)
        top_layout.addWidget(self.empty_hint)
        self.splitter = two_panes(
            top, self.details, Qt.Orientation.Vertical, stretch=(2, 3), sizes=(200, 500)
        )
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)

        self._ticker = QTimer(self)
        self._ticker.setInterval(1000)
        self._ticker.timeout.connect(self.model.tick)
        # Jobs run from the CLI write the same history: the table follows them too.
        self._shown: dict[int, tuple[str, float]] = {}
        self._own_jobs: set[int] = set()
        self._history_stamp = _file_stamp(self.store.path)
        self._polling = False
        self._history_watch = QTimer(self)
        self._history_watch.setInterval(HISTORY_POLL_MS)
        self._history_watch.timeout.connect(self._poll_history)
        self._history_watch.start()

        # connections ---------------------------------------------------------
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.rerun_button.clicked.connect(self.rerun_selected)
        self.resume_button.clicked.connect(self.resume_selected)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._show_context_menu)
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
        bridge.warned.connect(self._on_warning)
        bridge.step_started.connect(self._on_step_started)
        bridge.step_started.connect(self.live_charts.start_step)  # labels the step boundaries
        bridge.overall.connect(self._on_overall)
        bridge.logged.connect(self.live_charts.add_metrics)
        bridge.evaluated.connect(self.live_charts.add_metrics)
        bridge.sensitivity_measured.connect(self.live_charts.add_sensitivity)
        bridge.variant_saved.connect(self._on_variant_saved)
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
        self._follow_next, self._cancelled_here = True, None

    def selected_row(self) -> JobRow | None:
        index = self.table.currentIndex()
        return self.model.row_at(index.row()) if index.isValid() else None

    def select_job(self, job_id: int) -> None:
        row = self.model.row_of_job(job_id)
        if row is not None:
            self.table.selectRow(row)

    def current_charts(self) -> JobCharts:
        """The charts the user sees now (live or from the history)."""
        return self.details.current_charts()

    def refresh(self, records: list | None = None) -> None:
        """Reload the history (or show ``records``, just read off the GUI thread) and the
        queue; the selection stays on the same job."""
        if self._closing:
            return
        selected = self.selected_row()
        self._resume_plans.clear()  # a job's folder or status may have changed
        if records is None:
            try:
                records = self.store.list_jobs()
            except (UserError, RuntimeError) as exc:
                self.banner.show_messages([f"Could not read the job history: {exc}"])
                records = []
        self._shown = _snapshot(records)
        rows = [JobRow.from_queued(q) for q in self.runner.pending]
        rows += [JobRow.from_record(r) for r in records]
        for row in rows:
            if row.job_id is not None:
                row.warnings = list(self.job_log.warnings(row.job_id))
        live = self.runner.current_job_id
        for row in rows:
            # The history holds progress at most once a second; the bridge is fresher.
            if row.job_id is not None and row.job_id == live and row.status == "running":
                row.progress = self._live_fraction
                if self._live_remaining is not None:
                    row.remaining_s, row.remaining_measured, row.remaining_at = self._live_remaining
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

    # ------------------------------------------------------------------ selection
    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self._refreshing:
            return
        row = self.model.row_at(current.row()) if current.isValid() else None
        problem = self.details.show_row(row, self._live_job, self.store)
        if problem:
            self.banner.show_messages([problem])
        self._update_actions()

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
        plan = self.resume_plan(row) if has_job else "Select a job of the history."
        self.resume_button.setEnabled(not isinstance(plan, str) and not self._closing)
        self.resume_button.setToolTip(
            plan if isinstance(plan, str) else f"Resume: it {plan.describe()}"
        )
        self.open_folder_button.setEnabled(row is not None and bool(row.output))
        self.recipe_button.setEnabled(row is not None and bool(row.recipe_yaml))
        self.log_button.setEnabled(row is not None)
        self.result_button.setEnabled(
            has_job and row.status == "done" and self.result_path(row.job_id) is not None
        )

    # ------------------------------------------------------------------ live job
    def _poll_history(self) -> None:
        """Look whether another process changed the history (a file stat, no read)."""
        if self._closing or self._polling:
            return
        stamp = _file_stamp(self.store.path)
        if stamp == self._history_stamp:
            return
        self._history_stamp = stamp
        if self.runner.current_job_id is not None:
            return  # the app's own job refreshes the table through the bridge, and at its end
        self._polling = True
        start_worker(
            self.store.list_jobs,
            workers=self._workers,
            returned=self._on_history_polled,
            errored=self._on_history_poll_failed,
        )

    def _on_history_polled(self, records: list) -> None:
        self._polling = False
        if self._closing:
            return
        now = _snapshot(records)
        if now == self._shown:
            return
        ended = [
            job_id
            for job_id, (status, _progress) in now.items()
            if status in FINAL_STATUSES
            and self._shown.get(job_id, ("", 0.0))[0] not in FINAL_STATUSES
            and job_id not in self._own_jobs
        ]
        self.refresh(records)
        for job_id in ended:
            self.external_job_finished.emit(job_id)

    def _on_history_poll_failed(self, exc: BaseException) -> None:
        self._polling = False  # a busy or locked history: the next change tries again
        log.debug("Reading the job history for outside changes failed: %s", exc)

    def _on_job_started(self, job_id: int) -> None:
        self._own_jobs.add(job_id)
        self._step_count, self._step_index = 1, 0
        self._live_fraction = 0.0
        self._live_remaining = None
        self._resume_plans.clear()
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
        stay = previous is not None and previous.job_id == self._cancelled_here
        if not stay and (self._follow_next or not browsing):
            self.select_job(job_id)
        self._follow_next = False
        self._cancelled_here = None
        row = self.model.row_of_job(job_id)
        name = self.model.row_at(row).name if row is not None else "job"
        self._log(job_id, f"job #{job_id} started: {name}")
        self._ticker.start()
        self.status_message.emit(f"Job #{job_id} started")

    def _on_message(self, text: str) -> None:
        if self._live_job is not None:
            self._log(self._live_job, text)
        self.status_message.emit(text)

    def _on_warning(self, text: str) -> None:
        job_id = self._live_job
        if job_id is None:  # no job to keep it with: the status bar alone says it
            self.status_warning.emit(short_warning(text), text)
            return
        warnings = self.job_log.warn(job_id, text)
        self.model.set_warnings(job_id, warnings)
        selected = self.selected_row()
        if selected is not None and selected.job_id == job_id:
            self.details.warnings.show_row(selected)
        self.status_warning.emit(short_warning(text, job_id), text)

    def _on_step_started(self, index: int, step_type: str, count: int) -> None:
        self._step_index, self._step_count = index, max(1, count)
        if self._live_job is not None:
            self._log(self._live_job, f"step {index + 1}/{count}: {step_type}")

    def _on_overall(self, fraction: float, remaining_s: object, measured: bool) -> None:
        """The engine's cost-weighted progress and time left (None until measured)."""
        self._live_fraction = fraction
        left = None if remaining_s is None else float(remaining_s)
        self._live_remaining = (left, measured, time.time())
        if self._live_job is not None:
            self.model.set_live_progress(self._live_job, fraction, left, measured)

    def _on_variant_saved(self, index: int, path: str, info: dict) -> None:
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
        self._drop_cancel_question(job_id)
        if job_id != NO_JOB:
            self._log(job_id, f"job #{job_id} {status}" + (f": {error}" if error else ""))
        self._ticker.stop()
        self.live_charts.flush()
        self.cancel_button.setText("Cancel")
        self._resume_plans.clear()
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
        self.job_log.append(job_id, text)

    # ------------------------------------------------------------------ closing
    def _clear_leftovers(self) -> None:
        """Put every known output folder in order (off the GUI thread): the recovery at
        start of docs/reliability.md F4/O3, as the CLI's (``leftovers.recover_outputs``)."""
        jobs = self.store.list_jobs(limit=RECOVERY_JOBS)
        outputs = {job.output for job in jobs if job.output}
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
        self._history_watch.stop()
        if self.error_dialog is not None:
            self.error_dialog.close()
        if self.dialog is not None:
            self.dialog.close()
        if stopped:
            self.store.close()
        return stopped


def _file_stamp(path: Path) -> tuple:
    """(mtime, size) of the history and its write-ahead log: changes when anyone writes."""
    stamp = []
    for name in (path, path.with_name(path.name + "-wal")):
        try:
            st = name.stat()
        except OSError:
            stamp.append(None)
        else:
            stamp.append((st.st_mtime_ns, st.st_size))
    return tuple(stamp)


def _snapshot(records) -> dict[int, tuple[str, float]]:
    # What the table shows of each job; progress in whole percent, as drawn.
    return {r.id: (r.status, round(float(r.progress or 0.0), 2)) for r in records}


def _log_sweep_error(exc: BaseException) -> None:
    log.warning("Could not clear what interrupted jobs left: %s", exc)


#: Characters of a warning the status bar shows before "…".
SHORT_WARNING = 90


def short_warning(text: str, job_id: int | None = None) -> str:
    """A warning cut for the status bar at a word, saying where it is in full."""
    where = f"Job #{job_id} warns" if job_id is not None else "Warning"
    if len(text) > SHORT_WARNING:
        cut = text[:SHORT_WARNING].rsplit(" ", 1)[0].rstrip(",;:")
        text = f"{cut}… (in full in the job's details)"
    return f"⚠ {where}: {text}"


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
