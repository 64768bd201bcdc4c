"""The Playground as a user drives it: type, see two predictions; paste lines, count disagreements."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from slimpajama_gui.core.model.inspection import inspect_model
from slimpajama_gui.core.runtime.predictor import ModelPredictor
from slimpajama_gui.qt.playground import PlaygroundView
from tests.figures import measured
from tests.timing import TICK_MS, ColdPasses, slow_start

TIMEOUT = 30_000

SENTENCES = [
    "the movie was good",
    "a boring film with a bad plot",
    "I really love this story",
    "not funny at all",
    "great actor, awful script",
    "this was a fun evening",
    "the plot is very slow",
    "what a wonderful surprise",
    "I hated every minute of it",
    "an honest and moving film",
    "the jokes fall flat",
    "it is fine but forgettable",
    "brilliant and sharp",
    "dull, long and loud",
    "a warm film about friendship",
    "nothing works in this movie",
]


def _perturbed_copy(src: Path, dst: Path, seed: int, texts: list[str]) -> Path:
    """A copy of ``src`` with a new classifier head that splits ``texts`` about in half.

    A random tiny encoder gives nearly the same [CLS] vector for every text, so a random
    head alone would answer one class throughout; centring the bias on the median
    logit margin makes the copy disagree with the original on some texts, not all.
    """
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    state = load_file(str(weights))
    g = torch.Generator().manual_seed(seed)
    state["classifier.weight"] = torch.randn(state["classifier.weight"].shape, generator=g)
    state["classifier.bias"] = torch.zeros_like(state["classifier.bias"])
    save_file(state, str(weights), metadata={"format": "pt"})
    probs, _names, _ms = ModelPredictor(dst).predict(texts)
    margin = np.log(probs[:, 1]) - np.log(probs[:, 0])
    state["classifier.bias"][1] = -float(np.median(margin))
    save_file(state, str(weights), metadata={"format": "pt"})
    return dst


@pytest.fixture
def two_models(tiny_minilm, tmp_path):
    a = shutil.copytree(tiny_minilm, tmp_path / "model-a")
    b = _perturbed_copy(tiny_minilm, tmp_path / "model-b", seed=1, texts=SENTENCES)
    return inspect_model(a), inspect_model(b)


@pytest.fixture
def view(qtbot):
    v = PlaygroundView()
    qtbot.addWidget(v, before_close_func=lambda w: _settle(w, qtbot))
    v.resize(1000, 600)
    v.show()
    return v


def _settle(view, qtbot) -> None:
    """Let workers end before the widget closes, as the app does."""
    qtbot.waitUntil(lambda: not view.busy(), timeout=TIMEOUT)


def _offer(view, qtbot, infos):
    with qtbot.waitSignal(view.defaults_chosen, timeout=TIMEOUT):
        view.set_models(infos)


def _shown_for(view, text: str) -> bool:
    return all(
        p.result is not None and p.result.text == text for p in (view.panels["a"], view.panels["b"])
    )


def test_a_picker_s_tooltip_never_names_a_model_it_no_longer_holds(view, qtbot, two_models):
    """The pickers are refilled with their signals blocked: the tooltip went on naming the
    model picked before, which the list may no longer hold."""
    a, b = two_models
    _offer(view, qtbot, list(two_models))
    assert view.pickers["a"].toolTip().startswith(a.name)
    view.set_models([b])  # A's model is gone; new defaults come from a worker
    assert a.name not in view.pickers["a"].toolTip()
    qtbot.waitUntil(lambda: not view.busy(), timeout=TIMEOUT)
    for side in ("a", "b"):
        combo = view.pickers[side]
        assert combo.toolTip().split("\n")[0] == combo.currentText()


def test_typing_shows_two_predictions(view, qtbot, two_models):
    a, b = two_models
    _offer(view, qtbot, list(two_models))
    assert (view.path("a"), view.path("b")) == (a.path, b.path)

    text = "the movie was really good"
    qtbot.keyClicks(view.text, text)
    qtbot.waitUntil(lambda: _shown_for(view, text), timeout=TIMEOUT)
    for side, info in (("a", a), ("b", b)):
        pred = view.panels[side].result
        assert pred.label in pred.label_names
        assert pred.probs.shape == (2,) and abs(float(pred.probs.sum()) - 1.0) < 1e-5
        assert measured(pred.ms)
        # The figure says what it measures: one text at a time, on how many threads.
        threads = ModelPredictor(info.path).threads
        assert view.panels[side].latency.text() == pred.latency_text()
        assert f"ms · batch 1, {threads} thread" in pred.latency_text() and pred.threads == threads
        assert view.panels[side].label.text() == pred.label
        assert sum(view.panels[side].bars.values().values()) == pytest.approx(1.0, abs=2e-3)
        # The same numbers as running the model directly.
        probs, names, _ms = ModelPredictor(info.path).predict([text])
        np.testing.assert_allclose(pred.probs, probs[0], atol=1e-5)
        assert pred.label == names[int(probs[0].argmax())]
    # Each model was loaded once, on a worker, and is reused for the next text.
    qtbot.keyClicks(view.text, "!")
    qtbot.keyClick(view.text, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: _shown_for(view, text + "!"), timeout=TIMEOUT)
    assert sorted(view.cache.loads.values()) == [1, 1]


def test_the_first_latency_shown_is_the_forward_pass_alone(qtbot, two_models, monkeypatch):
    """Loading the model and its first pass's start-up are slow (on a fake clock, so no
    real clock decides this): the first latency shown is still the pass alone."""
    a, _b = two_models
    factory, passes = slow_start(monkeypatch)
    view = PlaygroundView(factory=factory)
    qtbot.addWidget(view, before_close_func=lambda w: _settle(w, qtbot))
    view.show()
    _offer(view, qtbot, [a])  # both sides on one model: its passes take turns
    assert view.path("a") == view.path("b") == a.path
    view.text.setText("the movie was good")
    view.predict_now()
    qtbot.waitUntil(lambda: _shown_for(view, "the movie was good"), timeout=TIMEOUT)
    for panel in view.panels.values():
        assert panel.result.ms == pytest.approx(TICK_MS)  # not 300 000 ms of loading
        assert panel.latency.text().startswith("1.0 ms · batch 1, ")
        assert "untimed" in panel.latency.toolTip()
    # The cache's warm-up at load, then per side the text untimed (its first figure
    # after a pick) and timed.
    assert list(passes.values()) == [5]
    assert list(view.cache.loads.values()) == [1]


def test_a_latency_shown_is_warm_after_a_load_or_a_switch(qtbot, two_models, monkeypatch):
    """Switching A to another result and back showed 164.5 ms and 500.8 ms, against 52.2 ms
    once warm: the warm-up at load reads another text, and a model left idle goes cold.
    The first text after a model is loaded or picked runs once untimed, so every figure
    shown is a warm pass (on a fake clock: a cold pass would show 200 000 ms)."""
    a, b = two_models
    cold = ColdPasses(monkeypatch)
    view = PlaygroundView(factory=cold)
    qtbot.addWidget(view, before_close_func=lambda w: _settle(w, qtbot))
    view.show()
    _offer(view, qtbot, [a, b])
    view.set_pair(a.path, a.path)  # one model on both sides: no two loads race
    text = "a warm and funny film about two old friends"

    def shown_warm() -> None:
        qtbot.waitUntil(lambda: _shown_for(view, text), timeout=TIMEOUT)
        qtbot.waitUntil(lambda: not view.busy(), timeout=TIMEOUT)
        for panel in view.panels.values():
            assert panel.result.ms == pytest.approx(TICK_MS)
            assert panel.latency.text().startswith("1.0 ms · batch 1")

    view.text.setText(text)
    view.predict_now()
    shown_warm()
    view.set_pair(b.path, a.path)  # A loads another model
    shown_warm()
    cold.chill(a.path)  # idle while B's model loaded and ran
    view.set_pair(a.path, a.path)  # and back
    shown_warm()
    assert cold.cold >= 4  # the cold passes happened, untimed
    assert "untimed" in view.panels["a"].latency.toolTip()


def test_a_side_never_shows_a_latency_from_an_earlier_prediction(view, qtbot, two_models):
    """With one model on both sides, A showed 4.6 ms and B 15.3 ms, B's from an earlier
    prediction. While a side predicts new text, its old figure is gone; when a side's
    model changes, both sides are timed again, so the two figures are of the same moment."""
    import threading

    gate = threading.Event()
    gate.set()

    def gated(path):
        predictor = ModelPredictor(path)
        real = predictor.predict

        def predict(texts):
            gate.wait(TIMEOUT / 1000)
            return real(texts)

        predictor.predict = predict
        return predictor

    view.cache.factory = gated
    a, b = two_models
    _offer(view, qtbot, list(two_models))
    view.text.setText("first text")
    view.predict_now()
    qtbot.waitUntil(lambda: _shown_for(view, "first text"), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not view.busy(), timeout=TIMEOUT)
    gate.clear()
    try:
        view.text.setText("a second, longer text")
        view.predict_now()
        qtbot.waitUntil(lambda: view.busy(), timeout=TIMEOUT)
        for panel in view.panels.values():
            assert "ms" not in panel.latency.text(), panel.latency.text()
    finally:
        gate.set()
    qtbot.waitUntil(lambda: _shown_for(view, "a second, longer text"), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not view.busy(), timeout=TIMEOUT)
    before = view.panels["a"].result
    view.set_pair(a.path, a.path)  # B takes A's model; A's figure is taken again beside it
    qtbot.waitUntil(lambda: not view.busy(), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: _shown_for(view, "a second, longer text"), timeout=TIMEOUT)
    assert view.panels["a"].result is not before
    for panel in view.panels.values():
        assert panel.latency.text() == panel.result.latency_text()


def test_models_load_and_predict_off_the_gui_thread(qtbot, two_models, gui_probe):
    """Loading and predicting run on workers while the GUI thread keeps handling events."""

    def probed(path):
        gui_probe.check_in()  # loading
        predictor = ModelPredictor(path)
        predictor.predict = gui_probe.wrap(predictor.predict)
        return predictor

    view = PlaygroundView(factory=probed)
    qtbot.addWidget(view, before_close_func=lambda w: _settle(w, qtbot))
    view.show()
    _offer(view, qtbot, list(two_models))
    gui_probe.look = lambda: (view.panels["a"].state.text(), view.panels["b"].state.text())
    view.text.setText("a fun film")
    view.predict_now()
    qtbot.waitUntil(lambda: _shown_for(view, "a fun film"), timeout=TIMEOUT)
    # Two loads and, per side, the text untimed then timed: each on a worker thread.
    gui_probe.assert_work_ran_off_the_gui_thread(calls=6)
    # Meanwhile the GUI thread drew the panels: each said it was loading its model.
    for side in (0, 1):
        assert any("Loading" in texts[side] for texts in gui_probe.seen), gui_probe.seen
    assert sorted(view.cache.loads.values()) == [1, 1]


def test_older_text_never_overwrites_newer(view, qtbot, two_models):
    _offer(view, qtbot, list(two_models))
    for text in ("first text", "second text", "the third and last text"):
        view.text.setText(text)
        view.predict_now()
    qtbot.waitUntil(lambda: _shown_for(view, "the third and last text"), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not view.busy(), timeout=TIMEOUT)
    assert _shown_for(view, "the third and last text")


def test_batch_counts_disagreements(view, qtbot, two_models):
    a, b = two_models
    _offer(view, qtbot, list(two_models))
    view.tabs.setCurrentWidget(view.batch)
    view.batch.input.setPlainText("\n".join(SENTENCES) + "\n\n")
    with qtbot.waitSignal(view.batch_finished, timeout=TIMEOUT) as blocker:
        qtbot.mouseClick(view.batch.run_button, Qt.MouseButton.LeftButton)
    n, m = blocker.args

    pa, names_a, _ = ModelPredictor(a.path).predict(SENTENCES)
    pb, names_b, _ = ModelPredictor(b.path).predict(SENTENCES)
    expected = int((pa.argmax(1) != pb.argmax(1)).sum())
    assert names_a == names_b
    assert (n, m) == (expected, len(SENTENCES))
    assert 0 < n < m  # the perturbed head really changes some answers, not all
    assert view.batch.count.text().startswith(f"<b>{n} of {m}</b> disagree")

    model = view.batch.model
    assert model.rowCount() == m
    tinted = [
        r for r in range(m) if model.index(r, 0).data(Qt.ItemDataRole.BackgroundRole) is not None
    ]
    assert len(tinted) == n
    for r in range(m):
        assert model.index(r, 1).data() == names_a[int(pa[r].argmax())]
        assert float(model.index(r, 4).data()) == pytest.approx(float(pb[r].max()), abs=1e-3)
    view.batch.only.setChecked(True)
    assert view.batch.proxy.rowCount() == n


def test_an_unloadable_model_shows_a_sentence(view, qtbot, two_models, tmp_path):
    a, _b = two_models
    broken = shutil.copytree(a.path, tmp_path / "broken-model")
    info = inspect_model(broken)
    _offer(view, qtbot, [a, info])
    (broken / "model.safetensors").unlink()  # e.g. deleted by another program
    view.set_pair(broken, a.path)
    view.text.setText("good")
    view.predict_now()
    qtbot.waitUntil(lambda: bool(view.panels["a"].error), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: view.panels["b"].result is not None, timeout=TIMEOUT)
    assert "broken-model" in view.panels["a"].error
    assert "Traceback" not in view.panels["a"].error


def test_a_model_without_a_head_is_greyed_out_with_the_reason(view, qtbot, two_models):
    """A model without a classifier head was left out of the pickers, so a user looked for
    the model they had just added; it is listed greyed out, saying why and what to do, and
    neither the mouse nor the keyboard picks it."""
    a, b = two_models
    encoder = replace(a, name="bare-encoder", num_labels=None, path=a.path.parent / "encoder")
    _offer(view, qtbot, [encoder, a, b])
    assert view.models() == [a, b]  # what can predict
    for side in ("a", "b"):
        combo = view.pickers[side]
        assert [combo.itemText(i) for i in range(combo.count())] == [
            "bare-encoder — no classifier head",
            "model-a",
            "model-b",
        ]
        assert not combo.model().item(0).isEnabled() and combo.model().item(1).isEnabled()
        tip = combo.itemData(0, Qt.ItemDataRole.ToolTipRole)
        assert "no classifier head" in tip and "fine-tune it first" in tip.lower()

        combo.showPopup()
        popup = combo.view()
        qtbot.waitUntil(popup.isVisible, timeout=TIMEOUT)
        spot = popup.visualRect(popup.model().index(0, 0)).center()
        qtbot.mouseClick(popup.viewport(), Qt.MouseButton.LeftButton, pos=spot)
        assert view.path(side) != encoder.path
        combo.hidePopup()
        combo.setFocus()
        for key in (Qt.Key.Key_Home, Qt.Key.Key_Up, Qt.Key.Key_End, Qt.Key.Key_Down):
            qtbot.keyClick(combo, key)
            assert view.path(side) != encoder.path
    with qtbot.waitSignal(view.defaults_chosen, timeout=TIMEOUT):
        view.set_models([encoder])
    assert (view.path("a"), view.path("b")) == (None, None)
    assert view.hint.isVisibleTo(view) and "classifier head" in view.hint.text()


def test_a_model_without_a_head_asked_for_says_what_to_do(view, qtbot, two_models):
    """Compare's Open in Playground on a job's first result asks for the packaged MiniLM,
    which has no classifier head, as A: that side said only 'Pick a model.'. It names the
    model and what to do, in the normal colour, and runs nothing; B predicts as usual."""
    a, b = two_models
    encoder = replace(a, name="bare-encoder", num_labels=None, path=a.path.parent / "encoder")
    _offer(view, qtbot, [encoder, a, b])
    failed = []
    view.prediction_failed.connect(lambda side, text: failed.append(side))
    view.set_pair(encoder.path, b.path)
    panel = view.panels["a"]
    assert view.path("a") is None and view.path("b") == b.path
    said = panel.state.text()
    assert "bare-encoder" in said and "no classifier head" in said
    assert "fine-tune it first" in said.lower() and panel.state.styleSheet() == ""
    qtbot.keyClicks(view.text, "a good film")
    qtbot.keyClick(view.text, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: view.panels["b"].result is not None, timeout=TIMEOUT)
    assert panel.result is None and not failed and panel.state.text() == said
    assert encoder.path not in view.cache.loads


# --------------------------------------------------------------------------- reading notes


def _note(view, side: str) -> str:
    """The panel's note as the user sees it ("" when hidden)."""
    note = view.panels[side].note
    return note.text() if note.isVisibleTo(view) else ""


