from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings

from slimpajama_gui.qt.app import configure_identity


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path):
    """QSettings of each test live in its own folder, never in the user's."""
    configure_identity()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings")
    )
    yield
