"""Closing the main window while a job runs: ask, then stop the job or let it go.

The main window asks :class:`CloseGuard` in ``closeEvent``. With no job running it
closes at once. Otherwise a window-modal question says what the job is doing:

- At a point where it can stop (training, evaluating, ...): **Stop and quit** asks the
  job to stop; the window closes once the worker has ended, about a second later, and
  the job has recorded itself as cancelled.
- Inside a phase that cannot be stopped part-way (an ONNX export, saving a variant,
  loading the model): one sentence names that phase and its step, and offers
  **Wait, then quit** (as above, but the job first finishes that phase: it then
  records itself cancelled, or done when nothing was left to run) and **Quit now**:
  the job is marked interrupted, the window closes at once and the process ends
  without waiting for the thread (``app.end_session``). Finished variants stay; the
  unfinished step was being written to staging folders only, cleared at the next start
  (``core/storage/leftovers.py``).

Nothing blocks the GUI thread while waiting: a progress dialog says what the job still
does and keeps **Quit now** at hand, and the window closes from ``job_finished``, after
every other slot of the finished job has run. So the event loop never ends while a
worker still emits to the window.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QMainWindow, QMessageBox, QProgressDialog

from slimpajama_gui.qt.jobs import JobRunner

STOP_AND_QUIT = "Stop and quit"
WAIT_THEN_QUIT = "Wait, then quit"
QUIT_NOW = "Quit now"
KEEP_RUNNING = "Keep running"


class CloseGuard(QObject):
    """Decides when the main window may close while ``runner`` has a job.

    Args:
        runner: the app's job runner.
        window: the window to close; it parents the dialogs.

    Attributes:
        state: "open" (nothing asked), "asking" (the question is shown), "waiting" (the
            job was asked to stop; the window closes when it has), "closing".
        question: the question last shown, or None.
        waiting: the progress dialog shown while waiting, or None.
    """

    def __init__(self, runner: JobRunner, window: QMainWindow) -> None:
        super().__init__(window)
        self.runner = runner
        self.window = window
        self.state = "open"
        self.question: QMessageBox | None = None
        self.waiting: QProgressDialog | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(250)
        self._timer.timeout.connect(self._update_waiting)
        runner.job_finished.connect(self._on_job_finished)

    @property
    def closing(self) -> bool:
        """The user chose to quit; the window closes as soon as the job allows."""
        return self.state in ("waiting", "closing")

    def may_close(self) -> bool:
        """For ``closeEvent``: True to close now; False keeps the window for now.

        False means a question or a wait is under way; the window is closed again by
        this guard when the answer or the job allows it.
        """
        if self.state == "closing" or not self.runner.is_running:
            self.state = "closing"
            return True
        if self.state == "waiting" and self.waiting is not None:
            self.waiting.show()
            self.waiting.raise_()
        elif self.state == "asking" and self.question is not None:
            self.question.raise_()
        else:
            self._ask()
        return False

    # ------------------------------------------------------------------ asking
    def _job_name(self) -> str:
        job_id = self.runner.current_job_id
        return f"Job #{job_id}" if job_id is not None else "The job"

    def _ask(self) -> None:
        busy = self.runner.busy_with
        box = QMessageBox(self.window)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("A job is running")
        actions = {}
        if busy:
            box.setText(f"{self._job_name()} is {busy}, which cannot be stopped part-way.")
            box.setInformativeText(
                f"{WAIT_THEN_QUIT}: the app closes as soon as that is done, and the job "
                f"stops there. {QUIT_NOW}: the job is marked interrupted and its unfinished "
                "step is thrown away. Either way, steps already finished stay saved."
            )
            actions[box.addButton(WAIT_THEN_QUIT, QMessageBox.ButtonRole.AcceptRole)] = "wait"
            actions[box.addButton(QUIT_NOW, QMessageBox.ButtonRole.DestructiveRole)] = "now"
        else:
            box.setText(f"{self._job_name()} is still running. Stop it and quit?")
            box.setInformativeText(
                "Steps already finished stay saved; the job is marked cancelled."
            )
            actions[box.addButton(STOP_AND_QUIT, QMessageBox.ButtonRole.AcceptRole)] = "wait"
        keep = box.addButton(KEEP_RUNNING, QMessageBox.ButtonRole.RejectRole)
        actions[keep] = "keep"
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.buttonClicked.connect(lambda button: self._answered(actions.get(button, "keep")))
        self.question = box
        self.state = "asking"
        box.open()

    def _answered(self, action: str) -> None:
        if self.state != "asking":
            return
        if action == "keep":
            self.state = "open"
        elif not self.runner.is_running:  # the job ended while the question was open
            self._close_window()
        elif action == "now":
            self._quit_now()
        else:
            self._stop_and_wait()

    # ------------------------------------------------------------------ waiting
    def _stop_and_wait(self) -> None:
        self.runner.stop_for_close()
        self.state = "waiting"
        dialog = QProgressDialog(self.window)
        dialog.setWindowTitle("Closing")
        dialog.setCancelButtonText(QUIT_NOW)
        dialog.setRange(0, 0)  # no percentage: the phase reports none
        dialog.setMinimumDuration(0)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.canceled.connect(self._quit_now)
        self.waiting = dialog
        self._update_waiting()
        dialog.show()
        self._timer.start()

    def _update_waiting(self) -> None:
        if self.waiting is None:
            return
        busy = self.runner.busy_with
        if busy:
            text = (
                f"Waiting for {self._job_name().lower()}: it is {busy}, which cannot be "
                "stopped part-way. The app closes when that is done."
            )
        else:
            text = f"Stopping {self._job_name().lower()}…"
        self.waiting.setLabelText(text)

    def _quit_now(self) -> None:
        if self.state not in ("asking", "waiting"):
            return  # the progress dialog also says "canceled" when it is closed
        self.runner.abandon()
        self._close_window()

    def _on_job_finished(self, _job_id: int, _status: str, _error: str) -> None:
        if self.state == "waiting":
            self._close_window()

    def _close_window(self) -> None:
        self.state = "closing"
        self._timer.stop()
        if self.waiting is not None:
            self.waiting.canceled.disconnect(self._quit_now)
            self.waiting.hide()
        # Not from inside a job_finished slot: every other slot of the job runs first.
        QTimer.singleShot(0, self.window.close)
