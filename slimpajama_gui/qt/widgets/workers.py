"""Start a function on a thread-pool worker, and keep track of the workers a widget runs.

Every screen runs slow work (loading a model, scanning folders, reading the history) the
same way: a superqt worker with its handlers connected before it starts, kept in the
screen's :class:`WorkerSet` so ``busy()`` and closing know what still runs. An error
handler is always connected: without one, superqt re-raises the worker's exception on
the GUI thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QWidget
from superqt.utils import create_worker

log = logging.getLogger(__name__)


class WorkerSet:
    """The workers a widget has running: for ``busy()`` and for stopping them on close.

    A finished worker leaves the set by itself, so the set is exactly what still runs.
    """

    def __init__(self) -> None:
        self._workers: set = set()

    def track(self, worker) -> None:
        """Keep ``worker`` until it finishes."""
        self._workers.add(worker)
        worker.finished.connect(lambda w=worker: self._workers.discard(w))

    def __bool__(self) -> bool:
        return bool(self._workers)

    def __len__(self) -> int:
        return len(self._workers)

    def quit_all(self) -> None:
        """Ask every running worker to stop (generator workers stop at their next yield)."""
        for worker in list(self._workers):
            worker.quit()


class WorkerScreen(QWidget):
    """A screen that runs slow work on the thread pool.

    It owns a :class:`WorkerSet` (``self._workers``, passed to :func:`start_worker`),
    answers :meth:`busy`, and on :meth:`shutdown` (called by the main window before it
    closes, or by ``closeEvent``) stops listening and asks its workers to stop. Handlers
    check ``self._closing`` before touching widgets.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._workers = WorkerSet()
        self._closing = False

    def busy(self) -> bool:
        """Whether a worker of this screen still runs."""
        return bool(self._workers)

    def shutdown(self) -> None:
        """Stop listening to workers and ask them to stop; call before closing."""
        if self._closing:
            return
        self._closing = True
        self.on_shutdown()
        self._workers.quit_all()

    def on_shutdown(self) -> None:
        """Stop what would start new work (timers); called once, by :meth:`shutdown`."""

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.shutdown()
        super().closeEvent(event)


def _log_unhandled(exc: BaseException) -> None:
    log.error("A background task failed", exc_info=exc)


def start_worker(
    func: Callable[..., Any],
    *args: Any,
    workers: WorkerSet | None = None,
    returned: Callable[[Any], Any] | None = None,
    errored: Callable[[BaseException], Any] | None = None,
    yielded: Callable[[Any], Any] | None = None,
    finished: Callable[[], Any] | None = None,
    warned: Callable[[tuple], Any] | None = None,
    **kwargs: Any,
):
    """Run ``func(*args, **kwargs)`` on the thread pool and return its started worker.

    A generator function gives a generator worker: each ``yield`` reaches ``yielded``
    and is a point where :meth:`WorkerSet.quit_all` can stop it.

    Args:
        func: the work; runs on a worker thread, so it must not touch widgets.
        workers: the set to track the worker in (None: the caller keeps a reference).
        returned: called on the GUI thread with ``func``'s return value.
        errored: called on the GUI thread with the exception ``func`` raised; None logs
            it as a bug.
        yielded: called on the GUI thread with each yielded value.
        finished: called on the GUI thread last, whether it returned, raised or quit.
        warned: called on the GUI thread with each warning ``func`` issued, as the tuple
            of :func:`warnings.showwarning`'s arguments.

    Prefer bound methods to lambdas as handlers where the widget may be gone by then:
    Qt drops a call to a deleted object's method.
    """
    worker = create_worker(func, *args, _start_thread=False, _ignore_errors=True, **kwargs)
    if yielded is not None:
        worker.yielded.connect(yielded)
    if returned is not None:
        worker.returned.connect(returned)
    worker.errored.connect(errored if errored is not None else _log_unhandled)
    if warned is not None:
        worker.warned.connect(warned)
    if finished is not None:
        worker.finished.connect(finished)
    if workers is not None:
        workers.track(worker)
    worker.start()
    return worker


__all__ = ["WorkerScreen", "WorkerSet", "start_worker"]