def test_a_long_text_says_where_each_model_cut_it(view, qtbot, two_models):
    _offer(view, qtbot, list(two_models))
    text = " ".join(["a warm film about friendship"] * 60)
    view.text.setText(text)
    view.predict_now()
    qtbot.waitUntil(lambda: _shown_for(view, text), timeout=TIMEOUT)
    for side, info in zip(("a", "b"), two_models, strict=True):
        predictor = ModelPredictor(info.path)
        whole = len(predictor.tokenizer(text)["input_ids"])
        assert whole > predictor.max_length
        assert f"Cut to {predictor.max_length} tokens of {whole}" in _note(view, side)
    view.text.setText("a warm film")
    view.predict_now()
    qtbot.waitUntil(lambda: _shown_for(view, "a warm film"), timeout=TIMEOUT)
    assert _note(view, "a") == _note(view, "b") == ""


@pytest.fixture
def vocabulary_pruned(tiny_minilm, tmp_path):
    """The original and its variant with the vocabulary pruned by a job on the demo data."""
    from slimpajama_gui.core.jobs.pipeline import run
    from slimpajama_gui.core.plan.recipe import recipe_from_yaml
    from slimpajama_gui.core.storage.history import JobStore

    out = tmp_path / "out"
    recipe = recipe_from_yaml(
        f"name: vocab\nmodel: {tiny_minilm}\n"
        "dataset:\n  train: demo\n  labels: [negative, positive]\n  max_length: 48\n"
        f"output: {out}\nsteps:\n  - {{type: prune, method: vocabulary, keep_general: 0}}\n",
        source="test.yaml",
        base_dir=tmp_path,
    )
    with JobStore(tmp_path / "history.sqlite3") as store:
        result = run(recipe, store=store)
    assert result.status == "done", result.error
    return inspect_model(tiny_minilm), inspect_model(result.variants[-1])


