"""Edit → Settings…: the app's defaults, kept in QSettings.

What is stored (the keys are the module constants, so other widgets read the same):

- ``defaults/device`` — "auto", "cpu" or "cuda": the device a new job starts with.
- ``defaults/threads`` — CPU threads for a new job; 0 means PyTorch's default.
- ``paths/data_dir`` — where results, the job history and logs live; "" is the
  platform's usual place. Read once at start-up (:func:`apply_startup_settings`), since
  the history database is open while the app runs; ``SLIMPAJAMA_HOME`` still wins.
- ``appearance/theme`` — "system", "light" or "dark"; applied at once and at start-up.

Example:
    >>> values = load_settings()  # doctest: +SKIP
    >>> values.device, values.threads_or_none
    ('auto', None)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from slimpajama_gui.core.plan.fields import Bounds
from slimpajama_gui.core.plan.steps import THREADS
from slimpajama_gui.qt.wizard.numbers import NumberBox, number_problems
from slimpajama_gui.qt.wizard.widgets import error_label, show_text

log = logging.getLogger(__name__)

KEY_DEVICE = "defaults/device"
KEY_THREADS = "defaults/threads"
KEY_DATA_DIR = "paths/data_dir"
KEY_THEME = "appearance/theme"

DEVICES = ("auto", "cpu", "cuda")
THEMES = ("system", "light", "dark")
#: The environment variable that overrides the data folder (tests, portable installs).
HOME_ENV = "SLIMPAJAMA_HOME"


@dataclass
class AppSettings:
    """The values the dialog edits, with their defaults."""

    device: str = "auto"
    threads: int = 0  # 0 = PyTorch's default
    data_dir: str = ""  # "" = the platform's usual place
    theme: str = "system"

    @property
    def threads_or_none(self) -> int | None:
        """``threads`` as a recipe wants it (None for the default)."""
        return self.threads or None


def _int(value: object, default: int) -> int:
    # An INI file hands numbers back as text; a hand-edited one may hold anything.
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def load_settings(settings: QSettings | None = None) -> AppSettings:
    """The stored values; anything missing or unreadable falls back to its default."""
    settings = settings or QSettings()
    device = str(settings.value(KEY_DEVICE, "auto"))
    theme = str(settings.value(KEY_THEME, "system"))
    return AppSettings(
        device=device if device in DEVICES else "auto",
        threads=max(0, _int(settings.value(KEY_THREADS, 0), 0)),
        data_dir=str(settings.value(KEY_DATA_DIR, "") or ""),
        theme=theme if theme in THEMES else "system",
    )


def save_settings(values: AppSettings, settings: QSettings | None = None) -> None:
    settings = settings or QSettings()
    settings.setValue(KEY_DEVICE, values.device)
    settings.setValue(KEY_THREADS, int(values.threads))
    settings.setValue(KEY_DATA_DIR, values.data_dir)
    settings.setValue(KEY_THEME, values.theme)
    settings.sync()


def dark_palette() -> QPalette:
    """Fusion's colours for a dark theme (used where the platform offers no dark scheme)."""
    palette = QPalette(QColor("#353535"), QColor("#303030"))  # button, window; rest derived
    for role, color in (
        (QPalette.ColorRole.WindowText, "#e6e6e6"),
        (QPalette.ColorRole.Base, "#242424"),
        (QPalette.ColorRole.AlternateBase, "#2d2d2d"),
        (QPalette.ColorRole.ToolTipBase, "#404040"),
        (QPalette.ColorRole.ToolTipText, "#e6e6e6"),
        (QPalette.ColorRole.Text, "#e6e6e6"),
        (QPalette.ColorRole.ButtonText, "#e6e6e6"),
        (QPalette.ColorRole.BrightText, "#ff6b6b"),
        (QPalette.ColorRole.Link, "#6cb4ff"),
        (QPalette.ColorRole.Highlight, "#2f7fd0"),
        (QPalette.ColorRole.HighlightedText, "#ffffff"),
        (QPalette.ColorRole.PlaceholderText, "#8c8c8c"),
    ):
        palette.setColor(role, QColor(color))
    for role in (
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
    ):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7a7a7a"))
    return palette


