"""The wizard's small widgets and the base class of its pages.

Shared by every page module: labels in the house styles, number fields
(:class:`~slimpajama_gui.qt.wizard.numbers.NumberBox`: a value out of range stays as
typed and is a sentence of the page) and combos set up the same way,
:class:`LayerPicker` (one toggle per encoder layer) and :class:`LabelBalance` (rows per
label as bars). :class:`WizardPage` gives a page the
draft it edits and the wizard's services (the thread pool), never another page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from slimpajama_gui.core.plan.fields import Bounds
from slimpajama_gui.qt.wizard.numbers import NumberBox, number_boxes_in_use

if TYPE_CHECKING:
    from slimpajama_gui.core.plan.draft import Draft, Problem
    from slimpajama_gui.qt.wizard.shell import CompressWizard

ERROR_STYLE = "color: #b3261e;"
WARNING_STYLE = "color: #8a5a00;"
#: A note greys with its group when that is off (an unticked technique), as plain labels do:
#: a fixed colour kept it looking active.
NOTE_STYLE = "QLabel { color: #5f6b78; } QLabel:disabled { color: #b8bec6; }"


class WizardPage(QWizardPage):
    """A page of :class:`~slimpajama_gui.qt.wizard.shell.CompressWizard`.

    ``self.draft`` is the job being planned (the page edits its own part and listens
    for the rest); ``self.wiz`` offers the shared services only: ``start_worker``,
    ``closing``, ``request_vocabulary_count`` and ``note_edit`` (the user made a choice
    no field's own signal says, e.g. a file picked in a dialog).
    """

    def __init__(self, wizard: CompressWizard, title: str, subtitle: str) -> None:
        super().__init__()
        self.wiz = wizard
        self.draft: Draft = wizard.draft
        self.setTitle(title)
        self.setSubTitle(subtitle)

    def validatePage(self) -> bool:  # noqa: N802 (Qt override)
        # QWizard.next() (keyboard, code) asks only this; an incomplete page stays put.
        return self.isComplete()

    def page_problems(self, fields: Sequence[PageField], issues: Sequence[Problem]) -> list[str]:
        """Every problem of the page at once, in page order: ``fields`` are the page's
        fields in the order the page shows them, ``issues`` the draft's problems for the
        page (:meth:`~slimpajama_gui.core.plan.draft.Draft.issues`).

        A field's sentences stand where the field is: its box's own (a number typed out
        of range, which the draft would say again in the recipe's terms), else the
        draft's about its key, worded in the page's terms (the page's labels, not the
        recipe's keys). The draft's sentences about the chain or the job as a whole come
        first; those about a key no field here sets follow their step's fields.
        """
        boxes = number_boxes_in_use(self)
        in_use = set(boxes)
        known = {(f.step, f.key) for f in fields}
        names: dict[int | None, dict[str, str]] = {}
        for f in fields:
            names.setdefault(f.step, {})[f.key] = f.label
        unplaced = [p for p in issues if (p.step, p.field) not in known]
        out = [p.text for p in unplaced if p.step is None]
        said_boxes: set[NumberBox] = set()
        flushed: set[int | None] = {None}
        for i, f in enumerate(fields):
            box = f.box if f.box in in_use else None
            sentence = box.problem() if box is not None else ""
            if sentence:
                if box not in said_boxes:  # one box may set a key of several steps
                    out.append(sentence)
                    said_boxes.add(box)
            elif box is None or box not in said_boxes:
                step_names = names.get(f.step, {})
                out += [
                    p.worded(f.where, step_names)
                    for p in issues
                    if (p.step, p.field) == (f.step, f.key)
                ]
            last_of_step = i + 1 == len(fields) or fields[i + 1].step != f.step
            if last_of_step and f.step not in flushed:
                out += [p.text for p in unplaced if p.step == f.step]
                flushed.add(f.step)
        out += [p.text for p in unplaced if p.step not in flushed]
        # A box no field names (none should be) still says what is wrong with it.
        out += [text for box in boxes if box not in said_boxes and (text := box.problem())]
        return list(dict.fromkeys(out))


@dataclass(frozen=True)
class PageField:
    """A field of a wizard page as its problems name it (:meth:`WizardPage.page_problems`).

    Attributes:
        step: the chain index of the step the field sets (None: the job's settings).
        key: the recipe key it sets (``alpha_kd``; ``epochs`` of a settings row).
        where: the name a sentence about it starts with (``Distill — KD weight``).
        label: its label on the page (``KD weight``), for a sentence naming it.
        box: its number box, if it is one: the box's own sentence stands for it.
    """

    step: int | None
    key: str
    where: str
    label: str
    box: NumberBox | None = None


# --------------------------------------------------------------------------- small widgets


#: Set on a widget :func:`watch_user_edits` has connected, so it is connected once.
_WATCHED = "slimpajamaWatchedForEdits"


def watch_user_edits(root: QWidget, edited: Callable[[], None]) -> None:
    """Call ``edited`` whenever the user changes a field under ``root``: types into a
    line or number field, steps a number, chooses in a combo, ticks or presses a
    checkable button. Only the user's signals are used, never those a value set in code
    sends, so filling a page (a preset, a loaded file's columns) is no edit.

    Call it again when fields were added under ``root``; each is connected once.
    """
    for widget in (root, *root.findChildren(QWidget)):
        if widget.property(_WATCHED):
            continue
        if isinstance(widget, NumberBox):
            widget.stepped.connect(edited)  # its typing: its QLineEdit, below
        elif isinstance(widget, QLineEdit):
            widget.textEdited.connect(lambda _text: edited())
        elif isinstance(widget, QComboBox):
            widget.activated.connect(lambda _index: edited())
        elif isinstance(widget, (QAbstractButton, QGroupBox)) and widget.isCheckable():
            widget.clicked.connect(lambda _checked=False: edited())
        else:
            continue
        widget.setProperty(_WATCHED, True)


def make_label(text: str = "", style: str | None = None, *, wrap: bool = True) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(wrap)
    if style:
        label.setStyleSheet(style)
    return label


def error_label() -> QLabel:
    label = make_label("", ERROR_STYLE)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setObjectName("error")
    label.hide()
    return label


def show_text(label: QLabel, text: str) -> None:
    label.setText(text)
    label.setVisible(bool(text))


def double_spin(label: str, bounds: Bounds, value: float, *, decimals: int = 2,
                step: float = 0.1, suffix: str = "", tip: str = "",
                widest: float | None = None, singular: str = "",
                trim: bool = False) -> NumberBox:  # fmt: skip
    """A number field named ``label`` (its sentences start with it) allowing ``bounds``
    (for a recipe key, the key's own: ``Distill.bounds["temperature"]``): a value outside
    stays as typed and is a problem of the page. ``step`` is what the arrows add;
    ``widest`` the largest value the box is sized for, ``singular`` the suffix after a
    1, ``trim`` whether a whole number drops its decimals (:class:`NumberBox`)."""
    box = NumberBox(label, bounds, value, decimals=decimals, step=step, suffix=suffix,
                    tip=tip, widest=widest, singular=singular, trim=trim)  # fmt: skip
    box.setMaximumWidth(110)
    return box


def int_spin(label: str, bounds: Bounds, value: int, *, step: int = 1, tip: str = "",
             special: str = "") -> NumberBox:  # fmt: skip
    """A whole-number field; ``special`` is the text of ``bounds.low`` ("auto")."""
    return NumberBox(label, bounds, value, step=step, tip=tip, whole=True, special=special)


def combo_box(items: Iterable[tuple[str, str]], tip: str = "") -> QComboBox:
    box = QComboBox()
    for value, text in items:
        box.addItem(text, value)
    box.setToolTip(tip)
    return box


def set_combo(box: QComboBox, value: Any) -> None:
    index = box.findData(value)
    if index >= 0:
        box.setCurrentIndex(index)


def group_box(title: str, tip: str) -> QGroupBox:
    box = QGroupBox(title)
    box.setCheckable(True)
    box.setChecked(False)
    box.setToolTip(tip)
    return box


def vbox(widget: QWidget) -> QVBoxLayout:
    layout = QVBoxLayout(widget)
    layout.setSpacing(4)
    return layout


def percent_spin(label: str, share: Bounds, value: float, tip: str) -> NumberBox:
    """A share shown in per cent: ``share`` is the recipe's range of the fraction (0 to
    1), ``value`` the per cent shown at first."""
    box = double_spin(label, share.per(0.01), value, decimals=0, step=5, suffix=" %", tip=tip)
    box.setMaximumWidth(90)
    return box


def scope_combo(what: str) -> QComboBox:
    return combo_box(
        [("global", "across the model"), ("layer", "in every layer")],
        f"Rank {what} across all layers (layers lose different amounts), or remove the same "
        "share from every layer",
    )


def amount_row(box: QGroupBox, verb: str, amount: NumberBox, scope: QComboBox) -> QVBoxLayout:
    row = QHBoxLayout()
    row.addWidget(QLabel(f"{verb}:"))
    row.addWidget(amount)
    row.addWidget(scope, 1)
    layout = vbox(box)
    layout.addLayout(row)
    return layout


class LayerPicker(QWidget):
    """A row of toggle buttons, one per encoder layer: pressed = kept.

    Drawn as a little diagram, ``emb → L0 L1 … → head``, so it reads as the model.
    """

    changed = Signal()

    #: Buttons per row; a 12-layer model gets two rows. Twelve in a row were wider than
    #: the techniques page's first column in a 960 px wide wizard.
    PER_ROW = 6

    _STYLE = (
        "QToolButton { min-width: 28px; min-height: 26px; border: 1px solid #9aa7b4;"
        " border-radius: 4px; background: #eef1f4; color: #7a8593; }"
        "QToolButton:checked { background: #2f7bbf; color: white; border-color: #1f5f99;"
        " font-weight: bold; }"
        # Off with an unticked technique: pale, as the group's other fields are, and the
        # pressed ones still told apart (a middle blue in white bold read as active).
        "QToolButton:disabled { background: #f4f5f7; color: #b8bec6; border-color: #d3d8de; }"
        "QToolButton:checked:disabled { background: #d9e4ef; color: #9fb0c2;"
        " border-color: #bccbdb; }"
    )

    def __init__(self, what: str = "kept", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.what = what
        self.buttons: list[QToolButton] = []
        self.setStyleSheet(self._STYLE)
        self._grid = QGridLayout()
        self._grid.setSpacing(3)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self.caption = make_label("", NOTE_STYLE)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(self._grid)
        layout.addWidget(self.caption)

    def set_layers(self, count: int, selected: Iterable[int]) -> None:
        """Rebuild for ``count`` layers with ``selected`` pressed."""
        chosen = set(selected)
        while self._grid.count():
            item = self._grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.buttons = []
        self._grid.addWidget(make_label("emb →", NOTE_STYLE, wrap=False), 0, 0)
        for i in range(count):
            button = QToolButton()
            button.setText(f"L{i}")
            button.setCheckable(True)
            button.setChecked(i in chosen)
            button.setToolTip(
                f"Encoder layer {i} (0 = nearest the embeddings): click to toggle whether it "
                f"is {self.what}."
            )
            button.toggled.connect(self._on_toggled)
            self.buttons.append(button)
            self._grid.addWidget(button, i // self.PER_ROW, 1 + i % self.PER_ROW)
        last = max(count - 1, 0)
        head = make_label("→ head", NOTE_STYLE, wrap=False)
        self._grid.addWidget(head, last // self.PER_ROW, 2 + last % self.PER_ROW)
        self._grid.setColumnStretch(self.PER_ROW + 2, 1)
        self._update_caption()

    def selected(self) -> list[int]:
        return [i for i, b in enumerate(self.buttons) if b.isChecked()]

    def set_selected(self, layers: Iterable[int]) -> None:
        chosen = set(layers)
        for i, button in enumerate(self.buttons):
            button.blockSignals(True)
            button.setChecked(i in chosen)
            button.blockSignals(False)
        self._update_caption()

    def _on_toggled(self, _checked: bool) -> None:
        self._update_caption()
        self.changed.emit()

    def _update_caption(self) -> None:
        chosen = self.selected()
        listed = ", ".join(f"L{i}" for i in chosen) or "none"
        self.caption.setText(
            f"{self.what.capitalize()}: {listed} ({len(chosen)} of {len(self.buttons)})"
        )


class LabelBalance(QWidget):
    """Rows per label of the training split, as bars."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.counts: dict[str, int] = {}

    def set_counts(self, counts: dict[str, int]) -> None:
        self.counts = dict(counts)
        while self.form.rowCount():
            self.form.removeRow(0)
        total = max(sum(counts.values()), 1)
        for name, count in list(counts.items())[:12]:
            bar = QProgressBar()
            bar.setRange(0, total)
            bar.setValue(count)
            bar.setFormat(f"{count:,} rows ({100 * count / total:.0f} %)")
            bar.setMaximumHeight(18)
            bar.setMaximumWidth(260)
            self.form.addRow(f"{name}:", bar)
        if len(counts) > 12:
            self.form.addRow(make_label(f"… and {len(counts) - 12} more labels", NOTE_STYLE))


def escape(text: str) -> str:
    """``text`` safe inside a rich-text label."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def same_path(a: Path | str, b: Path | str) -> bool:
    """Whether two paths name the same folder (resolved; compared as text if that fails)."""
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return str(a) == str(b)
