"""Write a PNG of each main area to a folder: ``python -m slimpajama_gui.qt.screenshots DIR``.

`make screenshots` runs this under Xvfb (a real X server, the xcb platform), so the
pictures are what a person sees. Settings and data go to a throw-away folder, so the
user's own window layout and history neither leak into the pictures nor get changed.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path


def _wait(app, predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "docs/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="slimpajama-shots-"))
    os.environ["SLIMPAJAMA_HOME"] = str(scratch / "home")
    os.environ.setdefault("HF_HUB_CACHE", str(scratch / "hf-cache"))

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from slimpajama_gui.qt.app import app_icon, configure_identity

    configure_identity()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(scratch / "settings")
    )
    app = QApplication(argv[:1])
    app.setStyle("Fusion")
    app.setWindowIcon(app_icon())

    from slimpajama_gui.qt.main_window import AREAS, MainWindow

    size = tuple(int(v) for v in os.environ.get("SHOT_SIZE", "1280x800").split("x"))
    window = MainWindow()
    window.resize(*size)
    window.show()
    done = []
    window.models_view.scan_finished.connect(done.append)
    if not _wait(app, lambda: bool(done), 60):
        print("screenshots: the model scan did not finish within 60 s", file=sys.stderr)
        return 1
    view = window.models_view
    view.select_path(next(i.path for i in view.model.infos() if i.source == "packaged"))
    suffix = os.environ.get("SHOT_SUFFIX", "")
    for area in AREAS:
        window.show_area(area.key)
        _wait(app, lambda: False, 0.4)  # let layouts and the plot settle
        screen = window.screen()
        shot = screen.grabWindow(window.winId()) if screen else None
        if shot is None or shot.isNull():
            shot = window.grab()
        path = out / f"{area.key}{suffix}.png"
        shot.save(str(path))
        print(f"wrote {path} ({shot.width()}x{shot.height()})")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
