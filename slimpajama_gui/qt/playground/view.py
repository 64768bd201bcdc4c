"""The Playground view: two model pickers, live typing and the batch run, wired to workers.

As the user types, a debounced request goes to the thread pool, one worker per side, so a
slow model never holds up the other. Loaded models stay cached per folder on the worker
side (:class:`~slimpajama_gui.core.runtime.predictor.PredictorCache`); the GUI thread
neither loads nor runs a model.

Every request carries a generation number; a result for older text (or for a model no
longer picked) is dropped when it arrives. While a side is busy, only the newest request
waits behind it, so fast typing never piles up work.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from slimpajama_gui.core.jobs.index import playground_pair
from slimpajama_gui.core.model.inspection import ModelInfo
from slimpajama_gui.core.runtime.predictor import (
    COMPARE_CHUNK,
    ModelPredictor,
    PairResult,
    Prediction,
    PredictorCache,
    PredictorFactory,
    compare_texts,
)
from slimpajama_gui.qt.playground.panels import BatchPanel, PredictionPanel
from slimpajama_gui.qt.widgets.combos import NO_HEAD, ElidedComboBox, add_unpickable, pickable
from slimpajama_gui.qt.widgets.errors import error_sentence
from slimpajama_gui.qt.widgets.workers import WorkerScreen, start_worker

log = logging.getLogger(__name__)

#: Milliseconds of quiet typing before a prediction starts.
DEBOUNCE_MS = 300

SIDES = ("a", "b")


@dataclass(frozen=True)
class _Request:
    side: str
    generation: int
    path: Path
    text: str
    #: Run the text once untimed first: a model was loaded or picked since this side's
    #: last figure.
    warm_up: bool = False
    #: The view's ``_picks`` when asked.
    picks: int = 0


@dataclass
class _SideState:
    busy: bool = False
    pending: _Request | None = None
    generation: int = 0  # newest generation asked for
    #: The view's ``_picks`` when this side's last figure was measured (-1: never).
    warm_at: int = -1


def _side_job(cache: PredictorCache, request: _Request) -> Iterator[tuple[str, _Request]]:
    """Runs on a worker: load the model if needed (saying so), then predict one text.

    The latency is a warm forward pass alone: loading (and the untimed warm-up pass the
    cache runs after it) is over before it is timed, and after a load or a change of
    model the same text runs once untimed first. A model's first pass on a new input
    shape, or after other models pushed it out of the CPU caches, took 3 to 10 times a
    warm one, and was shown as if it were typical. A :class:`ModelPredictor` also says
    how it read the text (cut to its length, words its vocabulary does not have) and on
    how many CPU threads it ran; other predictors give neither.
    """
    predictor = cache.peek(request.path)
    loaded = predictor is None
    if loaded:
        yield ("loading", request)
        predictor = cache.get(request.path)
    if request.warm_up or loaded:
        predictor.predict([request.text])
    threads = getattr(predictor, "threads", None)
    probs, names, ms = predictor.predict([request.text])
    reading = getattr(predictor, "reading", None)
    how = reading(request.text) if callable(reading) else None
    return request, Prediction.from_row(
        request.text,
        request.path,
        probs[0],
        names,
        ms,
        how,
        threads=threads if isinstance(threads, int) else None,
    )


def _no_head_sentence(name: str, then: str) -> str:
    return (
        f"{name} has no classifier head (an encoder only), so it cannot predict. "
        f"Fine-tune it first (Compress), {then}."
    )


# --------------------------------------------------------------------------- widgets


# --------------------------------------------------------------------------- view


class PlaygroundView(WorkerScreen):
    """Two models side by side on the same text, live or on many lines at once.

    Args:
        parent: the parent widget.
        factory: builds a :class:`Predictor` for a model folder (on a worker thread);
            :class:`~slimpajama_gui.core.runtime.predictor.ModelPredictor` by default.
    """

    #: One side ("a" or "b") showed a new prediction.
    prediction_shown = Signal(str, object)
    #: One side ("a" or "b") shows an error sentence.
    prediction_failed = Signal(str, str)
    #: The default pair was picked after :meth:`set_models` (paths or None).
    defaults_chosen = Signal(object, object)
    #: A batch run ended: (disagreements, rows).
    batch_finished = Signal(int, int)
    #: A short sentence for the status bar.
    status_message = Signal(str)

    def __init__(
        self, parent: QWidget | None = None, *, factory: PredictorFactory = ModelPredictor
    ) -> None:
        super().__init__(parent)
        self.cache = PredictorCache(factory)
        self._infos: list[ModelInfo] = []
        #: Folder → name of each offered model without a classifier head.
        self._headless: dict[str, str] = {}
        self._state = {s: _SideState() for s in SIDES}
        self._generation = 0
        self._batch_worker = None
        self._batch_token: object | None = None
        self._models_generation = 0
        #: Per side, why it is empty when a model without a classifier head was asked for.
        self._refused: dict[str, str] = {}
        #: Sides whose "Loading …" is on the status bar, with the folder being loaded.
        self._loading_status: dict[str, Path] = {}
        #: Results dropped because newer text or another model was asked for meanwhile.
        self.stale_dropped = 0
        #: Counts model changes on either side: a side whose last figure is older than
        #: the latest one warms its model up before timing the next.
        self._picks = 0
        #: set_pair is changing both pickers: it predicts once, after both.
        self._pairing = False

        self.text = QLineEdit()
        self.text.setPlaceholderText(
            "Type a sentence; both models predict as you type (Enter: now)"
        )
        self.text.setClearButtonEnabled(True)
        #: The model pickers, shared by the live and the batch tab.
        self.pickers: dict[str, QComboBox] = {}
        pickers = QHBoxLayout()
        for side in SIDES:
            combo = ElidedComboBox(
                tip=f"Model {side.upper()}: a model without a classifier head is greyed out "
                "(fine-tune it first)"
            )
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(18)
            title = QLabel(f"Model <b>{side.upper()}</b>:")
            title.setBuddy(combo)
            pickers.addWidget(title)
            pickers.addWidget(combo, 1)
            if side == "a":
                pickers.addSpacing(16)
            self.pickers[side] = combo
        self.panels = {s: PredictionPanel(f"Model {s.upper()}") for s in SIDES}
        self.verdict = QLabel()
        self.verdict.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.hide()

        live = QWidget()
        live_layout = QVBoxLayout(live)
        live_layout.addWidget(self.text)
        sides = QHBoxLayout()
        sides.addWidget(self.panels["a"], 1)
        sides.addWidget(self.panels["b"], 1)
        live_layout.addLayout(sides)
        live_layout.addWidget(self.verdict)
        live_layout.addStretch(1)

        self.batch = BatchPanel()
        self.tabs = QTabWidget()
        self.tabs.addTab(live, "Live")
        self.tabs.addTab(self.batch, "Batch")

        layout = QVBoxLayout(self)
        layout.addLayout(pickers)
        layout.addWidget(self.hint)
        layout.addWidget(self.tabs, 1)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.predict_now)
        self.text.textChanged.connect(self._on_text_changed)
        self.text.returnPressed.connect(self.predict_now)
        for side in SIDES:
            self.pickers[side].currentIndexChanged.connect(
                lambda _i, s=side: self._on_model_changed(s)
            )
        self.batch.run_button.clicked.connect(self.run_batch)
        shortcut = QShortcut(QKeySequence("Ctrl+Return"), self.batch.input)
        shortcut.setWhatsThis("Playground › Predict all (the lines of the batch box)")
        shortcut.activated.connect(self.run_batch)
        self._update_hint()

    # ------------------------------------------------------------------ models
    def set_models(self, infos: Sequence[ModelInfo]) -> None:
        """Offer these models; those without a classifier head are listed greyed out,
        saying why, and cannot be picked.

        The pickers keep their choice if it is still listed; otherwise the default pair
        is chosen on a worker (it reads ``slimpajama.json`` files) and
        :attr:`defaults_chosen` is emitted.
        """
        self._infos = [i for i in infos if i.num_labels]
        self._headless = {str(i.path): i.name for i in infos if not i.num_labels}
        self._models_generation += 1
        self._refused.clear()
        keep = {s: self.path(s) for s in SIDES}
        for side in SIDES:
            combo = self.pickers[side]
            combo.blockSignals(True)
            combo.clear()
            for info in infos:
                if not info.num_labels:
                    why = _no_head_sentence(info.name, "the result appears here")
                    add_unpickable(
                        combo, info.name + NO_HEAD, str(info.path), f"{info.path}\n{why}"
                    )
                    continue
                combo.addItem(info.name, str(info.path))  # a result reads 'job › 01-step'
                combo.setItemData(
                    combo.count() - 1,
                    f"{info.name}\n{info.path}\n{info.num_labels} classes",
                    Qt.ItemDataRole.ToolTipRole,
                )
            combo.setCurrentIndex(-1)
            combo.blockSignals(False)
            combo.update_tip()  # no currentIndexChanged reached it while blocked
            self._state[side].generation += 1  # answers from the old models are stale
            self.panels[side].show_idle("Pick a model.")
        self._update_verdict()
        self._update_hint()
        still = all(p is not None and self._pickable_index(p) >= 0 for p in keep.values())
        if still:
            self.set_pair(keep["a"], keep["b"])
            return
        generation = self._models_generation
        start_worker(
            playground_pair,
            list(self._infos),
            workers=self._workers,
            returned=lambda pair, g=generation: self._on_defaults(pair, g),
            errored=lambda exc, g=generation: self._on_defaults_error(exc, g),
        )

    def _on_defaults(self, pair: tuple[Path | None, Path | None], generation: int) -> None:
        if self._closing or generation != self._models_generation:
            return
        a, b = pair
        self.set_pair(a, b)
        self.defaults_chosen.emit(a, b)

    def _on_defaults_error(self, exc: BaseException, generation: int) -> None:
        log.error("Choosing the default models failed", exc_info=exc)
        if self._closing or generation != self._models_generation:
            return
        first = self._infos[0].path if self._infos else None
        self.set_pair(first, first)
        self.defaults_chosen.emit(first, first)

    def set_pair(self, a: Path | str | None, b: Path | str | None) -> None:
        """Pick models A and B by folder (each must be one of the offered models).

        A model without a classifier head (Compare asks for a result's source, which may
        be a bare encoder) is not picked: its side stays empty and says why.
        """
        picks = self._picks
        self._pairing = True
        try:
            for side, path in (("a", a), ("b", b)):
                combo = self.pickers[side]
                index = self._combo_index(path) if path is not None else -1
                self._refused.pop(side, None)
                if index >= 0 and not pickable(combo, index):
                    name = self._headless[combo.itemData(index)]
                    self._refused[side] = _no_head_sentence(name, "or pick another model above")
                    index = -1
                if index != combo.currentIndex():
                    combo.setCurrentIndex(index)  # → _on_model_changed
                elif index < 0:
                    self.panels[side].show_idle(self._idle_text(side))
        finally:
            self._pairing = False
        if self._picks != picks:
            self.predict_now()

    def path(self, side: str) -> Path | None:
        """The folder of the model picked on ``side`` ("a" or "b"), or None."""
        value = self.pickers[side].currentData()
        return Path(value) if value else None

    def models(self) -> list[ModelInfo]:
        return list(self._infos)

    def _pickable_index(self, path: Path | str) -> int:
        index = self._combo_index(path)
        return index if pickable(self.pickers["a"], index) else -1

    def _idle_text(self, side: str) -> str:
        """What an idle side says: type, pick, or why the model asked for is not picked."""
        if self.path(side) is not None:
            return "Type a sentence above."
        return self._refused.get(side, "Pick a model.")

    def _combo_index(self, path: Path | str) -> int:
        # Paths come from the offered ModelInfos, so equal paths are equal objects here;
        # no resolve(), which would touch the disk on the GUI thread.
        target = str(Path(path))
        combo = self.pickers["a"]
        for i in range(combo.count()):
            if combo.itemData(i) == target:
                return i
        return -1

    def _update_hint(self) -> None:
        if self._infos:
            self.hint.hide()
            return
        self.hint.setText(
            "<b>No model with a classifier head yet.</b> Fine-tune one in Compress, or add a "
            "fine-tuned model folder in Models; it will appear here."
        )
        self.hint.show()

    def _on_model_changed(self, side: str) -> None:
        panel = self.panels[side]
        self._picks += 1
        self._update_verdict()
        if self.path(side) is None:
            self._state[side].generation += 1  # anything in flight for it is stale now
            panel.show_idle(self._idle_text(side))
            return
        self._refused.pop(side, None)
        panel.show_idle("Type a sentence above.")
        if self.text.text().strip() and not self._pairing:
            # Both sides again: the other side's figure was taken before this model was
            # loaded or picked, under other conditions, and the two are read side by side.
            self.predict_now()

    # ------------------------------------------------------------------ live
    def _on_text_changed(self, text: str) -> None:
        if not text.strip():
            self._debounce.stop()
            self._generation += 1
            for side in SIDES:
                self._state[side].generation = self._generation
                self._state[side].pending = None
                self.panels[side].show_idle(self._idle_text(side))
            self._update_verdict()
            return
        self._debounce.start()

    def predict_now(self) -> None:
        """Predict the current text with both models (Enter, or after typing stops)."""
        self._debounce.stop()
        text = self.text.text()
        if not text.strip():
            return
        for side in SIDES:
            self._request(side, text)

    def _request(self, side: str, text: str) -> None:
        path = self.path(side)
        if path is None:
            return
        self._generation += 1
        state = self._state[side]
        state.generation = self._generation
        warm_up = state.warm_at < self._picks
        request = _Request(side, self._generation, path, text, warm_up, self._picks)
        self.panels[side].show_running()
        if state.busy:
            state.pending = request  # only the newest waits; older text is not worth running
            return
        self._start(request)

    def _start(self, request: _Request) -> None:
        state = self._state[request.side]
        state.busy = True
        start_worker(
            _side_job,
            self.cache,
            request,
            workers=self._workers,
            yielded=self._on_side_yielded,
            returned=self._on_side_returned,
            errored=lambda exc, r=request: self._on_side_error(r, exc),
            finished=lambda s=request.side: self._on_side_finished(s),
        )

    def _current(self, request: _Request) -> bool:
        state = self._state[request.side]
        path = self.path(request.side)
        return (
            not self._closing
            and request.generation == state.generation
            and path is not None
            and Path(path) == request.path
        )

    def _on_side_yielded(self, item: tuple[str, _Request]) -> None:
        what, request = item
        if what == "loading" and self._current(request):
            self.panels[request.side].show_loading()
            self._loading_status[request.side] = request.path
            self.status_message.emit(f"Loading {request.path.name}…")

    def _end_loading_status(self, side: str) -> None:
        """Replace this side's "Loading …" on the status bar once its worker is done."""
        path = self._loading_status.pop(side, None)
        if path is None or self._closing:
            return
        loaded = self.cache.peek(path) is not None
        self.status_message.emit(f"Loaded {path.name}" if loaded else f"Could not load {path.name}")

    def _on_side_returned(self, item: tuple[_Request, Prediction]) -> None:
        request, pred = item
        self._end_loading_status(request.side)
        if request.warm_up:  # stale or not, the model ran warm
            state = self._state[request.side]
            state.warm_at = max(state.warm_at, request.picks)
        if not self._current(request):
            self.stale_dropped += 1
            return
        self.panels[request.side].show_prediction(pred)
        self._update_verdict()
        self.prediction_shown.emit(request.side, pred)

    def _update_verdict(self) -> None:
        a, b = self.panels["a"].result, self.panels["b"].result
        if a is None or b is None or a.text != b.text:
            self.verdict.setText("")
        elif a.label == b.label:
            self.verdict.setText(f"Both models say <b>{a.label}</b>.")
        else:
            self.verdict.setText(
                f'<span style="color:#8a4b00">The models disagree: <b>{a.label}</b> '
                f"against <b>{b.label}</b>.</span>"
            )

    def _on_side_error(self, request: _Request, exc: BaseException) -> None:
        self._end_loading_status(request.side)
        if not self._current(request):
            self.stale_dropped += 1
            return
        text = error_sentence(exc, f"Predicting with {request.path.name}", logger=log)
        self.panels[request.side].show_error(text)
        self._update_verdict()
        self.prediction_failed.emit(request.side, text)

    def _on_side_finished(self, side: str) -> None:
        self._end_loading_status(side)  # a worker stopped without an answer
        state = self._state[side]
        state.busy = False
        if state.pending is not None and not self._closing:
            pending, state.pending = state.pending, None
            # Not from inside the finished handler itself (Orange3's rule): next tick.
            QTimer.singleShot(0, self, lambda r=pending: self._start_if_current(r))

    def _start_if_current(self, request: _Request) -> None:
        state = self._state[request.side]
        if self._closing or state.busy or request.generation != state.generation:
            return
        self._start(request)

    # ------------------------------------------------------------------ batch
    def run_batch(self) -> None:
        """Run both models on every line of the batch box."""
        lines = self.batch.lines()
        a, b = self.path("a"), self.path("b")
        if not lines:
            self.batch.count.setText("<i>Type or paste some lines first, one text per line.</i>")
            return
        if a is None or b is None:
            self.batch.count.setText("<i>Pick model A and model B above first.</i>")
            return
        if self._batch_worker is not None:
            self._batch_worker.quit()
        self.batch.model.set_result(None)
        self.batch.progress.setRange(0, len(lines))
        self.batch.progress.setValue(0)
        self.batch.progress.show()
        self.batch.count.setText(f"<i>Running both models on {len(lines)} lines…</i>")
        # A token per run: the handlers of a replaced run find it is no longer current.
        run = self._batch_token = object()
        self._batch_worker = start_worker(
            compare_texts,
            self.cache,
            a,
            b,
            lines,
            workers=self._workers,
            yielded=lambda p, r=run: self._on_batch_progress(r, p),
            returned=lambda res, r=run: self._on_batch_done(r, res),
            errored=lambda exc, r=run: self._on_batch_error(r, exc),
        )

    def _on_batch_progress(self, run: object, progress: tuple[int, int]) -> None:
        if run is self._batch_token and self._batch_worker is not None and not self._closing:
            done, total = progress
            self.batch.progress.setRange(0, max(total, 1))
            self.batch.progress.setValue(done)

    def _on_batch_done(self, run: object, result: PairResult) -> None:
        if run is not self._batch_token or self._batch_worker is None or self._closing:
            return
        self._batch_worker = None
        self.batch.progress.hide()
        self.batch.model.set_result(result)
        n, m = result.disagreements, len(result.texts)
        self.batch.count.setText(
            f"<b>{n} of {m}</b> disagree"
            + (f" ({100 * n / m:.0f} %)" if m else "")
            + f" · {result.ms_a / max(m, 1):.1f} ms vs {result.ms_b / max(m, 1):.1f} ms per line"
            + f" (forward passes in batches of up to {COMPARE_CHUNK})"
        )
        self.batch_finished.emit(n, m)

    def _on_batch_error(self, run: object, exc: BaseException) -> None:
        if run is not self._batch_token or self._batch_worker is None or self._closing:
            return
        self._batch_worker = None
        self.batch.progress.hide()
        text = error_sentence(exc, "The batch run", logger=log)
        self.batch.count.setText(f'<span style="color:#a1261b">{text}</span>')

    # ------------------------------------------------------------------ lifetime
    def on_shutdown(self) -> None:
        self._debounce.stop()


__all__ = ["DEBOUNCE_MS", "SIDES", "PlaygroundView"]
