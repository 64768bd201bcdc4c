"""Drop-down lists of models: long names kept whole at both ends, and entries that are
listed but cannot be picked."""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QComboBox, QStyle, QStyleOptionComboBox, QStylePainter

#: What an entry for a model without a classifier head says after the model's name.
NO_HEAD = " — no classifier head"


def add_unpickable(combo: QComboBox, text: str, data: Any, reason: str) -> None:
    """Add an entry that is listed greyed out, with ``reason`` as its tooltip.

    Neither a click nor the arrow keys pick it, yet code may still make it current (a pair
    chosen elsewhere). Why listed at all: a model left out of a picker had the user
    looking for the model they had just added; greyed out, it says why and what to do.
    """
    combo.addItem(text, data)
    index = combo.count() - 1
    item = combo.model().item(index)  # a combo box's own model is a QStandardItemModel
    item.setFlags(item.flags() & ~(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable))
    combo.setItemData(index, reason, Qt.ItemDataRole.ToolTipRole)


def pickable(combo: QComboBox, index: int) -> bool:
    """Whether entry ``index`` of ``combo`` exists and the user could pick it."""
    model = combo.model()
    return 0 <= index < combo.count() and bool(
        model.flags(model.index(index, combo.modelColumn())) & Qt.ItemFlag.ItemIsEnabled
    )


class ElidedComboBox(QComboBox):
    """A ``QComboBox`` that shortens its current text in the middle, with the whole text
    as its tooltip.

    Why: results are named ``"job › 02-distill"``; a narrow box cut at the right end
    showed ``"all-MiniLM-L6-v2-bal"`` for every result of a job, so two pickers holding
    different steps looked the same. The open list still shows whole names.

    A caller that refills the box with its signals blocked calls :meth:`update_tip`
    afterwards: no ``currentIndexChanged`` reaches the box then, and an entry can change
    under an unchanged index (a model greyed out where it was).
    """

    def __init__(self, parent=None, *, tip: str = "") -> None:
        super().__init__(parent)
        self._tip = tip
        self.currentIndexChanged.connect(self.update_tip)

    def update_tip(self, *_args) -> None:
        """Make the tooltip name the current entry (and why it is greyed out, if it is)."""
        parts = [self.currentText(), self._tip]
        index = self.currentIndex()
        if index >= 0 and not pickable(self, index):
            parts.insert(1, str(self.itemData(index, Qt.ItemDataRole.ToolTipRole) or ""))
        self.setToolTip("\n".join(p for p in parts if p))

    def event(self, event: QEvent) -> bool:
        # A refill that forgot update_tip would otherwise show the previous model's name.
        if event.type() == QEvent.Type.ToolTip:
            self.update_tip()
        return super().event(event)

    def shown_text(self) -> str:
        """The current text as the closed box draws it (elided to fit)."""
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        field = self.style().subControlRect(
            QStyle.ComplexControl.CC_ComboBox, option, QStyle.SubControl.SC_ComboBoxEditField, self
        )
        text, metrics = self.currentText(), self.fontMetrics()
        if metrics.horizontalAdvance(text) > field.width():
            # Results of one model share a long head ("all-MiniLM-L6-v2-balanced-…",
            # "all-MiniLM-L6-v2-fast-…"): cut in the middle, every entry read
            # "all-MiniL…02-quantize". The part all entries share goes first.
            text = _without_shared_head(text, [self.itemText(i) for i in range(self.count())])
        return metrics.elidedText(text, Qt.TextElideMode.ElideMiddle, field.width())

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt override)
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        option.currentText = self.shown_text()
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)


#: Where a shared head may be cut: after one of these, not inside a word.
_BREAKS = "-_ ./›·"


def _without_shared_head(text: str, entries: list[str]) -> str:
    """``text`` with the head that every entry shares (up to a separator) replaced by
    "…"; ``text`` as it is when the entries share no such head or it is all of ``text``."""
    others = [e for e in entries if e]
    if len(others) < 2:
        return text
    head = os.path.commonprefix(others)
    cut = max(head.rfind(c) for c in _BREAKS) + 1
    if cut < 4 or cut >= len(text):
        return text
    return "…" + text[cut:]