_system_palette: QPalette | None = None


def apply_theme(theme: str) -> None:
    """Light, dark, or the system's colours, for every open and future window.

    The colour scheme is asked of the platform first (Qt >= 6.8; Fusion follows it).
    Platforms without one (plain X11, offscreen) ignore that request, so light and dark
    also set Fusion's palette directly; "system" restores the palette the app started with.
    """
    global _system_palette
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return
    if _system_palette is None:
        _system_palette = QPalette(app.palette())
    hints = QGuiApplication.styleHints()
    if theme == "light":
        hints.setColorScheme(Qt.ColorScheme.Light)
        app.setPalette(app.style().standardPalette())
    elif theme == "dark":
        hints.setColorScheme(Qt.ColorScheme.Dark)
        app.setPalette(dark_palette())
    else:
        hints.unsetColorScheme()
        app.setPalette(_system_palette)


def apply_startup_settings(settings: QSettings | None = None) -> AppSettings:
    """Apply what must be set before the main window exists; call once after QApplication.

    The data folder goes into ``SLIMPAJAMA_HOME`` unless that is already set (an explicit
    environment beats a stored preference, so tests and portable installs stay isolated).
    """
    values = load_settings(settings)
    if values.data_dir and not os.environ.get(HOME_ENV):
        os.environ[HOME_ENV] = values.data_dir
    apply_theme(values.theme)
    return values


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def default_data_dir_text() -> str:
    """The folder used when no data folder is set (shown as the placeholder)."""
    from slimpajama_gui.core.paths import data_dir

    return str(data_dir())


