"""Closing the main window while a job runs, in phases that can stop and ones that cannot.

A phase that cannot stop (ONNX export, saving, loading) is held open by a gate the test
controls, so nothing here depends on timing: the job waits inside the phase until the
test opens the gate.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QThreadPool, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from slimpajama_gui.core.jobs import pipeline, saving
from slimpajama_gui.core.paths import log_file
from slimpajama_gui.core.runtime.loading import open_model
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.techniques import onnx_export
from slimpajama_gui.qt import app as app_mod
from slimpajama_gui.qt.jobs_view import JobsView
from slimpajama_gui.qt.main_window import MainWindow

from .test_jobs import FINETUNE, long_job, make_recipe

TIMEOUT = 60_000
JOB_TIMEOUT = 180_000
#: What a worker emitting into deleted objects, or Qt tearing down under it, prints.
TEARDOWN_ERRORS = (
    "Signal source has been deleted",
    "already deleted",
    "QThread",
    "Traceback",
    "RuntimeError",
)
EXPORT = "  - type: export\n"
# The buttons of the question, as the user reads them.
WAIT_THEN_QUIT, QUIT_NOW = "Wait, then quit", "Quit now"
STOP_AND_QUIT, KEEP_RUNNING = "Stop and quit", "Keep running"


class Gate:
    """Holds the job inside one function until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def hold(self, fn):
        def held(*args, **kwargs):
            self.entered.set()
            # A safety net for a broken test only; the test opens the gate itself.
            self.opened.wait(300)
            return fn(*args, **kwargs)

        return held


@pytest.fixture
def gate():
    g = Gate()
    yield g
    g.opened.set()  # never leave a job thread waiting behind a failed test
    QThreadPool.globalInstance().waitForDone(JOB_TIMEOUT)


@pytest.fixture
def window(qtbot):
    win = MainWindow()
    win.show()
    qtbot.waitExposed(win)
    yield win
    if not _deleted(win):
        if hasattr(win, "closer"):
            win.closer.state = "closing"  # a failed test may have left a question open
        win.close()
        _delete(win)


def _deleted(obj) -> bool:
    import shiboken6

    return not shiboken6.isValid(obj)


def _delete(win: MainWindow) -> None:
    """What the end of ``app.run_app`` does to the window: it is gone, C++ side too."""
    win.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def close_and_answer(qtbot, win: MainWindow, answer: str) -> str:
    """Close the window as a user would, click ``answer`` in the question; its text."""
    seen: dict[str, str] = {}

    def click() -> None:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, QMessageBox) and widget.isVisible():
                seen["text"] = f"{widget.text()} {widget.informativeText()}"
                chosen = [b for b in widget.buttons() if b.text() == answer]
                # Any question at all gets answered, so an app that asks differently
                # fails on the text below rather than hanging here.
                fallback = widget.button(QMessageBox.StandardButton.Yes) or widget.buttons()[0]
                (chosen or [fallback])[0].click()
                return
        QTimer.singleShot(20, click)

    QTimer.singleShot(0, click)
    win.close()
    qtbot.waitUntil(lambda: "text" in seen, timeout=TIMEOUT)
    return seen["text"]


def leftovers(output: Path) -> list[str]:
    """Hidden entries beside and inside the output folder: scratch, staging, locks."""
    beside = [p.name for p in output.parent.iterdir() if p.name.startswith(".")]
    inside = [p.name for p in output.iterdir() if p.name.startswith(".")] if output.exists() else []
    return sorted(beside + inside)


def assert_complete_variant(folder: Path) -> None:
    model = open_model(folder).load_model()
    assert model is not None and (folder / "slimpajama.json").is_file()


def assert_no_teardown_errors(capfd, caplog) -> None:
    err = capfd.readouterr().err
    for text in TEARDOWN_ERRORS:
        assert text not in err, err
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not logged, logged


PHASES = {
    # phase: (what to hold, the recipe's steps, the phrase the question must contain)
    "export": (
        (onnx_export, "save_onnx_variant"),
        FINETUNE.format(epochs=1, max_steps=2) + EXPORT,
        "is exporting the model to ONNX in step 2 of 2 (export), which cannot be stopped part-way",
    ),
    "save": (
        (saving, "copy_tokenizer_files"),
        FINETUNE.format(epochs=1, max_steps=2),
        "is saving 01-finetune in step 1 of 1 (finetune), which cannot be stopped part-way",
    ),
    "loading": (
        (pipeline, "open_model"),
        FINETUNE.format(epochs=1, max_steps=2) + EXPORT,
        "is loading the model, which cannot be stopped part-way",
    ),
}


