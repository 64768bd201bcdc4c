"""Window sizes that fit the screen the window opens on."""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget


def fitted_size(widget: QWidget, width: int, height: int) -> QSize:
    """``width`` x ``height`` px, cut to the free area of the screen that ``widget`` (or
    its parent window) is on, and never below the widget's minimum size.

    A dialog that opens larger than a 960x640 screen is centred over the window with its
    edges off the screen, where its buttons cannot be reached.
    """
    anchor = widget.parentWidget() or widget
    screen = anchor.screen() if anchor is not None else None
    screen = screen or QGuiApplication.primaryScreen()
    size = QSize(width, height)
    if screen is not None:
        size = size.boundedTo(screen.availableGeometry().size())
    return size.expandedTo(widget.minimumSize())


__all__ = ["fitted_size"]
