"""The main window: a navigation bar over the five areas of the app."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QStyle,
    QSystemTrayIcon,
    QVBoxLayout,
    QWidget,
)

from slimpajama_gui import __version__
from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.index import variant_from_record
from slimpajama_gui.core.jobs.warmup import warm_imports
from slimpajama_gui.core.model.catalog import describe_folder, packaged_minilm_path
from slimpajama_gui.core.paths import data_dir
from slimpajama_gui.core.plan.recipe import Recipe, load_recipe
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.storage.variant import VariantRecord
from slimpajama_gui.qt.closing import CloseGuard
from slimpajama_gui.qt.compare import CompareView
from slimpajama_gui.qt.compress_page import CompressPage
from slimpajama_gui.qt.help_menu import about_text, show_shortcuts
from slimpajama_gui.qt.jobs_view import JobsView
from slimpajama_gui.qt.models_view import ModelsView
from slimpajama_gui.qt.playground import PlaygroundView
from slimpajama_gui.qt.settings_dialog import SettingsDialog
from slimpajama_gui.qt.widgets.screens import fitted_size
from slimpajama_gui.qt.widgets.workers import start_worker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Area:
    key: str
    title: str
    icon: QStyle.StandardPixmap
    plan: str = ""  # what a not-yet-built area will do, said plainly
    today: str = ""  # how to do it from the command line until then


AREAS = (
    Area("models", "Models", QStyle.StandardPixmap.SP_DirOpenIcon),
    Area(
        "compress",
        "Compress",
        QStyle.StandardPixmap.SP_ArrowDown,
        "A step-by-step wizard: pick a model and a dataset, choose fine-tuning, pruning, "
        "distillation and quantization (or a preset), review the estimated size, then run.",
        "write a recipe (start from <code>resources/recipes/demo.yaml</code>) and run "
        "<code>slimpajama run RECIPE</code>.",
    ),
    Area(
        "jobs",
        "Jobs",
        QStyle.StandardPixmap.SP_BrowserReload,
        "The queue and history of compression jobs, with live charts of loss, accuracy, "
        "learning rate, sparsity, size and latency, and Cancel / Re-run buttons.",
        "<code>slimpajama history</code> lists every job with its status and output folder.",
    ),
    Area(
        "compare",
        "Compare",
        QStyle.StandardPixmap.SP_FileDialogDetailedView,
        "Every variant on one accuracy-versus-latency chart, sized by file size, with a table "
        "and a side-by-side comparison of any two, including the examples whose prediction flips.",
        "<code>slimpajama eval MODEL DATA</code> and <code>slimpajama bench MODEL</code> "
        "measure one model at a time.",
    ),
    Area(
        "playground",
        "Playground",
        QStyle.StandardPixmap.SP_MessageBoxQuestion,
        "Type a sentence and see what the original and the compressed model predict, with "
        "class probabilities and latency, side by side.",
        '<code>slimpajama predict MODEL "some text"</code> prints the label and the probabilities.',
    ),
)


class PlannedArea(QWidget):
    """An area that is not built yet: says what it will do instead of pretending."""

    def __init__(self, area: Area, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(f"area-{area.key}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(32, 32, 32, 32)
        title = QLabel(f"<h2>{area.title}</h2>")
        body = QLabel(
            f"<p>{area.plan}</p><p><i>This area is not available yet in version "
            f"{__version__}. Use the Models area to browse and inspect models.</i></p>"
            + (f"<p>From the command line today: {area.today}</p>" if area.today else "")
        )
        body.setWordWrap(True)
        body.setMaximumWidth(640)
        layout.addWidget(title)
        layout.addWidget(body)
        layout.addStretch(1)


class MainWindow(QMainWindow):
    """Navigation bar on the left, one page per area on the right.

    Signals:
        warmed_up(float): the start-up imports a first job would otherwise make
            (``core.warmup``) are done, on a worker thread; the seconds they took.
    """

    warmed_up = Signal(float)
    #: The sentence shown when a job ended (tray message or status bar).
    job_notified = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.warm = False
        self._tray: QSystemTrayIcon | None = None
        self.setWindowTitle("SlimPajama Studio")
        self.setMinimumSize(QSize(760, 520))

        self.nav = QListWidget()
        self.nav.setObjectName("navigation")
        self.nav.setIconSize(QSize(20, 20))
        self.nav.setFixedWidth(150)
        self.stack = QStackedWidget()
        self.models_view = ModelsView()
        self.jobs_view = JobsView()
        self.compare_view = CompareView(self.jobs_view.store)
        self.playground = PlaygroundView()
        self.compress_page = CompressPage(
            self.models_view.model.infos, self.models_view.selected_info
        )
        built = {
            "compress": self.compress_page,
            "models": self.models_view,
            "jobs": self.jobs_view,
            "compare": self.compare_view,
            "playground": self.playground,
        }
        self.pages: dict[str, QWidget] = {}
        for area in AREAS:
            page = built.get(area.key) or PlannedArea(area)
            self.pages[area.key] = page
            self.stack.addWidget(page)
            item = QListWidgetItem(self.style().standardIcon(area.icon), area.title)
            item.setData(Qt.ItemDataRole.UserRole, area.key)
            item.setSizeHint(QSize(140, 36))
            self.nav.addItem(item)
        self.nav.currentRowChanged.connect(self.stack.setCurrentIndex)

        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.nav)
        row.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self._build_menus()
        status = self.statusBar().showMessage
        self.models_view.status_message.connect(status)
        self.jobs_view.status_message.connect(status)
        self.playground.status_message.connect(status)
        self.compare_view.status_message.connect(status)
        self._status_warning: str | None = None
        self.jobs_view.status_warning.connect(self._show_warning)
        # A warning's tooltip (its full text) goes with the warning, not to the next message.
        self.statusBar().messageChanged.connect(self._on_status_changed)
        self.models_view.scan_finished.connect(
            lambda _n: self.playground.set_models(self.models_view.model.infos())
        )
        self.jobs_view.open_result.connect(self._open_result)
        self.compare_view.open_in_playground.connect(self._open_in_playground)
        self.models_view.compress_requested.connect(self.compress_model)
        self.models_view.playground_requested.connect(self.try_in_playground)
        # A result deleted in one area leaves every list: the Playground's pickers too, or
        # they would still offer (and run, from memory) a model whose folder is gone.
        self.models_view.result_deleted.connect(self._on_deleted_in_models)
        self.compare_view.result_deleted.connect(self._on_deleted_in_compare)
        self.compress_page.recipe_ready.connect(self._submit)
        self.jobs_view.runner.job_finished.connect(self._on_job_finished)
        self.jobs_view.external_job_finished.connect(self._on_external_job_finished)
        # Each saved variant (a search's every trial) is in Compare as soon as it exists.
        self.jobs_view.runner.bridge.variant_saved.connect(self._on_variant_saved)
        self.closer = CloseGuard(self.jobs_view.runner, self)
        self._restore_settings()
        QTimer.singleShot(0, self._warm_up)

    def _show_warning(self, short: str, full: str) -> None:
        """A job's warning on the status bar, cut short, with the whole text as its tooltip."""
        self._status_warning = short
        self.statusBar().setToolTip(full)
        self.statusBar().showMessage(short)

    def _on_status_changed(self, message: str) -> None:
        if message != self._status_warning:
            self._status_warning = None
            self.statusBar().setToolTip("")

    def _warm_up(self) -> None:
        # A reference, so the worker outlives this call; a failed warm-up is not fatal.
        # Bound methods: Qt drops the call if the window was closed and deleted first.
        self._warm_worker = start_worker(
            warm_imports, returned=self._on_warm, errored=self._on_warm_failed
        )

    def _on_warm_failed(self, exc: BaseException) -> None:
        log.info("Start-up imports failed (a first job pays them): %s", exc)
        self._on_warm(float("nan"))

    def _on_warm(self, seconds: float) -> None:
        if self.closer.closing:
            return  # quit right after start: nobody waits for it
        self.warm = True
        self.warmed_up.emit(seconds)

    # ------------------------------------------------------------------ navigation
    def show_area(self, key: str) -> None:
        self.nav.setCurrentRow([a.key for a in AREAS].index(key))

    def current_area(self) -> str:
        return AREAS[self.stack.currentIndex()].key

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        open_recipe = QAction("Open &recipe…", self)
        open_recipe.setToolTip("Open a YAML recipe in the compression wizard, ready to run")
        open_recipe.triggered.connect(lambda: self.open_recipe())
        file_menu.addAction(open_recipe)
        add = QAction("&Add model folder…", self)
        add.setShortcut(QKeySequence.StandardKey.Open)
        add.triggered.connect(lambda: (self.show_area("models"), self.models_view.add_folder()))
        file_menu.addAction(add)
        refresh = QAction("&Rescan models", self)
        refresh.setShortcut(QKeySequence.StandardKey.Refresh)
        refresh.triggered.connect(self.models_view.rescan)
        file_menu.addAction(refresh)
        open_data = QAction("Open &data folder", self)
        open_data.setToolTip("Show the folder of results, job history and logs in the file manager")
        open_data.triggered.connect(
            lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(data_dir())))
        )
        file_menu.addAction(open_data)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

        edit_menu = self.menuBar().addMenu("&Edit")
        settings_action = QAction("&Settings…", self)
        settings_action.setShortcut(QKeySequence("Ctrl+,"))
        settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        settings_action.triggered.connect(self.show_settings)
        edit_menu.addAction(settings_action)

        view_menu = self.menuBar().addMenu("&View")
        for i, area in enumerate(AREAS):
            action = QAction(area.title, self)
            action.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
            action.triggered.connect(lambda _=False, k=area.key: self.show_area(k))
            view_menu.addAction(action)

        help_menu = self.menuBar().addMenu("&Help")
        keys = QAction("&Keyboard shortcuts", self)
        keys.setShortcut(QKeySequence.StandardKey.HelpContents)
        keys.triggered.connect(lambda: show_shortcuts(self))
        help_menu.addAction(keys)
        about = QAction("&About SlimPajama Studio", self)
        about.triggered.connect(
            lambda: QMessageBox.about(self, "About SlimPajama Studio", about_text())
        )
        help_menu.addAction(about)

    def show_settings(self) -> SettingsDialog:
        """Edit → Settings… (window-modal; returned for tests)."""
        dialog = SettingsDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(
            lambda: self.statusBar().showMessage(
                "Settings saved; the new data folder is used from the next start"
                if dialog.data_dir_changed()
                else "Settings saved"
            )
        )
        dialog.open()
        return dialog

    def _submit(self, recipe) -> None:
        try:
            self.jobs_view.submit(recipe)
        except UserError as exc:
            QMessageBox.warning(self, "Cannot start the job", str(exc))
            return
        self.show_area("jobs")

    def open_recipe(self, path: str | Path | None = None):
        """File → Open recipe…: the wizard filled from a YAML recipe, on its review page.

        Returns the wizard, or None when no file was chosen or the file is not a recipe
        (then a message names the file and the field).
        """
        if path is None:
            path, _ = QFileDialog.getOpenFileName(
                self, "Open a recipe", str(Path.home()), "Recipes (*.yaml *.yml);;All files (*)"
            )
            if not path:
                return None
        try:
            recipe: Recipe = load_recipe(path)
        except UserError as exc:
            # The parser's sentence names the field (and line); the file is named here.
            text = str(exc)
            if str(path) not in text and Path(path).name not in text:
                text = f"{path}: {text}"
            QMessageBox.warning(self, "Cannot open the recipe", text)
            self.statusBar().showMessage(text)
            return None
        self.show_area("compress")
        wizard = self.compress_page.open_wizard(recipe=recipe, source=Path(path))
        return wizard

    def compress_model(self, folder: Path):
        """Models → Compress this…: the wizard with ``folder`` selected (returned)."""
        self.show_area("compress")
        wizard = self.compress_page.open_wizard()
        wizard.set_current_model(folder)
        return wizard

    def _on_deleted_in_models(self, _folder: Path) -> None:
        self.compare_view.refresh()
        self.playground.set_models(self.models_view.model.infos())

    def _on_deleted_in_compare(self, folder: Path) -> None:
        self.models_view.forget(folder)
        self.playground.set_models(self.models_view.model.infos())

    def try_in_playground(self, folder: Path) -> None:
        """Models → Open in Playground: ``folder`` as model B, beside the current A."""
        self.playground.set_models(self.models_view.model.infos())
        self.show_area("playground")
        a = self.playground.path("a")
        self.playground.set_pair(a if a is not None else folder, folder)

    def _open_result(self, path: str) -> None:
        self.show_area("models")
        self.models_view.add_folders([Path(path)])

    def _open_in_playground(self, a: Path | None, b: Path) -> None:
        # Compare's context menu: B the variant, A its parent or source (if listed there).
        self.playground.set_pair(a, b)
        self.show_area("playground")

    def _on_variant_saved(self, _index: int, _path: str, _info: dict) -> None:
        if not self.closer.closing:
            self.compare_view.refresh()

    def _show_new_results(self) -> None:
        # New variants appear in the browser, the Playground pickers and Compare.
        self.models_view.rescan()
        self.compare_view.refresh()

    def _on_external_job_finished(self, _job_id: int) -> None:
        # A CLI job ended while the app was open: its results appear without F5.
        if not self.closer.closing:
            self._show_new_results()

    def _on_job_finished(self, job_id: int, status: str, error: str) -> None:
        if self.closer.closing:
            return  # the window closes next: no new scan to wait for
        self._show_new_results()
        # The history and the variant records are read off the GUI thread (the database
        # may be busy); the sentence comes back as a queued signal. Both handlers are bound
        # methods: Qt drops the call if the window is gone by then (a lambda would run on
        # a deleted window and raise).
        self._outcome_fallback = f"Job {job_id} {status}."
        self._outcome_worker = start_worker(
            job_outcome,
            self.jobs_view.store,
            job_id,
            status,
            error,
            returned=self.notify_job,
            errored=self._on_outcome_error,
        )

    def _on_outcome_error(self, _exc: BaseException) -> None:
        # The history could not be read: say the bare status rather than nothing.
        self.notify_job(self._outcome_fallback)

    def notify_job(self, sentence: str) -> None:
        """Tell the user a job ended: in the status bar, and, when the window is not the
        active one, by alerting it and with a tray message where there is a tray."""
        self.statusBar().showMessage(sentence)
        if not self.isActiveWindow():
            QApplication.alert(self)
            if QSystemTrayIcon.isSystemTrayAvailable():
                if self._tray is None:
                    icon = self.windowIcon()
                    if icon.isNull():
                        icon = self.style().standardIcon(QStyle.StandardPixmap.SP_ComputerIcon)
                    self._tray = QSystemTrayIcon(icon, self)
                    self._tray.setToolTip("SlimPajama Studio")
                self._tray.show()
                self._tray.showMessage("SlimPajama Studio", sentence)
        self.job_notified.emit(sentence)

    # ------------------------------------------------------------------ settings
    def _restore_settings(self) -> None:
        settings = QSettings()
        geometry = settings.value("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(fitted_size(self, 1200, 760))
        area = settings.value("window/area", "models")
        self.show_area(area if area in self.pages else "models")
        self.models_view.restore_state(settings)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        # While a job runs: ask, then close once it has stopped or was let go (closing.py).
        if not self.closer.may_close():
            event.ignore()
            return
        settings = QSettings()
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/area", self.current_area())
        self.models_view.save_state(settings)
        settings.sync()  # the process may end without destructors (app.end_session)
        self.models_view.shutdown()
        self.playground.shutdown()
        self.compare_view.shutdown()
        self.jobs_view.shutdown(timeout_s=10)
        super().closeEvent(event)


def job_outcome(store: JobStore, job_id: int, status: str, error: str) -> str:
    """One sentence for a job that ended, with measured figures only (runs on a worker).

    e.g. ``"preset-balanced finished: 92.0 % eval accuracy, 8.6× smaller"``: of the last
    variant an evaluate step measured (else the last one saved), its accuracy on the eval
    split and its size on disk against the source model's. A figure that was not
    measured is left out.
    """
    try:
        job = store.get_job(job_id)
        name = job.name
    except Exception:  # noqa: BLE001 - the job never reached the history
        return f"A job {status}: {error}" if error else f"A job {status}."
    if status == "failed":
        where = f" ({job.failed_step})" if job.failed_step else ""
        return f"{name} failed{where}: {error or job.error or 'no reason recorded'}"
    if status != "done":
        return f"{name} was {status}."
    figures: list[str] = []
    variants = sorted(store.variants(job_id), key=lambda row: row.step_index)
    rows = []
    for row in variants:
        record = VariantRecord.read_or_none(row.path)
        if record is not None:
            rows.append((row, variant_from_record(Path(row.path), record), record))
    # Both figures of one variant: the last one evaluated, else the last one saved.
    measured = [(v, r) for _, v, r in rows if v.accuracy is not None]
    chosen = measured[-1] if measured else (rows[-1][1:] if rows else None)
    if chosen is not None:
        variant, record = chosen
        if variant.accuracy is not None:
            figures.append(f"{100 * variant.accuracy:.1f} % eval accuracy")
        source_size = _source_size(record.source_model)
        if variant.size_bytes and source_size and source_size > variant.size_bytes:
            figures.append(f"{source_size / variant.size_bytes:.1f}× smaller")
    if not figures:
        return f"{name} finished."
    return f"{name} finished: {', '.join(figures)}"


def _source_size(source: str | None) -> int | None:
    """Bytes on disk of a job's source model (headers only), or None."""
    if not source:
        return None
    try:
        folder = packaged_minilm_path() if source == "packaged" else Path(source)
        return describe_folder(folder).size_bytes
    except UserError:
        return None
