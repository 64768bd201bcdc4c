"""The Compress area: start the wizard, or run a preset on the selected model in one click."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from slimpajama_gui.core.model.inspection import ModelInfo
from slimpajama_gui.qt.wizard import CompressWizard

PRESET_TEXT = {
    "fast": "int8 in onnxruntime with 4-bit word embeddings; no distillation, every token kept.",
    "balanced": "4-layer student (logit KD + hidden-state MSE, augmented rows) + int8, 4-bit "
    "embeddings; every token kept.",
    "smallest": "the balanced student, then vocabulary pruning + int8, 4-bit embeddings.",
}


class CompressPage(QWidget):
    """Explains the wizard and opens it; the recipe it produces goes to ``recipe_ready``."""

    recipe_ready = Signal(object)

    def __init__(
        self,
        models: Callable[[], list[ModelInfo]],
        current: Callable[[], ModelInfo | None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._models, self._current = models, current
        self.wizard: CompressWizard | None = None
        title = QLabel("<h2>Compress a model</h2>")
        body = QLabel(
            "<p>The wizard walks you through five pages: the model, the data (the built-in "
            "demo, or your own CSV/TSV/JSONL/Parquet with a column mapping), the techniques "
            "(a preset, or your own chain of fine-tuning, pruning, distillation and "
            "quantization), the training settings, and a review with the estimated size and "
            "the YAML recipe. <b>Run</b> sends the job to the Jobs area, where you watch it "
            "live.</p><p>Presets:</p><ul>"
            + "".join(f"<li><b>{k}</b>: {v}</li>" for k, v in PRESET_TEXT.items())
            + "</ul><p>The same recipe runs headless: <code>slimpajama run RECIPE</code>.</p>"
        )
        body.setWordWrap(True)
        body.setMaximumWidth(720)
        self.new_button = QPushButton("New compression job…")
        self.new_button.setDefault(True)
        self.new_button.setToolTip("Open the compression wizard for the model selected in Models")
        self.new_button.clicked.connect(self.open_wizard)
        row = QHBoxLayout()
        row.addWidget(self.new_button)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(32, 32, 32, 32)
        layout.addWidget(title)
        layout.addWidget(body)
        layout.addLayout(row)
        layout.addStretch(1)

    def open_wizard(self, *, recipe=None, source=None) -> CompressWizard:
        """A fresh wizard per job, as a window-modal dialog over the main window; filled
        from ``recipe`` (read from the file ``source``) when given."""
        wizard = CompressWizard(self.window(), models=self._models())
        info = self._current()
        if recipe is not None:
            wizard.open_recipe(recipe, source)
        elif info is not None:
            wizard.set_current_model(info.path)
        wizard.recipe_ready.connect(self.recipe_ready)
        wizard.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.wizard = wizard
        wizard.open()
        return wizard
