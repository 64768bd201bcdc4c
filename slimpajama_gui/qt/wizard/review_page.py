"""(e) The wizard's review page: the estimate, the recipe as YAML, and Run.

Everything shown comes from the draft: :meth:`~slimpajama_gui.core.plan.draft.Draft.recipe`
(its YAML, copied or saved from here) and
:meth:`~slimpajama_gui.core.plan.draft.Draft.estimate` (redrawn when the vocabulary count
arrives from its worker).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.plan.estimate import Estimate
from slimpajama_gui.core.plan.presets import slug, step_summary
from slimpajama_gui.core.plan.recipe import Recipe, dump_recipe, save_recipe
from slimpajama_gui.core.units import human_bytes
from slimpajama_gui.qt.wizard.cluster_dialog import ClusterDialog
from slimpajama_gui.qt.wizard.widgets import (
    NOTE_STYLE,
    WARNING_STYLE,
    WizardPage,
    error_label,
    escape,
    make_label,
    show_text,
)

if TYPE_CHECKING:
    from slimpajama_gui.qt.wizard.shell import CompressWizard


class ReviewPage(WizardPage):
    """(e) What will happen: the estimate, the recipe as YAML, and Run."""

    def __init__(self, wizard: CompressWizard) -> None:
        super().__init__(
            wizard,
            "Review",
            "Check the plan. The figures are an estimate from the model's shape; the job "
            "measures the real ones. Click Run to queue the job.",
        )
        self.setFinalPage(True)
        self.estimate: Estimate | None = None
        self._recipe: Recipe | None = None  # the one Run queues: None while anything is wrong
        self._built: Recipe | None = None  # the one shown and saved
        self._saved_path = Path()
        self.headline = make_label()
        self.headline.setStyleSheet("font-size: 14px; font-weight: bold;")
        self.chain_label = make_label()
        self.chain_label.setTextFormat(Qt.TextFormat.RichText)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Now", "After (estimate)"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # A long cell ("int8 (onnxruntime), word embeddings 4-bit") wraps in its row, and
        # says itself whole as a tooltip; it was cut to "int8 (onnxruntime), word ...".
        self.table.setWordWrap(True)
        # Again when its width changes (a stretched column says no sectionResized).
        self.table.installEventFilter(self)
        self.notes = make_label("", NOTE_STYLE)
        self.yaml = QPlainTextEdit()
        self.yaml.setReadOnly(True)
        self.yaml.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.yaml.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the recipe to the clipboard")
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip(
            "Save the recipe as a YAML file; run it headless with `slimpajama run FILE`"
        )
        self.cluster_button = QPushButton("Run on a cluster…")
        self.cluster_button.setToolTip(
            "Save the recipe and show the torchrun commands that run it on several "
            "processes or machines"
        )
        self.cluster_dialog: ClusterDialog | None = None
        self.saved = make_label("", NOTE_STYLE)
        self.error = error_label()
        # Settings that are valid but almost surely a mistake: said here too, since an
        # opened recipe reaches this page without passing the Techniques page.
        self.warning = make_label("", WARNING_STYLE)
        self.warning.hide()

        left = QVBoxLayout()
        left.addWidget(self.headline)
        left.addWidget(self.table)
        left.addWidget(self.notes)
        left.addWidget(make_label("<b>Steps</b>"))
        left.addWidget(self.chain_label)
        left.addStretch(1)
        yaml_box = QGroupBox("Recipe")
        yaml_layout = QVBoxLayout(yaml_box)
        yaml_layout.addWidget(self.yaml, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.cluster_button)
        buttons.addWidget(self.saved, 1)
        yaml_layout.addLayout(buttons)
        body = QHBoxLayout()
        body.addLayout(left, 1)
        body.addWidget(yaml_box, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(body, 1)
        layout.addWidget(self.warning)
        layout.addWidget(self.error)

        self.copy_button.clicked.connect(self.copy_yaml)
        self.save_button.clicked.connect(self._save)
        self.cluster_button.clicked.connect(self._run_on_cluster)
        self.draft.subscribe(self._on_draft_changed)

    def initializePage(self) -> None:  # noqa: N802 (Qt override)
        source = self.wiz.recipe_source
        self.saved.setText(f"Opened from {source}" if source is not None else "")
        self.refresh()

    def _on_draft_changed(self, parts: set[str]) -> None:
        # The vocabulary count arrives from a worker after the page opened; an opened
        # recipe's model and data do too.
        if not self.wiz.closing and self.wiz.currentPage() is self:
            self.refresh()

    def problems(self) -> list[str]:
        """Everything that keeps Run off, as sentences (empty: ready to run).

        The source model is checked here against the whole chain and the data's labels
        (:mod:`~slimpajama_gui.core.plan.preflight`, through the draft), so a chain the
        source cannot go through is refused before Run, never in its first step.
        """
        out: list[str] = []
        if self.draft.model is None:
            error = self.wiz.model_page.error
            out.append(error.text() if error.text() else "Model: still reading the model…")
        if self.draft.data_spec is None:
            error = self.wiz.data_page.error
            out.append(f"Data: {error.text()}" if error.text() else "Data: still reading the data…")
        if self.draft.model is not None:
            out += self.draft.problems()
        return list(dict.fromkeys(out))

    def refresh(self) -> None:
        """Show the draft's recipe, its YAML, the estimate, and what keeps Run off."""
        self._recipe = self._built = None
        problems = self.problems()
        try:
            recipe = self.draft.recipe()
        except UserError as exc:
            if str(exc) not in problems:
                problems.append(str(exc))
            self.yaml.setPlainText("")
        else:
            if self.wiz.recipe_extras:  # an opened recipe's fields the pages do not show
                recipe = dataclasses.replace(recipe, **copy.deepcopy(self.wiz.recipe_extras))
            self._built = recipe
            self.yaml.setPlainText(dump_recipe(recipe))
        # The draft's own sentences, as the techniques page says them: one wording.
        show_text(self.warning, "\n".join(self.draft.warnings()))
        if problems:
            show_text(self.error, "Run is off until this is fixed:\n" + "\n".join(problems))
        else:
            show_text(self.error, "")
            self._recipe = self._built
        estimate = self.draft.estimate()
        if estimate is not None:
            try:
                steps = self.draft.steps()
            except UserError:
                steps = self.draft.steps_of_chain()
            items = "".join(f"<li>{escape(step_summary(s))}</li>" for s in steps)
            self.chain_label.setText(f"<ol style='margin-left:-20px'>{items}</ol>")
            self.show_estimate(estimate)
        self.completeChanged.emit()

    def show_estimate(self, est: Estimate) -> None:
        self.estimate = est
        self.headline.setText(est.headline())

        def widths(values: Sequence[int]) -> str:
            if not values:
                return "–"
            return str(values[0]) if len(set(values)) == 1 else "/".join(map(str, values))

        vocab_after = f"{est.vocab_after:,}" + ("" if est.vocab_counted or
                                               est.vocab_after == est.vocab_before else " (guess)")  # fmt: skip
        rows = [
            ("Size on disk", human_bytes(est.size_before), "≈ " + human_bytes(est.size_after)),
            ("Parameters", f"{est.parameters_before:,}", f"≈ {est.parameters_after:,}"),
            ("Non-zero parameters", f"{est.parameters_before:,}", f"≈ {est.nonzero_after:,}"),
            ("Layers", str(est.layers_before), str(est.layers_after)),
            ("Heads per layer", widths(est.heads_before), widths(est.heads_after)),
            ("FFN width per layer", widths(est.ffn_before), widths(est.ffn_after)),
            ("Vocabulary", f"{est.vocab_before:,}", vocab_after),
            ("Weights", est.weights_before, est.weights_after),
        ]
        if est.nonzero_after == est.parameters_after:
            rows.pop(2)
        if est.searched:  # the trial the search keeps decides; nothing to estimate
            rows = [(name, now, "chosen by the search") for name, now, _after in rows]
        self.table.setRowCount(len(rows))
        self.table.setVerticalHeaderLabels([r[0] for r in rows])
        for r, (_name, now, after) in enumerate(rows):
            for c, text in enumerate((now, after)):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        self._fit_table()
        self.notes.setText("\n".join(est.notes))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        if (
            watched is self.table
            and event.type() == QEvent.Type.Resize
            and event.size().width() != event.oldSize().width()
        ):
            # Once the columns have stretched to the new width.
            QTimer.singleShot(0, self.table, self._fit_table)
        return super().eventFilter(watched, event)

    def _fit_table(self) -> None:
        """Rows tall enough for their wrapped cells at the columns' widths (again when
        they change), the table as tall as its rows, and each cell wider than its column
        on one line with its whole text as tooltip."""
        table = self.table
        metrics = table.fontMetrics()
        # The room a cell's text has: the column less the item view's text margins.
        margin = 2 * (table.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin) + 1)
        for r in range(table.rowCount()):
            for c in range(table.columnCount()):
                item = table.item(r, c)
                if item is None:
                    continue
                room = table.columnWidth(c) - margin
                long = metrics.horizontalAdvance(item.text()) > room
                item.setToolTip(item.text() if long else "")
        table.resizeRowsToContents()
        height = table.horizontalHeader().height() + 2 * table.frameWidth()
        height += sum(table.rowHeight(r) for r in range(table.rowCount()))
        table.setFixedHeight(height)

    def recipe_to_run(self) -> Recipe | None:
        return self._recipe

    def copy_yaml(self) -> None:
        QGuiApplication.clipboard().setText(self.yaml.toPlainText())
        self.saved.setText("Copied to the clipboard.")

    def _save(self) -> bool:
        if self._built is None:
            return False
        name = slug(self._built.name) + ".yaml"
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the recipe", str(Path.home() / name), "Recipes (*.yaml *.yml)"
        )
        return bool(path) and self.save_to(path)

    def save_to(self, path: str | Path) -> bool:
        """Write the recipe to ``path`` (atomically); a failure is shown on the page.

        Returns whether it was saved.
        """
        if self._built is None:
            return False
        try:
            save_recipe(self._built, path)
        except (UserError, OSError) as exc:
            show_text(self.error, f"Could not save the recipe to {path}: {exc}")
            return False
        self.saved.setText(f"Saved to {path}")
        self._saved_path = Path(path)
        return True

    def _run_on_cluster(self) -> None:
        """Save the recipe, then show the torchrun commands that run the saved file."""
        if self._built is None or not self._save():
            return
        recipe = self._built
        self.cluster_dialog = ClusterDialog(
            self._saved_path.absolute(), recipe.name, recipe.device, parent=self
        )
        self.cluster_dialog.open()

    def validatePage(self) -> bool:  # noqa: N802 (Qt override)
        self.refresh()
        return self._recipe is not None

    def isComplete(self) -> bool:  # noqa: N802 (Qt override)
        return self._recipe is not None
