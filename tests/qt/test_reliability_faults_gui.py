"""GUI rows of the fault catalogue (docs/reliability.md F9, F10) and a quit right after
start (issue 14 kind 10). F5 is ``test_closing.py::test_F5_*``; the first F9 and F10
tests are in ``test_jobs.py``; the core rows in ``tests/core/test_reliability_faults.py``.
"""

from __future__ import annotations

import logging
import sqlite3

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QThreadPool, QTimer

from slimpajama_gui.core.jobs import pipeline
from slimpajama_gui.core.paths import configure_file_log, data_dir, log_file
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.qt.jobs_view import JobsView
from slimpajama_gui.qt.main_window import MainWindow

from .test_closing import TEARDOWN_ERRORS
from .test_jobs import JOB_TIMEOUT, evaluate_only

TIMEOUT = 60_000


@pytest.fixture
def view(qtbot):
    v = JobsView()
    qtbot.addWidget(v)
    v.show()
    yield v
    assert v.shutdown(timeout_s=30)


@pytest.mark.parametrize("after_ms", [0, 300, 1000])
def test_kind10_quitting_right_after_start_prints_and_logs_no_error(qtbot, capfd, caplog, after_ms):
    """The start-up workers (warm-up, model scan, history) are let go quietly when the
    window closes within a second of opening."""
    caplog.set_level(logging.INFO)
    win = MainWindow()
    win.show()
    qtbot.waitExposed(win)
    closed: list[bool] = []
    QTimer.singleShot(after_ms, lambda: closed.append(win.close()))
    qtbot.waitUntil(lambda: bool(closed), timeout=TIMEOUT)
    assert closed == [True] and not win.isVisible()
    # As app.run_app ends: the window goes, C++ side too, while workers may still run.
    win.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert QThreadPool.globalInstance().waitForDone(TIMEOUT)
    qtbot.wait(200)  # the workers' last queued signals are delivered
    err = capfd.readouterr().err
    for text in TEARDOWN_ERRORS:
        assert text not in err, err
    bad = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not bad, bad


# --------------------------------------------------------------------------- F9


def test_F9_a_bug_in_a_job_shows_a_sentence_naming_the_log_that_holds_the_traceback(
    view, qtbot, tiny_minilm, tmp_path, monkeypatch
):
    """With the app's log configured (as ``app.run_app`` does): the dialog's sentence
    names the log file, and that file holds the traceback."""

    def broken_run(recipe, callbacks, control, *, store, device=None):
        job_id = store.create_job(recipe.name, "name: broken\n", str(tmp_path / "broken"))
        store.mark_running(job_id)
        callbacks.on_job_start(job_id, recipe)
        raise RuntimeError("boom in the engine")

    monkeypatch.setattr(pipeline, "run", broken_run)
    handler = configure_file_log()
    try:
        with qtbot.waitSignal(view.runner.errored, timeout=JOB_TIMEOUT) as errored:
            view.submit(evaluate_only(tiny_minilm, tmp_path / "broken"))
        qtbot.waitUntil(lambda: not view.runner.is_running, timeout=JOB_TIMEOUT)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    sentence = errored.args[0]
    assert f"the log {log_file()} has the full report" in sentence
    written = log_file().read_text(encoding="utf-8")
    assert "Traceback" in written and "RuntimeError: boom in the engine" in written
    assert view.error_dialog is not None and str(log_file()) in view.error_dialog.text()
    view.error_dialog.close()


# --------------------------------------------------------------------------- F10


def test_F10_a_history_locked_at_start_is_told_and_the_view_still_opens(qtbot, tiny_minilm):
    path = data_dir() / "history.sqlite3"
    JobStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE jobs SET progress = 0")
    try:
        view = JobsView()
        qtbot.addWidget(view)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert view.banner.isVisibleTo(view)
    text = view.banner.label.text()
    assert "locked by another program" in text and "temporary history" in text
    assert view.store.path != path and path.exists()  # the locked file is left as it was
    assert view.model.rowCount() == 0
    assert view.shutdown(1)
