"""Edit → Settings…: values round-trip through QSettings; the menu opens the dialog."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import QPoint, QRect, QSettings, Qt
from PySide6.QtGui import QKeySequence, QPalette
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QLabel

from slimpajama_gui.qt.settings_dialog import (
    KEY_DATA_DIR,
    KEY_DEVICE,
    KEY_THEME,
    KEY_THREADS,
    AppSettings,
    SettingsDialog,
    apply_startup_settings,
    apply_theme,
    load_settings,
)


@pytest.fixture(autouse=True)
def _system_theme_afterwards():
    yield
    apply_theme("system")


def _ok(dialog: SettingsDialog) -> None:
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()


def test_changed_values_are_stored_and_read_back(qtbot, tmp_path):
    dialog = SettingsDialog(cuda=False)
    qtbot.addWidget(dialog)
    assert dialog.current_values() == AppSettings()  # nothing stored yet: the defaults
    dialog.device.setCurrentIndex(dialog.device.findData("cpu"))
    dialog.threads.setValue(1)
    folder = tmp_path / "elsewhere"
    qtbot.keyClicks(dialog.data_dir, str(folder))
    dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
    assert dialog.data_dir_changed()
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        _ok(dialog)

    settings = QSettings()
    assert settings.value(KEY_DEVICE) == "cpu"
    assert int(settings.value(KEY_THREADS)) == 1
    assert settings.value(KEY_DATA_DIR) == str(folder)
    assert settings.value(KEY_THEME) == "dark"
    assert load_settings() == AppSettings("cpu", 1, str(folder), "dark")
    # Dark at once, even where the platform has no colour scheme of its own (offscreen).
    assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() < 100

    # A new dialog starts from what was stored.
    again = SettingsDialog(cuda=False)
    qtbot.addWidget(again)
    assert again.current_values() == AppSettings("cpu", 1, str(folder), "dark")
    assert not again.data_dir_changed()


def test_cancel_stores_nothing_and_defaults_restore(qtbot):
    dialog = SettingsDialog(cuda=False)
    qtbot.addWidget(dialog)
    dialog.threads.setValue(2)
    dialog.reject()
    assert QSettings().value(KEY_THREADS) is None

    QSettings().setValue(KEY_THEME, "light")
    dialog = SettingsDialog(cuda=False)
    qtbot.addWidget(dialog)
    dialog.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).click()
    assert dialog.current_values() == AppSettings()


def _type_threads(qtbot, dialog: SettingsDialog, text: str) -> None:
    """Replace what the CPU threads box holds by ``text`` and leave the box, as a user does."""
    dialog.threads.setFocus()
    dialog.threads.selectAll()
    qtbot.keyClicks(dialog.threads, text)
    qtbot.keyClick(dialog.threads, Qt.Key.Key_Tab)


def test_threads_out_of_range_stay_as_typed_and_keep_ok_off(qtbot):
    """A spin box took 0 to this machine's cores and put back its last value silently;
    the range is now a recipe's (1 to 1,024, or auto), and what is typed stays."""
    dialog = SettingsDialog(cuda=False)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)

    def type_threads(text: str) -> None:
        _type_threads(qtbot, dialog, text)

    type_threads("2000")
    assert dialog.threads.text() == "2000"
    assert dialog.error.isVisible() and dialog.error.text() == (
        "CPU threads: 2000 is too large; type a whole number from 0 (auto) to 1,024."
    )
    assert not ok.isEnabled()
    dialog.accept()  # Enter, or code: nothing is stored while it is refused
    assert dialog.isVisible() and QSettings().value(KEY_THREADS) is None
    type_threads("many")
    assert dialog.error.text() == (
        "CPU threads: 'many' is not a number; type a whole number from 0 (auto) to 1,024."
    )
    type_threads("64")  # more than this machine's cores, as a recipe may have
    assert not dialog.error.isVisible() and ok.isEnabled()
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        _ok(dialog)
    assert int(QSettings().value(KEY_THREADS)) == 64
    assert load_settings().threads == 64