@pytest.mark.parametrize(
    ("phase", "answer", "status", "kept"),
    [
        # Allowed to finish the phase, the job stops at its next stop point...
        ("export", WAIT_THEN_QUIT, "cancelled", ["01-finetune"]),
        ("loading", WAIT_THEN_QUIT, "cancelled", []),
        # ...or completes, when the phase was the last thing it had to do.
        ("save", WAIT_THEN_QUIT, "done", ["01-finetune"]),
        # Quit now: the process ends while the job is still inside the phase.
        ("export", QUIT_NOW, "interrupted", ["01-finetune"]),
        ("save", QUIT_NOW, "interrupted", []),
    ],
)
def test_F5_every_phase_of_a_job_ends_with_a_true_status_when_the_window_closes(
    qtbot,
    window,
    gate,
    tiny_minilm,
    tmp_path,
    monkeypatch,
    capfd,
    caplog,
    phase,
    answer,
    status,
    kept,
):
    """``status`` and ``kept`` are what the history and the output folder say when the
    process ends right after the window (the app's normal exit)."""
    (module, name), steps, phrase = PHASES[phase]
    monkeypatch.setattr(module, name, gate.hold(getattr(module, name)))
    exits: list[int] = []
    monkeypatch.setattr(app_mod, "exit_now", exits.append, raising=False)
    # An error in the job thread after the window is gone (an emit on a deleted
    # object) would reach no window; catch it where it leaves the pipeline.
    escaped: list[BaseException] = []
    real_run = pipeline.run

    def run_recording_errors(*args, **kwargs):
        try:
            return real_run(*args, **kwargs)
        except BaseException as exc:
            escaped.append(exc)
            raise

    monkeypatch.setattr(pipeline, "run", run_recording_errors)
    win = window
    runner = win.jobs_view.runner
    store_path = win.jobs_view.store.path
    output = tmp_path / "out"
    with qtbot.waitSignal(runner.job_started, timeout=JOB_TIMEOUT) as started:
        win.jobs_view.submit(make_recipe(tiny_minilm, output, steps))
    job_id = started.args[0]
    qtbot.waitUntil(gate.entered.is_set, timeout=JOB_TIMEOUT)

    text = close_and_answer(qtbot, win, answer)
    assert f"Job #{job_id} {phrase}" in text, text

    if answer == WAIT_THEN_QUIT:
        # The window waits for the job, saying what for; it never ends it early.
        assert win.isVisible() and win.closer.waiting.isVisible()
        assert phrase.split(", which")[0].removeprefix("is ") in win.closer.waiting.labelText()
        with JobStore(store_path) as store:
            assert store.get_job(job_id).status == "running"
        gate.opened.set()
        qtbot.waitUntil(lambda: not win.isVisible(), timeout=JOB_TIMEOUT)
        assert not runner.worker_alive
        assert app_mod.end_session(win, 0) == 0 and not exits  # a normal exit
    else:
        # The window is gone at once; the history already says what is true when the
        # process ends now, and the process does end without waiting for the thread.
        qtbot.waitUntil(lambda: not win.isVisible(), timeout=TIMEOUT)
        assert runner.worker_alive
        with JobStore(store_path) as store:
            assert store.get_job(job_id).status == status
        app_mod.end_session(win, 0)
        assert exits == [0]
        assert variants(output) == kept  # the phase's own output is not there
    _delete(win)

    # Here the process lives on, unlike the app's: the job thread finishes the phase
    # with no window to emit to and records what it then did, which is the truth now.
    gate.opened.set()
    qtbot.waitUntil(lambda: not runner.worker_alive, timeout=JOB_TIMEOUT)
    QThreadPool.globalInstance().waitForDone(JOB_TIMEOUT)
    qtbot.wait(50)  # deliver whatever the thread queued last
    assert_no_teardown_errors(capfd, caplog)
    assert escaped == []
    with JobStore(store_path) as store:
        job = store.get_job(job_id)
    if status != "interrupted":
        assert job.status == status, (job.status, job.error)
        assert variants(output) == kept
    elif phase == "export":  # it stopped at the check after the export
        assert job.status == "cancelled" and variants(output) == kept
    else:  # the save was the last thing to do: it completed
        assert job.status == "done" and variants(output) == ["01-finetune"]
    if job.status == "cancelled":
        assert job.error.startswith("cancelled during")

    # On disk: the finished variants, complete, and nothing half-written.
    for name in variants(output):
        assert_complete_variant(output / name)
    assert leftovers(output) == []


def variants(output: Path) -> list[str]:
    """The visible entries of the output folder: the variants a user sees."""
    if not output.exists():
        return []
    return sorted(p.name for p in output.iterdir() if not p.name.startswith("."))