class SettingsDialog(QDialog):
    """Default device, CPU threads, data folder and theme.

    OK writes the values to QSettings and applies the theme; the data folder takes
    effect at the next start. :attr:`values` holds what was accepted. A number typed out
    of range stays as typed and is a sentence under the form, with OK off until fixed.

    Args:
        cuda: whether "CUDA" can be chosen; default asks torch.
        settings: where to read and write; default ``QSettings()``.
    """

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        cuda: bool | None = None,
        settings: QSettings | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self._settings = settings
        self.initial = load_settings(settings)
        self.values = self.initial
        self._fitted_height = 0  # the height _fit_height last chose

        self.device = QComboBox()
        self.device.addItem("auto — a GPU if there is one, else the CPU", "auto")
        self.device.addItem("CPU", "cpu")
        self.device.addItem("CUDA GPU", "cuda")
        self.device.setToolTip("Where a new job trains; latency is always measured on the CPU")
        if not (cuda_available() if cuda is None else cuda):
            item = self.device.model().item(2)
            item.setEnabled(False)
            tip = "No CUDA GPU is available here (torch.cuda.is_available() is False)."
            self.device.setItemData(2, tip, Qt.ItemDataRole.ToolTipRole)
        # A recipe's range of threads, and 0 for auto (a job without threads:).
        self.threads = NumberBox(
            "CPU threads", Bounds(0, THREADS.high), 0, whole=True, special="auto",
            tip="CPU threads a new job uses; auto = PyTorch's default; this machine has "
            f"{os.cpu_count() or 1}",
        )  # fmt: skip
        self.threads.setMinimumWidth(80)

        self.data_dir = QLineEdit()
        self.data_dir.setClearButtonEnabled(True)
        self.data_dir.setPlaceholderText(default_data_dir_text())
        self.data_dir.setToolTip("Empty: the usual place for app data on this system")
        self.browse = QPushButton("Browse…")
        self.browse.clicked.connect(self._browse)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.data_dir, 1)
        folder_row.addWidget(self.browse)
        self.data_note = QLabel(
            "Results, the job history and logs live here. A change takes effect the next "
            "time SlimPajama Studio starts; what is in the old folder stays there."
        )
        self.data_note.setWordWrap(True)
        # A word-wrapped label in a form asks for a narrow column; give it the field's width.
        self.data_note.setMinimumWidth(420)
        font = self.data_note.font()
        font.setPointSizeF(font.pointSizeF() * 0.92)
        self.data_note.setFont(font)
        self.env_note = QLabel()
        self.env_note.setWordWrap(True)
        self.env_note.setMinimumWidth(420)
        if os.environ.get(HOME_ENV):
            self.env_note.setText(
                f"<i>{HOME_ENV} is set ({os.environ[HOME_ENV]}); it overrides this setting.</i>"
            )
        else:
            self.env_note.hide()

        self.theme = QComboBox()
        for key, text in (("system", "Follow the system"), ("light", "Light"), ("dark", "Dark")):
            self.theme.addItem(text, key)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.addRow("Default device:", self.device)
        form.addRow("CPU threads:", self.threads)
        form.addRow("Data folder:", folder_row)
        form.addRow("", self.data_note)
        form.addRow("", self.env_note)
        form.addRow("Theme:", self.theme)
        self.error = error_label()

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        restore = self.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults)
        restore.clicked.connect(lambda: self.set_values(AppSettings()))
        self.threads.typed.connect(self._update)  # every keystroke, a number or not
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addStretch(1)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self.set_values(self.initial)
        self.resize(max(self.sizeHint().width(), 600), self.sizeHint().height())
        self._fit_height()

    def set_values(self, values: AppSettings) -> None:
        index = self.device.findData(values.device)
        if index < 0 or not self.device.model().item(index).isEnabled():
            index = 0  # a stored "cuda" on a machine without one reads as auto
        self.device.setCurrentIndex(index)
        self.threads.setValue(values.threads)
        self.data_dir.setText(values.data_dir)
        self.theme.setCurrentIndex(max(0, self.theme.findData(values.theme)))

    def current_values(self) -> AppSettings:
        return AppSettings(
            device=self.device.currentData(),
            threads=self.threads.value(),
            data_dir=self.data_dir.text().strip(),
            theme=self.theme.currentData(),
        )

    def data_dir_changed(self) -> bool:
        """Whether OK would move the data folder (at the next start)."""
        return self.current_values().data_dir != self.initial.data_dir

    def problems(self) -> list[str]:
        """What keeps OK off: a number typed out of range, one sentence each."""
        return number_problems(self)

    def _update(self) -> None:
        problems = self.problems()
        show_text(self.error, "\n".join(problems))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problems)
        self._fit_height()

    def _fit_height(self) -> None:
        """Make the dialog as tall as its wrapped sentences need at its current width.

        Why: Qt sizes a window from its labels' one-line heights, so when the threads
        sentence appeared the window grew by less than it took and the data folder's note
        was squeezed to a cut-off line. The height the sentences need is also the least
        the window can be dragged to; a height this method chose follows the content
        back down when the sentence goes, one the user chose is kept.
        """
        layout = self.layout()
        layout.activate()
        need = layout.totalHeightForWidth(self.width())
        if need <= 0:
            return
        self.setMinimumHeight(need)
        if self.height() < need or self.height() == self._fitted_height:
            self.resize(self.width(), need)
        self._fitted_height = need

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self._fit_height()  # narrower means more lines

    def accept(self) -> None:
        if self.problems():  # Enter, or code: what OK would do, OK being off
            return
        self.values = self.current_values()
        save_settings(self.values, self._settings)
        apply_theme(self.values.theme)
        super().accept()

    def _browse(self) -> None:
        start = self.data_dir.text().strip() or self.data_dir.placeholderText()
        folder = QFileDialog.getExistingDirectory(self, "Data folder", start)
        if folder:
            self.data_dir.setText(str(Path(folder)))
