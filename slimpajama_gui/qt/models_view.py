"""The model browser: a table of every model we can open, a search box, and details.

The table and its proxy are in :mod:`.model_table`. Scanning folders and the
Hugging Face cache reads safetensors headers only, and still runs on the thread pool
so a slow network drive never freezes the window.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QModelIndex,
    QPoint,
    QSettings,
    Qt,
    QUrl,
    Signal,
)
from PySide6.QtGui import QDesktopServices, QDragEnterEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from slimpajama_gui.core.jobs.cleanup import delete_result
from slimpajama_gui.core.model.catalog import discover_models
from slimpajama_gui.core.model.inspection import ModelInfo
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.storage.variant import VARIANT_FILE, VariantRecord
from slimpajama_gui.core.units import human_bytes, human_count
from slimpajama_gui.qt.model_table import (
    INFO_ROLE,
    ModelFilterProxy,
    ModelTableModel,
    family_text,
    heads_text,
    weights_text,
)
from slimpajama_gui.qt.widgets.errors import error_sentence
from slimpajama_gui.qt.widgets.panes import two_panes
from slimpajama_gui.qt.widgets.workers import WorkerScreen, start_worker

log = logging.getLogger(__name__)


class LayerBars(pg.PlotWidget):
    """Parameters per block: embeddings, each encoder layer, then the head (the pooler
    and classifier; the pooler alone for a bare encoder)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent, background=None)
        self.setMinimumHeight(200)
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.getPlotItem().setLabel("left", "parameters (M)")
        self.getPlotItem().showGrid(y=True, alpha=0.25)
        self._bars = pg.BarGraphItem(x=[], height=[], width=0.7)
        self.addItem(self._bars)
        self.labels: list[str] = []
        self.values: list[int] = []

    def show_info(self, info: ModelInfo | None) -> None:
        if info is None:
            self.labels, self.values = [], []
        else:
            # 0-based, as the wizard's layer buttons and a recipe's student_layers count.
            # A bare encoder's remaining weights are its pooler, not a classifier head.
            last = "head" if info.num_labels else "pooler"
            self.labels = ["emb"] + [f"L{i}" for i in range(len(info.layer_params))] + [last]
            self.values = [info.embedding_params, *info.layer_params, info.other_params]
        x = np.arange(len(self.values))
        heights = np.asarray(self.values, dtype=float) / 1e6
        colors = ["#c98b2b"] + ["#2f7bbf"] * (len(self.values) - 2) + ["#7a8a99"]
        self._bars.setOpts(x=x, height=heights, width=0.7, brushes=colors[: len(x)], pen=None)
        self.getPlotItem().getAxis("bottom").setTicks([list(enumerate(self.labels))])
        if len(x):
            self.setXRange(-0.6, len(x) - 0.4, padding=0)
            self.setYRange(0, max(heights.max(), 1e-6) * 1.08, padding=0)