def _cut_sentences(dialog: SettingsDialog) -> list[str]:
    """The texts on screen that the dialog shows shorter or narrower than they need."""
    cut = []
    for label in dialog.findChildren(QLabel):
        if not label.isVisible() or not label.text():
            continue
        need = label.sizeHint()
        if label.wordWrap():
            need.setHeight(label.heightForWidth(label.width()))
            need.setWidth(min(need.width(), label.width()))
        where = QRect(label.mapTo(dialog, QPoint(0, 0)), label.size())
        short = label.height() < need.height() or label.width() < need.width()
        if short or not dialog.rect().contains(where):
            cut.append(label.text())
    return cut


def test_every_sentence_stays_whole_when_the_threads_sentence_appears(qtbot):
    """With the threads sentence on screen, the window grew less than the sentence took
    and the data folder's note was squeezed to a cut-off line."""
    dialog = SettingsDialog(cuda=False)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    assert dialog.env_note.isVisible()  # the tests' own data folder: every note is shown
    assert _cut_sentences(dialog) == []
    height = dialog.height()

    _type_threads(qtbot, dialog, "2000")
    assert dialog.error.isVisible()
    assert _cut_sentences(dialog) == []
    # Not by dragging the window smaller either, nor narrower (more lines).
    dialog.resize(dialog.width(), 40)
    assert _cut_sentences(dialog) == []
    dialog.resize(dialog.minimumWidth(), dialog.height())
    assert _cut_sentences(dialog) == []
    dialog.resize(600, 40)

    # The sentence goes, and the window is as high as before it came.
    _type_threads(qtbot, dialog, "4")
    assert not dialog.error.isVisible()
    assert _cut_sentences(dialog) == [] and dialog.height() == height


def test_cuda_is_disabled_without_a_gpu(qtbot):
    QSettings().setValue(KEY_DEVICE, "cuda")  # stored on a machine that had one
    dialog = SettingsDialog(cuda=False)
    qtbot.addWidget(dialog)
    cuda = dialog.device.findData("cuda")
    assert not dialog.device.model().item(cuda).isEnabled()
    assert dialog.device.currentData() == "auto"
    enabled = SettingsDialog(cuda=True)
    qtbot.addWidget(enabled)
    assert enabled.device.model().item(cuda).isEnabled()
    assert enabled.device.currentData() == "cuda"


def test_theme_system_restores_the_palette_the_app_started_with(qtbot):
    window = QApplication.palette().color(QPalette.ColorRole.Window)
    apply_theme("dark")
    assert QApplication.palette().color(QPalette.ColorRole.Window) != window
    apply_theme("light")
    assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() > 180
    apply_theme("system")
    assert QApplication.palette().color(QPalette.ColorRole.Window) == window


def test_unreadable_values_fall_back_to_defaults():
    settings = QSettings()
    for key, value in ((KEY_DEVICE, "tpu"), (KEY_THREADS, "many"), (KEY_THEME, "neon")):
        settings.setValue(key, value)
    assert load_settings() == AppSettings()


def test_data_folder_applies_at_start_unless_the_environment_says(monkeypatch, tmp_path):
    QSettings().setValue(KEY_DATA_DIR, str(tmp_path / "stored"))
    apply_startup_settings()
    assert os.environ["SLIMPAJAMA_HOME"] != str(tmp_path / "stored")  # the test's own wins
    monkeypatch.delenv("SLIMPAJAMA_HOME")
    apply_startup_settings()
    assert os.environ["SLIMPAJAMA_HOME"] == str(tmp_path / "stored")


def test_edit_menu_opens_the_dialog(qtbot):
    from slimpajama_gui.qt.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.models_view.scan_finished, timeout=30_000):
        window.show()
    menus = {a.text(): a.menu() for a in window.menuBar().actions()}
    assert list(menus)[:3] == ["&File", "&Edit", "&View"]
    (action,) = [a for a in menus["&Edit"].actions() if a.text() == "&Settings…"]
    assert action.shortcut() == QKeySequence("Ctrl+,")
    action.trigger()
    dialog = window.findChild(SettingsDialog)
    assert dialog is not None and dialog.isVisible()
    dialog.threads.setValue(1)
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        _ok(dialog)
    assert int(QSettings().value(KEY_THREADS)) == 1
    assert window.statusBar().currentMessage() == "Settings saved"
