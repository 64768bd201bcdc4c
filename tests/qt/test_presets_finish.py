"""Every built-in preset, chosen in the wizard for the packaged MiniLM and the built-in
demo data, finishes as a job (issue: Balanced failed in its quantize step on 100 dev rows).

Training is capped at a few steps (``SLIMPAJAMA_MAX_TRAIN_STEPS``, honoured by the one
training loop) so the suite stays quick; every other setting is the preset's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slimpajama_gui.core.model.catalog import packaged_minilm_path
from slimpajama_gui.core.plan.presets import PRESETS
from slimpajama_gui.core.plan.steps import FineTune
from slimpajama_gui.core.techniques.train import MAX_STEPS_ENV
from slimpajama_gui.qt.main_window import MainWindow

from .test_wizard import click, click_run, go_next

JOB_TIMEOUT = 600_000
TIMEOUT = 60_000


@pytest.fixture
def window(qtbot, monkeypatch):
    monkeypatch.setenv(MAX_STEPS_ENV, "2")
    win = MainWindow()
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.models_view.scan_finished, timeout=TIMEOUT):
        win.show()
    win.models_view.select_path(packaged_minilm_path())
    assert win.models_view.selected_info().path == packaged_minilm_path()
    yield win
    win.jobs_view.shutdown(timeout_s=30)


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_finishes_on_the_demo_data_through_the_wizard(qtbot, window, preset):
    win = window
    win.show_area("compress")
    click(qtbot, win.compress_page.new_button)
    w = win.compress_page.wizard
    qtbot.waitExposed(w)
    assert w.model_page.selected_info().path == packaged_minilm_path()
    go_next(qtbot, w)
    qtbot.waitUntil(w.data_page.isComplete, timeout=TIMEOUT)
    assert w.data_page.demo_radio.isChecked()
    go_next(qtbot, w)
    tech = w.techniques_page
    click(qtbot, tech.preset_buttons[preset])
    chain = tech.chain()
    # The text above the chain says what the chain shown trains.
    assert isinstance(chain[0], FineTune)
    text = tech.description.text()
    assert "No training" not in text and "Fine-tune (3 epochs)" in text.split("<br>")[0]
    go_next(qtbot, w)
    go_next(qtbot, w)
    runner = win.jobs_view.runner
    with (
        qtbot.waitSignal(runner.job_finished, timeout=JOB_TIMEOUT) as done,
        qtbot.waitSignal(runner.job_started, timeout=TIMEOUT),
    ):
        click_run(qtbot, w)
    job_id, status, error = done.args
    assert status == "done", error
    model = win.jobs_view.model
    qtbot.waitUntil(
        lambda: model.row_at(model.row_of_job(job_id)).status == "done", timeout=TIMEOUT
    )

    # The quantize step's variant says what its accuracy guard decided, in a sentence.
    paths = [Path(v.path) for v in win.jobs_view.store.variants(job_id)]
    quantized = next(p for p in paths if p.name.endswith("-quantize"))
    guard = json.loads((quantized / "slimpajama.json").read_text())["onnx"]["accuracy_guard"]
    assert guard["kept"] and "of 100 predictions" in guard["onnxruntime"]["verdict"]
    assert (quantized / "model.onnx").is_file()