class DetailsPane(QWidget):
    """Everything we know about the selected model without loading its weights."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.title = QLabel("<i>Select a model to see its details.</i>")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)
        form_box = QWidget()
        self.form = QFormLayout(form_box)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.fields: dict[str, QLabel] = {}
        for key in (
            "Family",
            "Source",
            "Parameters",
            "Embeddings",
            "Size on disk",
            "Layers",
            "Hidden size",
            "Heads per layer",
            "FFN width per layer",
            "Vocabulary",
            "Labels",
            "Weights",
            "Folder",
        ):
            label = QLabel("–")
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setWordWrap(True)
            self.fields[key] = label
            self.form.addRow(f"{key}:", label)
        self.bars = LayerBars()
        caption = QLabel(
            "Parameters per block (emb = token, position and type embeddings; layers L0, L1, "
            "… numbered from 0, as in the wizard and a recipe's student_layers)"
        )
        caption.setWordWrap(True)
        caption.setStyleSheet("color: palette(mid);")
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(form_box)
        layout.addWidget(self.bars, 1)
        layout.addWidget(caption)

    def show_info(self, info: ModelInfo | None) -> None:
        self.bars.show_info(info)
        if info is None:
            self.title.setText("<i>Select a model to see its details.</i>")
            for label in self.fields.values():
                label.setText("–")
            return
        self.title.setText(f"<h3>{info.name}</h3>")
        share = 100.0 * info.embedding_params / max(info.parameters, 1)
        ffn = info.layer_ffn
        values = {
            "Family": family_text(info),
            "Source": info.source,
            "Parameters": f"{info.parameters:,} ({human_count(info.parameters)})",
            "Embeddings": f"{info.embedding_params:,} ({share:.0f} % of all parameters)",
            "Size on disk": human_bytes(info.size_bytes),
            "Layers": str(info.layers),
            "Hidden size": str(info.hidden),
            "Heads per layer": heads_text(info),
            "FFN width per layer": (
                str(ffn[0]) if ffn and len(set(ffn)) == 1 else "/".join(map(str, ffn)) or "–"
            ),
            "Vocabulary": f"{info.vocab:,} tokens",
            "Labels": "none yet (encoder only)" if not info.num_labels else str(info.num_labels),
            "Weights": weights_text(info.dtype),
            "Folder": str(info.path),
        }
        for key, text in values.items():
            self.fields[key].setText(text)


class Banner(QFrame):
    """A dismissible message strip above the table (non-modal: nothing to click away)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.setStyleSheet(
            "#banner { background: #fff4d6; border: 1px solid #e0b84f; border-radius: 4px; }"
            "#banner QLabel { color: #4a3b00; }"
        )
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        #: "Remove from list ▾": one entry per added folder that was refused.
        self.remove_button = QToolButton()
        self.remove_button.setText("Remove from list")
        self.remove_button.setToolTip(
            "Stop looking in a folder you added that holds no usable model (the folder "
            "itself is not touched)"
        )
        self.remove_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.remove_menu = QMenu(self.remove_button)
        self.remove_button.setMenu(self.remove_menu)
        self.remove_button.hide()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.remove_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_messages(self, messages: Sequence[str]) -> None:
        if not messages:
            self.hide()
            return
        self.label.setText("\n".join(messages))
        self.show()


