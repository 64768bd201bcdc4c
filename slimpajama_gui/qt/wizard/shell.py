"""The compression wizard: model → data → techniques → settings → review → Run.

:class:`CompressWizard` is a plain :class:`QWizard` around a
:class:`~slimpajama_gui.core.plan.draft.Draft`, the Qt-free plan of the job. Each page
(one module each) edits its part of the draft and listens to it; no page reads another.
When the user clicks *Run* the wizard emits :attr:`CompressWizard.recipe_ready` with the
draft's recipe; the window that opens it queues the recipe (``JobsView.submit``). Every
check the engine makes on a step (``Step.validate``) is made by the draft while the user
types, so a bad choice is a red sentence on its page and a disabled *Next* button, not a
failed job an hour later.

Nothing here loads weights. Model summaries come from safetensors headers, data is read
on the thread pool, and the size estimate on the review page is arithmetic on the
model's shape.

Example:
    >>> wizard = CompressWizard()  # doctest: +SKIP
    >>> wizard.set_models(models_view.model.infos())  # doctest: +SKIP
    >>> wizard.set_current_model(models_view.selected_info().path)  # doctest: +SKIP
    >>> wizard.recipe_ready.connect(jobs_view.submit)  # doctest: +SKIP
    >>> wizard.open()  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication, QDialog, QMessageBox, QWidget, QWizard

from slimpajama_gui.core.model.catalog import packaged_minilm_path
from slimpajama_gui.core.model.inspection import ModelInfo
from slimpajama_gui.core.plan.draft import Draft
from slimpajama_gui.core.plan.estimate import count_vocabulary
from slimpajama_gui.core.plan.recipe import Recipe
from slimpajama_gui.core.plan.steps import Step
from slimpajama_gui.qt.widgets.screens import fitted_size
from slimpajama_gui.qt.widgets.workers import WorkerSet, start_worker
from slimpajama_gui.qt.wizard.data_page import DataPage
from slimpajama_gui.qt.wizard.model_page import ModelPage
from slimpajama_gui.qt.wizard.review_page import ReviewPage
from slimpajama_gui.qt.wizard.settings_page import SettingsPage
from slimpajama_gui.qt.wizard.techniques_page import TechniquesPage
from slimpajama_gui.qt.wizard.widgets import watch_user_edits

log = logging.getLogger(__name__)

DISCARD = "Discard"
KEEP_EDITING = "Keep editing"
#: The keys that would press a dialog's default button.
_ENTER_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter)
#: The mouse presses Next and Run ignore just after a page appears.
_PRESSES = (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonDblClick)


class CompressWizard(QWizard):
    """Model → data → techniques → settings → review; *Run* emits :attr:`recipe_ready`.

    Works as a dialog (``open()`` / ``exec()``), or embedded in a layout after
    ``setWindowFlags(Qt.WindowType.Widget)``: embedded, *Run* and *Cancel* start it over
    instead of hiding it (the pages keep what they hold). Make a new wizard for each job
    when it is a dialog.

    As a dialog, *Cancel*, Esc and the window's close button ask "Discard this
    compression setup?" first once the user has changed anything (:attr:`edited`);
    Discard closes it, Keep editing (the default) leaves it as it was. Enter goes on to
    the next page, but never runs the job: on the review page only a click on *Run*
    (or Space while it has the focus) does, and not the second click of a double-click
    on *Next*. Likewise the second click of a double-click on *Next* never skips the
    page the first one opened (:meth:`presses_guarded`).
    """

    #: The recipe to run (a :class:`~slimpajama_gui.core.plan.recipe.Recipe`), on *Run*.
    recipe_ready = Signal(object)

    PAGE_MODEL, PAGE_DATA, PAGE_TECHNIQUES, PAGE_SETTINGS, PAGE_REVIEW = range(5)

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        models: Sequence[ModelInfo] | None = None,
        current_model: Path | str | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("New compression job")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setButtonText(QWizard.WizardButton.FinishButton, "Run")
        run = self.button(QWizard.WizardButton.FinishButton)
        run.setToolTip("Queue the job and close")
        # A job can take an hour: Enter must never start it, not even with Run focused.
        run.setAutoDefault(False)
        run.installEventFilter(self)
        self.button(QWizard.WizardButton.NextButton).installEventFilter(self)
        # The second click of a double-click on Next lands on the page the first one
        # opened: on its Next (skipping that page unread) or, on the review page, on Run,
        # which sits where Next was. Presses on Next and Run are ignored for one
        # double-click interval after a page appears; a single shot, so a test can drive
        # it rather than sleep.
        self.press_guard = QTimer(self)
        self.press_guard.setSingleShot(True)
        self.closing = False
        #: Whether the user changed anything since the wizard opened (or last ran).
        self.edited = False
        #: The "Discard this compression setup?" question while it is shown.
        self.question: QMessageBox | None = None
        self._discarding = False
        self._workers = WorkerSet()
        self._vocab_pending: set[tuple] = set()
        #: The job being planned; the pages edit it and listen to it.
        self.draft = Draft()
        #: The recipe file this wizard was filled from (:meth:`open_recipe`), else None.
        self.recipe_source: Path | None = None
        #: Fields of that recipe no page shows, put back into the recipe Run queues.
        self.recipe_extras: dict[str, Any] = {}

        self.model_page = ModelPage(self)
        self.data_page = DataPage(self)
        self.techniques_page = TechniquesPage(self)
        self.settings_page = SettingsPage(self)
        self.review_page = ReviewPage(self)
        for page_id, page in enumerate((self.model_page, self.data_page, self.techniques_page,
                                        self.settings_page, self.review_page)):  # fmt: skip
            self.setPage(page_id, page)
            watch_user_edits(page, self.note_edit)
            # After QWizard's own handler, which makes Run the default on the last page.
            page.completeChanged.connect(self._no_default_run)
        # A page may build fields as it opens (the settings page's rows, layer buttons).
        self.currentIdChanged.connect(self._on_page_shown)
        self.setStartId(self.PAGE_MODEL)
        self.draft.subscribe(self._on_draft_changed)
        # Fits a 1280x800 screen; below 960x640 the techniques page would scroll sideways.
        self.setMinimumSize(960, 640)
        self.resize(fitted_size(self, 1040, 740))
        if models is not None:
            self.set_models(models)
        if current_model is not None:
            self.set_current_model(current_model)

    # -- inputs from the app ---------------------------------------------------------
    def set_models(self, infos: Sequence[ModelInfo]) -> None:
        """The models to choose from (the browser's list)."""
        self.model_page.set_models(infos)

    def set_current_model(self, path: Path | str) -> None:
        """Preselect the model in ``path`` (now, or when it shows up in the list)."""
        self.model_page.select_path(path)

    def open_recipe(self, recipe: Recipe, source: Path | str) -> None:
        """Fill the wizard from ``recipe`` (read from the file ``source``) and start on
        the review page.

        The model's headers and the data are read on the thread pool, as when chosen on
        their pages; Run stays off until both are in and the source can run the chain.
        The steps are kept exactly as the file has them (the techniques page's boxes
        could not show every setting), so the review page is where an opened recipe
        starts: Run it, or Cancel and start a new job to change it. The settings page's
        fields show the recipe's name, output folder, device and threads all the same.
        """
        self.recipe_source = Path(source)
        self.recipe_extras = {
            "seed": recipe.seed,
            "save_each_step": recipe.save_each_step,
            # As the file has them: the draft gives a benchmark step the job's threads
            # (the wizard has no field for its own), where `slimpajama run` keeps its own.
            "steps": copy.deepcopy(recipe.steps),
        }
        spec = dict(recipe.dataset)
        for key in ("train", "eval", "test"):
            value = spec.get(key)
            if isinstance(value, str) and value.strip() and value.strip().lower() != "demo":
                spec[key] = str(recipe.resolve_path(value))
        self.data_page.set_spec(spec)
        self.draft.set_chain("custom", recipe.steps)
        output = recipe.output
        if "{data}" not in output:
            output = str(recipe.resolve_path(output))
        self.draft.set_job(
            name=recipe.name, output=output, device=recipe.device, threads=recipe.threads
        )
        self.settings_page.show_job()
        if recipe.uses_packaged_model:
            folder = packaged_minilm_path()
        else:
            folder = recipe.resolve_path(recipe.model)
        if not self.model_page.select_path(folder):
            # No model at all until it is read: never the list's first one meanwhile.
            self.model_page.clear_selection()
            self.model_page.add_folder(folder)
        self.setStartId(self.PAGE_REVIEW)
        if self.isVisible():
            self.restart()

    # -- what the user chose ---------------------------------------------------------
    def model_info(self) -> ModelInfo | None:
        """The chosen model's header summary (None: none chosen)."""
        return self.draft.model

    def steps(self) -> list[Step]:
        """The chain with the settings page applied.

        Raises:
            UserError: a setting that is not a valid value.
        """
        return self.draft.steps()

    def recipe(self) -> Recipe:
        """The validated recipe the pages describe.

        Raises:
            UserError: a sentence naming the field to fix.
        """
        return self.draft.recipe()

    # -- shared services -------------------------------------------------------------
    def start_worker(
        self,
        func: Callable[..., Any],
        *args: Any,
        returned: Callable[[Any], None],
        errored: Callable[[BaseException], None],
    ) -> None:
        """Run ``func(*args)`` on the thread pool; results come back to the GUI thread."""
        start_worker(func, *args, workers=self._workers, returned=returned, errored=errored)

    def busy(self) -> bool:
        """Whether a worker (model header, data, vocabulary count) is still running."""
        return bool(self._workers)

    def _on_draft_changed(self, parts: set[str]) -> None:
        # A different model (or keep_general): the vocabulary count belongs to the old one.
        if parts & {"model", "chain"} and self.currentId() > self.PAGE_DATA:
            self.request_vocabulary_count()

    def vocabulary_count(self) -> int | None:
        """Token ids the training data uses with this model's tokenizer, once counted."""
        return self.draft.vocabulary_count()

    def request_vocabulary_count(self) -> None:
        """Count the vocabulary the data uses, on the thread pool (for the estimate)."""
        key = self.draft.vocabulary_key()
        if key is None or self.draft.has_vocabulary_count(key) or key in self._vocab_pending:
            return
        info = self.draft.model
        assert info is not None
        self._vocab_pending.add(key)
        self.start_worker(
            count_vocabulary,
            key,
            Path(info.path),
            list(self.draft.train_texts),
            key[-1],  # keep_general
            returned=self._on_vocab_counted,
            errored=self._on_vocab_error,
        )

    def _on_vocab_counted(self, result: tuple[tuple, int]) -> None:
        key, count = result
        self._vocab_pending.discard(key)
        self.draft.set_vocabulary_count(key, count)  # the review page redraws if shown

    def _on_vocab_error(self, exc: BaseException) -> None:
        # Only the estimate needs it; it falls back to a typical share of the vocabulary.
        log.warning("Counting the vocabulary failed: %s", exc)
        self._vocab_pending.clear()

    # -- Enter never runs the job ----------------------------------------------------
    def _no_default_run(self, *_args: Any) -> None:
        # QWizard makes Run the default button on the last page (drawn as the one Enter
        # presses) each time it updates its buttons, and QDialog makes its last default
        # the default again whenever a focused button loses the focus. Next takes that
        # place: hidden on the last page, where Enter then presses nothing.
        if self.button(QWizard.WizardButton.FinishButton).isDefault():
            self.button(QWizard.WizardButton.NextButton).setDefault(True)

    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt override)
        # Enter in a field that does not take it (the recipe's text) reaches the dialog,
        # which would press Run on the last page.
        if event.key() in _ENTER_KEYS and self.currentId() == self.PAGE_REVIEW:
            event.accept()
            return
        super().keyPressEvent(event)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        run = self.button(QWizard.WizardButton.FinishButton)
        if watched is run and event.type() == QEvent.Type.KeyPress and event.key() in _ENTER_KEYS:
            return True  # a button pressed by Enter when it has the focus: not Run
        if (
            watched in (run, self.button(QWizard.WizardButton.NextButton))
            and event.type() in _PRESSES
            and self.presses_guarded()
        ):
            # A press this soon after the page appeared was the second click of a
            # double-click on the page before's Next, not a choice made on a page nobody
            # has read yet. Without its press, the release clicks nothing.
            return True
        return super().eventFilter(watched, event)

    def presses_guarded(self) -> bool:
        """Whether Next and Run still ignore mouse presses: the page appeared less than
        the platform's double-click interval ago."""
        return self.press_guard.isActive()

    # -- what the user changed -------------------------------------------------------
    def note_edit(self) -> None:
        """The user changed a choice (a page's fields call this through
        :func:`~slimpajama_gui.qt.wizard.widgets.watch_user_edits`; a page calls it for
        a choice made in a file dialog)."""
        self.edited = True

    def _on_page_shown(self, page_id: int) -> None:
        page = self.currentPage()
        if page is not None:
            watch_user_edits(page, self.note_edit)
        self._no_default_run()
        self.press_guard.start(QApplication.styleHints().mouseDoubleClickInterval())

    # -- finishing -------------------------------------------------------------------
    def done(self, result: int) -> None:
        if result == QDialog.DialogCode.Accepted:
            if not self.validateCurrentPage():
                return
            recipe = self.review_page.recipe_to_run()
            if recipe is None:
                return
            self.recipe_ready.emit(recipe)
            self.edited = False  # queued: nothing of it is lost any more
            if not self.isWindow():
                self.restart()
                return
        if not self.isWindow():
            self.restart()
            return
        if result != QDialog.DialogCode.Accepted and self.edited and not self._discarding:
            # Cancel, Esc and the window's close button all end here (QDialog rejects).
            self._ask_discard()
            return
        self.closing = True
        super().done(result)

    def _ask_discard(self) -> None:
        """Ask whether to throw the user's changes away; closes on Discard only."""
        if self.question is not None and self.question.isVisible():
            self.question.raise_()
            return
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle(self.windowTitle())
        box.setText("Discard this compression setup?")
        box.setInformativeText("Nothing has been queued: the choices made on these pages are lost.")
        discard = box.addButton(DISCARD, QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton(KEEP_EDITING, QMessageBox.ButtonRole.RejectRole)
        # Enter or Esc in the question keeps the work: only a deliberate choice loses it.
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.buttonClicked.connect(lambda button: self._answered(button is discard))
        self.question = box
        box.open()

    def _answered(self, discard: bool) -> None:
        self.question = None
        if discard:
            self._discarding = True
            self.reject()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.closing = False  # opened again after Cancel or Run
        self._discarding = False
        super().showEvent(event)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().closeEvent(event)  # QDialog rejects: done() may ask, and keep it open
        if event.isAccepted():
            self.closing = True
