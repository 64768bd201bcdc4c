"""(b) The wizard's data page: the built-in demo, or a file with a column mapping.

The chosen file is read on the thread pool (:func:`inspect_data`): a preview of the
first rows, the columns to map, the label balance. Once the whole set loads and checks,
its ``dataset:`` mapping goes into the draft
(:meth:`~slimpajama_gui.core.plan.draft.Draft.set_data`); while it loads, or when it
cannot be used, the draft holds no data.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from slimpajama_gui.core import data as data_mod
from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.plan.presets import DEMO_SPEC
from slimpajama_gui.qt.widgets.errors import error_sentence
from slimpajama_gui.qt.wizard.widgets import (
    NOTE_STYLE,
    WARNING_STYLE,
    LabelBalance,
    WizardPage,
    error_label,
    make_label,
    show_text,
)

if TYPE_CHECKING:
    from slimpajama_gui.qt.wizard.shell import CompressWizard

log = logging.getLogger(__name__)


@dataclass
class DataReport:
    """What the data page shows: the first rows, the mapping, and the label balance."""

    preview: data_mod.Preview
    text_column: str
    label_column: str
    label_names: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    eval_rows: int = 0
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    train_texts: list[str] = field(default_factory=list)


#: Encodings offered on the page (any Python codec name may be typed).
ENCODINGS = ("utf-8", "cp1252", "latin-1", "utf-16")

#: Recipe keys as the page names them: a sentence from the engine speaks of
#: ``dataset.text_column``; on this page the user sees a box labelled "Text column".
_PAGE_WORDS = (
    (
        re.compile(
            r"set the dataset's encoding to the one it was written in — try "
            r"encoding='([^']+)'"
        ),  # fmt: skip
        r"choose the one it was written in under Encoding — try \1",
    ),
    (re.compile(r"\b(?:dataset\.)?text_column\b"), "Text column"),
    (re.compile(r"\b(?:dataset\.)?label_column\b"), "Label column"),
    (re.compile(r"\bdataset\.encoding\b"), "Encoding"),
)


def page_words(sentence: str) -> str:
    """``sentence`` with recipe keys replaced by the names of this page's fields."""
    for pattern, words in _PAGE_WORDS:
        sentence = pattern.sub(words, sentence)
    return sentence


def inspect_data(generation: int, spec: dict[str, Any]) -> tuple[int, DataReport | str]:
    """Runs on a worker: preview the train file, then load and check the whole set.

    A problem the user can fix comes back as a sentence, not an exception, so the page
    can still show the preview and the columns to map.
    """
    try:
        demo = spec["train"] == data_mod.DEMO
        if demo:
            preview = data_mod.preview(data_mod.DatasetSpec(train=data_mod.DEMO), n=8)
        else:
            preview = data_mod.preview(
                Path(spec["train"]),
                n=8,
                format=spec.get("format"),
                encoding=spec.get("encoding", "utf-8"),
            )
    except UserError as exc:
        return generation, page_words(str(exc))
    columns = preview.columns
    text = spec.get("text_column")
    label = spec.get("label_column")
    if text not in columns:
        text = preview.text_column or columns[0]
    if label not in columns:
        label = preview.label_column or columns[-1]
    report = DataReport(preview, text, label)
    try:
        full = data_mod.DatasetSpec.from_dict(dict(spec, text_column=text, label_column=label))
        dataset = data_mod.load_dataset(full)
    except UserError as exc:
        report.error = page_words(str(exc))
        return generation, report
    report.label_names = list(dataset.label_names)
    report.counts = data_mod.label_counts(dataset.train)
    report.eval_rows = len(dataset.eval)
    report.warnings = list(dataset.warnings)
    report.train_texts = list(dataset.train.texts)
    return generation, report


