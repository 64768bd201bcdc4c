"""The shared Qt helpers: starting workers and turning exceptions into sentences."""

from __future__ import annotations

import logging

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.qt.widgets.errors import REPORT_HINT, error_sentence
from slimpajama_gui.qt.widgets.workers import WorkerSet, start_worker

TIMEOUT = 10_000


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

    with qtbot.waitSignal(
        start_worker(
            counting,
            3,
            workers=workers,
            yielded=got["yielded"].append,
            returned=got["returned"].append,
            finished=lambda: got["finished"].append(True),
        ).finished,
        timeout=TIMEOUT,
    ):
        assert workers  # running until it finishes
    qtbot.waitUntil(lambda: not workers, timeout=TIMEOUT)
    assert got == {"yielded": [0, 1, 2], "returned": ["done"], "finished": [True]}
    assert len(workers) == 0


def test_start_worker_hands_errors_to_the_handler_and_never_reraises(qtbot, caplog):
    errors: list[BaseException] = []

    def boom():
        raise RuntimeError("boom")

    worker = start_worker(boom, errored=errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=TIMEOUT)
    assert isinstance(errors[0], RuntimeError)
    # Without a handler the error is logged as a bug, not raised on the GUI thread.
    with caplog.at_level(logging.ERROR):
        worker = start_worker(boom)
        with qtbot.waitSignal(worker.finished, timeout=TIMEOUT):
            pass
    assert any("background task failed" in r.message for r in caplog.records)


def test_quit_all_stops_a_generator_worker_at_its_next_yield(qtbot):
    import threading

    workers = WorkerSet()
    gate = threading.Event()
    seen: list[int] = []

    def endless():
        i = 0
        while True:
            gate.wait(5)
            yield i
            i += 1

    worker = start_worker(endless, workers=workers, yielded=seen.append)
    workers.quit_all()
    gate.set()
    with qtbot.waitSignal(worker.finished, timeout=TIMEOUT):
        pass
    qtbot.waitUntil(lambda: not workers, timeout=TIMEOUT)
