"""The one adapter between the engine and the screen: pipeline events → Qt signals.

:class:`JobBridge` implements :class:`~slimpajama_gui.core.jobs.pipeline.PipelineCallbacks`.
The pipeline calls its hooks on the worker thread; each hook only copies its arguments
into plain Python values and emits a signal. Because the bridge (a ``QObject``) lives in
the GUI thread and its receivers do too, Qt delivers every signal *queued*: the slots
run later on the GUI thread, in the order the events happened. Nothing else in the app
turns core events into signals, and the bridge itself never touches a widget.

A job can outlive the window (the app may quit while the job is inside a step that
cannot stop), so the bridge must never be a Qt child of a widget: emitting on a deleted
C++ object raises "Signal source has been deleted" on the worker thread. The runner
creates it without a parent and the worker holds a reference to it, so it lives exactly
as long as someone can emit on it; receivers that are deleted first are disconnected by
Qt. :meth:`JobBridge.detach` silences it for good when the window lets a job go.

Example:
    >>> bridge = JobBridge()  # doctest: +SKIP
    >>> bridge.logged.connect(charts.add_metrics)
    >>> pipeline.run(recipe, bridge, control)  # on a worker thread
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from slimpajama_gui.core.jobs.pipeline import PipelineCallbacks
from slimpajama_gui.core.plan.recipe import Recipe, Step


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """A copy the worker can no longer change; numpy/torch scalars become floats.

    The receiver runs later on another thread, so it must not share mutable state with
    the loop that produced the numbers.
    """
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, (bool, int, float, str)) or value is None:
            out[str(key)] = value
            continue
        try:
            number = float(value)  # numpy scalars, 0-d tensors
        except (TypeError, ValueError):
            # Nested values (a confusion matrix) are copied as lists of numbers.
            try:
                out[str(key)] = [list(map(int, row)) for row in value]
            except (TypeError, ValueError):
                out[str(key)] = str(value)
        else:
            out[str(key)] = number if math.isfinite(number) else math.nan
    return out


class JobBridge(QObject, PipelineCallbacks):
    """Pipeline callbacks as Qt signals; create it in the GUI thread.

    Signals (all delivered on the GUI thread):
        job_started(int job_id): the job row exists in the history and runs.
        message(str): a note for the user.
        warned(str): a warning (a valid setting that is costly or almost surely a slip).
        step_started(int index, str step_type, int count): step ``index`` of ``count``.
        progress(int index, int done, int total): units done in the current step.
        overall(float fraction, object remaining_s, bool measured): the job's progress
            weighted by step cost; ``remaining_s`` None until measured (core/jobs/progress.py).
        logged(int index, dict metrics): training metrics (loss terms, lr, step, ...).
        evaluated(int index, dict metrics): evaluation or benchmark figures.
        sensitivity_measured(int index, dict measurement): one measurement of a
            sensitivity step (kind, layer/head/name, loss_change, accuracy_change, kl,
            done, total).
        variant_saved(int index, str path, dict info): a variant was saved.
        step_finished(int index, dict summary): step ``index`` ended.
        finished(str status, str error): done / failed / cancelled; error "" if none.

    Attributes:
        job_id: the id of the job being run, set on the worker thread as soon as the
            pipeline has created it (so the runner knows it even if an exception
            arrives before the queued ``job_started``).
        detached: True after :meth:`detach`: every hook is then a no-op.
    """

    job_started = Signal(int)
    message = Signal(str)
    warned = Signal(str)
    step_started = Signal(int, str, int)
    progress = Signal(int, int, int)
    overall = Signal(float, object, bool)
    logged = Signal(int, dict)
    evaluated = Signal(int, dict)
    sensitivity_measured = Signal(int, dict)
    variant_saved = Signal(int, str, dict)
    step_finished = Signal(int, dict)
    finished = Signal(str, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.job_id: int | None = None
        self.detached = False

    def detach(self) -> None:
        """Emit nothing any more (GUI thread): the window no longer follows this job.

        A hook already past its check may still emit once; that event is queued and
        delivered to whatever receivers are still alive, or dropped with them.
        """
        self.detached = True

    # Every method below runs on the worker thread.

    def on_job_start(self, job_id: int, recipe: Recipe) -> None:
        self.job_id = job_id
        if not self.detached:
            self.job_started.emit(job_id)

    def on_message(self, text: str) -> None:
        if not self.detached:
            self.message.emit(str(text))

    def on_warning(self, text: str) -> None:
        if not self.detached:
            self.warned.emit(str(text))

    def on_step_start(self, index: int, step: Step, count: int) -> None:
        if not self.detached:
            self.step_started.emit(index, step.step_type, count)

    def on_progress(self, index: int, done: int, total: int) -> None:
        if not self.detached:
            self.progress.emit(index, int(done), int(total))

    def on_overall(self, fraction: float, remaining_s: float | None, measured: bool) -> None:
        if not self.detached:
            left = None if remaining_s is None else float(remaining_s)
            self.overall.emit(float(fraction), left, bool(measured))

    def on_log(self, index: int, metrics: dict[str, float]) -> None:
        if not self.detached:
            self.logged.emit(index, _plain(metrics))

    def on_eval(self, index: int, metrics: dict[str, Any]) -> None:
        if not self.detached:
            self.evaluated.emit(index, _plain(metrics))

    def on_sensitivity(self, index: int, measurement: dict[str, Any]) -> None:
        if not self.detached:
            self.sensitivity_measured.emit(index, _plain(measurement))

    def on_variant(self, index: int, path: Path, summary: dict[str, Any]) -> None:
        if self.detached:
            return
        # The saved info holds the whole recipe; the receivers need only the figures.
        info = {
            k: summary.get(k)
            for k in ("parameters", "nonzero_parameters", "weights_format", "step_index")
            if k in summary
        }
        info["metrics"] = copy.deepcopy(summary.get("metrics", {}))
        self.variant_saved.emit(index, str(path), info)

    def on_step_end(self, index: int, step: Step, summary: dict[str, Any]) -> None:
        if not self.detached:
            self.step_finished.emit(index, _plain(summary))

    def on_end(self, status: str, error: str | None) -> None:
        if not self.detached:
            self.finished.emit(status, error or "")
