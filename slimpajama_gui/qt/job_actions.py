"""The Jobs view's actions on a job: cancel, Re-run (from a step), Resume, Delete result,
open its folder, recipe and log, and the right-click menu that offers them.

:class:`JobActions` is a part of :class:`~slimpajama_gui.qt.jobs_view.JobsView` (its
base), apart because the actions are their own seam: they read the selected row and the
history and start workers; the view owns the table, the charts and the live job.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import (
    Qt,
    QUrl,
)
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QFileDialog,
    QMenu,
    QMessageBox,
)

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.cleanup import delete_results, result_folders
from slimpajama_gui.core.jobs.pipeline import recipe_for_rerun
from slimpajama_gui.core.jobs.resume import (
    RESUMABLE,
    ResumePlan,
    check_rerun_from,
    plan_resume,
    rerun_steps,
)
from slimpajama_gui.core.plan.recipe import load_recipe, recipe_from_yaml
from slimpajama_gui.core.units import human_duration
from slimpajama_gui.qt.closing import KEEP_RUNNING
from slimpajama_gui.qt.job_details import TextDialog, log_dialog
from slimpajama_gui.qt.jobs_table import JobRow
from slimpajama_gui.qt.widgets.errors import error_sentence
from slimpajama_gui.qt.widgets.workers import start_worker

log = logging.getLogger("slimpajama_gui.qt.jobs_view")

#: Seconds a job may have run before Cancel asks first; a job cancelled sooner loses
#: little, and a slip of the mouse a moment after Run costs nothing to redo.
CONFIRM_CANCEL_AFTER_S = 30.0
#: The question's button that cancels (its other button is closing's "Keep running").
CANCEL_JOB = "Cancel job"


class JobActions:
    """What a user can do to the selected job (mixed into :class:`JobsView`)."""

    # ------------------------------------------------------------------ actions
    def cancel_selected(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        if row.job_id is None and row.queue_key is not None:
            self.runner.remove_queued(row.queue_key)
            self.status_message.emit(f"{row.name} taken off the queue")
        elif row.job_id is not None and row.job_id == self.runner.current_job_id:
            if (row.elapsed or 0.0) >= CONFIRM_CANCEL_AFTER_S:
                self._ask_cancel(row)
            else:
                self._cancel_running(row.job_id)

    def _cancel_running(self, job_id: int) -> None:
        self.runner.cancel()
        # Newer than the wish to follow a submitted job: stay on this one.
        self._cancelled_here, self._follow_next = job_id, False
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Cancelling…")
        self._log(job_id, "cancel requested")
        self.status_message.emit(f"Cancelling job #{job_id}…")

    def _ask_cancel(self, row: JobRow) -> None:
        """Ask before cancelling a job that has run a while, as closing the window
        mid-job does (:mod:`~slimpajama_gui.qt.closing`): window-modal, never blocking
        the job's signals, Keep running the default."""
        job_id = row.job_id
        done = self._step_index  # steps before the one under way
        kept = (
            "No step has finished yet, so nothing of it is kept."
            if done == 0
            else f"Its finished steps stay saved with their results (step{'s' if done > 1 else ''} "
            f"{'1–' if done > 1 else ''}{done} of {self._step_count})."
        )
        busy = self.runner.busy_with
        stops = (
            f"It is {busy}, which cannot be stopped part-way: it stops once that is done."
            if busy
            else f"The step under way (step {done + 1} of {self._step_count}) stops, and what "
            "it has done is not kept."
        )
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Cancel the job?")
        box.setText(f"Job #{job_id} has run for {human_duration(row.elapsed)}. Cancel it?")
        box.setInformativeText(
            f"{kept} {stops} The job is marked cancelled; Resume continues it from its "
            "first unfinished step."
        )
        cancel = box.addButton(CANCEL_JOB, QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton(KEEP_RUNNING, QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.buttonClicked.connect(lambda button: self._cancel_answered(job_id, button is cancel))
        self.cancel_question = box
        box.open()

    def _cancel_answered(self, job_id: int, cancel: bool) -> None:
        self.cancel_question = None
        # The job may have ended, or another begun, while the question was open.
        if cancel and job_id == self.runner.current_job_id and self.runner.is_running:
            self._cancel_running(job_id)

    def _drop_cancel_question(self, job_id: int) -> None:
        """The job ended while asked about: the question has nothing left to cancel."""
        box = self.cancel_question
        if box is not None and f"#{job_id} " in box.text():
            self.cancel_question = None
            box.done(0)

    def rerun_selected(self, from_step: int = 0) -> None:
        """Run the selected job's recipe again into a new folder; ``from_step`` (0-based)
        > 0 takes the steps before it from the job's saved variants."""
        row = self.selected_row()
        if row is None or row.job_id is None:
            return
        try:
            # The history keeps the recipe's folder: relative paths read the same files.
            # A new output folder, never one a recorded or queued job writes to.
            taken = [job.output for job in self.store.list_jobs(limit=10_000) if job.output]
            taken += [q.recipe.resolve_path(q.recipe.output) for q in self.runner.pending]
            recipe = recipe_for_rerun(self.store.get_job(row.job_id), taken=taken)
            if from_step:
                check_rerun_from(self.store, row.job_id, from_step)
                self.runner.submit(recipe, rerun_from=(row.job_id, from_step))
            else:
                self.runner.submit(recipe)
        except UserError as exc:
            self.banner.show_messages([f"Cannot re-run job #{row.job_id}: {exc}"])
            return
        self._follow_next, self._cancelled_here = True, None
        self.status_message.emit(f"{row.name} queued again; it saves into {recipe.output}")

    def resume_plan(self, row: JobRow | None) -> ResumePlan | str:
        """What Resume would do for ``row``: a plan, or the sentence saying why not.

        Reads the history and the variants' small records (no model), so it runs on the
        GUI thread; kept per job and status until the table is refreshed.
        """
        if row is None or row.job_id is None:
            return "Select a job of the history."
        if row.status not in RESUMABLE:
            return "Only a failed, cancelled or interrupted job can be resumed."
        key = (row.job_id, row.status)
        if key not in self._resume_plans:
            try:
                plan: ResumePlan | str = plan_resume(self.store, row.job_id)
                if plan.first_step == 0:
                    plan = "No step of this job had finished; Re-run starts it again."
            except UserError as exc:
                plan = str(exc)
            self._resume_plans[key] = plan
        return self._resume_plans[key]

    def resume_selected(self) -> None:
        row = self.selected_row()
        plan = self.resume_plan(row)
        if row is None or isinstance(plan, str):
            return
        self._queue_resume(row, plan)

    def choose_recipe_file(self) -> str:
        """The recipe file to resume with ("" if none chosen; tests replace this)."""
        path, _ = QFileDialog.getOpenFileName(
            self, "Resume with a fixed recipe", "", "Recipes (*.yaml *.yml);;All files (*)"
        )
        return path

    def resume_with_recipe(self) -> None:
        """Resume the selected job with a recipe file the user fixed (e.g. the failed
        step's settings); its finished steps, model, data and output must be unchanged."""
        row = self.selected_row()
        if row is None or row.job_id is None or row.status not in RESUMABLE:
            return
        path = self.choose_recipe_file()
        if not path:
            return
        try:
            plan = plan_resume(self.store, row.job_id, load_recipe(Path(path)))
        except UserError as exc:
            self.banner.show_messages([f"Cannot resume job #{row.job_id} with {path}: {exc}"])
            return
        self._queue_resume(row, plan)

    def _queue_resume(self, row: JobRow, plan: ResumePlan) -> None:
        try:
            self.runner.resume(plan)
        except UserError as exc:
            self.banner.show_messages([f"Cannot resume job #{row.job_id}: {exc}"])
            return
        self._follow_next, self._cancelled_here = True, None
        self._resume_plans.clear()
        self.status_message.emit(f"Job #{row.job_id} queued to resume: it {plan.describe()}")

    def confirm_delete(self, row: JobRow, folders: list[Path]) -> bool:
        """Ask before deleting (tests replace this)."""
        names = "\n".join(f"  {f.name}" for f in folders)
        answer = QMessageBox.question(
            self,
            "Delete result",
            f"Delete what job #{row.job_id} saved in {row.output}?\n\n{names}\n\n"
            "Only these folders, which this job wrote, are deleted; the source model and "
            "anything else in the folder stay. This cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def delete_result_selected(self) -> None:
        """Delete the selected job's saved folders, after a confirmation naming them."""
        row = self.selected_row()
        if row is None or row.job_id is None or row.status in ("queued", "running"):
            return
        try:
            folders = result_folders(self.store, row.job_id)
        except UserError as exc:
            self.banner.show_messages([str(exc)])
            return
        if not folders:
            self.banner.show_messages(
                [f"Job #{row.job_id} has no saved result left in {row.output}."]
            )
            return
        if not self.confirm_delete(row, folders):
            return
        start_worker(
            delete_results,
            self.store,
            row.job_id,
            folders,
            workers=self._workers,
            returned=self._on_results_deleted,
            errored=self._on_delete_failed,
        )

    def _on_results_deleted(self, folders: list) -> None:
        if self._closing:
            return
        self.status_message.emit(f"Deleted {len(folders)} saved folder(s)")
        self._resume_plans.clear()
        self.refresh()

    def _on_delete_failed(self, exc: BaseException) -> None:
        if not self._closing:
            self.banner.show_messages([error_sentence(exc, "Deleting the result", logger=log)])

    def context_menu(self, row: JobRow | None) -> QMenu:
        """The table's right-click menu for ``row``, its actions enabled as they apply."""
        menu = QMenu(self)
        running = (
            row is not None
            and row.job_id is not None
            and (row.job_id == self.runner.current_job_id)
        )
        has_job = row is not None and row.job_id is not None
        plan = self.resume_plan(row)
        items = [
            ("Re-run", self.rerun_selected, has_job and not self._closing, None),
            ("Resume", self.resume_selected, not isinstance(plan, str),
             plan if isinstance(plan, str) else f"Continues at step {plan.first_step + 1}"),
            ("Resume with a fixed recipe…", self.resume_with_recipe,
             has_job and row.status in RESUMABLE and not self._closing,
             "Continue with a recipe file in which you fixed the failed step's settings"),
            ("Cancel", self.cancel_selected, self.cancel_button.isEnabled(), None),
            None,
            ("Open result", self._open_result, self.result_button.isEnabled(), None),
            ("Reveal in file manager", self.open_output_folder,
             row is not None and bool(row.output) and Path(row.output).is_dir(), None),
            None,
            ("Delete result…", self.delete_result_selected,
             has_job and not running and row.status not in ("queued", "running"), None),
        ]  # fmt: skip
        for item in items:
            if item is None:
                menu.addSeparator()
                continue
            text, slot, enabled, tip = item
            action = menu.addAction(text)
            action.setEnabled(bool(enabled))
            if tip:
                action.setToolTip(tip)
            action.triggered.connect(slot)
            if text == "Re-run":
                self._add_rerun_from(menu, row, has_job and not self._closing)
        menu.setToolTipsVisible(True)
        return menu

    def _add_rerun_from(self, menu: QMenu, row: JobRow | None, enabled: bool) -> None:
        """ "Re-run from step": one entry per step the re-run could start at."""
        sub = menu.addMenu("Re-run from step")
        sub.setToolTipsVisible(True)
        steps = rerun_steps(self.store, row.job_id) if enabled and row is not None else []
        names = _step_names(row.recipe_yaml) if row is not None else []
        for first in steps:
            name = names[first] if first < len(names) else "step"
            action = sub.addAction(f"Step {first + 1} ({name})")
            reused = "step 1" if first == 1 else f"steps 1–{first}"
            action.setToolTip(f"Into a new folder; {reused} taken from this job's saved results")
            action.triggered.connect(lambda _=False, f=first: self.rerun_selected(f))
        sub.setEnabled(bool(steps))

    def _show_context_menu(self, pos) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        self.table.selectRow(index.row())
        self.context_menu(self.selected_row()).popup(self.table.viewport().mapToGlobal(pos))

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
        text = self.log_text(row.job_id) if row.job_id is not None else ""
        return self._show_dialog(log_dialog(row, text, self))

    def log_text(self, job_id: int) -> str:
        """The job's log: the file if there is one (earlier sessions), else memory."""
        return self.job_log.text(job_id)

    def result_path(self, job_id: int) -> str | None:
        """The newest model the job saved, if any."""
        try:
            variants = self.store.variants(job_id)
        except (UserError, RuntimeError):
            return None
        models = [v for v in variants if v.kind == "model"]
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


def _step_names(recipe_yaml: str) -> list[str]:
    """The step types of a recorded recipe, in order ([] if it no longer reads)."""
    try:
        return [step.step_type for step in recipe_from_yaml(recipe_yaml, "the job's recipe").steps]
    except UserError:
        return []
