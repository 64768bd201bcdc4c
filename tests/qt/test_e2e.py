"""End to end, as a first-time user: wizard → job → charts → Compare → Playground.

Drives the real main window on a tiny model and the built-in demo data.
"""

from __future__ import annotations

import pytest

from slimpajama_gui.qt.main_window import MainWindow
from tests.figures import measured

from .test_wizard import choose, click, click_group_check, click_run, go_next, type_into

JOB_TIMEOUT = 180_000
TIMEOUT = 30_000


@pytest.fixture
def window(qtbot, tiny_minilm):
    win = MainWindow()
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.models_view.scan_finished, timeout=TIMEOUT):
        win.show()
    with qtbot.waitSignal(win.models_view.scan_finished, timeout=TIMEOUT):
        win.models_view.add_folders([tiny_minilm])
    assert win.models_view.selected_info().path == tiny_minilm
    yield win
    win.jobs_view.shutdown(timeout_s=10)


def run_wizard(qtbot, win: MainWindow, *, distill_epochs: str) -> None:
    """Compress → New compression job… → custom chain: heads pruning + distill + int8."""
    win.show_area("compress")
    click(qtbot, win.compress_page.new_button)
    w = win.compress_page.wizard
    qtbot.waitExposed(w)
    assert w.model_page.selected_info().name == "tiny-minilm"
    go_next(qtbot, w)
    qtbot.waitUntil(w.data_page.isComplete, timeout=TIMEOUT)  # the demo data
    go_next(qtbot, w)
    tech = w.techniques_page
    click(qtbot, tech.preset_buttons["custom"])
    if tech.vocab_box.isChecked():
        click_group_check(qtbot, tech.vocab_box)
    if not tech.distill_box.isChecked():
        click_group_check(qtbot, tech.distill_box)
    click_group_check(qtbot, tech.heads_box)
    type_into(qtbot, tech.heads_amount, "50")
    if not tech.quant_box.isChecked():
        click_group_check(qtbot, tech.quant_box)
    choose(qtbot, tech.quant_method, "dyn")
    choose(qtbot, tech.quant_backend, "Py")
    type_into(qtbot, tech.tolerance, "50")
    go_next(qtbot, w)
    settings = w.settings_page
    type_into(qtbot, settings.row_for("distill").epochs, distill_epochs)
    type_into(qtbot, settings.row_for("prune", "heads").epochs, "0")
    go_next(qtbot, w)
    assert "smaller than" in w.review_page.headline.text()
    with qtbot.waitSignal(win.jobs_view.runner.job_started, timeout=TIMEOUT):
        click_run(qtbot, w)
    assert win.current_area() == "jobs"


def test_wizard_job_charts_compare_playground(qtbot, window):
    win = window
    with qtbot.waitSignal(win.jobs_view.runner.job_finished, timeout=JOB_TIMEOUT) as done:
        run_wizard(qtbot, win, distill_epochs="0.3")
    job_id, status, error = done.args
    assert status == "done", error

    # Jobs: the row says done and the charts hold what the job logged.
    model = win.jobs_view.model
    row = model.row_of_job(job_id)
    assert model.row_at(row).status == "done"
    charts = win.jobs_view.current_charts()
    qtbot.waitUntil(lambda: charts.loss.count() >= 3, timeout=TIMEOUT)
    assert charts.accuracy.count() >= 1
    assert charts.latency.count() >= 1 and charts.size.count() >= 1

    # Compare: every saved variant of the job is listed and plotted.
    win.show_area("compare")
    with qtbot.waitSignal(win.compare_view.loaded, timeout=TIMEOUT):
        win.compare_view.refresh()
    names = [v.name for v in win.compare_view.model.rows()]
    assert sum("distill" in n or "prune" in n or "quantize" in n for n in names) >= 3, names

    # Playground: the original and the latest variant both predict a typed sentence.
    win.show_area("playground")
    pg = win.playground
    # The job's variants reach the pickers after the browser rescans; pick the original
    # and the newest variant, as a user would in the two combo boxes.
    latest = win.jobs_view.store.variants(job_id)[0].path
    qtbot.waitUntil(
        lambda: any(str(i.path) == latest for i in win.models_view.model.infos()), timeout=TIMEOUT
    )
    picker = pg.pickers["b"]
    qtbot.waitUntil(lambda: picker.findData(latest) >= 0, timeout=TIMEOUT)
    pg.set_pair(tiny_path(win), latest)
    assert str(pg.path("b")) == latest and latest.endswith("-quantize")
    shown: dict[str, object] = {}
    pg.prediction_shown.connect(lambda side, pred: shown.__setitem__(side, pred))
    qtbot.keyClicks(pg.text, "A warm and funny film.")
    qtbot.waitUntil(lambda: {"a", "b"} <= set(shown), timeout=TIMEOUT)
    for pred in shown.values():
        assert pred.label in pred.label_names and abs(float(pred.probs.sum()) - 1) < 1e-4
        assert measured(pred.ms)


def tiny_path(win: MainWindow):
    return next(i.path for i in win.models_view.model.infos() if i.name == "tiny-minilm")


def test_cancel_mid_job_leaves_a_usable_app(qtbot, window):
    win = window
    runner = win.jobs_view.runner
    progressed: list[int] = []
    runner.bridge.progress.connect(lambda i, done, total: progressed.append(done))
    with qtbot.waitSignal(runner.job_finished, timeout=JOB_TIMEOUT) as done:
        run_wizard(qtbot, win, distill_epochs="50")
        qtbot.waitUntil(lambda: len(progressed) >= 2, timeout=JOB_TIMEOUT)
        click(qtbot, win.jobs_view.cancel_button)
    job_id, status, _error = done.args
    assert status == "cancelled"
    assert win.jobs_view.model.row_at(win.jobs_view.model.row_of_job(job_id)).status == "cancelled"
    # Still usable: the browser rescans, the wizard opens again.
    with qtbot.waitSignal(win.models_view.scan_finished, timeout=TIMEOUT):
        win.models_view.rescan()
    win.show_area("compress")
    click(qtbot, win.compress_page.new_button)
    qtbot.waitExposed(win.compress_page.wizard)
    win.compress_page.wizard.reject()