class DataPage(WizardPage):
    """(b) Which data: the built-in demo, or a file with a column mapping."""

    def __init__(self, wizard: CompressWizard) -> None:
        super().__init__(
            wizard,
            "Data",
            "Choose the labelled texts to fine-tune, distil and measure on.",
        )
        self.demo_radio = QRadioButton(
            "Built-in demo data — 440 short review sentences labelled positive or negative "
            "(for trying the app, not a benchmark)"
        )
        self.file_radio = QRadioButton("My own file: CSV, TSV, JSON Lines or Parquet")
        self.demo_radio.setChecked(True)
        self.train_edit = QLineEdit()
        self.train_edit.setPlaceholderText("training file")
        self.train_browse = QPushButton("Browse…")
        self.eval_edit = QLineEdit()
        self.eval_edit.setPlaceholderText(
            "optional — without it, 10 % of the training rows are held out for evaluation"
        )
        self.eval_browse = QPushButton("Browse…")
        self.encoding_combo = QComboBox()
        self.encoding_combo.setEditable(True)
        self.encoding_combo.addItems(ENCODINGS)
        self.encoding_combo.setToolTip(
            "The text encoding of CSV, TSV and JSON files: utf-8 unless the file was saved "
            "otherwise (cp1252 or latin-1 for many files from Excel on Windows). Any Python "
            "codec name may be typed."
        )
        self.encoding_combo.setMinimumWidth(140)
        #: Keys of a recipe's ``dataset:`` that this page has no field for (an opened
        #: recipe's ``max_length``, ``test``, ...): kept as they were.
        self.extra_spec: dict[str, Any] = {}
        self.text_combo = QComboBox()
        self.text_combo.setToolTip("The column holding the text to classify")
        self.label_combo = QComboBox()
        self.label_combo.setToolTip("The column holding each row's label (a number or a name)")
        for combo in (self.text_combo, self.label_combo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
            combo.setMinimumWidth(140)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        self.table.setAlternatingRowColors(True)
        self.balance = LabelBalance()
        self.status = make_label("", NOTE_STYLE)
        self.warnings = make_label("", WARNING_STYLE)
        self.warnings.hide()
        self.error = error_label()

        files = QGridLayout()
        files.addWidget(QLabel("Train:"), 0, 0)
        files.addWidget(self.train_edit, 0, 1)
        files.addWidget(self.train_browse, 0, 2)
        files.addWidget(QLabel("Eval:"), 1, 0)
        files.addWidget(self.eval_edit, 1, 1)
        files.addWidget(self.eval_browse, 1, 2)
        encoding_row = QHBoxLayout()
        encoding_row.addWidget(self.encoding_combo)
        encoding_row.addStretch(1)
        files.addWidget(QLabel("Encoding:"), 2, 0)
        files.addLayout(encoding_row, 2, 1)
        files.setContentsMargins(24, 0, 0, 0)
        self.files_box = QWidget()
        self.files_box.setLayout(files)
        mapping = QHBoxLayout()
        mapping.addWidget(QLabel("Text column:"))
        mapping.addWidget(self.text_combo)
        mapping.addSpacing(16)
        mapping.addWidget(QLabel("Label column:"))
        mapping.addWidget(self.label_combo)
        mapping.addStretch(1)
        balance_box = QGroupBox("Label balance (train)")
        balance_layout = QVBoxLayout(balance_box)
        balance_layout.addWidget(self.balance)
        balance_layout.addStretch(1)
        preview_box = QGroupBox("First rows")
        preview_layout = QVBoxLayout(preview_box)
        preview_layout.addLayout(mapping)
        preview_layout.addWidget(self.table, 1)
        lower = QHBoxLayout()
        lower.addWidget(preview_box, 3)
        lower.addWidget(balance_box, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.demo_radio)
        layout.addWidget(self.file_radio)
        layout.addWidget(self.files_box)
        layout.addLayout(lower, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.warnings)
        layout.addWidget(self.error)

        self._generation = 0
        self._loading = False
        self.report: DataReport | None = None
        self._loaded_spec: dict[str, Any] | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(250)  # typing a path: read once the user pauses
        self._timer.timeout.connect(self.refresh)
        self.demo_radio.toggled.connect(self._on_source_changed)
        self.train_edit.textChanged.connect(self._schedule)
        self.eval_edit.textChanged.connect(self._schedule)
        self.encoding_combo.currentTextChanged.connect(self._schedule)
        self.text_combo.activated.connect(self.refresh)
        self.label_combo.activated.connect(self.refresh)
        self.train_browse.clicked.connect(lambda: self._browse(self.train_edit, "training"))
        self.eval_browse.clicked.connect(lambda: self._browse(self.eval_edit, "evaluation"))
        self._on_source_changed()

    # -- what the user chose ---------------------------------------------------------
    def use_demo(self) -> bool:
        return self.demo_radio.isChecked()

    def spec(self) -> dict[str, Any]:
        """The recipe's ``dataset:`` mapping for the current choice."""
        if self.use_demo():
            return {**DEMO_SPEC, "labels": list(DEMO_SPEC["labels"]), **self.extra_spec}
        spec: dict[str, Any] = {"train": str(Path(self.train_edit.text().strip()).expanduser())}
        if self.eval_edit.text().strip():
            spec["eval"] = str(Path(self.eval_edit.text().strip()).expanduser())
        if self.text_combo.currentText():
            spec["text_column"] = self.text_combo.currentText()
        if self.label_combo.currentText():
            spec["label_column"] = self.label_combo.currentText()
        encoding = self.encoding_combo.currentText().strip()
        if encoding and encoding.lower() not in ("utf-8", "utf8"):
            spec["encoding"] = encoding
        return {**self.extra_spec, **spec}

    def set_spec(self, spec: dict[str, Any]) -> None:
        """Show a recipe's ``dataset:`` mapping (paths absolute) and read it.

        Keys the page has no field for are kept in :attr:`extra_spec`, so nothing of the
        recipe is lost.
        """
        shown = {"train", "eval", "text_column", "label_column", "encoding"}
        demo = str(spec.get("train", data_mod.DEMO)).strip().lower() == data_mod.DEMO
        if demo:
            shown |= set(DEMO_SPEC)
            self.extra_spec = {
                k: v for k, v in spec.items() if k not in shown or spec[k] != DEMO_SPEC.get(k)
            }
            self.extra_spec.pop("train", None)
        else:
            self.extra_spec = {k: v for k, v in spec.items() if k not in shown}
        widgets = (self.demo_radio, self.file_radio, self.train_edit, self.eval_edit,
                   self.encoding_combo, self.text_combo, self.label_combo)  # fmt: skip
        for widget in widgets:
            widget.blockSignals(True)
        try:
            (self.demo_radio if demo else self.file_radio).setChecked(True)
            self.train_edit.setText("" if demo else str(spec.get("train", "")))
            self.eval_edit.setText("" if demo else str(spec.get("eval") or ""))
            self.encoding_combo.setCurrentText(str(spec.get("encoding") or "utf-8"))
            for combo, key in ((self.text_combo, "text_column"),
                               (self.label_combo, "label_column")):  # fmt: skip
                combo.clear()
                if not demo and spec.get(key) is not None:
                    combo.addItem(str(spec[key]))
        finally:
            for widget in widgets:
                widget.blockSignals(False)
        self._on_source_changed()

    def _browse(self, edit: QLineEdit, what: str) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            f"Choose the {what} file",
            str(Path(edit.text()).parent) if edit.text() else "",
            "Data files (*.csv *.tsv *.tab *.jsonl *.ndjson *.json *.parquet *.pq);;All files (*)",
        )
        if path:
            self.wiz.note_edit()
            edit.setText(path)

    def _on_source_changed(self, *_args: Any) -> None:
        demo = self.use_demo()
        self.files_box.setEnabled(not demo)
        self.encoding_combo.setEnabled(not demo)
        self.text_combo.setEnabled(not demo)
        self.label_combo.setEnabled(not demo)
        self.refresh()

    # -- reading ---------------------------------------------------------------------
    def _schedule(self, *_args: Any) -> None:
        self._timer.start()
        self.completeChanged.emit()

    def refresh(self) -> None:
        """Read the chosen data again on the thread pool (older reads are ignored)."""
        self._timer.stop()
        self._generation += 1
        spec = self.spec()
        self.report = None
        self.draft.set_data(None)
        show_text(self.error, "")
        self.warnings.hide()
        if not self.use_demo() and not self.train_edit.text().strip():
            self._loading = False
            self.status.setText("Choose a training file, or use the demo data.")
            self._clear_preview()
            self.completeChanged.emit()
            return
        self._loading = True
        self.status.setText("Reading the data…")
        self.wiz.start_worker(
            inspect_data,
            self._generation,
            spec,
            returned=self._on_inspected,
            errored=self._on_error,
        )
        self.completeChanged.emit()

    def _clear_preview(self) -> None:
        for combo in (self.text_combo, self.label_combo):
            combo.clear()
        self.table.clear()
        self.table.setRowCount(0)
        self.table.setColumnCount(0)
        self.balance.set_counts({})

    def _on_inspected(self, result: tuple[int, DataReport | str]) -> None:
        generation, report = result
        if generation != self._generation or self.wiz.closing:
            return
        self._loading = False
        if isinstance(report, str):
            self._clear_preview()
            self.status.setText("")
            show_text(self.error, report)
            self.completeChanged.emit()
            return
        self._fill_columns(report)
        self._fill_table(report.preview)
        self.balance.set_counts(report.counts)
        if report.error:
            self.status.setText(
                f"{report.preview.total_rows:,} rows in {report.preview.path.name}."
            )
            show_text(self.error, report.error)
        else:
            self.report = report
            self._loaded_spec = self.spec()
            self.draft.set_data(self._loaded_spec, report.label_names, report.train_texts)
            total = sum(report.counts.values())
            self.status.setText(
                f"{total:,} training rows, {report.eval_rows:,} evaluation rows, "
                f"{len(report.label_names)} labels: {', '.join(report.label_names[:8])}"
                + (" …" if len(report.label_names) > 8 else "")
            )
            show_text(self.warnings, "\n".join(report.warnings))
            self.wiz.request_vocabulary_count()
        self.completeChanged.emit()

    def _on_error(self, exc: BaseException) -> None:
        if self.wiz.closing:
            return
        self._loading = False
        show_text(self.error, page_words(error_sentence(exc, "Reading the data", logger=log)))
        self.completeChanged.emit()

    def _fill_columns(self, report: DataReport) -> None:
        for combo, value in ((self.text_combo, report.text_column),
                             (self.label_combo, report.label_column)):  # fmt: skip
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(report.preview.columns)
            combo.setCurrentText(value)
            combo.blockSignals(False)

    def _fill_table(self, preview: data_mod.Preview) -> None:
        self.table.clear()
        self.table.setColumnCount(len(preview.columns))
        self.table.setRowCount(len(preview.rows))
        self.table.setHorizontalHeaderLabels(preview.columns)
        for r, row in enumerate(preview.rows):
            for c, value in enumerate(row):
                item = QTableWidgetItem(value)
                item.setToolTip(value)
                self.table.setItem(r, c, item)
        header = self.table.horizontalHeader()
        for c in range(len(preview.columns)):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        # The text column takes the room left; the others stay as wide as their values.
        text_index = preview.columns.index(self.text_combo.currentText()) if (
            self.text_combo.currentText() in preview.columns
        ) else 0  # fmt: skip
        header.setSectionResizeMode(text_index, QHeaderView.ResizeMode.Stretch)

    def initializePage(self) -> None:  # noqa: N802 (Qt override)
        if self.report is None and not self._loading:
            self.refresh()
        else:
            self.wiz.request_vocabulary_count()

    def is_loading(self) -> bool:
        return self._loading or self._timer.isActive()

    def isComplete(self) -> bool:  # noqa: N802 (Qt override)
        return not self.is_loading() and self.report is not None and not self.error.text()
