"""Render the application icon into the hicolor theme's sizes.

    python packaging/render_icons.py

The window icon, ``resources/icons/slimpajama.svg``, is the one drawing: it is copied
to ``packaging/icons/hicolor/scalable/apps/<app id>.svg`` and rendered with Qt's SVG
renderer to ``packaging/icons/hicolor/<N>x<N>/apps/<app id>.png`` for every size in
``bundle_contents.ICON_SIZES``. The PNGs are committed; run this again after changing
the SVG (tests/qt/test_bundle_files.py checks that the copies match it).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bundle_contents as bc  # noqa: E402


def render(svg: Path, size: int, out: Path) -> None:
    """Write ``svg`` as a ``size`` x ``size`` PNG with a transparent background.

    Raises:
        ValueError: Qt cannot read ``svg``.
        OSError: the PNG could not be written.
    """
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"{svg} is not an SVG file Qt can read.")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(out), "PNG"):
        raise OSError(f"could not write {out}.")


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication(sys.argv[:1])
    scalable = bc.ICON_DIR / "hicolor" / "scalable" / "apps" / f"{bc.APP_ID}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bc.ICON_SVG, scalable)
    for size in bc.ICON_SIZES:
        render(bc.ICON_SVG, size, bc.icon_png(size))
        print(bc.icon_png(size).relative_to(bc.ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
