"""Number boxes that keep what was typed: a value out of range is a sentence, not a clamp.

A QSpinBox or QDoubleSpinBox holds only values inside its range and decimals: it drops
keystrokes beyond them, and when it loses focus it puts back the last value it held in
place of text it cannot take. Typing 1000 into Hidden MSE (0 to 100) left 100, and
Temperature 0 (from 0.5) went back to 2.0, without a word. :class:`NumberBox` keeps the
arrows, the wheel and the suffix but takes any text and leaves it as typed:
:meth:`NumberBox.value` is the number the text reads, :meth:`NumberBox.problem` the
sentence saying what is wrong with it (the field, the allowed range, what to type), and
:func:`number_problems` collects those of the boxes in use on a page, which the page
shows in its message area while Next stays off.

The allowed range is a :class:`~slimpajama_gui.core.plan.fields.Bounds`; for a recipe key
it is that key's own, from its step class (``Distill.bounds["temperature"]``), so the
wizard refuses exactly what the recipe does. A typical value is the arrows' step, never
a limit.
"""

from __future__ import annotations

import math
import sys

from PySide6.QtCore import Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QAbstractSpinBox, QDoubleSpinBox, QWidget

from slimpajama_gui.core.plan.fields import Bounds

#: What the spin box itself may hold: every finite number, so it never bounds the text.
_HELD = sys.float_info.max
#: Decimals the spin box keeps (it rounds its value to them); what it shows is separate.
_KEPT_DECIMALS = 15
#: The longest text quoted back in a sentence.
_QUOTED = 24