def test_F5_quit_now_ends_the_process_at_once_and_the_next_start_clears_the_step(
    qtbot, tiny_minilm, tmp_path
):
    """The real thing, in a child process: quit during an export that never ends."""
    output = tmp_path / "out"
    steps = FINETUNE.format(epochs=1, max_steps=2) + EXPORT
    recipe = (
        f"name: quit-now\nmodel: {tiny_minilm}\ndataset:\n  train: demo\n"
        f"  labels: [negative, positive]\n  max_length: 48\noutput: {output}\nsteps:\n{steps}"
    )
    script = tmp_path / "quit_now.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            import threading
            from pathlib import Path

            from PySide6.QtCore import QTimer
            from PySide6.QtWidgets import QApplication

            from slimpajama_gui.core.techniques import onnx_export
            from slimpajama_gui.core.plan.recipe import recipe_from_yaml
            from slimpajama_gui.qt import app as app_mod
            from slimpajama_gui.qt.settings_dialog import apply_startup_settings

            def export_that_never_ends(model, tokenizer_src, folder, **kwargs):
                (Path(folder) / "model.onnx").write_bytes(b"half an export")
                threading.Event().wait()

            onnx_export.save_onnx_variant = export_that_never_ends

            app_mod.configure_identity()  # as app.run_app does
            qapp = QApplication(sys.argv[:1])
            apply_startup_settings()
            app_mod.configure_logging()
            app_mod.install_excepthook()
            from slimpajama_gui.qt.main_window import MainWindow

            window = MainWindow()
            window.show()
            window.jobs_view.submit(
                recipe_from_yaml({recipe!r}, source="quit.yaml", base_dir=Path({str(tmp_path)!r}))
            )

            def quit_during_export():
                if "ONNX" not in (window.jobs_view.runner.busy_with or ""):
                    QTimer.singleShot(50, quit_during_export)
                    return
                window.close()
                question = window.closer.question
                print("ASKED:", question.text(), flush=True)
                next(b for b in question.buttons() if b.text() == "Quit now").click()

            QTimer.singleShot(0, quit_during_export)
            sys.exit(app_mod.end_session(window, qapp.exec()))
            """
        )
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"))
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "which cannot be stopped part-way" in done.stdout, done.stdout
    for text in TEARDOWN_ERRORS:
        assert text not in done.stderr, done.stderr
        assert text not in log_file().read_text(encoding="utf-8")

    with JobStore(data_dir_history()) as store:
        (job,) = store.list_jobs()
    assert job.status == "interrupted", (job.status, job.error)
    assert sorted(p.name for p in output.iterdir()) == ["01-finetune"]
    assert_complete_variant(output / "01-finetune")
    assert any(name.startswith(".out.scratch-") for name in leftovers(output))

    # The next start clears the half-written export; the finished variant stays.
    view = JobsView()
    qtbot.addWidget(view)
    qtbot.waitUntil(lambda: leftovers(output) == [], timeout=TIMEOUT)
    assert sorted(p.name for p in output.iterdir()) == ["01-finetune"]
    assert view.model.rows()[0].status == "interrupted"
    assert view.shutdown(5)


def data_dir_history() -> Path:
    from slimpajama_gui.core.paths import data_dir

    return data_dir() / "history.sqlite3"


def test_F5_closing_while_training_asks_and_stops_the_job_or_keeps_it(
    qtbot, window, tiny_minilm, tmp_path, capfd, caplog
):
    win = window
    runner = win.jobs_view.runner
    with qtbot.waitSignal(runner.bridge.progress, timeout=JOB_TIMEOUT):
        win.jobs_view.submit(long_job(tiny_minilm, tmp_path / "long"))
    job_id = runner.current_job_id

    text = close_and_answer(qtbot, win, KEEP_RUNNING)
    assert f"Job #{job_id} is still running. Stop it and quit?" in text
    assert win.isVisible() and runner.is_running  # kept: nothing changed

    with qtbot.waitSignal(runner.job_finished, timeout=TIMEOUT) as finished:
        close_and_answer(qtbot, win, STOP_AND_QUIT)
    assert finished.args[:2] == [job_id, "cancelled"]
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=TIMEOUT)
    _delete(win)
    assert_no_teardown_errors(capfd, caplog)
    with JobStore(data_dir_history()) as store:
        assert store.get_job(job_id).status == "cancelled"
    assert leftovers(tmp_path / "long") == []


def test_closing_without_a_running_job_asks_nothing(qtbot, window):
    window.close()
    assert not window.isVisible()
    assert not [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox)]


def test_a_job_outcome_that_arrives_after_the_window_is_gone_is_dropped(qtbot, monkeypatch):
    """The sentence about a finished job is read on a worker; when the window is deleted
    before it comes back (quitting right after a job ends), nothing runs on the deleted
    window (pytest-qt fails the test on an exception in the event loop)."""
    from slimpajama_gui.qt import main_window as main_window_mod

    gate = threading.Event()

    def slow_failure(*_args):
        gate.wait(10)
        raise OSError("history busy")

    monkeypatch.setattr(main_window_mod, "job_outcome", slow_failure)
    win = MainWindow()
    with qtbot.waitSignal(win.models_view.scan_finished, timeout=60_000):
        win.show()
    assert QThreadPool.globalInstance().waitForDone(60_000)  # start-up loads are done
    qtbot.wait(200)
    win._on_job_finished(1, "done", "")  # the outcome worker now waits on the gate
    assert win.close()  # as the user quits: every screen stops listening to its workers
    win.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gate.set()
    assert QThreadPool.globalInstance().waitForDone(10_000)
    qtbot.wait(200)  # the worker's queued 'errored' signal is delivered (or dropped) here
