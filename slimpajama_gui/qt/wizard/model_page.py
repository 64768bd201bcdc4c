"""(a) The wizard's model page: the browser's list, or a folder added here.

Only headers are read (:func:`~slimpajama_gui.core.model.inspection.inspect_model`, on the
thread pool); the weights load when the job runs. The selected model goes into the
draft (:meth:`~slimpajama_gui.core.plan.draft.Draft.set_model`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
)

from slimpajama_gui.core.model.catalog import describe_folder, discover_models
from slimpajama_gui.core.model.inspection import ModelInfo
from slimpajama_gui.core.units import human_bytes, human_count
from slimpajama_gui.qt.model_table import family_text, heads_text
from slimpajama_gui.qt.widgets.errors import error_sentence
from slimpajama_gui.qt.wizard.widgets import (
    NOTE_STYLE,
    WizardPage,
    error_label,
    escape,
    make_label,
    same_path,
    show_text,
)

if TYPE_CHECKING:
    from slimpajama_gui.qt.wizard.shell import CompressWizard

log = logging.getLogger(__name__)


class ModelPage(WizardPage):
    """(a) Which model: the browser's list, or a folder added here."""

    def __init__(self, wizard: CompressWizard) -> None:
        super().__init__(
            wizard,
            "Model",
            "Choose the model to compress. Only its headers are read now; the weights load "
            "when the job runs.",
        )
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setAlternatingRowColors(True)
        self.add_button = QPushButton("Add folder…")
        self.add_button.setToolTip(
            "Add a Hugging Face model folder (config.json, tokenizer and .safetensors)"
        )
        self.busy = make_label("", NOTE_STYLE)
        self.error = error_label()
        self.summary = make_label()
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.summary.setMinimumWidth(300)
        self._wanted: Path | None = None
        self._discovering = False
        self._selecting = False  # the selection changes in code, not by the user

        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.busy, 1)
        left = QVBoxLayout()
        left.addWidget(self.list, 1)
        left.addLayout(buttons)
        left.addWidget(self.error)
        box = QGroupBox("Selected model")
        box_layout = QVBoxLayout(box)
        box_layout.addWidget(self.summary)
        box_layout.addStretch(1)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 3)
        layout.addWidget(box, 2)

        self.list.currentItemChanged.connect(self._on_current_changed)
        self.add_button.clicked.connect(self._choose_folder)
        with self._in_code():
            self._on_current_changed(None, None)

    # -- model list ------------------------------------------------------------------
    @contextmanager
    def _in_code(self) -> Iterator[None]:
        """Selection changes made here are the app's, not a choice of the user's."""
        selecting, self._selecting = self._selecting, True
        try:
            yield
        finally:
            self._selecting = selecting

    def set_models(self, infos: Sequence[ModelInfo]) -> None:
        current = self.selected_info()
        wanted = self._wanted or (current.path if current else None)
        with self._in_code():
            self.list.clear()
            for info in infos:
                self._add_item(info)
            if wanted is not None:
                self.select_path(wanted)
            if self.list.currentItem() is None and self.list.count():
                self.list.setCurrentRow(0)

    def _add_item(self, info: ModelInfo) -> QListWidgetItem:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if same_path(item.data(Qt.ItemDataRole.UserRole).path, info.path):
                item.setData(Qt.ItemDataRole.UserRole, info)
                return item
        item = QListWidgetItem(
            f"{info.name}   ·   {human_count(info.parameters)} parameters, "
            f"{info.layers} layers, {info.source}"
        )
        item.setToolTip(str(info.path))
        item.setData(Qt.ItemDataRole.UserRole, info)
        self.list.addItem(item)
        return item

    def infos(self) -> list[ModelInfo]:
        return [self.list.item(r).data(Qt.ItemDataRole.UserRole) for r in range(self.list.count())]

    def select_path(self, path: Path | str) -> bool:
        self._wanted = Path(path)
        for row in range(self.list.count()):
            if same_path(self.list.item(row).data(Qt.ItemDataRole.UserRole).path, path):
                with self._in_code():
                    self.list.setCurrentRow(row)
                self._wanted = None
                return True
        return False

    def clear_selection(self) -> None:
        """No model selected (until one is chosen or read)."""
        with self._in_code():
            self.list.setCurrentRow(-1)

    def selected_info(self) -> ModelInfo | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def initializePage(self) -> None:  # noqa: N802 (Qt override)
        # Opened without a list from the browser: find the packaged model and the cache.
        if not self.list.count() and not self._discovering:
            self._discovering = True
            self.busy.setText("Looking for models…")
            self.wiz.start_worker(
                discover_models, [], returned=self._on_discovered, errored=self._on_error
            )

    def _on_discovered(self, result: tuple[list[ModelInfo], list[str]]) -> None:
        self._discovering = False
        self.busy.setText("")
        infos, _skipped = result
        if not self.list.count():
            self.set_models(infos)

    # -- adding a folder -------------------------------------------------------------
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a model folder")
        if folder:
            self.wiz.note_edit()
            self.add_folder(folder)

    def add_folder(self, folder: Path | str) -> None:
        """Inspect ``folder`` on the thread pool, then list and select it."""
        show_text(self.error, "")
        self.busy.setText(f"Reading {Path(folder).name}…")
        self.add_button.setEnabled(False)
        self.wiz.start_worker(
            describe_folder, Path(folder), returned=self._on_inspected, errored=self._on_error
        )
        self.completeChanged.emit()

    def _on_inspected(self, info: ModelInfo) -> None:
        self.busy.setText("")
        self.add_button.setEnabled(True)
        self.add_info(info)

    def add_info(self, info: ModelInfo) -> None:
        """List ``info`` (or update its row) and select it."""
        item = self._add_item(info)
        with self._in_code():  # the user's choice was the folder (noted then), if any
            self.list.setCurrentItem(item)
        self.draft.set_model(self.selected_info())  # also when it was current already
        self.completeChanged.emit()

    def _on_error(self, exc: BaseException) -> None:
        self._discovering = False
        self.busy.setText("")
        self.add_button.setEnabled(True)
        show_text(self.error, error_sentence(exc, "Reading the model", logger=log))
        self.completeChanged.emit()

    # -- summary ---------------------------------------------------------------------
    def _on_current_changed(self, *_args: Any) -> None:
        if not self._selecting:
            self.wiz.note_edit()  # a click or a key in the list
        info = self.selected_info()
        if info is None:
            self.summary.setText("<i>Select a model, or add a folder.</i>")
        else:
            share = 100.0 * info.embedding_params / max(info.parameters, 1)
            if info.num_labels is None:
                head = (
                    "<b>none</b> — an encoder only. Fine-tuning on your data is required and "
                    "will be the first step of every chain."
                )
            else:
                names = info.label_names
                head = f"yes, {info.num_labels} classes" + (
                    f" ({escape(', '.join(names))})" if names else ""
                )
            rows = [
                ("Parameters", f"{info.parameters:,} ({human_count(info.parameters)})"),
                ("Embeddings", f"{human_count(info.embedding_params)} ({share:.0f} %)"),
                ("Size on disk", human_bytes(info.size_bytes)),
                ("Layers", str(info.layers)),
                ("Heads per layer", heads_text(info)),
                ("Hidden size", str(info.hidden)),
                ("Vocabulary", f"{info.vocab:,} tokens"),
                ("Classifier head", head),
                ("Family", escape(family_text(info))),
            ]
            table = "".join(
                f"<tr><td style='padding-right:10px'>{k}:</td><td>{v}</td></tr>" for k, v in rows
            )
            self.summary.setText(f"<h3>{escape(info.name)}</h3><table>{table}</table>")
        self.draft.set_model(info)
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # noqa: N802 (Qt override)
        return self.selected_info() is not None and self.add_button.isEnabled()
