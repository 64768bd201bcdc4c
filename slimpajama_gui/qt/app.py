"""QApplication set-up: identity, icon, theme, logging and the crash dialog."""

from __future__ import annotations

import logging
import sys
import traceback
from importlib.resources import files
from logging.handlers import RotatingFileHandler

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QMessageBox

from slimpajama_gui import __version__
from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.paths import log_file

log = logging.getLogger("slimpajama_gui")

ORGANIZATION = "SlimPajama"
APPLICATION = "SlimPajama Studio"


def app_icon() -> QIcon:
    return QIcon(str(files("slimpajama_gui.resources") / "icons" / "slimpajama.svg"))


def configure_identity() -> None:
    """Names that QSettings and QStandardPaths use; tests call this too."""
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    QCoreApplication.setApplicationVersion(__version__)


def configure_logging() -> None:
    handler = RotatingFileHandler(log_file(), maxBytes=2_000_000, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def install_excepthook() -> None:
    """Unexpected exceptions reach the user as a sentence; the traceback goes to the log.

    Without this, PySide6 prints the traceback to stderr and the user sees nothing.
    """

    def hook(exc_type, exc, tb):
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("Unhandled exception:\n%s", text)
        if QApplication.instance() is None:
            sys.__excepthook__(exc_type, exc, tb)
            return
        if isinstance(exc, UserError):
            message = str(exc)
        else:
            message = (
                f"Something went wrong: {exc_type.__name__}: {exc}\n\n"
                f"The app is still usable. The full report is in {log_file()}."
            )
        box = QMessageBox(QMessageBox.Icon.Critical, APPLICATION, message)
        box.setDetailedText(text)
        box.exec()

    sys.excepthook = hook


def run_app(argv: list[str]) -> int:
    configure_identity()
    QApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
    )
    app = QApplication(argv)
    # Fusion follows the system's light/dark colour scheme on every platform.
    app.setStyle("Fusion")
    app.setWindowIcon(app_icon())
    from slimpajama_gui.qt.settings_dialog import apply_startup_settings

    # Before logging: the data folder chosen in Settings decides where the log goes.
    apply_startup_settings()
    configure_logging()
    install_excepthook()

    from slimpajama_gui.qt.main_window import MainWindow

    window = MainWindow()
    window.show()
    return app.exec()
