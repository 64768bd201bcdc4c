"""The custom chain the Techniques page keeps while a preset is shown, so that nothing a
user typed is lost: Custom brings it back exactly as typed (a refused number too), and an
edit made under a preset keeps the chain it replaces behind "Restore my earlier custom
settings".

:class:`CustomKeeping` is a part of
:class:`~slimpajama_gui.qt.wizard.techniques_page.TechniquesPage` and reads its controls,
draft and buttons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import QCheckBox, QComboBox, QGroupBox, QWidget

from slimpajama_gui.core.plan.presets import step_summary
from slimpajama_gui.core.plan.steps import Step
from slimpajama_gui.qt.wizard.numbers import NumberBox
from slimpajama_gui.qt.wizard.widgets import LayerPicker

if TYPE_CHECKING:
    from slimpajama_gui.qt.wizard.techniques_page import TechniquesPage


@dataclass
class CustomChoice:
    """The custom chain as the user left it for a preset: what each control showed
    (a number as typed, refused or not), and the chain with its training settings."""

    controls: list[tuple[QWidget, Any]]
    chain: list[Step]


class CustomKeeping:
    """Keeps and restores the custom chain (see the module)."""

    def _custom_controls(self: TechniquesPage) -> list[QWidget]:
        """The controls that make up a custom chain, in the order they are put back:
        what enables the 4-bit embeddings box before it."""
        inner = self.scroll.widget()
        checks = [c for c in inner.findChildren(QCheckBox) if c is not self.quant_embeddings4]
        return [
            *inner.findChildren(LayerPicker),
            *inner.findChildren(QComboBox),
            *inner.findChildren(NumberBox),
            *(box for box in inner.findChildren(QGroupBox) if box.isCheckable()),
            *checks,
            self.quant_embeddings4,
        ]

    def _save_custom(self: TechniquesPage) -> CustomChoice:
        return CustomChoice(self._control_values(), self.draft.steps_with_settings())

    def _control_values(self: TechniquesPage) -> list[tuple[QWidget, Any]]:
        """What each custom control shows, a number as typed."""
        controls: list[tuple[QWidget, Any]] = []
        for control in self._custom_controls():
            if isinstance(control, LayerPicker):
                controls.append((control, control.selected()))
            elif isinstance(control, QComboBox):
                controls.append((control, control.currentIndex()))
            elif isinstance(control, NumberBox):
                controls.append((control, control.lineEdit().text()))
            else:
                controls.append((control, control.isChecked()))
        return controls

    def _restore_custom(self: TechniquesPage, saved: CustomChoice) -> None:
        """Show the custom chain as the user left it, and make it the draft's again."""
        self._custom = None
        self._loading = True
        try:
            self._set_controls(saved.controls)
            self._show_student_kind()
            self._enforce_finetune()
        finally:
            self._loading = False
        self.draft.set_chain("custom", self._custom_steps(saved.chain))

    def _set_controls(self: TechniquesPage, controls: Sequence[tuple[QWidget, Any]]) -> None:
        for control, value in controls:
            if isinstance(control, LayerPicker):
                control.set_selected(value)
            elif isinstance(control, QComboBox):
                control.setCurrentIndex(value)
            elif isinstance(control, NumberBox):
                control.lineEdit().setText(value)  # as typed, a refused value too
            else:
                control.setChecked(value)

    def restore_earlier(self: TechniquesPage) -> None:
        """Bring back the custom chain an edit under a preset replaced last; the custom
        chain it replaces now (shown, or kept while a preset is) is kept in its place,
        first in line, so repeated clicks go round them all and none is dropped."""
        if not self._earlier:
            return
        earlier = self._earlier.pop()
        current = self._save_custom() if self.preset() == "custom" else self._custom
        self._custom = None
        if current is not None:
            self._earlier.insert(0, current)
        self._loading = True
        self.preset_buttons["custom"].setChecked(True)
        self._loading = False
        self._show_boxes_for("custom")
        self._restore_custom(earlier)
        self._show_restore()
        self.wiz.note_edit()

    def _show_restore(self: TechniquesPage) -> None:
        """Show the restore button while a replaced custom chain is kept, saying which."""
        self.restore_button.setVisible(bool(self._earlier))
        if not self._earlier:
            return
        chain = " → ".join(step_summary(s) for s in self._earlier[-1].chain) or "no steps"
        more = len(self._earlier) - 1
        others = f" ({more} more kept)" if more else ""
        self.restore_button.setToolTip(
            f"Bring back the custom settings your edit replaced: {chain}.{others} The "
            "custom settings you have now are kept in turn, for this button to bring back."
        )
