"""Two panes side by side or one above the other, the layout of every main screen."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSplitter, QWidget


def two_panes(
    first: QWidget,
    second: QWidget,
    orientation: Qt.Orientation,
    *,
    stretch: tuple[int, int],
    sizes: tuple[int, int] | None = None,
) -> QSplitter:
    """A splitter holding ``first`` then ``second`` (left/right or top/bottom).

    Args:
        stretch: how the two panes share extra space when the window grows.
        sizes: starting sizes in pixels (the splitter scales them to fit); by default
            they follow ``stretch``.
    """
    splitter = QSplitter(orientation)
    splitter.addWidget(first)
    splitter.addWidget(second)
    for index, factor in enumerate(stretch):
        splitter.setStretchFactor(index, factor)
    if sizes is not None:
        splitter.setSizes(list(sizes))
    return splitter


__all__ = ["two_panes"]
