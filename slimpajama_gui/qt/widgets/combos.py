"""A drop-down list whose closed box keeps both ends of a long name in view."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QStyle, QStyleOptionComboBox, QStylePainter


class ElidedComboBox(QComboBox):
    """A ``QComboBox`` that shortens its current text in the middle, with the whole text
    as its tooltip.

    Why: results are named ``"job › 02-distill"``; a narrow box cut at the right end
    showed ``"all-MiniLM-L6-v2-bal"`` for every result of a job, so two pickers holding
    different steps looked the same. The open list still shows whole names.
    """

    def __init__(self, parent=None, *, tip: str = "") -> None:
        super().__init__(parent)
        self._tip = tip
        self.currentIndexChanged.connect(self._update_tip)

    def _update_tip(self, *_args) -> None:
        parts = [self.currentText(), self._tip]
        self.setToolTip("\n".join(p for p in parts if p))

    def shown_text(self) -> str:
        """The current text as the closed box draws it (elided to fit)."""
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        field = self.style().subControlRect(
            QStyle.ComplexControl.CC_ComboBox, option, QStyle.SubControl.SC_ComboBoxEditField, self
        )
        return self.fontMetrics().elidedText(
            self.currentText(), Qt.TextElideMode.ElideMiddle, field.width()
        )

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt override)
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        option.currentText = self.shown_text()
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)
