"""The shared Qt helpers: starting workers and turning exceptions into sentences."""

from __future__ import annotations

import logging

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.qt.widgets.errors import REPORT_HINT, error_sentence
from slimpajama_gui.qt.widgets.workers import WorkerSet, start_worker

# Generous: the global thread pool may still be busy with workers of earlier tests.
TIMEOUT = 60_000


def test_a_user_error_is_its_own_sentence_and_is_not_logged(caplog):
    with caplog.at_level(logging.ERROR):
        text = error_sentence(UserError("data.tsv has no column 'text'."), "Reading the data")
    assert text == "data.tsv has no column 'text'."
    assert not caplog.records


def test_a_bug_names_what_failed_and_logs_the_traceback(caplog):
    try:
        raise KeyError("label")
    except KeyError as exc:
        with caplog.at_level(logging.ERROR):
            text = error_sentence(exc, "The batch run")
    assert text == f"The batch run failed (KeyError: 'label'). {REPORT_HINT}"
    assert caplog.records[-1].message == "The batch run failed"
    assert caplog.records[-1].exc_info is not None
    custom = error_sentence(ValueError("x"), "Saving", hint="See the log.")
    assert custom.endswith("(ValueError: x). See the log.")


def test_start_worker_delivers_results_and_progress_and_tracks_the_worker(qtbot):
    workers = WorkerSet()
    got: dict[str, list] = {"yielded": [], "returned": [], "finished": []}

    def counting(n):
        yield from range(n)
        return "done"

    # Handlers are connected before the worker starts, so none of its signals is missed.
    start_worker(
        counting,
        3,
        workers=workers,
        yielded=got["yielded"].append,
        returned=got["returned"].append,
        finished=lambda: got["finished"].append(True),
    )
    qtbot.waitUntil(lambda: bool(got["finished"]) and not workers, timeout=TIMEOUT)
    assert got == {"yielded": [0, 1, 2], "returned": ["done"], "finished": [True]}
    assert len(workers) == 0


def test_start_worker_hands_errors_to_the_handler_and_never_reraises(qtbot, caplog):
    errors: list[BaseException] = []

    def boom():
        raise RuntimeError("boom")

    start_worker(boom, errored=errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=TIMEOUT)
    assert isinstance(errors[0], RuntimeError)
    # Without a handler the error is logged as a bug, not raised on the GUI thread.
    with caplog.at_level(logging.ERROR):
        start_worker(boom)
        qtbot.waitUntil(
            lambda: any("background task failed" in r.message for r in caplog.records),
            timeout=TIMEOUT,
        )


def test_quit_all_stops_a_generator_worker_at_its_next_yield(qtbot):
    import threading

    workers = WorkerSet()
    gate = threading.Event()
    seen: list[int] = []
    ended: list[bool] = []

    def endless():
        i = 0
        while True:
            gate.wait(5)
            yield i
            i += 1

    start_worker(endless, workers=workers, yielded=seen.append, finished=lambda: ended.append(True))
    workers.quit_all()
    gate.set()
    qtbot.waitUntil(lambda: bool(ended) and not workers, timeout=TIMEOUT)


def test_a_window_opens_no_larger_than_the_screen_it_is_on(qtbot):
    # The wizard opened at 1040x740 on a 960x640 screen, centred over the window with
    # its Preset row and its buttons off the screen's edges.
    from PySide6.QtWidgets import QWidget

    from slimpajama_gui.qt.widgets.screens import fitted_size
    from slimpajama_gui.qt.wizard.shell import CompressWizard

    window = QWidget()
    qtbot.addWidget(window)
    free = window.screen().availableGeometry().size()
    window.setMinimumSize(300, 200)
    assert fitted_size(window, free.width() + 500, free.height() + 400) == free
    assert fitted_size(window, 400, 300).toTuple() == (400, 300)  # room: as asked
    assert fitted_size(window, 100, 100).toTuple() == (300, 200)  # never below the minimum
    wizard = CompressWizard(window)  # deleted with its parent
    assert wizard.width() <= max(free.width(), wizard.minimumWidth())
    assert wizard.height() <= max(free.height(), wizard.minimumHeight())
