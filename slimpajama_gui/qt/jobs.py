"""Run recipes one at a time on a worker, with a queue, cancel and a clean shutdown.

:class:`JobRunner` owns one :class:`~slimpajama_gui.qt.bridge.JobBridge` (connect to
``runner.bridge`` for live events) and runs each recipe as a superqt function worker on
the thread pool. Cancellation is cooperative: :meth:`JobRunner.cancel` sets the
pipeline's :class:`~slimpajama_gui.core.techniques.train.Control`, which the engine checks between
steps and in every loop (training steps, evaluation batches, ...), so a job stops within
about a second, or right after a phase that cannot stop part-way.

Rules kept here (docs/reliability.md F3, F5, F9; Orange3 ``concurrent.py``):

- ``errored`` is always connected. An exception that escapes the pipeline is a bug: its
  traceback goes to the log, the job is marked failed in the history, and ``errored``
  carries a sentence. The runner goes on with the next job.
- The next queued job is never started from inside a "finished" handler; it is
  scheduled with ``QTimer.singleShot(0, ...)`` so every slot of the finished job has run.
- Some phases of a job cannot stop part-way (an ONNX export, a save);
  :attr:`JobRunner.busy_with` names the one running, so whoever closes can say what the
  job waits for. :meth:`JobRunner.stop_for_close` asks the job to stop without waiting
  (the window closes on ``job_finished``); :meth:`JobRunner.abandon` lets a job go when
  the app quits first: the job is marked interrupted unless it already wrote its own
  final status, and the bridge is detached so nothing it does later reaches a window.
- :meth:`JobRunner.shutdown` asks the job to stop and waits for the worker while still
  processing events, so the window can close without "QThread destroyed while running";
  a job that does not stop in time is abandoned.

Example:
    >>> runner = JobRunner(store)  # doctest: +SKIP
    >>> runner.bridge.logged.connect(charts.add_metrics)
    >>> runner.job_finished.connect(lambda job, status, error: print(job, status))
    >>> runner.submit(load_recipe("resources/recipes/demo.yaml"))
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field

from PySide6.QtCore import QCoreApplication, QEventLoop, QObject, QTimer, Signal

from slimpajama_gui.core.errors import UserError, log_file_in_use
from slimpajama_gui.core.jobs import pipeline
from slimpajama_gui.core.jobs.priority import lower_thread_priority
from slimpajama_gui.core.jobs.resume import ResumePlan
from slimpajama_gui.core.plan.recipe import Recipe
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.techniques.hooks import Control
from slimpajama_gui.qt.bridge import JobBridge
from slimpajama_gui.qt.widgets.errors import error_sentence
from slimpajama_gui.qt.widgets.workers import start_worker

log = logging.getLogger(__name__)

#: ``job_finished`` carries this id when the job never reached the history.
NO_JOB = -1


@dataclass
class QueuedJob:
    """A recipe waiting for its turn (not in the history yet, or a job to resume)."""

    key: int
    recipe: Recipe
    submitted_at: float = field(default_factory=time.time)
    #: Set when this continues a recorded job (core/jobs/resume.py) instead of a new one.
    resume: ResumePlan | None = None
    #: (job id, 0-based step): a re-run that takes the steps before it from that job.
    rerun_from: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        return self.recipe.name


#: What the sentence about a job that died of a bug ends with.
JOB_BUG_HINT = (
    "This is a bug: the log has the full report. The app is still usable and earlier "
    "results are untouched."
)


def job_bug_hint() -> str:
    """:data:`JOB_BUG_HINT`, naming the log file where one is written."""
    path = log_file_in_use()
    if path is None:
        return JOB_BUG_HINT
    return JOB_BUG_HINT.replace("the log has", f"the log {path} has")


def _run_job(
    recipe: Recipe,
    bridge: JobBridge,
    control: Control,
    store: JobStore,
    done: threading.Event,
    device: str | None,
    resume: ResumePlan | None = None,
    rerun_from: tuple[int, int] | None = None,
) -> pipeline.PipelineResult:
    """Runs on the worker thread. ``done`` tells :meth:`JobRunner.shutdown` it returned."""
    try:
        # The GUI thread keeps its time slices while the job computes (core/jobs/priority.py).
        with lower_thread_priority():
            # Looked up at call time so tests can replace ``pipeline.run``.
            extra: dict = {"resume": resume} if resume is not None else {}
            if rerun_from is not None:
                extra["rerun_from"] = rerun_from
            return pipeline.run(recipe, bridge, control, store=store, device=device, **extra)
    finally:
        done.set()


class JobRunner(QObject):
    """A queue of recipes run one at a time on a thread-pool worker.

    Args:
        store: the job history every job is recorded in (shared with the view).
        device: ``None`` to follow each recipe's ``device``; "cpu" forces the CPU.

    Signals:
        queue_changed(): a recipe was queued, started or removed from the queue.
        job_started(int job_id): the pipeline created the job row and runs it.
        job_finished(int job_id, str status, str error): the worker has returned;
            ``status`` is done / failed / cancelled; ``job_id`` is ``NO_JOB`` if the
            job never reached the history. ``is_running`` is already False here. Not
            emitted for a job let go by :meth:`abandon`.
        errored(str sentence): an unexpected exception ended a job (after the job was
            marked failed).
    """

    queue_changed = Signal()
    job_started = Signal(int)
    job_finished = Signal(int, str, str)
    errored = Signal(str)

    def __init__(
        self, store: JobStore, parent: QObject | None = None, *, device: str | None = None
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.device = device
        # No Qt parent on purpose: the worker holds the bridge while it runs, so it is
        # never deleted with the window under a job that still emits (bridge.py).
        self.bridge = JobBridge()
        self.bridge.job_started.connect(self._on_job_started)
        self._queue: list[QueuedJob] = []
        self._keys = itertools.count(1)
        self._worker = None
        self._control: Control | None = None
        self._done: threading.Event | None = None
        self._outcome: tuple[int, str, str] | None = None
        self._closing = False
        self._abandoned = False
        self.current_job_id: int | None = None
        self.started_at: float | None = None  # time.time() when the worker started

    # ------------------------------------------------------------------ queue
    @property
    def is_running(self) -> bool:
        """Whether a worker is running a job (until ``job_finished`` is emitted)."""
        return self._worker is not None

    @property
    def worker_alive(self) -> bool:
        """Whether a job's thread still runs, also after :meth:`abandon` (any thread)."""
        done = self._done
        return done is not None and not done.is_set()

    @property
    def busy_with(self) -> str | None:
        """What the running job does that cannot be stopped part-way, or None.

        A phrase that reads after "the job is": "exporting the model to ONNX in step 3
        of 4 (export)". None when no job runs or it is at a point where it can stop.
        """
        control = self._control
        return control.busy_with if control is not None else None

    @property
    def pending(self) -> list[QueuedJob]:
        """Recipes waiting, in the order they will run."""
        return list(self._queue)

    def submit(self, recipe: Recipe, *, rerun_from: tuple[int, int] | None = None) -> None:
        """Queue ``recipe``; it starts as soon as the runner is free.

        Raises:
            UserError: the recipe is invalid (checked now, so the caller can show the
                sentence next to what the user just did), or the runner is shut down.
        """
        if self._closing:
            raise UserError("The app is closing; the job was not started.")
        recipe.validate()
        self._queue.append(QueuedJob(next(self._keys), recipe, rerun_from=rerun_from))
        self.queue_changed.emit()
        if not self.is_running:
            QTimer.singleShot(0, self._start_next)

    def resume(self, plan: ResumePlan) -> None:
        """Queue the continuation of a recorded job (it keeps its row and folder).

        Raises:
            UserError: the same job is already queued to resume, or the runner is shut
                down.
        """
        if self._closing:
            raise UserError("The app is closing; the job was not resumed.")
        if any(q.resume is not None and q.resume.job_id == plan.job_id for q in self._queue):
            raise UserError(f"Job #{plan.job_id} is already queued to resume.")
        self._queue.append(QueuedJob(next(self._keys), plan.recipe, resume=plan))
        self.queue_changed.emit()
        if not self.is_running:
            QTimer.singleShot(0, self._start_next)

    def remove_queued(self, key: int) -> bool:
        """Take a waiting recipe off the queue; False if it already started."""
        for i, item in enumerate(self._queue):
            if item.key == key:
                del self._queue[i]
                self.queue_changed.emit()
                return True
        return False

    def cancel(self) -> None:
        """Ask the running job to stop (it ends "cancelled" within about a second)."""
        if self._control is not None:
            self._control.request_stop()

    # ------------------------------------------------------------------ running
    def _start_next(self) -> None:
        if self._closing or self.is_running or not self._queue:
            return
        item = self._queue.pop(0)
        self._control = Control()
        self._done = threading.Event()
        self._outcome = None
        self.current_job_id = None
        self.bridge.job_id = None
        self.started_at = time.time()
        self._worker = start_worker(
            _run_job,
            item.recipe,
            self.bridge,
            self._control,
            self.store,
            self._done,
            self.device,
            item.resume,
            item.rerun_from,
            returned=self._on_returned,
            errored=self._on_errored,
            warned=self._on_warned,
            finished=self._on_worker_finished,
        )
        self.queue_changed.emit()

    def _on_job_started(self, job_id: int) -> None:
        if self._abandoned:
            return
        self.current_job_id = job_id
        self.job_started.emit(job_id)

    def _on_returned(self, result: pipeline.PipelineResult) -> None:
        self._outcome = (result.job_id, result.status, result.error or "")

    def _on_errored(self, exc: BaseException) -> None:
        sentence = error_sentence(exc, "The job", hint=job_bug_hint(), logger=log)
        job_id = self.bridge.job_id
        if job_id is not None:
            try:
                if not self.store.get_job(job_id).is_final:
                    # On the GUI thread: one try, never a wait; a busy history gets
                    # the outcome from the kept file at the next start (H1).
                    self.store.finish(job_id, "failed", error=sentence, patience=0.0)
            except Exception:  # noqa: BLE001 - the history itself may be what broke
                log.exception("Could not mark job %s failed", job_id)
        self._outcome = (job_id if job_id is not None else NO_JOB, "failed", sentence)
        if not self._abandoned:
            self.errored.emit(sentence)

    def _on_warned(self, args: tuple) -> None:
        message, category = args[0], args[1]
        log.warning("%s in a job: %s", getattr(category, "__name__", "Warning"), message)

    def _on_worker_finished(self) -> None:
        outcome = self._outcome or (
            self.bridge.job_id if self.bridge.job_id is not None else NO_JOB,
            "failed",
            "the job ended without a result; see the log",
        )
        self._worker = None
        self._control = None
        self.current_job_id = None
        self.started_at = None
        if self._abandoned:
            # Nobody follows it any more; its own final status is in the history.
            log.info("Job %s ended after the window let it go: %s", outcome[0], outcome[1])
            return
        self.job_finished.emit(*outcome)
        # Orange3 rule: never start the next task from inside a "done" handler.
        QTimer.singleShot(0, self._start_next)

    # ------------------------------------------------------------------ closing
    def stop_for_close(self) -> None:
        """Stop for good without waiting: drop the queue, ask the running job to stop.

        ``job_finished`` follows once the worker has ended (the job records itself as
        cancelled at its next stop point, or done if nothing was left); no new job
        starts and :meth:`submit` refuses.
        """
        self._closing = True
        if self._queue:
            self._queue.clear()
            self.queue_changed.emit()
        self.cancel()

    def abandon(self) -> None:
        """Let the running job go because the app quits before it can stop.

        The job is marked interrupted unless it has already written its own final
        status, and the bridge is detached: whatever the job does from now on reaches no
        window, and ``job_finished`` is not emitted for it. If the process outlives the
        job after all, the job's own final status replaces "interrupted" (it is the
        truth: it did stop, or finish). The caller ends the process without waiting for
        the thread (``app.end_session``).
        """
        self.stop_for_close()
        if self._worker is None or self._abandoned:
            return
        self._abandoned = True
        self.bridge.detach()
        job_id = self.bridge.job_id
        busy = self.busy_with or "between stop points"
        if job_id is None:
            # Not in the history yet; if it gets there before the process ends, the
            # next start finds a dead process's job and marks it interrupted.
            log.warning("A starting job was left running as the app quit (%s)", busy)
            return
        log.warning("Job %s was left running as the app quit (%s)", job_id, busy)
        try:
            self.store.mark_interrupted(job_id)
        except Exception:  # noqa: BLE001 - quitting must go on
            log.exception("Could not mark job %s interrupted", job_id)

    def shutdown(self, timeout_s: float = 10.0) -> bool:
        """Stop for good: drop the queue, stop the running job and wait for it.

        Events keep being processed while waiting, so the job's last signals arrive and
        the window stays painted. The main window waits on ``job_finished`` instead (see
        ``qt/closing.py``), so that a job in a phase that cannot stop never blocks it;
        by then this returns at once.

        Returns:
            True when no worker is left running; False if the job did not stop within
            ``timeout_s`` or was abandoned before (see :meth:`abandon`).
        """
        self.stop_for_close()
        if self._worker is None or self._done is None:
            return True
        if self._abandoned:
            return False
        done = self._done
        deadline = time.monotonic() + timeout_s
        while not done.is_set() and time.monotonic() < deadline:
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            done.wait(0.02)
        if not done.is_set():
            log.warning("Job %s did not stop within %.0f s", self.bridge.job_id, timeout_s)
            self.abandon()
            return False
        # The function returned; superqt emits returned/finished right after it.
        grace = time.monotonic() + 5.0
        while self._worker is not None and time.monotonic() < grace:
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            threading.Event().wait(0.005)
        return True
