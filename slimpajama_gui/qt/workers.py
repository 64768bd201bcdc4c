"""Bookkeeping for the superqt workers a widget starts."""

from __future__ import annotations


class WorkerSet:
    """The workers a widget has running: for ``busy()`` and for stopping them on close.

    A finished worker leaves the set by itself, so the set is exactly what still runs.
    """

    def __init__(self) -> None:
        self._workers: set = set()

    def track(self, worker) -> None:
        self._workers.add(worker)
        worker.finished.connect(lambda w=worker: self._workers.discard(w))

    def __bool__(self) -> bool:
        return bool(self._workers)

    def quit_all(self) -> None:
        """Ask every running worker to stop (generator workers stop at their next yield)."""
        for worker in list(self._workers):
            worker.quit()
