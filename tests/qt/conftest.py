from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from typing import Any

import pytest
from PySide6.QtCore import QSettings, QThreadPool, QTimer
from PySide6.QtGui import QGuiApplication

from slimpajama_gui.qt.app import collect_garbage_on_gui_thread, configure_identity


@pytest.fixture(scope="session", autouse=True)
def gui_thread_garbage_collection(qapp):
    """As the app does: the cyclic collector runs on the GUI thread only (see
    :func:`~slimpajama_gui.qt.app.collect_garbage_on_gui_thread`)."""
    collect_garbage_on_gui_thread(qapp)
    yield
    # As the app does at exit: a worker still running (a window's start-up imports) when
    # the interpreter shuts down fails inside its import and emits into a deleted object.
    QThreadPool.globalInstance().waitForDone(60_000)
    qapp._slimpajama_gc.timer.stop()
    gc.enable()


@pytest.fixture(autouse=True)
def quick_double_click(qapp):
    """A double-click interval of 50 ms, so that a test waiting one out (the wizard's
    Next and Run ignore presses that soon after a page appears) waits little; a test
    about double-clicks sets its own."""
    hints = QGuiApplication.styleHints()
    before = hints.mouseDoubleClickInterval()
    hints.setMouseDoubleClickInterval(50)
    yield
    hints.setMouseDoubleClickInterval(before)


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path):
    """QSettings of each test live in its own folder, never in the user's."""
    configure_identity()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings")
    )
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Collect a test's windows on the GUI thread once its fixtures are gone.

    Left to the cyclic garbage collector, they are freed whenever some thread allocates:
    when that is a worker thread of the next test, PySide deletes the old widgets on the
    GUI thread while the worker deletes a QObject of its own, and the two wait on each
    other (Qt's object mutex and the GIL): the suite hung in test_presets_finish.
    """
    yield
    gc.collect()


class GuiProbe:
    """Shows that work ran off the GUI thread while the GUI thread kept handling events.

    Call :meth:`check_in` from inside the work (or wrap a function with :meth:`wrap`). On
    a worker thread it records the thread and waits until the GUI thread has run a timer
    slot twice after the check-in (twice: the first may come before the events posted
    just before the check-in are delivered), which it can only do while the work does
    not block it. No clock is read: a busy machine makes a test slower, never wrong. The
    wait is bounded (``wait_s``) only so that a blocked GUI thread fails the test instead
    of hanging it.

    Attributes:
        threads: the thread ident of every check-in.
        answered: per check-in, whether the GUI thread handled events meanwhile.
        look: called on the GUI thread while a check-in waits; what it returns is
            appended to ``seen`` (what the screen showed while the work was under way).
    """

    def __init__(self, wait_s: float = 60.0) -> None:
        self.gui_thread = threading.get_ident()  # created by the test, on the GUI thread
        self.threads: list[int] = []
        self.answered: list[bool] = []
        self.look: Callable[[], Any] | None = None
        self.seen: list[Any] = []
        self._wait_s = wait_s
        self._cond = threading.Condition()
        self._waiting = 0
        self._gui_events = 0
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._on_gui_event)
        self.timer.start()

    def _on_gui_event(self) -> None:
        with self._cond:
            if self._waiting:
                self._gui_events += 1
                if self.look is not None:
                    self.seen.append(self.look())
                self._cond.notify_all()

    def check_in(self) -> None:
        me = threading.get_ident()
        self.threads.append(me)
        if me == self.gui_thread:  # waiting here would wait for ourselves
            self.answered.append(False)
            return
        with self._cond:
            self._waiting += 1
            seen = self._gui_events
            ok = self._cond.wait_for(lambda: self._gui_events >= seen + 2, timeout=self._wait_s)
            self._waiting -= 1
        self.answered.append(ok)

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def probed(*args: Any, **kwargs: Any) -> Any:
            self.check_in()
            return fn(*args, **kwargs)

        return probed

    def assert_work_ran_off_the_gui_thread(self, calls: int | None = None) -> None:
        """Every check-in was on a worker and saw the GUI thread handle an event."""
        assert self.threads, "the work never ran"
        if calls is not None:
            assert len(self.threads) == calls, self.threads
        assert self.gui_thread not in self.threads, "the work ran on the GUI thread"
        assert all(self.answered), f"the GUI thread handled no event meanwhile: {self.answered}"


@pytest.fixture
def gui_probe(qtbot):
    probe = GuiProbe()
    yield probe
    probe.timer.stop()


@pytest.fixture(autouse=True)
def cancel_without_asking(monkeypatch):
    """Cancel asks first once a job has run a while (``CONFIRM_CANCEL_AFTER_S``); on a busy
    machine a test's job may run that long before its click, so Cancel acts at once in
    tests unless a test sets the threshold itself."""
    import math

    from slimpajama_gui.qt import job_actions

    monkeypatch.setattr(job_actions, "CONFIRM_CANCEL_AFTER_S", math.inf)
