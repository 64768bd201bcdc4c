"""(c) The wizard's techniques page: a preset, or a custom chain of techniques.

Three columns of check boxes (fine-tune, sensitivity analysis, distill, drop layers |
prune heads, FFN, weights, vocabulary | quantize, measure). A preset fills them and sets the draft's
chain (:meth:`~slimpajama_gui.core.plan.draft.Draft.use_preset`); touching any of them
makes the chain the user's own (``"custom"``). Problems come from the draft.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from slimpajama_gui.core.model.shape import default_student_layers
from slimpajama_gui.core.plan.presets import (
    PRESET_BLURBS,
    PRESETS,
    keep_training_settings,
    preset_blurb,
    step_summary,
    step_title,
)
from slimpajama_gui.core.plan.search_step import Search
from slimpajama_gui.core.plan.static_step import DistillStatic
from slimpajama_gui.core.plan.steps import (
    Benchmark,
    Distill,
    Evaluate,
    FineTune,
    Prune,
    Quantize,
    Sensitivity,
    Step,
)
from slimpajama_gui.qt.wizard.custom_kept import CustomChoice, CustomKeeping
from slimpajama_gui.qt.wizard.numbers import NumberBox, number_boxes_in_use
from slimpajama_gui.qt.wizard.technique_boxes import (
    add_distill_box,
    add_finetune_box,
    add_layers_box,
    add_measure_box,
    add_prune_boxes,
    add_quantize_box,
    add_search_box,
    add_sensitivity_box,
)
from slimpajama_gui.qt.wizard.widgets import (
    WARNING_STYLE,
    PageField,
    WizardPage,
    error_label,
    escape,
    make_label,
    set_combo,
    show_text,
)

if TYPE_CHECKING:
    from slimpajama_gui.qt.wizard.shell import CompressWizard

#: The choice that runs a budgeted search instead of a fixed chain.
SEARCH = "search"
SEARCH_BLURB = (
    "Find the best within your accuracy budget: tries distilled students, pruned heads and "
    "FFN neurons, vocabulary pruning and int8 (Optuna), keeps every trial as a result in "
    "Compare and returns the smallest or fastest model that stays within the budget on the "
    "eval split. Stopping, cancelling or running out of time returns the best found so far."
)


class TechniquesPage(CustomKeeping, WizardPage):
    """(c) What to do: a preset, or a custom chain of techniques."""

    def __init__(self, wizard: CompressWizard) -> None:
        super().__init__(
            wizard,
            "Techniques",
            "Pick a preset, or tick techniques to build your own chain. Steps run in this "
            "order: column by column, top to bottom.",
        )
        self._loading = False
        self._layers = 0  # layers the pickers show
        #: The custom chain while a preset or the search is chosen; Custom brings it back.
        self._custom: CustomChoice | None = None
        #: Custom chains an edit under a preset replaced, the latest last; the restore
        #: button brings them back one by one.
        self._earlier: list[CustomChoice] = []
        #: What the technique boxes said when a preset filled them.
        self._preset_shown: list[Step] | None = None

        self.preset_buttons: dict[str, QRadioButton] = {}
        self.preset_group = QButtonGroup(self)
        presets = QHBoxLayout()
        presets.addWidget(QLabel("Preset:"))
        for name in (*PRESETS, SEARCH, "custom"):
            text = "Find the best…" if name == SEARCH else name.capitalize()
            button = QRadioButton(text)
            tip = SEARCH_BLURB if name == SEARCH else PRESET_BLURBS.get(name, "")
            button.setToolTip(tip or "Choose the techniques yourself below.")
            self.preset_group.addButton(button)
            self.preset_buttons[name] = button
            presets.addWidget(button)
        presets.addStretch(1)
        self.restore_button = QPushButton("Restore my earlier custom settings")
        self.restore_button.clicked.connect(self.restore_earlier)
        # Its room is kept while it is hidden: the boxes below never move when it shows.
        policy = self.restore_button.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        self.restore_button.setSizePolicy(policy)
        self.restore_button.hide()
        presets.addWidget(self.restore_button)
        self.preset_buttons["balanced"].setChecked(True)
        self.description = make_label()
        self.description.setTextFormat(Qt.TextFormat.RichText)

        # the technique boxes, each with its knobs (technique_boxes)
        add_search_box(self)
        add_finetune_box(self)
        add_sensitivity_box(self)
        add_distill_box(self)
        self._show_student_kind()
        add_layers_box(self)
        add_prune_boxes(self)
        add_quantize_box(self)
        add_measure_box(self)

        columns = QHBoxLayout()
        for boxes, stretch in (
            ((self.finetune_box, self.sensitivity_box, self.distill_box, self.layers_box), 5),
            ((self.heads_box, self.ffn_box, self.magnitude_box, self.vocab_box), 4),
            ((self.quant_box, self.measure_box), 3),
        ):
            column = QVBoxLayout()
            for box in boxes:
                column.addWidget(box)
            column.addStretch(1)
            columns.addLayout(column, stretch)
        inner = QWidget()
        inner.setLayout(columns)
        self.scroll = QScrollArea()
        self.scroll.setWidget(inner)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)

        self.error = error_label()
        # Allowed but almost surely a slip (a distillation with no weight on the teacher).
        self.warning = make_label("", WARNING_STYLE)
        self.warning.hide()
        # The search's form sits at the top of the room the technique boxes take, the
        # rest of it empty below: with nothing else to stretch, every row grew with the
        # page, and a sentence appearing below shrank them all, moving the field being
        # typed in (and the next click's target) up by a hundred pixels.
        self.search_area = QWidget()
        search_layout = QVBoxLayout(self.search_area)
        search_layout.setContentsMargins(0, 0, 0, 0)
        search_layout.addWidget(self.search_box)
        search_layout.addStretch(1)
        self.search_area.hide()
        layout = QVBoxLayout(self)
        layout.addLayout(presets)
        layout.addWidget(self.description)
        layout.addWidget(self.search_area, 1)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(self.error)
        layout.addWidget(self.warning)
        self.preset_group.buttonToggled.connect(self._on_preset_toggled)
        for box in (self.finetune_box, self.distill_box, self.layers_box, self.heads_box,
                    self.ffn_box, self.magnitude_box, self.vocab_box, self.quant_box,
                    self.sensitivity_box):  # fmt: skip
            box.toggled.connect(self._on_edited)
        self.sensitivity_rows.valueChanged.connect(self._on_edited)
        for spin in (self.temperature, self.alpha_kd, self.hidden_mse, self.attention_mse,
                     self.heads_amount, self.ffn_amount, self.magnitude_amount,
                     self.tolerance, self.vocab_general, self.student_ffn, self.augment):  # fmt: skip
            spin.valueChanged.connect(self._on_edited)
        # First: which knobs show decides which typed numbers count.
        self.student_kind.currentIndexChanged.connect(self._show_student_kind)
        for combo in (self.heads_scope, self.ffn_scope, self.magnitude_scope,
                      self.magnitude_schedule, self.quant_method, self.quant_backend,
                      self.student_kind, self.static_storage):  # fmt: skip
            combo.currentIndexChanged.connect(self._on_edited)
        self.static_dims.valueChanged.connect(self._on_edited)
        for check in (self.per_channel, self.quant_embeddings, self.quant_embeddings4,
                      self.evaluate_check, self.benchmark_check):  # fmt: skip
            check.toggled.connect(self._on_edited)
        for spin in (self.search_budget, self.search_minutes):
            spin.valueChanged.connect(self._on_search_edited)
        self.search_objective.currentIndexChanged.connect(self._on_search_edited)
        self.student_picker.changed.connect(self._on_edited)
        self.keep_picker.changed.connect(self._on_edited)
        for box in self.findChildren(NumberBox):
            # Every keystroke: text that is no number in range changes no value.
            box.typed.connect(self._update)
        #: What each control shows before anyone touched it: a technique's defaults.
        self._defaults = self._control_values()
        self.draft.subscribe(self._on_draft_changed)

    # -- state -----------------------------------------------------------------------
    def preset(self) -> str:
        """``"fast"``, ``"balanced"``, ``"smallest"`` or ``"custom"``."""
        for name, button in self.preset_buttons.items():
            if button.isChecked():
                return name
        return "custom"

    def choose(self, name: str) -> None:
        """Select a preset (or ``"custom"``) as if its button were clicked."""
        self.preset_buttons[name].setChecked(True)

    def chain(self) -> list[Step]:
        """The steps chosen, with training settings still at their defaults."""
        return self.draft.steps_of_chain()

    def _search_steps(self) -> list[Step]:
        """Fine-tuning if the model needs a head, the search, then measure its pick."""
        search = Search(
            budget_points=float(self.search_budget.value()),
            time_budget_s=60.0 * float(self.search_minutes.value()),
            objective=self.search_objective.currentData(),
        )
        lead: list[Step] = [FineTune()] if self.draft.needs_finetune else []
        return [*lead, search, Evaluate(), Benchmark()]

    def _on_search_edited(self, *_args: Any) -> None:
        if not self._loading and self.preset() == SEARCH:
            self.draft.set_chain(SEARCH, self._search_steps())

    def is_static(self) -> bool:
        """Whether the distill box makes static embeddings rather than a layer student."""
        return self.student_kind.currentData() == "static"

    def _show_student_kind(self, *_args: Any) -> None:
        static = self.is_static()
        for widget in (self.static_note, self.static_form):
            widget.setVisible(static)
        for widget in (self.picker_label, self.student_picker, *self.state_knobs):
            widget.setVisible(not static)

    def _custom_steps(self, previous: Sequence[Step] | None = None) -> list[Step]:
        """The chain the technique boxes say, each step's training settings those of the
        same kind of step in ``previous`` (default: the draft's chain with the settings
        page's rows), so a change of technique never resets the epochs typed."""
        if previous is None:
            previous = self.draft.steps_with_settings()
        return keep_training_settings(self._boxes_steps(), list(previous))

    def _boxes_steps(self) -> list[Step]:
        """The steps the technique boxes say, training settings at their defaults."""
        steps: list[Step] = []
        if self.finetune_box.isChecked():
            steps.append(FineTune())
        if self.sensitivity_box.isChecked():
            steps.append(Sensitivity(rows=self.sensitivity_rows.value()))
        static = None
        if self.distill_box.isChecked() and self.is_static():
            # After any pruning (a pruned vocabulary makes a smaller table); nothing that
            # changes weights can follow it.
            static = DistillStatic(
                dims=self.static_dims.value(),
                storage=self.static_storage.currentData(),
                temperature=self.temperature.value(),
                alpha_kd=self.alpha_kd.value(),
            )
        elif self.distill_box.isChecked():
            steps.append(
                Distill(
                    student_layers=self.student_picker.selected(),
                    temperature=self.temperature.value(),
                    alpha_kd=self.alpha_kd.value(),
                    hidden_mse=self.hidden_mse.value(),
                    attention_mse=self.attention_mse.value(),
                    ffn_fraction=self.student_ffn.value() / 100,
                    augment=self.augment.value(),
                )
            )
        if self.layers_box.isChecked():
            steps.append(Prune(method="layers", keep_layers=self.keep_picker.selected()))
        if self.heads_box.isChecked():
            steps.append(Prune(method="heads", amount=self.heads_amount.value() / 100,
                               scope=self.heads_scope.currentData()))  # fmt: skip
        if self.ffn_box.isChecked():
            steps.append(Prune(method="ffn", amount=self.ffn_amount.value() / 100,
                               scope=self.ffn_scope.currentData()))  # fmt: skip
        if self.magnitude_box.isChecked():
            steps.append(
                Prune(
                    method="magnitude",
                    amount=self.magnitude_amount.value() / 100,
                    scope=self.magnitude_scope.currentData(),
                    schedule=self.magnitude_schedule.currentData(),
                )
            )
        if self.vocab_box.isChecked():
            steps.append(
                Prune(
                    method="vocabulary",
                    recovery_epochs=0.0,
                    keep_general=self.vocab_general.value(),
                )
            )
        if static is not None:
            steps.append(static)
        if self.quant_box.isChecked():
            steps.append(
                Quantize(
                    method=self.quant_method.currentData(),
                    per_channel=self.per_channel.isChecked(),
                    embeddings=self.quant_embeddings.isChecked(),
                    tolerance=self.tolerance.value(),
                    backend=self.quant_backend.currentData(),
                    embedding_bits=4 if self.quant_embeddings4.isChecked() else 8,
                )
            )
        if self.evaluate_check.isChecked():
            steps.append(Evaluate())
        if self.benchmark_check.isChecked():
            steps.append(Benchmark())
        return steps

    def problems(self) -> list[str]:
        """Sentences saying what is wrong with the current choice (empty: all fine):
        all of them at once, in page order and in the page's terms. A number typed out
        of range is its box's sentence: the draft's about the same value would say it
        again in the recipe's terms."""
        return self.page_problems(self.fields(), self.draft.issues("techniques"))

    def fields(self) -> list[PageField]:
        """The fields that set the chain's steps, step by step (the page's order: column
        by column, top to bottom), each with its label on the page."""
        out: list[PageField] = []
        for index, step in enumerate(self.draft.chain):
            title = step_title(step)
            for key, label, box in self._step_fields(step):
                where = label if label.startswith(title) else f"{title} — {label}"
                out.append(PageField(index, key, where, label, box))
        return out

    def _step_fields(self, step: Step) -> list[tuple[str, str, NumberBox | None]]:
        """``(recipe key, label, box)`` of each field that sets ``step``, in page order;
        a box's label is its own."""

        def box(key: str, number: NumberBox) -> tuple[str, str, NumberBox]:
            return key, number.label, number

        teacher = [box("temperature", self.temperature), box("alpha_kd", self.alpha_kd)]
        if isinstance(step, Search):
            return [box("budget_points", self.search_budget),
                    box("time_budget_s", self.search_minutes),
                    ("objective", "Objective", None)]  # fmt: skip
        if isinstance(step, Sensitivity):
            return [box("rows", self.sensitivity_rows)]
        if isinstance(step, Distill):
            return [("student_layers", "Teacher layers", None), *teacher,
                    box("hidden_mse", self.hidden_mse), box("attention_mse", self.attention_mse),
                    box("ffn_fraction", self.student_ffn), box("augment", self.augment)]  # fmt: skip
        if isinstance(step, DistillStatic):
            return [box("dims", self.static_dims), ("storage", "Storage", None), *teacher]
        if isinstance(step, Prune):
            amounts = {"heads": self.heads_amount, "ffn": self.ffn_amount,
                       "magnitude": self.magnitude_amount}  # fmt: skip
            if step.method in amounts:
                fields = [box("amount", amounts[step.method])]
                if step.method == "magnitude":
                    fields.append(("schedule", "Schedule", None))
                return fields
            if step.method == "vocabulary":
                return [box("keep_general", self.vocab_general)]
            return [("keep_layers", "Layers kept", None)]
        if isinstance(step, Quantize):
            return [("method", "Method", None), ("backend", "Backend", None),
                    ("per_channel", "Per-channel scales", None),
                    ("embeddings", "Quantize embeddings", None),
                    ("embedding_bits", "4-bit word embeddings", None),
                    box("tolerance", self.tolerance)]  # fmt: skip
        return []

    # -- reacting --------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802 (Qt override)
        info = self.draft.model
        layers = info.layers if info is not None else 0
        if layers != self._layers or not self.student_picker.buttons:
            self._layers = layers
            self._loading = True
            self.student_picker.set_layers(layers, default_student_layers(layers))
            self.keep_picker.set_layers(layers, default_student_layers(layers))
            self._loading = False
        self._enforce_finetune()
        if self.draft.needs_finetune:
            self.finetune_note.setText(
                "Required: this model has no classifier head for your labels yet, so the "
                "chain starts by training one."
            )
        else:
            self.finetune_note.setText("Trains the whole model on your data first.")
        if self.preset() == SEARCH:
            self.draft.set_chain(SEARCH, self._search_steps())
        elif self.preset() != "custom":
            self._apply_preset(self.preset())
        else:
            self.draft.set_chain("custom", self._custom_steps())

    def _enforce_finetune(self) -> None:
        """Keep fine-tuning ticked while the model needs it (no head for these labels)."""
        if self.draft.needs_finetune and not self.finetune_box.isChecked():
            loading, self._loading = self._loading, True
            self.finetune_box.setChecked(True)
            self._loading = loading

    def _on_preset_toggled(self, button: QRadioButton, checked: bool) -> None:
        if not checked or self._loading:
            return
        name = self.preset()
        if self.draft.preset == "custom" and name != "custom":
            # A preset fills the boxes with its own values. The user's are kept, not
            # asked about: a click on a preset is often just a look at what it does, and
            # a question at every such click would be in the way; Custom brings them
            # back as they were, as a desktop tool's presets keep a "Custom" entry.
            self._custom = self._save_custom()
        self._show_boxes_for(name)
        if name == SEARCH:
            self.draft.set_chain(SEARCH, self._search_steps())
        elif name != "custom":
            self._apply_preset(name)
        elif self._custom is not None:
            self._restore_custom(self._custom)
        else:
            self.draft.set_chain("custom", self._custom_steps())

    def _show_boxes_for(self, name: str) -> None:
        self.search_area.setVisible(name == SEARCH)
        self.search_box.setVisible(name == SEARCH)
        self.scroll.setVisible(name != SEARCH)

    def _apply_preset(self, name: str) -> None:
        steps = self.draft.use_preset(name)
        self._show_chain(steps)
        self._preset_shown = self._boxes_steps()

    def _show_chain(self, steps: Sequence[Step]) -> None:
        """Set the custom controls to show ``steps``, so Custom starts from the preset."""
        self._loading = True
        try:
            # A technique the chain leaves out shows its defaults, greyed out: what custom
            # values were left there are no part of this chain, and ticking it would
            # start from them. (Custom keeps those values apart, to bring them back.)
            self._set_controls(self._defaults)
            for picker in (self.student_picker, self.keep_picker):
                picker.set_selected(default_student_layers(self._layers))
            first = _first_of(steps)
            self.finetune_box.setChecked(first(FineTune) is not None or self.draft.needs_finetune)
            sensitivity = first(Sensitivity)
            self.sensitivity_box.setChecked(sensitivity is not None)
            if sensitivity is not None:
                self.sensitivity_rows.setValue(sensitivity.rows)
            distill = first(Distill)
            static = first(DistillStatic)
            self.distill_box.setChecked(distill is not None or static is not None)
            set_combo(self.student_kind, "static" if static is not None else "layers")
            if static is not None:
                self.static_dims.setValue(static.dims)
                set_combo(self.static_storage, static.storage)
                self.temperature.setValue(static.temperature)
                self.alpha_kd.setValue(static.alpha_kd)
            if distill is not None:
                self.student_picker.set_selected(
                    distill.student_layers or default_student_layers(self._layers)
                )
                self.temperature.setValue(distill.temperature)
                self.alpha_kd.setValue(distill.alpha_kd)
                self.hidden_mse.setValue(distill.hidden_mse)
                self.attention_mse.setValue(distill.attention_mse)
                self.student_ffn.setValue(100 * distill.ffn_fraction)
                self.augment.setValue(distill.augment)
            prunes = {s.method: s for s in steps if isinstance(s, Prune)}
            layers = prunes.get("layers")
            self.layers_box.setChecked(layers is not None)
            if layers is not None:
                self.keep_picker.set_selected(layers.keep_layers or [])
            for method, box, amount, scope in (
                ("heads", self.heads_box, self.heads_amount, self.heads_scope),
                ("ffn", self.ffn_box, self.ffn_amount, self.ffn_scope),
                ("magnitude", self.magnitude_box, self.magnitude_amount, self.magnitude_scope),
            ):
                step = prunes.get(method)
                box.setChecked(step is not None)
                if step is not None:
                    amount.setValue(100 * step.amount)
                    set_combo(scope, step.scope)
                    if method == "magnitude":
                        set_combo(self.magnitude_schedule, step.schedule)
            self.vocab_box.setChecked("vocabulary" in prunes)
            if "vocabulary" in prunes:
                self.vocab_general.setValue(prunes["vocabulary"].keep_general)
            quant = first(Quantize)
            self.quant_box.setChecked(quant is not None)
            if quant is not None:
                set_combo(self.quant_method, quant.method)
                set_combo(self.quant_backend, quant.backend)
                self.per_channel.setChecked(quant.per_channel)
                self.quant_embeddings.setChecked(quant.embeddings)
                self.quant_embeddings4.setChecked(quant.embedding_bits == 4)
                self.tolerance.setValue(quant.tolerance)
            self.evaluate_check.setChecked(first(Evaluate) is not None)
            self.benchmark_check.setChecked(first(Benchmark) is not None)
        finally:
            self._loading = False
        self._update()  # the boxes now in use, and what they hold, may have changed

    def _on_edited(self, *_args: Any) -> None:
        # 4-bit embeddings are an onnxruntime option (PyTorch's int8 embeddings have 8 bits)
        # for embeddings that are quantized at all; where it does not apply it is cleared.
        applies = (
            self.quant_backend.currentData() == "onnxruntime" and self.quant_embeddings.isChecked()
        )
        self.quant_embeddings4.setEnabled(applies)
        if not applies and self.quant_embeddings4.isChecked():
            self.quant_embeddings4.setChecked(False)  # re-enters _on_edited once
        if self._loading:
            return
        self._enforce_finetune()
        if self.preset() == SEARCH:
            return  # the technique boxes are hidden while the search is chosen
        if self.preset() != "custom":
            if self._boxes_steps() == self._preset_shown:
                return  # Enter in a field sends its value again: nothing changed
            # Changing a technique makes the chain the user's own, from the preset
            # shown. The custom chain kept before is not thrown away, nor asked about in
            # the middle of typing (a question there would take the keystrokes): the
            # restore button offers it back beside the presets, as an editor's undo bar
            # does, and restoring keeps this one in turn.
            if self._custom is not None:
                self._earlier.append(self._custom)
                self._custom = None
                self._show_restore()
            self._loading = True
            self.preset_buttons["custom"].setChecked(True)
            self._loading = False
        self.draft.set_chain("custom", self._custom_steps())

    def _on_draft_changed(self, parts: set[str]) -> None:
        if parts & {"chain", "model", "data"}:
            self._update()

    def _summary(self, index: int, step: Step, refused: set[tuple[int, str]]) -> str:
        # An empty layer list means "every second layer" in a recipe; here it means the
        # user un-pressed every button, which problems() reports.
        if (
            isinstance(step, Distill)
            and not step.student_layers
            and self.distill_box.isChecked()
            and not self.student_picker.selected()
        ):
            return "Distill into teacher layers: none selected"
        return step_summary(step, {key for at, key in refused if at == index})

    def refused_fields(self) -> set[tuple[int, str]]:
        """``(step index, key)`` of each number field that holds a value the page
        refuses: its box's own sentence, or the draft's about its key (an augmentation
        with no KD weight). The chain holds what such a box reads as, which would not
        run; the summary must not describe it."""
        in_use = set(number_boxes_in_use(self))
        said = {(p.step, p.field) for p in self.draft.issues("techniques")}
        return {
            (f.step, f.key)
            for f in self.fields()
            if f.box is not None
            and f.step is not None
            and ((f.box in in_use and f.box.problem()) or (f.step, f.key) in said)
        }

    def _update(self) -> None:
        preset = self.draft.preset
        refused = self.refused_fields()
        lines = " → ".join(self._summary(i, s, refused) for i, s in enumerate(self.draft.chain))
        lines = lines or "no steps"
        if preset == "custom":
            text = f"<b>Custom:</b> {escape(lines)}"
        elif preset == SEARCH:
            text = f"<b>{escape(SEARCH_BLURB)}</b>"
        else:
            text = f"<b>{escape(preset_blurb(preset, self.draft.chain))}</b><br>{escape(lines)}"
        notes = self.draft.preset_notes if preset != "custom" else []
        if notes:
            text += "<br><span style='color:#6b7785'>" + escape(" ".join(notes)) + "</span>"
        self.description.setText(text)
        # The text is shorter for a custom chain: keep the tallest height it has had so
        # the boxes below do not jump up under the pointer when a click makes it custom.
        width = self.description.width()
        if width > 0:
            tallest = max(self.description.minimumHeight(), self.description.heightForWidth(width))
            self.description.setMinimumHeight(tallest)
        show_text(self.error, "\n".join(self.problems()))
        show_text(self.warning, "\n".join(self.draft.warnings("techniques")))
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # noqa: N802 (Qt override)
        return not self.problems()


def _first_of(steps: Sequence[Step]) -> Callable[[type], Any]:
    def first(kind: type) -> Any:
        return next((s for s in steps if isinstance(s, kind)), None)

    return first
