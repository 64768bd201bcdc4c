"""(d) The wizard's settings page: training settings per step, device, threads, output.

One row per step that trains (epochs, learning rate, batch size), rebuilt from the
chain's own values when the chain's step kinds change. Every edit goes into the draft
(:meth:`~slimpajama_gui.core.plan.draft.Draft.set_training`,
:meth:`~slimpajama_gui.core.plan.draft.Draft.set_job`); the page shows the draft's
problems, the recipe's own checks included.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from slimpajama_gui.core.paths import data_dir
from slimpajama_gui.core.plan.draft import Training
from slimpajama_gui.core.plan.fields import Bounds
from slimpajama_gui.core.plan.presets import format_lr, slug, step_title, trains
from slimpajama_gui.core.plan.steps import THREADS, Benchmark, Prune, Step
from slimpajama_gui.qt.wizard.numbers import NumberBox
from slimpajama_gui.qt.wizard.widgets import (
    NOTE_STYLE,
    PageField,
    WizardPage,
    double_spin,
    error_label,
    int_spin,
    make_label,
    set_combo,
    show_text,
)

if TYPE_CHECKING:
    from slimpajama_gui.qt.wizard.shell import CompressWizard

LEARNING_RATES = ("1e-5", "2e-5", "3e-5", "5e-5", "1e-4", "2e-4", "5e-4")


@dataclass
class _TrainingRow:
    """The widgets of one training step's settings row."""

    index: int
    title: str
    epochs: NumberBox
    learning_rate: QComboBox
    batch_size: NumberBox