class ModelsView(WorkerScreen):
    """The Models area: search, add a folder (button or drag-and-drop), table, details.

    Right-clicking a model offers what can be done with it (:meth:`context_actions`).
    """

    #: Emitted after each scan with the number of models listed.
    scan_finished = Signal(int)
    #: A short sentence for the status bar.
    status_message = Signal(str)
    #: "Compress this…": open the wizard with this model folder selected.
    compress_requested = Signal(Path)
    #: "Open in Playground": try this model folder in the Playground.
    playground_requested = Signal(Path)
    #: A result folder was deleted (its path).
    result_deleted = Signal(Path)

    def __init__(self, parent=None, *, scan_on_start: bool = True) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.extra_folders: list[Path] = []

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search models by name, family, source or folder…")
        self.search.setClearButtonEnabled(True)
        self.add_button = QPushButton("Add folder…")
        self.add_button.setToolTip(
            "Add a Hugging Face model folder (config.json, tokenizer and .safetensors), "
            "or a folder of such folders. You can also drop a folder on this window."
        )
        self.rescan_button = QPushButton("Rescan")
        self.rescan_button.setToolTip(
            "Look again at the packaged model, the Hugging Face cache and added folders"
        )
        toolbar = QHBoxLayout()
        toolbar.addWidget(self.search, 1)
        toolbar.addWidget(self.add_button)
        toolbar.addWidget(self.rescan_button)

        self.banner = Banner()
        self.model = ModelTableModel(self)
        self.proxy = ModelFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._show_context_menu)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.empty_hint = QLabel("Scanning for models…", alignment=Qt.AlignmentFlag.AlignCenter)
        self.details = DetailsPane()

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(toolbar)
        left_layout.addWidget(self.banner)
        left_layout.addWidget(self.table, 1)
        left_layout.addWidget(self.empty_hint)
        self.splitter = two_panes(
            left, self.details, Qt.Orientation.Horizontal, stretch=(3, 2), sizes=(640, 420)
        )
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)

        self.search.textChanged.connect(self._on_search)
        self.add_button.clicked.connect(self.add_folder)
        self.rescan_button.clicked.connect(self.rescan)
        self.table.selectionModel().currentRowChanged.connect(self._on_current_changed)
        self.model.modelReset.connect(self._update_hint)
        self.model.rowsInserted.connect(self._update_hint)
        self.proxy.layoutChanged.connect(self._update_hint)
        if scan_on_start:
            self.rescan()

    # ------------------------------------------------------------------ scanning
    def rescan(self) -> None:
        """Rebuild the list from the packaged model, the HF cache and added folders."""
        self.empty_hint.setText("Scanning for models…")
        self.empty_hint.show()
        self._start(_discover_all, list(self.extra_folders), replace=True)

    def add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a model folder")
        if folder:
            self.add_folders([Path(folder)])

    def add_folders(self, folders: Iterable[Path]) -> None:
        """Inspect ``folders`` off the GUI thread and add every model found in them."""
        folders = [Path(f) for f in folders]
        for folder in folders:
            if folder not in self.extra_folders:
                self.extra_folders.append(folder)
        self.status_message.emit("Reading " + ", ".join(f.name or str(f) for f in folders) + "…")
        self._start(_inspect_only, folders, replace=False)

    def _start(self, func, folders: list[Path], *, replace: bool) -> None:
        start_worker(
            func,
            folders,
            workers=self._workers,
            returned=lambda result, r=replace: self._on_scanned(result, r),
            errored=self._on_scan_error,
        )

    def _on_scanned(self, result: tuple[list[ModelInfo], list[str]], replace: bool) -> None:
        if self._closing:
            return
        infos, skipped = result
        selected = self.selected_info()
        if replace:
            self.model.set_infos(infos)
        else:
            self.model.upsert(infos)
        self.table.resizeColumnsToContents()
        self.banner.show_messages(skipped)
        self._offer_removal(self.model.infos())
        self._update_hint()
        if infos and not replace:
            self.select_path(infos[0].path)
        elif selected is not None and self.model.row_of(selected.path) is not None:
            self.select_path(selected.path)
        elif self.proxy.rowCount() and self.selected_info() is None:
            self.table.selectRow(0)
        count = self.model.rowCount()
        self.status_message.emit(f"{count} model{'s' if count != 1 else ''} listed")
        self.scan_finished.emit(self.model.rowCount())

    def _on_scan_error(self, exc: BaseException) -> None:
        if self._closing:  # a scan cut short by quitting is no error to report
            log.debug("A model scan ended as the window closed: %r", exc)
            return
        # discover_models reports bad folders as sentences; reaching here is a bug.
        text = error_sentence(exc, "Scanning for models", logger=log)
        self.banner.show_messages([text])
        self.scan_finished.emit(self.model.rowCount())

    # ------------------------------------------------------------------ selection
    def selected_info(self) -> ModelInfo | None:
        index = self.table.currentIndex()
        return index.data(INFO_ROLE) if index.isValid() else None

    def select_path(self, path: Path) -> None:
        row = self.model.row_of(path)
        if row is None:
            return
        proxy_index = self.proxy.mapFromSource(self.model.index(row, 0))
        if proxy_index.isValid():
            self.table.selectRow(proxy_index.row())
            self.table.scrollTo(proxy_index)

    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self.details.show_info(current.data(INFO_ROLE) if current.isValid() else None)

    def _on_search(self, text: str) -> None:
        self.proxy.set_search(text)
        self._update_hint()

    def _update_hint(self, *_args) -> None:
        if self.model.rowCount() == 0:
            self.empty_hint.setText(
                "No models found yet. Click “Add folder…” or drop a model folder here."
            )
            self.empty_hint.show()
        elif self.proxy.rowCount() == 0:
            self.empty_hint.setText(f"No model matches “{self.search.text()}”.")
            self.empty_hint.show()
        else:
            self.empty_hint.hide()

    # ------------------------------------------------------------------ context menu
    def added_folder_of(self, info: ModelInfo) -> Path | None:
        """The folder the user added that lists ``info`` (itself or its parent), or None."""
        path = Path(info.path).resolve()
        for folder in self.extra_folders:
            target = folder.expanduser().resolve()
            if path == target or target in path.parents:
                return folder
        return None

    @staticmethod
    def is_app_result(info: ModelInfo) -> bool:
        """Whether ``info`` is a variant a job of this app saved: its record says so."""
        if info.source != "result" or not (Path(info.path) / VARIANT_FILE).is_file():
            return False
        record = VariantRecord.read_or_none(info.path)
        return record is not None and record.job_id is not None

    def context_actions(self, info: ModelInfo) -> list[tuple[str, object]]:
        """(text, slot) of each entry of ``info``'s context menu, in menu order."""
        folder = Path(info.path)
        actions: list[tuple[str, object]] = [
            ("Compress this…", lambda: self.compress_requested.emit(folder)),
        ]
        if info.num_labels:  # the Playground shows predictions: an encoder has none yet
            actions.append(("Open in Playground", lambda: self.playground_requested.emit(folder)))
        actions.append(("Reveal in file manager", lambda: self.reveal(folder)))
        added = self.added_folder_of(info)
        if added is not None:
            actions.append(("Remove folder from list", lambda: self.remove_folder(added)))
        if self.is_app_result(info):
            actions.append(("Delete result…", lambda: self.delete_result(info)))
        return actions

    def _show_context_menu(self, pos: QPoint) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        self.table.selectRow(index.row())
        info = index.data(INFO_ROLE)
        menu = QMenu(self)
        for text, slot in self.context_actions(info):
            menu.addAction(text).triggered.connect(slot)
        menu.popup(self.table.viewport().mapToGlobal(pos))
        self._menu = menu  # kept until the next one, so the popup is not collected

    def reveal(self, folder: Path) -> bool:
        """Show ``folder`` in the system's file manager."""
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def remove_folder(self, folder: Path) -> None:
        """Stop listing ``folder`` (a folder the user added); nothing on disk changes.

        The list of added folders is saved at once, so a removed folder does not come
        back at the next start even if the app does not close normally.
        """
        folder = Path(folder)
        self.extra_folders = [f for f in self.extra_folders if f != folder]
        QSettings().setValue("models/extra_folders", [str(p) for p in self.extra_folders])
        self.status_message.emit(f"{folder} is no longer listed; the folder itself is untouched.")
        self.rescan()

    def _offer_removal(self, listed: Sequence[ModelInfo]) -> None:
        """Added folders that gave no model (refused ones) get an entry in the banner."""
        found = {Path(i.path).resolve() for i in listed}
        refused = [
            f
            for f in self.extra_folders
            if not any(p == f.resolve() or f.resolve() in p.parents for p in found)
        ]
        menu = self.banner.remove_menu
        menu.clear()
        for folder in refused:
            menu.addAction(str(folder)).triggered.connect(
                lambda _=False, f=folder: self.remove_folder(f)
            )
        self.banner.remove_button.setVisible(bool(refused))

    def delete_result(self, info: ModelInfo, *, confirm: bool = True) -> bool:
        """Delete a result folder a job of this app saved, after asking (named).

        Returns whether the deletion was started (on the thread pool; it ends with
        :attr:`result_deleted`, or a message). Never offered, and refused here, for
        anything else: the packaged model, the Hugging Face cache, a folder of the user's
        own.
        """
        if not self.is_app_result(info):
            return False
        folder = Path(info.path)
        if confirm:
            answer = QMessageBox.question(
                self,
                "Delete result",
                f"Delete the result {info.name}?\n\nThe folder {folder} and everything in it "
                "are removed from the disk. The job's history and its other results stay.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                QMessageBox.StandardButton.Cancel,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return False
        self.status_message.emit(f"Deleting {folder}…")
        start_worker(
            _delete_result,
            folder,
            workers=self._workers,
            returned=self._on_deleted,
            errored=lambda exc: self._on_delete_failed(folder, exc),
        )
        return True

    def forget(self, folder: Path) -> None:
        """Drop a folder deleted elsewhere (Compare) from the list, without a rescan."""
        selected = self.selected_info()
        at = max(self.table.currentIndex().row(), 0)
        self.model.set_infos([i for i in self.model.infos() if Path(i.path) != Path(folder)])
        # A model reset drops the current row without a currentChanged signal, so the
        # details pane would go on describing a folder that no longer exists.
        if selected is not None and Path(selected.path) != Path(folder):
            self.select_path(selected.path)
        elif self.proxy.rowCount():
            self.table.selectRow(min(at, self.proxy.rowCount() - 1))
        self.details.show_info(self.selected_info())
        self._update_hint()

    def _on_deleted(self, folder: Path) -> None:
        if self._closing:
            return
        self.forget(folder)
        self.status_message.emit(f"Deleted {folder}")
        self.result_deleted.emit(folder)

    def _on_delete_failed(self, folder: Path, exc: BaseException) -> None:
        text = error_sentence(exc, f"Deleting {folder}", logger=log)
        if not self._closing:
            QMessageBox.warning(self, "Delete result", text)
            self.status_message.emit(text)

    # ------------------------------------------------------------------ drag and drop
    @staticmethod
    def _dropped_folders(event: QDragEnterEvent | QDropEvent) -> list[Path]:
        mime = event.mimeData()
        if not mime.hasUrls():
            return []
        paths = [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]
        return [p if p.is_dir() else p.parent for p in paths if p.exists()]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if self._dropped_folders(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        folders = self._dropped_folders(event)
        if folders:
            event.acceptProposedAction()
            self.add_folders(folders)

    # ------------------------------------------------------------------ settings
    def save_state(self, settings: QSettings) -> None:
        settings.setValue("models/extra_folders", [str(p) for p in self.extra_folders])
        settings.setValue("models/splitter", self.splitter.saveState())
        settings.setValue("models/header", self.table.horizontalHeader().saveState())

    def restore_state(self, settings: QSettings) -> None:
        saved = settings.value("models/extra_folders", []) or []
        if isinstance(saved, str):  # QSettings returns a bare string for one item
            saved = [saved]
        new = [Path(p) for p in saved if Path(p) not in self.extra_folders]
        if new:
            self.extra_folders.extend(new)
            self.rescan()
        if (state := settings.value("models/splitter")) is not None:
            self.splitter.restoreState(state)
        if (state := settings.value("models/header")) is not None:
            self.table.horizontalHeader().restoreState(state)

    def copy_path(self) -> None:
        info = self.selected_info()
        if info is not None:
            QGuiApplication.clipboard().setText(str(info.path))


def _delete_result(folder: Path) -> Path:
    """Runs on a worker: the engine's one way to delete a result (its record, its job's
    state and its output's lock are checked there; a job still writing is never cut short)."""
    with JobStore() as store:
        return delete_result(folder, store)


def _discover_all(folders: list[Path]) -> tuple[list[ModelInfo], list[str]]:
    """Runs on a worker thread: the packaged model, the HF cache, job results, ``folders``."""
    return discover_models(folders, include_results=True)


def _inspect_only(folders: list[Path]) -> tuple[list[ModelInfo], list[str]]:
    """Runs on a worker thread: models inside ``folders`` only, not the whole scan."""
    return discover_models(folders, include_packaged=False, include_hf_cache=False)


# Other screens format sizes and heads as the browser does; these names stay here too.
__all__ = ["Banner", "DetailsPane", "LayerBars", "ModelsView"]
