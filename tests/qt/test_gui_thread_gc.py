"""Cyclic garbage is collected on the GUI thread, never in a worker that allocates.

A collection in a worker thread freed a closed window's widgets there and deadlocked
with the GUI thread (Qt's object mutex against the GIL); see
``slimpajama_gui.qt.app.collect_garbage_on_gui_thread``.
"""

from __future__ import annotations

import gc
import threading


class Cycle:
    """Two of these refer to each other; freeing them records the thread that did it."""

    freed_in: list[int] = []

    def __init__(self) -> None:
        self.other = self

    def __del__(self) -> None:
        Cycle.freed_in.append(threading.get_ident())


def test_a_worker_allocating_never_runs_the_cyclic_collector(qtbot):
    assert not gc.isenabled()  # the app's collector took over
    Cycle.freed_in.clear()
    Cycle()  # unreachable at once, but only a collection frees it

    kept: list[list[int]] = []

    def allocate() -> None:
        # Far past every generation threshold (kept alive, as a tokenizer's output is):
        # with automatic collection this thread would collect, and free the cycle.
        kept.extend([i] for i in range(200_000))

    worker = threading.Thread(target=allocate)
    worker.start()
    worker.join()
    assert Cycle.freed_in == []
    qtbot.waitUntil(lambda: Cycle.freed_in != [], timeout=10_000)  # the GUI timer's turn
    assert Cycle.freed_in == [threading.get_ident()]
