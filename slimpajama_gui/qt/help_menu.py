"""What the Help menu shows: the keyboard shortcuts and the About box.

The shortcut list is read from the window's own actions and shortcuts when it opens, so
it cannot fall out of step with them. The About box names the versions of the libraries
whose behaviour decides the figures (for a bug report) and where the app keeps its files;
versions come from the installed packages' metadata, so nothing heavy is imported on the
GUI thread to show them.
"""

from __future__ import annotations

import html
from importlib import metadata

from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import QMainWindow, QMessageBox

from slimpajama_gui import __version__
from slimpajama_gui.core.paths import data_dir, log_file

#: Libraries named in the About box, in the order a bug report wants them.
LIBRARIES = ("torch", "transformers", "onnxruntime", "PySide6")


def shortcut_rows(window: QMainWindow) -> list[tuple[str, str]]:
    """(keys, what they do) for every menu action with a shortcut, then every other
    shortcut of the window that says what it does (its ``whatsThis``), in menu order."""
    rows: list[tuple[str, str]] = []
    for top in window.menuBar().actions():
        menu = top.menu()
        if menu is None:
            continue
        where = top.text().replace("&", "")
        for action in menu.actions():
            keys = action.shortcut()
            if isinstance(action, QAction) and not keys.isEmpty():
                what = action.text().replace("&", "").rstrip("…")
                rows.append(
                    (keys.toString(QKeySequence.SequenceFormat.NativeText), f"{where} › {what}")
                )
    for shortcut in window.findChildren(QShortcut):
        if shortcut.whatsThis():
            keys = shortcut.key().toString(QKeySequence.SequenceFormat.NativeText)
            rows.append((keys, shortcut.whatsThis()))
    return rows


def show_shortcuts(window: QMainWindow) -> QMessageBox:
    """Help › Keyboard shortcuts: a table of :func:`shortcut_rows` (returned for tests)."""
    cells = "".join(
        f"<tr><td style='padding-right:16px'><b>{html.escape(keys)}</b></td>"
        f"<td>{html.escape(what)}</td></tr>"
        for keys, what in shortcut_rows(window)
    )
    box = QMessageBox(window)
    box.setWindowTitle("Keyboard shortcuts")
    box.setText(f"<table>{cells}</table>")
    box.open()
    return box


def versions() -> list[tuple[str, str]]:
    """(package, installed version or "not installed") for :data:`LIBRARIES`."""
    out = []
    for name in LIBRARIES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "not installed"))
    return out


def about_text() -> str:
    """The About box's rich text: what the app is, versions, and where its files are."""
    libs = ", ".join(f"{name} {version}" for name, version in versions())
    return (
        f"<b>SlimPajama Studio {html.escape(__version__)}</b>"
        "<p>Make transformer text classifiers small and fast, and watch it happen.</p>"
        f"<p>Libraries: {html.escape(libs)}.</p>"
        f"<p>Results and job history: {html.escape(str(data_dir()))}<br>"
        f"Log: {html.escape(str(log_file()))}</p>"
    )
