"""SLIMPAJAMA_HOME holds everything the app writes, its Qt settings included."""

from __future__ import annotations

from pathlib import Path


def test_a_data_folder_from_slimpajama_home_keeps_the_settings_too(tmp_path, monkeypatch):
    """A tryout with a throw-away SLIMPAJAMA_HOME wrote the window's layout into the
    user's shared Qt settings (~/.config); with the variable set they live in its folder."""
    from PySide6.QtCore import QSettings

    from slimpajama_gui.qt.app import keep_settings_in_home

    home = tmp_path / "portable"
    monkeypatch.setenv("SLIMPAJAMA_HOME", str(home))
    assert keep_settings_in_home() == home / "settings"
    settings = QSettings()
    settings.setValue("window/area", "jobs")
    settings.sync()
    assert Path(settings.fileName()).is_relative_to(home / "settings")
    assert Path(settings.fileName()).is_file()
    monkeypatch.delenv("SLIMPAJAMA_HOME")
    assert keep_settings_in_home() is None