def format_number(value: float) -> str:
    """``4,096``, ``0.5``: a bound as a sentence writes it."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:g}"


class NumberBox(QDoubleSpinBox):
    """A spin box whose text is what the user typed; its range is checked, not imposed.

    Args:
        label: the field's name as the page shows it ("Hidden MSE"); sentences start
            with it.
        bounds: the allowed range, in the unit the box shows; an open end excludes the
            bound itself (a temperature is above 0; a share removed is above 0 and below
            100 %).
        value: the value shown at first.
        decimals: decimals shown for a value set in code (typed text is shown as typed).
        step: what the arrows, the wheel and the Up/Down keys add; they stay in range.
        whole: only whole numbers are allowed; :meth:`value` is then an int.
        special: text shown for, and read as, ``low`` ("auto" threads); ``low`` typed
            reads as it once the box is left (or Enter pressed).
        widest: the largest value the box is sized to show whole (default: the range's
            top); for a range far beyond the values people type (a loss weight up to
            1,000,000), so the box is not drawn wider than the page has room for. A
            longer number scrolls in the box, and is still allowed.
        singular: the suffix after a number written ``1`` (" point", where ``suffix``
            is " points"); "" when the suffix has no plural (" %", " min").
        trim: a value set in code (or stepped to) shows only the decimals it needs, up
            to ``decimals``: "3" and "0.5" epochs, where a weight reads "1.00" beside
            "0.50".
    """

    #: The text changed (every keystroke, and values set in code).
    typed = Signal()
    #: The user stepped the value (the arrows, the wheel, Up/Down); never code.
    stepped = Signal()

    def __init__(
        self,
        label: str,
        bounds: Bounds,
        value: float,
        *,
        decimals: int = 2,
        step: float = 1.0,
        suffix: str = "",
        tip: str = "",
        whole: bool = False,
        special: str = "",
        widest: float | None = None,
        singular: str = "",
        trim: bool = False,
    ) -> None:
        super().__init__()
        self.label = label
        self.bounds = bounds
        self.low, self.high = float(bounds.low), float(bounds.high)
        self.low_open, self.high_open = bounds.low_open, bounds.high_open
        self.whole = whole
        self.special = special
        self._widest = self.high if widest is None else min(float(widest), self.high)
        self._places = 0 if whole else decimals
        self._from_code = False
        self._plural, self._singular = suffix, singular
        self._trim = trim
        self.setDecimals(_KEPT_DECIMALS)
        self.setRange(-_HELD, _HELD)
        self.setSingleStep(step)
        self.setSuffix(suffix)
        self.setToolTip(tip)
        self.setKeyboardTracking(True)
        self.setValue(value)
        self.lineEdit().textChanged.connect(self.typed)
        self.lineEdit().textChanged.connect(self._fit_suffix)
        self.editingFinished.connect(self._show_special)

    # -- reading the text ------------------------------------------------------------
    def typed_text(self) -> str:
        """The text as typed, without the suffix (and any blanks around it)."""
        return self._strip(self.lineEdit().text())

    def _strip(self, text: str) -> str:
        text = text.strip()
        # Either form: the text may still end with the one its last number took.
        for suffix in sorted({self._plural.strip(), self._singular.strip()}, key=len, reverse=True):
            if suffix and text.endswith(suffix):
                return text[: -len(suffix)].strip()
        return text

    def unit(self, number_text: str) -> str:
        """The suffix after ``number_text``: "1 point", "2 points", "1.5 points"."""
        return self._singular if self._singular and number_text == "1" else self._plural

    def _fit_suffix(self, *_args: object) -> None:
        wanted = self.unit(self.typed_text())
        if self.suffix() != wanted:
            self.setSuffix(wanted)  # writes the text again, as typed, with the new suffix

    def _read(self, text: str | None = None) -> float | None:
        """The number ``text`` (default: the box's) reads as; None if it is none.

        Infinite when it is a number too large for a float (``1e400``).
        """
        text = self.typed_text() if text is None else self._strip(text)
        if self.special and text.lower() == self.special.lower():
            return self.low
        try:
            number = float(text.replace("_", ""))
        except ValueError:
            # The user's own way of writing numbers: "0,5" where the comma is decimal.
            number, ok = self.locale().toDouble(text)
            if not ok:
                return None
        return None if math.isnan(number) else number

    def value(self) -> float | int:  # type: ignore[override]
        """The number the text reads (an int for a whole-number box); where the text
        is no number, the last number it was."""
        number = self._read()
        if number is None or math.isinf(number):
            number = super().value()
        if self.whole and number.is_integer():
            return int(number)
        return number

    def range_text(self) -> str:
        """``above 0 and at most 1,000``, ``from 0 to below 100 %``; a whole number's
        open end is the next whole number in (``from 1 to 8,192``, not ``above 0``)."""
        low, low_open, high, high_open = self.low, self.low_open, self.high, self.high_open
        if self.whole and low_open and low.is_integer():
            low, low_open = low + 1, False
        if self.whole and high_open and high.is_integer():
            high, high_open = high - 1, False
        low_text = format_number(low) + (f" ({self.special})" if self.special else "")
        high_text = format_number(high) + self.unit(format_number(high))
        if low_open and high_open:
            return f"above {low_text} and below {high_text}"
        if low_open:
            return f"above {low_text} and at most {high_text}"
        if high_open:
            return f"from {low_text} to below {high_text}"
        return f"from {low_text} to {high_text}"

    def problem(self) -> str:
        """One sentence naming the field, the allowed range and what to type; "" when
        the text is a number in range."""
        text = self.typed_text()
        what = f"type a{' whole' if self.whole else ''} number {self.range_text()}"
        if not text:
            return f"{self.label} is empty; {what}."
        number = self._read()
        quoted = text if len(text) <= _QUOTED else text[:_QUOTED] + "…"
        if number is None:
            return f"{self.label}: '{quoted}' is not a number; {what}."
        shown = quoted + self.unit(quoted)
        if self.whole and math.isfinite(number) and not number.is_integer():
            return f"{self.label}: {shown} is not a whole number; {what}."
        if number < self.low or (self.low_open and number == self.low):
            return f"{self.label}: {shown} is too small; {what}."
        if number > self.high or (self.high_open and number == self.high):
            return f"{self.label}: {shown} is too large; {what}."
        return ""

    def _show_special(self) -> None:
        """Once the box is left (or Enter pressed), ``low`` typed reads as the special
        text ("0" as "auto"), as when set in code or reached with the arrows. Not while
        typing: Qt writes the text back on every keystroke, and the user may go on."""
        if self.special and self._read() == self.low and self.typed_text() != self.special:
            selected = self.lineEdit().hasSelectedText()
            self.lineEdit().setText(self.special + self.suffix())
            if selected:  # Enter selects the text; it stays selected
                self.selectAll()

    # -- the spin box's hooks --------------------------------------------------------
    def validate(self, text: str, pos: int) -> QValidator.State:  # noqa: N802 (Qt override)
        # Every text is taken: what is wrong with it is a sentence, not a lost keystroke.
        return QValidator.State.Acceptable

    def fixup(self, text: str) -> str:  # noqa: N802 (Qt override)
        return text

    def valueFromText(self, text: str) -> float:  # noqa: N802 (Qt override)
        number = self._read(text)
        if number is None or math.isinf(number):
            return super().value()  # no number it can hold: the value stays, the text too
        return number

    def textFromValue(self, value: float) -> str:  # noqa: N802 (Qt override)
        extreme = abs(value) >= _HELD
        if not self._from_code:
            # Qt writes the value back when the box loses focus or Enter is pressed:
            # the text stays as typed while it reads as that value, or as none it holds.
            number = self._read()
            if (
                number is None
                or math.isinf(number)
                or (not extreme and math.isclose(number, value, rel_tol=1e-12, abs_tol=1e-12))
            ):
                return self.typed_text()
        if extreme:  # Qt sizes the box by the texts of its range: the allowed range's
            value = self._widest if value > 0 else self.low  # (up to ``widest``)
        if self.special and value == self.low:
            return self.special
        if self.whole and float(value).is_integer():
            return str(int(value))
        if round(value, self._places) == value:
            text = f"{value:.{self._places}f}"
            if self._trim and "." in text:
                text = text.rstrip("0").rstrip(".")
            return text
        return f"{value:.12g}"

    def setValue(self, value: float) -> None:  # noqa: N802 (Qt API)
        """Show ``value`` (set in code, e.g. from a preset), formatted afresh."""
        # 12 significant digits drop binary noise: 100 * 0.29 is shown and read as 29.
        self._from_code = True
        try:
            super().setValue(float(f"{float(value):.12g}"))
        finally:
            self._from_code = False
        self._fit_suffix()
        self.typed.emit()  # the spin box writes its text with the editor's signals off

    def stepBy(self, steps: int) -> None:  # noqa: N802 (Qt override)
        # The arrows, the wheel and Up/Down step into the range, never out of it.
        number = self._read()
        if number is None or not math.isfinite(number):
            number = super().value()
        target = min(max(number + steps * self.singleStep(), self.low), self.high)
        if (self.low_open and target <= self.low) or (self.high_open and target >= self.high):
            return
        self.setValue(target)
        self.selectAll()
        self.stepped.emit()

    def stepEnabled(self) -> QAbstractSpinBox.StepEnabledFlag:  # noqa: N802 (Qt override)
        flags = QAbstractSpinBox.StepEnabledFlag.StepNone
        number = self._read()
        if number is None or number < self.high:
            flags |= QAbstractSpinBox.StepEnabledFlag.StepUpEnabled
        if number is None or number > self.low:
            flags |= QAbstractSpinBox.StepEnabledFlag.StepDownEnabled
        return flags


def number_boxes_in_use(root: QWidget) -> list[NumberBox]:
    """The :class:`NumberBox` es under ``root`` that are in use: shown (not hidden with
    the part of the page they belong to) and enabled (not in an unticked technique)."""
    return [
        box for box in root.findChildren(NumberBox) if box.isEnabled() and box.isVisibleTo(root)
    ]


def number_problems(root: QWidget) -> list[str]:
    """The sentences of the :class:`NumberBox` es under ``root`` that are in use."""
    return [text for box in number_boxes_in_use(root) if (text := box.problem())]
