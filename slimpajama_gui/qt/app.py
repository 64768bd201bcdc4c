"""QApplication set-up: identity, icon, theme, logging and the crash dialog."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from importlib.resources import files
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QSettings, Qt, QThreadPool
from PySide6.QtGui import QGuiApplication, QIcon
from PySide6.QtWidgets import QApplication, QMessageBox

from slimpajama_gui import __version__
from slimpajama_gui.core.paths import configure_file_log, log_file
from slimpajama_gui.qt.widgets.errors import error_sentence

log = logging.getLogger("slimpajama_gui")

ORGANIZATION = "SlimPajama"
APPLICATION = "SlimPajama Studio"
#: The freedesktop application id: names the installed .desktop file, the AppStream
#: component and the icon (packaging/linux/); Wayland matches windows to it.
DESKTOP_ID = "io.github.slimpajama.Studio"

#: How long short workers (a model scan, a prediction) may take to end after the window.
POOL_WAIT_MS = 30_000


def app_icon() -> QIcon:
    return QIcon(str(files("slimpajama_gui.resources") / "icons" / "slimpajama.svg"))


def configure_identity() -> None:
    """Names that QSettings and QStandardPaths use; tests call this too."""
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    QCoreApplication.setApplicationVersion(__version__)


def keep_settings_in_home() -> Path | None:
    """With ``SLIMPAJAMA_HOME`` set when the app starts (a portable install, a tryout, a
    test), its window and Settings values go to ``$SLIMPAJAMA_HOME/settings`` too.

    Why: the data folder alone did not isolate a session; the window's layout and the
    Settings dialog's values went to the user's shared Qt settings (``~/.config`` on
    Linux), so a throw-away folder still read and replaced them.

    Returns:
        The settings folder, or None when the variable is not set (the platform's place).
    """
    home = os.environ.get("SLIMPAJAMA_HOME")
    if not home:
        return None
    folder = Path(home) / "settings"
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    return folder


def configure_logging() -> None:
    configure_file_log(logging.INFO)


def install_excepthook() -> None:
    """Unexpected exceptions reach the user as a sentence; the traceback goes to the log.

    Without this, PySide6 prints the traceback to stderr and the user sees nothing.
    """

    def hook(exc_type, exc, tb):
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        if QApplication.instance() is None:
            log.error("Unhandled exception:\n%s", text)
            sys.__excepthook__(exc_type, exc, tb)
            return
        message = error_sentence(
            exc,
            "An action",
            hint=f"The app is still usable. The full report is in {log_file()}.",
            logger=log,
        )
        box = QMessageBox(QMessageBox.Icon.Critical, APPLICATION, message)
        box.setDetailedText(text)
        box.exec()

    sys.excepthook = hook


def collect_garbage_on_gui_thread(app: QApplication) -> None:
    """Run Python's cyclic garbage collector on the GUI thread only, on a timer.

    Left automatic, a collection runs in whichever thread happens to allocate: a worker
    tokenizing 40,000 words then freed a closed dialog's widgets, PySide deleted them on
    the GUI thread while the worker deleted a QObject of its own, and the two waited on
    each other (Qt's object mutex and the GIL) until the app froze. pyqtgraph's
    ``GarbageCollector`` disables the automatic collector and collects every second on
    the GUI thread, by the same generation thresholds. Reference counting still frees
    everything that is not in a cycle at once, on any thread.
    """
    from pyqtgraph.util.garbage_collector import GarbageCollector

    # Kept on the application: its timer must live as long as the event loop.
    app._slimpajama_gc = GarbageCollector(interval=1.0)  # type: ignore[attr-defined]


def run_app(argv: list[str]) -> int:
    configure_identity()
    # Before the Settings values are read: they may set SLIMPAJAMA_HOME themselves.
    keep_settings_in_home()
    QApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
    )
    app = QApplication(argv)
    # Wayland compositors and docks find the installed entry's name and icon by it.
    QGuiApplication.setDesktopFileName(DESKTOP_ID)
    # Fusion follows the system's light/dark colour scheme on every platform.
    app.setStyle("Fusion")
    app.setWindowIcon(app_icon())
    collect_garbage_on_gui_thread(app)
    from slimpajama_gui.qt.settings_dialog import apply_startup_settings

    # Before logging: the data folder chosen in Settings decides where the log goes.
    apply_startup_settings()
    configure_logging()
    install_excepthook()

    from slimpajama_gui.qt.main_window import MainWindow

    window = MainWindow()
    window.show()
    return end_session(window, app.exec())


def end_session(window, code: int) -> int:
    """Leave after the event loop ended, never tearing Python down under a worker.

    A thread-pool thread still running Python code while the interpreter and Qt are torn
    down prints "Signal source has been deleted" or aborts ("QThread: Destroyed while
    thread is still running"). So the short workers are waited for here, while every
    object they might emit to still exists. A job the user let go with "Quit now"
    (``qt/closing.py``) is not waited for: it is already marked interrupted, and the
    process ends at once, as if killed; its half-written step is only staging, cleared
    at the next start.

    Returns:
        ``code``, when the normal exit is safe (otherwise the process ends here).
    """
    if window.jobs_view.runner.worker_alive:
        exit_now(code)
    elif not QThreadPool.globalInstance().waitForDone(POOL_WAIT_MS):
        log.warning("A worker did not end within %d s of closing", POOL_WAIT_MS // 1000)
        exit_now(code)
    return code


def exit_now(code: int) -> None:
    """End the process without waiting for threads or running destructors."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # closed or None
            stream.flush()
    os._exit(code)