def test_words_a_pruned_vocabulary_does_not_know_are_named(view, qtbot, vocabulary_pruned):
    original, pruned = vocabulary_pruned
    _offer(view, qtbot, [original, pruned])
    view.set_pair(original.path, pruned.path)
    text = "the film was good but the xylophone solo was quintessential"
    # The pruned tokenizer itself reads these words as [UNK]; the original splits them
    # into pieces it has.
    tokenizer = ModelPredictor(pruned.path).tokenizer
    unknown = [w for w in text.split() if tokenizer.unk_token in tokenizer.tokenize(w)]
    assert "xylophone" in unknown and "good" not in unknown
    view.text.setText(text)
    view.predict_now()
    qtbot.waitUntil(lambda: _shown_for(view, text), timeout=TIMEOUT)
    note = _note(view, "b")
    assert f"{len(unknown)} word" in note and "[UNK]" in note
    assert all(word in note for word in unknown), note
    assert _note(view, "a") == ""  # the original knows every word


def test_the_status_bar_leaves_loading_once_the_model_is_loaded(view, qtbot, two_models, tmp_path):
    from PySide6.QtWidgets import QStatusBar

    bar = QStatusBar()  # wired as the main window wires it
    qtbot.addWidget(bar)
    view.status_message.connect(bar.showMessage)
    shown: list[str] = []
    view.status_message.connect(shown.append)
    a, b = two_models
    _offer(view, qtbot, list(two_models))
    view.text.setText("a fun film")
    view.predict_now()
    qtbot.waitUntil(lambda: _shown_for(view, "a fun film"), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not view.busy(), timeout=TIMEOUT)
    assert {f"Loading {m.path.name}…" for m in (a, b)} <= set(shown)
    assert not bar.currentMessage().startswith("Loading"), shown
    assert bar.currentMessage() in {f"Loaded {m.path.name}" for m in (a, b)}
    # A model that fails to load replaces its "Loading" too.
    broken = shutil.copytree(a.path, tmp_path / "broken-model")
    view.set_models([a, b, inspect_model(broken)])  # the picks stay: no new defaults
    (broken / "model.safetensors").unlink()
    view.set_pair(broken, b.path)
    view.text.setText("a dull film")
    view.predict_now()
    qtbot.waitUntil(lambda: bool(view.panels["a"].error), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not view.busy(), timeout=TIMEOUT)
    assert bar.currentMessage() == "Could not load broken-model", shown
