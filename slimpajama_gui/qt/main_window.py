"""The main window: a navigation bar over the five areas of the app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from slimpajama_gui import __version__
from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.warmup import warm_imports
from slimpajama_gui.qt.closing import CloseGuard
from slimpajama_gui.qt.compare import CompareView
from slimpajama_gui.qt.compress_page import CompressPage
from slimpajama_gui.qt.jobs_view import JobsView
from slimpajama_gui.qt.models_view import ModelsView
from slimpajama_gui.qt.playground import PlaygroundView
from slimpajama_gui.qt.settings_dialog import SettingsDialog
from slimpajama_gui.qt.widgets.workers import start_worker


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

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.warm = False
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
        self.models_view.scan_finished.connect(
            lambda _n: self.playground.set_models(self.models_view.model.infos())
        )
        self.jobs_view.open_result.connect(self._open_result)
        self.compare_view.open_in_playground.connect(self._open_in_playground)
        self.compress_page.recipe_ready.connect(self._submit)
        self.jobs_view.runner.job_finished.connect(self._on_job_finished)
        self.closer = CloseGuard(self.jobs_view.runner, self)
        self._restore_settings()
        QTimer.singleShot(0, self._warm_up)

    def _warm_up(self) -> None:
        # A reference, so the worker outlives this call; a failed warm-up is not fatal.
        self._warm_worker = start_worker(
            warm_imports,
            returned=self._on_warm,
            errored=lambda _exc: self._on_warm(float("nan")),
        )

    def _on_warm(self, seconds: float) -> None:
        self.warm = True
        self.warmed_up.emit(seconds)

    # ------------------------------------------------------------------ navigation
    def show_area(self, key: str) -> None:
        self.nav.setCurrentRow([a.key for a in AREAS].index(key))

    def current_area(self) -> str:
        return AREAS[self.stack.currentIndex()].key

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        add = QAction("&Add model folder…", self)
        add.setShortcut(QKeySequence.StandardKey.Open)
        add.triggered.connect(lambda: (self.show_area("models"), self.models_view.add_folder()))
        file_menu.addAction(add)
        refresh = QAction("&Rescan models", self)
        refresh.setShortcut(QKeySequence.StandardKey.Refresh)
        refresh.triggered.connect(self.models_view.rescan)
        file_menu.addAction(refresh)
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
        about = QAction("&About SlimPajama Studio", self)
        about.triggered.connect(self._about)
        help_menu.addAction(about)

    def _about(self) -> None:
        QMessageBox.about(
            self,
            "About SlimPajama Studio",
            f"<b>SlimPajama Studio {__version__}</b><p>Make transformer text classifiers "
            "small and fast, and watch it happen.</p>",
        )

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

    def _open_result(self, path: str) -> None:
        self.show_area("models")
        self.models_view.add_folders([Path(path)])

    def _open_in_playground(self, a: Path | None, b: Path) -> None:
        # Compare's context menu: B the variant, A its parent or source (if listed there).
        self.playground.set_pair(a, b)
        self.show_area("playground")

    def _on_job_finished(self, _job_id: int, _status: str, _error: str) -> None:
        if self.closer.closing:
            return  # the window closes next: no new scan to wait for
        # New variants appear in the browser, the Playground pickers and Compare.
        self.models_view.rescan()
        self.compare_view.refresh()

    # ------------------------------------------------------------------ settings
    def _restore_settings(self) -> None:
        settings = QSettings()
        geometry = settings.value("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1200, 760)
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