class SettingsPage(WizardPage):
    """(d) How to run: training settings per step, device, threads, output folder."""

    def __init__(self, wizard: CompressWizard) -> None:
        super().__init__(
            wizard,
            "Settings",
            "Training settings for each step that trains, and where the job runs and writes.",
        )
        self.rows: list[_TrainingRow] = []
        self._signature: tuple | None = None
        self._output_edited = False
        self._name_edited = False
        self._stamp = ""  # the default output folder's time, set as the page opens

        self.training_box = QGroupBox("Training")
        self.training_grid = QGridLayout(self.training_box)

        self.name_edit = QLineEdit()
        self.name_edit.setToolTip("How the job is listed in the Jobs area and its history")
        self.device = QComboBox()
        self.device.addItem("auto — a GPU if there is one, else the CPU", "auto")
        self.device.addItem("CPU", "cpu")
        self.device.addItem("CUDA GPU", "cuda")
        self.device.setToolTip("Where training runs; latency is always measured on the CPU")
        if not cuda_available():
            item = self.device.model().item(2)
            item.setEnabled(False)
            tip = "No CUDA GPU is available here (torch.cuda.is_available() is False)."
            item.setToolTip(tip)
            self.device.setItemData(2, tip, Qt.ItemDataRole.ToolTipRole)
        # The recipe's range of threads, and 0 for "auto" (no threads: in the recipe).
        self.threads = int_spin(
            "Threads", Bounds(0, THREADS.high), 0, special="auto",
            tip="CPU threads for PyTorch and for the latency benchmark; auto = PyTorch's "
            f"default (the benchmark then uses 2); this machine has {os.cpu_count() or 1}",
        )  # fmt: skip
        self.threads.setMinimumWidth(80)
        self.output_edit = QLineEdit()
        self.output_edit.setToolTip(
            "Folder that receives one sub-folder per saved variant. {data} is the app's data "
            "folder."
        )
        self.output_browse = QPushButton("Browse…")
        self.output_resolved = make_label("", NOTE_STYLE, wrap=False)
        self.output_resolved.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        output_row = QHBoxLayout()
        output_row.addWidget(self.output_edit, 1)
        output_row.addWidget(self.output_browse)
        run_box = QGroupBox("Job")
        form = QFormLayout(run_box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.addRow("Name:", self.name_edit)
        form.addRow("Device:", self.device)
        form.addRow("Threads:", self.threads)
        form.addRow("Output folder:", output_row)
        form.addRow("", self.output_resolved)
        self.error = error_label()
        layout = QVBoxLayout(self)
        layout.addWidget(self.training_box)
        layout.addWidget(run_box)
        layout.addStretch(1)
        layout.addWidget(self.error)

        self.name_edit.textEdited.connect(self._on_name_edited)
        self.output_edit.textEdited.connect(self._on_output_edited)
        self.output_edit.textChanged.connect(self._push_job)
        self.name_edit.textChanged.connect(self._push_job)
        self.device.currentIndexChanged.connect(self._push_job)
        self.threads.valueChanged.connect(self._push_job)
        self.threads.typed.connect(self._update)
        self.output_browse.clicked.connect(self._browse)
        self.draft.subscribe(self._on_draft_changed)
        self._push_job()

    # -- rows ------------------------------------------------------------------------
    def _rebuild_rows(self, steps: Sequence[Step]) -> None:
        while self.training_grid.count():
            item = self.training_grid.takeAt(0)
            if item.widget() is not None:
                item.widget().hide()  # gone now: its typed numbers no longer count
                item.widget().deleteLater()
        self.rows = []
        headers = ("Step", "Epochs", "Learning rate", "Batch size")
        for col, text in enumerate(headers):
            self.training_grid.addWidget(make_label(f"<b>{text}</b>", wrap=False), 0, col)
        line = 1
        for index, step in enumerate(steps):
            if not trains(step):
                continue
            is_prune = isinstance(step, Prune)
            title = step_title(step) + (" — recovery" if is_prune else "")
            # The ranges are the recipe keys' own, from the step's class.
            key = "recovery_epochs" if is_prune else "epochs"
            # "3" epochs, not "3.00"; a fraction shows as one (0.5, 0.25).
            epochs = double_spin(f"{title} — epochs", type(step).bounds[key], getattr(step, key),
                           step=0.5, trim=True,
                           tip="Passes over the training data; fractions allowed (0.5)"
                           + ("; 0 = no recovery training" if is_prune else ""))  # fmt: skip
            lr = QComboBox()
            lr.setEditable(True)
            lr.addItems(LEARNING_RATES)
            lr.setCurrentText(format_lr(step.learning_rate))
            lr.setToolTip("Peak learning rate of AdamW, e.g. 5e-5 for fine-tuning, 1e-4 for "
                          "distillation")  # fmt: skip
            lr.setMaximumWidth(140)
            batch = int_spin(f"{title} — batch size", type(step).bounds["batch_size"],
                             step.batch_size,
                             tip="Examples per optimizer step; lower it if memory runs out")  # fmt: skip
            batch.setMaximumWidth(110)
            self.training_grid.addWidget(QLabel(title), line, 0)
            self.training_grid.addWidget(epochs, line, 1)
            self.training_grid.addWidget(lr, line, 2)
            self.training_grid.addWidget(batch, line, 3)
            epochs.valueChanged.connect(self._push_training)
            lr.currentTextChanged.connect(self._push_training)
            batch.valueChanged.connect(self._push_training)
            for box in (epochs, batch):
                box.typed.connect(self._update)
            self.rows.append(_TrainingRow(index, title, epochs, lr, batch))
            line += 1
        if not self.rows:
            self.training_grid.addWidget(
                make_label("No step of this chain trains.", NOTE_STYLE), 1, 0, 1, 4
            )
        self.training_grid.setColumnStretch(0, 2)
        for col in (1, 2, 3):
            self.training_grid.setColumnStretch(col, 1)

    def row_for(self, step_type: str, method: str | None = None) -> _TrainingRow | None:
        """The settings row of the first step of that type (tests and the lead's code)."""
        steps = self.draft.chain
        for row in self.rows:
            step = steps[row.index] if row.index < len(steps) else None
            if (
                step is not None
                and step.step_type == step_type
                and (method is None or getattr(step, "method", None) == method)
            ):
                return row
        return None

    def _push_training(self, *_args: Any) -> None:
        """Every row's values into the draft (the learning rate as typed)."""
        self.draft.set_training(
            {
                row.index: Training(
                    epochs=row.epochs.value(),
                    learning_rate=row.learning_rate.currentText(),
                    batch_size=row.batch_size.value(),
                )
                for row in self.rows
            }
        )

    def _push_job(self, *_args: Any) -> None:
        self.draft.set_job(
            name=self.name_edit.text(),
            output=self.output_edit.text(),
            device=self.device_value(),
            threads=self.threads_value(),
        )

    # -- page ------------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802 (Qt override)
        signature = self.draft.signature()
        if signature != self._signature:
            # A new chain: start from its own values (a preset's epochs, say).
            self._signature = signature
            self._rebuild_rows(self.draft.chain)
        # Always: the draft forgets the rows when the chain's kinds change, even if they
        # changed back since (then the rows still stand and are the user's choice).
        self._push_training()
        info = self.draft.model
        base = slug(info.name) if info is not None else "model"
        if not self._name_edited:
            self.name_edit.setText(f"{base}-{self.draft.preset}")
        if not self._output_edited:
            self._stamp = datetime.now().strftime("%Y%m%d-%H%M")
            self._default_output()
        self._update()

    def _default_output(self) -> None:
        # The folder is named after the job, so the files say which job (and preset)
        # wrote them as the Jobs list does; the time keeps two runs of it apart.
        name = slug(self.name_edit.text())
        self.output_edit.setText(f"{{data}}/results/{name}-{self._stamp}")

    def show_job(self) -> None:
        """Show the draft's job settings (an opened recipe's name, output folder, device
        and threads) in the fields, without writing them back: the fields held the
        defaults, and an edit of any one of them would have sent those over the recipe's.
        The name and folder are then the user's own (the page keeps them when shown)."""
        fields = (self.name_edit, self.output_edit, self.device, self.threads)
        for field in fields:
            field.blockSignals(True)
        try:
            self.name_edit.setText(self.draft.name)
            self.output_edit.setText(self.draft.output)
            if self.device.findData(self.draft.device) < 0:  # e.g. "cuda:1"
                self.device.addItem(self.draft.device, self.draft.device)
            set_combo(self.device, self.draft.device)
            self.threads.setValue(self.draft.threads or 0)
        finally:
            for field in fields:
                field.blockSignals(False)
        self._name_edited = self._output_edited = True
        self._update()

    def _on_name_edited(self, _text: str) -> None:
        self._name_edited = True
        if not self._output_edited and self._stamp:
            self._default_output()  # still the default: it follows the name

    def _on_output_edited(self, _text: str) -> None:
        self._output_edited = True

    def _browse(self) -> None:
        start = str(self.resolved_output().parent)
        folder = QFileDialog.getExistingDirectory(self, "Choose the output folder", start)
        if folder:
            self._output_edited = True
            self.output_edit.setText(folder)

    def resolved_output(self) -> Path:
        text = self.output_edit.text().strip().replace("{data}", str(data_dir()))
        return Path(text).expanduser()

    def device_value(self) -> str:
        return self.device.currentData()

    def threads_value(self) -> int | None:
        return self.threads.value() or None

    def problems(self) -> list[str]:
        """What to fix on this page, all of it at once in page order: each field's
        numbers as typed and the draft's evaluation (made once per change), in the
        page's terms."""
        return self.page_problems(self.fields(), self.draft.issues("settings"))

    def fields(self) -> list[PageField]:
        """The page's fields in page order: each row's epochs, learning rate and batch
        size, then the job's."""
        out: list[PageField] = []
        steps = self.draft.chain
        for row in self.rows:
            step = steps[row.index] if row.index < len(steps) else None
            epochs = "recovery_epochs" if isinstance(step, Prune) else "epochs"
            out += [
                PageField(row.index, epochs, row.epochs.label, "epochs", row.epochs),
                PageField(row.index, "learning_rate", f"{row.title} — learning rate",
                          "learning rate"),
                PageField(row.index, "batch_size", row.batch_size.label, "batch size",
                          row.batch_size),
            ]  # fmt: skip
        out += [
            PageField(None, "name", "Name", "Name"),
            PageField(None, "device", "Device", "Device"),
            PageField(None, "threads", "Threads", "Threads", self.threads),
            # The job's threads are the benchmark steps' too (Draft.steps).
            *(
                PageField(index, "threads", "Threads", "Threads", self.threads)
                for index, step in enumerate(steps)
                if isinstance(step, Benchmark)
            ),
            PageField(None, "output", "Output folder", "Output folder"),
        ]
        return out

    def _on_draft_changed(self, parts: set[str]) -> None:
        self._update()

    def _update(self, *_args: Any) -> None:
        typed = self.output_edit.text().strip()
        self.output_resolved.setText(f"= {self.resolved_output()}" if typed else "")
        show_text(self.error, "\n".join(self.problems()))
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # noqa: N802 (Qt override)
        return not self.problems()


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (False when torch is not installed)."""
    try:
        import torch
    except ImportError:  # the GUI can draw without torch; jobs cannot run then anyway
        return False
    return bool(torch.cuda.is_available())
