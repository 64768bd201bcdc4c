"""The Jobs area as a user drives it: run, watch, cancel, fail, close — on a tiny model."""

from __future__ import annotations

import csv
import html
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QModelIndex, QPointF, Qt, QThreadPool
from PySide6.QtGui import QDesktopServices, QGuiApplication

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs import pipeline
from slimpajama_gui.core.paths import data_dir
from slimpajama_gui.core.plan.recipe import recipe_from_yaml
from slimpajama_gui.core.storage.history import JobStore, MetricRecord
from slimpajama_gui.qt.charts import JobCharts, LiveCurves, SparsityBars, group_records
from slimpajama_gui.qt.jobs import JobRunner
from slimpajama_gui.qt.jobs_table import (
    COL_PROGRESS,
    COL_STATUS,
    PROGRESS_ROLE,
    JobRow,
    JobTableModel,
)
from slimpajama_gui.qt.jobs_view import JobsView

JOB_TIMEOUT = 120_000

FINETUNE = """
  - type: finetune
    epochs: {epochs}
    max_steps: {max_steps}
    learning_rate: 3.0e-3
    batch_size: 16
    warmup_ratio: 0.1
    log_every_steps: 1
"""
MEASURE = """
  - type: evaluate
  - type: benchmark
    threads: 1
    sentences: 5
    repeats: 1
    warmup: 1
    throughput_batch: 4
"""


def make_recipe(model: Path, output: Path, steps: str, dataset: str = "train: demo"):
    text = f"""
name: {output.name}
model: {model}
dataset:
  {dataset}
  labels: [negative, positive]
  max_length: 48
output: {output}
steps:
{steps}
"""
    return recipe_from_yaml(text, source="test.yaml", base_dir=output.parent)


def short_job(model: Path, output: Path, max_steps: int = 6, *, measure: bool = True):
    steps = FINETUNE.format(epochs=1, max_steps=max_steps) + (MEASURE if measure else "")
    return make_recipe(model, output, steps)


def long_job(model: Path, output: Path):
    """Thousands of steps: only ever ends by being cancelled."""
    return make_recipe(model, output, FINETUNE.format(epochs=200, max_steps=100_000))


def evaluate_only(model: Path, output: Path):
    return make_recipe(model, output, "  - type: evaluate\n")


@pytest.fixture
def view(qtbot):
    v = JobsView()
    qtbot.addWidget(v)
    v.resize(1200, 820)
    v.show()
    yield v
    assert v.shutdown(timeout_s=30)
    assert not v.runner.is_running


def status_cell(view: JobsView, job_id: int) -> str:
    row = view.model.row_of_job(job_id)
    assert row is not None, f"job {job_id} is not in the table"
    return view.model.index(row, COL_STATUS).data()


# --------------------------------------------------------------------------- a whole job


def test_a_job_runs_to_done_with_live_charts_and_exports(
    view, qtbot, tiny_minilm, tmp_path, monkeypatch
):
    with qtbot.waitSignal(view.runner.job_finished, timeout=JOB_TIMEOUT) as finished:
        view.submit(short_job(tiny_minilm, tmp_path / "out"))
        assert status_cell_of_first_row(view) in ("queued", "running")
    job_id, status, error = finished.args
    assert status == "done", error
    assert not view.runner.is_running

    # The row shows the outcome and a full bar; the finished job stays selected.
    assert status_cell(view, job_id) == "done"
    row = view.model.row_of_job(job_id)
    assert view.model.index(row, COL_PROGRESS).data(PROGRESS_ROLE) == pytest.approx(1.0)
    assert view.selected_row().job_id == job_id
    assert not view.cancel_button.isEnabled() and view.failure.isHidden()

    charts = view.current_charts()
    assert charts is view.live_charts
    charts.flush()
    assert charts.loss.count("loss") >= 3
    assert charts.lr.count("lr") >= 3
    assert charts.accuracy.count("eval") >= 1  # during training
    assert charts.accuracy.count("eval (pipeline step)") == 1
    assert charts.latency.count("p50") == 1 and charts.size.count("size") == 1
    x, _ = charts.loss.points("loss")
    assert list(x[:3]) == [1.0, 2.0, 3.0]

    # Export: PNG and SVG pictures and CSV numbers, none empty.
    exported = tmp_path / "exported"
    for suffix in (".png", ".svg", ".csv"):
        path = charts.loss.export(exported / f"loss{suffix}")
        assert path.stat().st_size > 0, path
    with (exported / "loss.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len([r for r in rows if r["series"] == "loss"]) == charts.loss.count("loss")
    assert len(charts.export_all(exported / "all")) == 18
    with pytest.raises(UserError, match=r"\.png, \.svg or \.csv"):
        charts.loss.export(exported / "loss.jpg")

    # The history holds the same numbers: a finished job's charts look the same later.
    again = JobCharts()
    qtbot.addWidget(again)
    again.load_history(view.store.metrics(job_id))
    for name in ("loss", "accuracy", "learning-rate", "latency", "size"):
        live, replay = charts.charts[name], again.charts[name]
        for curve in live.names:
            np.testing.assert_allclose(replay.points(curve)[0], live.points(curve)[0])
            np.testing.assert_allclose(replay.points(curve)[1], live.points(curve)[1])

    # Open result names the saved variant; the folder opens through the desktop.
    assert view.result_button.isEnabled()
    with qtbot.waitSignal(view.open_result, timeout=10_000) as opened:
        qtbot.mouseClick(view.result_button, Qt.MouseButton.LeftButton)
    assert Path(opened.args[0]) == tmp_path / "out" / "01-finetune"
    urls = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: urls.append(url))
    qtbot.mouseClick(view.open_folder_button, Qt.MouseButton.LeftButton)
    assert [Path(u.toLocalFile()) for u in urls] == [tmp_path / "out"]

    # Recipe and log dialogs.
    dialog = view.show_recipe()
    assert "max_steps: 6" in dialog.text.toPlainText()
    dialog.copy()
    assert "max_steps: 6" in QGuiApplication.clipboard().text()
    dialog = view.show_log()
    text = dialog.text.toPlainText()
    assert "step 1/3: finetune" in text and f"job #{job_id} done" in text
    assert "saved" in text and (data_dir() / "logs" / f"job-{job_id}.log").is_file()
    dialog.close()


def status_cell_of_first_row(view: JobsView) -> str:
    return view.model.index(0, COL_STATUS).data()


def _on_training_steps(monkeypatch, hook) -> None:
    """Calls ``hook(done, control)`` on the worker after every step the pipeline reports."""
    real_run = pipeline.run

    def watched_run(recipe, callbacks, control, *, store, device=None):
        forward = callbacks.on_progress

        def on_progress(index, done, total):
            hook(done, control)
            forward(index, done, total)

        callbacks.on_progress = on_progress
        try:
            return real_run(recipe, callbacks, control, store=store, device=device)
        finally:
            del callbacks.on_progress

    monkeypatch.setattr(pipeline, "run", watched_run)


def test_the_job_trains_off_the_gui_thread_while_the_gui_handles_events(
    view, qtbot, tiny_minilm, tmp_path, monkeypatch, gui_probe
):
    # At every training step the worker waits until the GUI thread has handled events:
    # a GUI thread that ran the job, or waited on it, never would.
    _on_training_steps(monkeypatch, lambda done, control: gui_probe.check_in())
    with qtbot.waitSignal(view.runner.job_finished, timeout=JOB_TIMEOUT) as finished:
        view.submit(short_job(tiny_minilm, tmp_path / "out", max_steps=20, measure=False))
    assert finished.args[1] == "done", finished.args
    gui_probe.assert_work_ran_off_the_gui_thread(calls=20)
    charts = view.current_charts()
    charts.flush()
    assert charts.loss.count("loss") == 20  # a point per step reached the chart


# --------------------------------------------------------------------------- cancel


def test_cancel_stops_the_job_at_the_next_training_step_and_the_view_stays_usable(
    view, qtbot, tiny_minilm, tmp_path, monkeypatch
):
    steps: list[tuple[int, bool]] = []  # (step, stop already requested), on the worker
    _on_training_steps(monkeypatch, lambda done, control: steps.append((done, control.should_stop)))
    with qtbot.waitSignal(view.runner.bridge.progress, timeout=JOB_TIMEOUT):
        view.submit(long_job(tiny_minilm, tmp_path / "long"))
    assert view.runner.is_running and view.selected_row().status == "running"
    assert view.cancel_button.isEnabled()
    with qtbot.waitSignal(view.runner.job_finished, timeout=JOB_TIMEOUT) as finished:
        qtbot.mouseClick(view.cancel_button, Qt.MouseButton.LeftButton)
        assert not view.cancel_button.isEnabled()  # no double cancel
    job_id, status, error = finished.args
    assert status == "cancelled", (status, error)
    # The step under way when the click landed may end; no step starts after it.
    assert sum(requested for _, requested in steps) <= 1, steps
    assert steps[-1][0] < 1000  # of 100,000 planned: it stopped, it did not run out
    assert not (tmp_path / "long").exists() or not any((tmp_path / "long").iterdir())
    assert status_cell(view, job_id) == "cancelled"
    assert view.store.get_job(job_id).status == "cancelled"
    assert view.failure.isVisible()
    # One sentence naming the step, not "was cancelled. cancelled during …".
    banner = view.failure.text()
    assert f"Job #{job_id} was cancelled during" in banner, banner
    assert banner.lower().count("cancelled") == 1, banner
    assert not view.cancel_button.isEnabled()

    # Usable afterwards: another job runs to the end.
    with qtbot.waitSignal(view.runner.job_finished, timeout=JOB_TIMEOUT) as again:
        view.submit(evaluate_only(tiny_minilm, tmp_path / "after"))
    assert again.args[1] == "done", again.args
    assert status_cell(view, again.args[0]) == "done"


def test_after_cancel_the_view_stays_on_the_cancelled_job(view, qtbot, tiny_minilm, tmp_path):
    """The next queued job starts at once after a cancel; the selection must not jump to
    it, or a second click on Cancel would stop a job the user did not choose."""
    with qtbot.waitSignal(view.runner.bridge.progress, timeout=JOB_TIMEOUT):
        view.submit(long_job(tiny_minilm, tmp_path / "long"))
    cancelled = view.runner.current_job_id
    view.submit(evaluate_only(tiny_minilm, tmp_path / "next"))
    view.select_job(cancelled)
    # The bridge's signal, not the runner's: the view's own handler of it runs first.
    with (
        qtbot.waitSignal(view.runner.job_finished, timeout=JOB_TIMEOUT) as first,
        qtbot.waitSignal(view.runner.bridge.job_started, timeout=JOB_TIMEOUT) as started,
    ):
        qtbot.mouseClick(view.cancel_button, Qt.MouseButton.LeftButton)
    assert first.args[0] == cancelled and started.args[0] != cancelled
    assert view.selected_row().job_id == cancelled
    assert not view.cancel_button.isEnabled()  # the selected job is over
    # The job that started was never cancelled: it ends done.
    qtbot.waitUntil(lambda: view.store.get_job(started.args[0]).is_final, timeout=JOB_TIMEOUT)
    assert view.store.get_job(started.args[0]).status == "done"
    # A job submitted afterwards is followed again.
    with qtbot.waitSignal(view.runner.bridge.job_started, timeout=JOB_TIMEOUT) as later:
        view.submit(evaluate_only(tiny_minilm, tmp_path / "later"))
    assert view.selected_row().job_id == later.args[0]


def test_a_queued_job_can_be_taken_off_the_queue(view, qtbot, tiny_minilm, tmp_path):
    with qtbot.waitSignal(view.runner.bridge.progress, timeout=JOB_TIMEOUT):
        view.submit(long_job(tiny_minilm, tmp_path / "long"))
    view.submit(evaluate_only(tiny_minilm, tmp_path / "waiting"))
    assert [r.status for r in view.model.rows()][:2] == ["queued", "running"]
    assert view.queue_label.text() == "1 waiting"
    view.table.selectRow(0)
    assert view.cancel_button.isEnabled() and not view.rerun_button.isEnabled()
    qtbot.mouseClick(view.cancel_button, Qt.MouseButton.LeftButton)
    assert not view.runner.pending and view.model.rows()[0].status == "running"
    with qtbot.waitSignal(view.runner.job_finished, timeout=JOB_TIMEOUT) as finished:
        view.runner.cancel()
    assert finished.args[1] == "cancelled"
    # Nothing else starts: the removed recipe never runs.
    qtbot.wait(100)
    assert not view.runner.is_running


# --------------------------------------------------------------------------- failures


def test_a_missing_dataset_file_ends_failed_with_the_sentence_shown(
    view, qtbot, tiny_minilm, tmp_path
):
    missing = tmp_path / "nowhere" / "reviews.csv"
    recipe = make_recipe(
        tiny_minilm,
        tmp_path / "out",
        FINETUNE.format(epochs=1, max_steps=3),
        dataset=f"train: {missing}\n  text_column: text",
    )
    with qtbot.waitSignal(view.runner.job_finished, timeout=JOB_TIMEOUT) as finished:
        view.submit(recipe)
    job_id, status, error = finished.args
    assert status == "failed" and "reviews.csv" in error
    assert status_cell(view, job_id) == "failed"
    assert view.selected_row().job_id == job_id
    assert view.failure.isVisible()
    assert "reviews.csv" in view.failure.text() and "loading the model and data" in (
        view.failure.text()
    )
    tooltip = view.model.index(view.model.row_of_job(job_id), 0).data(Qt.ItemDataRole.ToolTipRole)
    assert "reviews.csv" in tooltip
    dialog = view.show_log()
    assert "reviews.csv" in dialog.note.text()
    assert not view.result_button.isEnabled()


def test_F9_an_exception_in_the_worker_fails_the_job_and_the_app_stays_usable(
    view, qtbot, tiny_minilm, tmp_path, monkeypatch
):
    """docs/reliability.md F9: the job is marked failed, a sentence is shown, the next job runs."""
    real_run = pipeline.run

    def broken_run(recipe, callbacks, control, *, store, device=None):
        job_id = store.create_job(recipe.name, "name: broken\n", str(tmp_path / "broken"))
        store.mark_running(job_id)
        callbacks.on_job_start(job_id, recipe)
        raise RuntimeError("boom in the engine")

    monkeypatch.setattr(pipeline, "run", broken_run)
    with (
        qtbot.waitSignal(view.runner.errored, timeout=JOB_TIMEOUT) as errored,
        qtbot.waitSignal(view.runner.job_finished, timeout=JOB_TIMEOUT) as finished,
    ):
        view.submit(evaluate_only(tiny_minilm, tmp_path / "broken"))
    sentence = errored.args[0]
    assert sentence.startswith("The job failed (RuntimeError: boom in the engine).")
    assert "This is a bug" in sentence
    job_id, status, _error = finished.args
    assert status == "failed"
    job = view.store.get_job(job_id)
    assert job.status == "failed" and "boom in the engine" in job.error
    assert status_cell(view, job_id) == "failed" and view.failure.isVisible()
    assert view.error_dialog is not None and view.error_dialog.isVisible()
    assert "boom" in view.error_dialog.text()
    view.error_dialog.close()

    monkeypatch.setattr(pipeline, "run", real_run)
    with qtbot.waitSignal(view.runner.job_finished, timeout=JOB_TIMEOUT) as again:
        view.submit(evaluate_only(tiny_minilm, tmp_path / "fine"))
    assert again.args[1] == "done", again.args


def test_an_invalid_recipe_is_refused_at_submit(view, tiny_minilm, tmp_path):
    recipe = evaluate_only(tiny_minilm, tmp_path / "out")
    recipe.output = str(tiny_minilm / "inside")  # as a wizard bug might build it
    with pytest.raises(UserError, match="source model"):
        view.submit(recipe)
    assert not view.runner.pending and not view.runner.is_running


def test_rerun_submits_the_stored_recipe_again(view, qtbot, tiny_minilm, tmp_path):
    with qtbot.waitSignal(view.runner.job_finished, timeout=JOB_TIMEOUT) as first:
        view.submit(evaluate_only(tiny_minilm, tmp_path / "out"))
    view.select_job(first.args[0])
    with qtbot.waitSignal(view.runner.job_finished, timeout=JOB_TIMEOUT) as second:
        qtbot.mouseClick(view.rerun_button, Qt.MouseButton.LeftButton)
    assert second.args[1] == "done" and second.args[0] != first.args[0]
    assert view.selected_row().job_id == second.args[0]  # the view follows the new run
    old, new = view.store.get_job(first.args[0]), view.store.get_job(second.args[0])
    # The same recipe, saving into a new folder beside the first run's.
    assert new.output == str(tmp_path / "out-run2") and old.output == str(tmp_path / "out")
    assert new.recipe_yaml == old.recipe_yaml.replace(
        f"output: {tmp_path / 'out'}", f"output: {tmp_path / 'out-run2'}"
    )


# --------------------------------------------------------------------------- closing


def test_shutdown_while_running_stops_the_job_and_leaves_no_worker(
    view, qtbot, tiny_minilm, tmp_path
):
    with qtbot.waitSignal(view.runner.bridge.progress, timeout=JOB_TIMEOUT):
        view.submit(long_job(tiny_minilm, tmp_path / "long"))
    job_id = view.runner.current_job_id
    store_path = view.store.path
    assert view.shutdown(timeout_s=30)
    assert not view.runner.is_running
    with JobStore(store_path) as store:
        assert store.get_job(job_id).status in ("cancelled", "interrupted")
    qtbot.waitUntil(lambda: QThreadPool.globalInstance().activeThreadCount() == 0, timeout=30_000)
    with pytest.raises(UserError, match="closing"):
        view.submit(evaluate_only(tiny_minilm, tmp_path / "late"))


def test_a_job_that_does_not_stop_in_time_is_marked_interrupted(
    qtbot, tiny_minilm, tmp_path, monkeypatch
):
    release = threading.Event()

    def stuck_run(recipe, callbacks, control, *, store, device=None):
        job_id = store.create_job(recipe.name, "name: stuck\n", str(tmp_path / "stuck"))
        store.mark_running(job_id)
        callbacks.on_job_start(job_id, recipe)
        release.wait(30)  # ignores the stop request, like a step stuck in I/O
        return pipeline.PipelineResult(job_id=job_id, status="cancelled")

    monkeypatch.setattr(pipeline, "run", stuck_run)
    store = JobStore(tmp_path / "history.sqlite3")
    runner = JobRunner(store)
    with qtbot.waitSignal(runner.job_started, timeout=30_000) as started:
        runner.submit(evaluate_only(tiny_minilm, tmp_path / "stuck"))
    assert runner.shutdown(timeout_s=0.3) is False
    assert store.get_job(started.args[0]).status == "interrupted"
    release.set()  # let the thread end so nothing outlives the test
    qtbot.waitUntil(lambda: not runner.is_running, timeout=30_000)
    store.close()


# --------------------------------------------------------------------------- history


def test_F10_a_damaged_history_shows_a_banner_and_the_view_works(qtbot):
    path = data_dir() / "history.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    view = JobsView()
    qtbot.addWidget(view)
    assert view.banner.isVisibleTo(view) and "damaged" in view.banner.label.text()
    assert view.model.rowCount() == 0 and view.empty_hint.isVisibleTo(view)
    assert view.shutdown(1)


def _fill_history(store: JobStore) -> dict[str, int]:
    ids = {}
    for name, status in (("done", "done"), ("failed", "failed"), ("running", "running")):
        job = store.create_job(name, f"name: {name}\n", f"/tmp/{name}")
        store.mark_running(job)
        if status != "running":
            store.finish(job, status, error="it broke" if status == "failed" else None)
        ids[name] = job
    store.set_progress(ids["running"], 0.5)
    store.log_metrics(ids["done"], 0, "finetune", {"loss": 0.7, "lr": 1e-4, "step": 1})
    store.log_metrics(ids["done"], 0, "finetune", {"loss": 0.5, "lr": 2e-4, "step": 2})
    store.log_metrics(ids["done"], 0, "finetune", {"eval_accuracy": 0.8, "step": 2})
    store.log_metrics(ids["done"], 1, "benchmark", {"latency_p50_ms": 3.0, "size_bytes": 2e6})
    return ids


def test_jobs_table_model_passes_the_model_tester(qtmodeltester, tmp_path):
    with JobStore(tmp_path / "history.sqlite3") as store:
        _fill_history(store)
        rows = [JobRow.from_record(r) for r in store.list_jobs()]
    queued = JobRow(None, 7, "waiting", "queued", time.time(), recipe_yaml="name: w\n")
    model = JobTableModel()
    model.set_rows([queued, *rows])
    qtmodeltester.check(model)
    assert [model.index(r, COL_STATUS).data() for r in range(4)] == [
        "queued",
        "running",
        "failed",
        "done",
    ]
    running = model.row_at(1)
    # The history holds no time left: none is claimed until the engine measures it.
    assert running.remaining is None
    model.set_live_progress(running.job_id, 0.75, 30.0, True)
    assert model.index(1, COL_PROGRESS).data(PROGRESS_ROLE) == pytest.approx(0.75)
    assert 0 <= running.remaining <= 30.0
    assert model.index(0, 0, QModelIndex()).data(Qt.ItemDataRole.ToolTipRole)
    qtmodeltester.check(model)


def test_the_progress_cell_fills_from_the_left_and_remaining_reads_whole(qtbot):
    """A running job at 20 %: a fifth of the bar is filled left to right (Fusion drew an
    empty box until about a third, filling bottom-up), and its estimate is not elided."""
    from PySide6.QtWidgets import QApplication

    from slimpajama_gui.qt.jobs_table import COL_REMAINING, jobs_table_view

    QApplication.instance().setStyle("Fusion")
    now = time.time()
    row = JobRow(1, None, "a job", "running", now, started_at=now - 60, progress=0.2,
                 remaining_s=59 * 60 + 59, remaining_at=now)  # fmt: skip
    model = JobTableModel()
    model.set_rows([row])
    view = jobs_table_view(model)
    qtbot.addWidget(view)
    view.resize(1100, 200)
    view.show()
    qtbot.waitExposed(view)
    cell = view.visualRect(model.index(0, COL_PROGRESS))
    image = view.viewport().grab(cell).toImage()
    y = image.height() // 2
    highlight = view.palette().highlight().color()

    def filled(x: int) -> bool:
        c = image.pixelColor(x, y)
        return abs(c.hue() - highlight.hue()) < 20 and c.saturation() > 80

    width = image.width()
    assert filled(int(width * 0.08)), "the first tenth of a 20 % bar is filled"
    assert not filled(int(width * 0.6)) and not filled(int(width * 0.9))
    text = model.index(0, COL_REMAINING).data()
    assert text.endswith("(estimate)")
    # The header says what "~" and "≈ … (estimate)" mean (a tryout could not tell).
    tip = model.headerData(COL_REMAINING, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert "~2 min 10 s: measured" in tip and "≈ 2 min (estimate)" in tip
    needed = view.fontMetrics().horizontalAdvance(text)
    assert view.columnWidth(COL_REMAINING) > needed


def test_selecting_a_finished_job_shows_its_history(qtbot, tmp_path):
    store = JobStore(tmp_path / "history.sqlite3")
    ids = _fill_history(store)
    view = JobsView(store=store)
    qtbot.addWidget(view)
    view.select_job(ids["done"])
    charts = view.current_charts()
    assert charts is view.history_charts
    assert charts.loss.count("loss") == 2 and charts.accuracy.count("eval") == 1
    assert charts.latency.points("p50")[0].tolist() == [2.0]  # pipeline step 2
    view.select_job(ids["failed"])
    assert view.failure.isVisibleTo(view) and "it broke" in view.failure.text()
    assert charts.loss.count() == 0
    # A job running in another process is shown, but only its own process can cancel it.
    view.select_job(ids["running"])
    assert not view.cancel_button.isEnabled()
    assert view.shutdown(1)


# --------------------------------------------------------------------------- charts


def test_live_curves_grow_by_doubling_and_draw_only_on_change(qtbot):
    chart = LiveCurves("Loss", y_label="loss")
    qtbot.addWidget(chart)
    for i in range(1000):
        chart.append("loss", i, 1.0 / (i + 1))
    series = chart._series["loss"]
    assert series.n == 1000 and len(series.x) == 1024  # 64 doubled four times
    assert chart._timer.isActive()
    qtbot.waitUntil(lambda: not chart._timer.isActive(), timeout=10_000)
    assert len(series.item.getData()[0]) == 1000
    assert not series.dirty
    name, x, y, _ = chart.nearest_point(10.2, 0.09)
    assert (name, x) == ("loss", 10.0)
    # The mouse near a point shows its values.
    chart.resize(500, 300)
    chart.show()
    chart.getPlotItem().setRange(xRange=(0, 20), yRange=(0, 1), padding=0)
    qtbot.waitExposed(chart)
    scene_pos = chart.getPlotItem().getViewBox().mapViewToScene(QPointF(10.0, 1 / 11))
    with qtbot.waitSignal(chart.hovered, timeout=10_000) as hovered:
        chart.scene().sigMouseMoved.emit(scene_pos)
    assert hovered.args[0] == "loss: 0.09091 at 10"
    chart.clear_data()
    assert chart.count() == 0 and chart.names == []


def test_sparsity_bars_update_in_place_in_layer_order(qtbot, tmp_path):
    bars = SparsityBars()
    qtbot.addWidget(bars)
    bars.set_values({"layer 10": 0.9, "layer 2": 0.5, "embeddings": 0.1})
    bars.set_value("layer 2", 0.6)
    assert list(bars.values()) == ["embeddings", "layer 2", "layer 10"]
    assert bars.values()["layer 2"] == 0.6
    assert "layer 10,2.0,90.0" in bars.export(tmp_path / "s.csv").read_text()
    charts = JobCharts()
    qtbot.addWidget(charts)
    charts.add_metrics(0, {"loss": 0.3, "kd": 0.2, "lr": 1e-4, "step": 1, "grad_norm": 1.0})
    assert set(charts.loss.names) == {"loss", "kd"}
    # What the prune step reports (core.jobs.handlers.prune.report_sparsity).
    charts.add_metrics(1, {"sparsity/layer 0": 0.5, "sparsity/head": 0.1, "sparsity/overall": 0.4})
    assert charts.sparsity.values() == {"head": 0.1, "layer 0": 0.5}
    assert charts.sparsity.overall == 0.4
    # A quantize step's figures: only the split accuracy is drawn, as a step marker.
    charts.add_metrics(
        2, {"baseline_accuracy": 0.9, "quantized_accuracy": 0.8, "eval_accuracy": 0.85}
    )
    assert charts.accuracy.names == ["eval (pipeline step)"]


def test_group_records_rebuilds_each_logged_dict():
    records = [
        MetricRecord(1, 0, "finetune", "loss", 0.5, 10.0),
        MetricRecord(1, 0, "finetune", "step", 1, 10.0),
        MetricRecord(1, 0, "finetune", "loss", 0.4, 11.0),
        MetricRecord(1, 0, "finetune", "step", 2, 11.0),
        MetricRecord(1, 1, "evaluate", "eval_accuracy", 0.9, 11.0),
    ]
    assert group_records(records) == [
        (0, {"loss": 0.5, "step": 1}),
        (0, {"loss": 0.4, "step": 2}),
        (1, {"eval_accuracy": 0.9}),
    ]


def test_many_signals_do_not_use_up_none_true_or_false(qtbot):
    """PySide6 6.12.0 on CPython 3.11 drops a reference per emit()/void call until the
    interpreter aborts ("deallocating None"); pyproject.toml keeps it out. This fails
    fast on any PySide6 with that bug."""
    import sys

    from PySide6.QtWidgets import QLabel

    from slimpajama_gui.qt.bridge import JobBridge

    bridge = JobBridge()
    label = QLabel()
    qtbot.addWidget(label)
    before = sys.getrefcount(True), sys.getrefcount(None)
    for i in range(20_000):  # about what a long job emits
        bridge.progress.emit(0, i, 20_000)
        label.setText("x")
    after = sys.getrefcount(True), sys.getrefcount(None)
    assert after[0] >= before[0] - 100 and after[1] >= before[1] - 100, (before, after)


def test_jobs_a_cli_process_runs_appear_and_their_end_is_announced(qtbot, tmp_path):
    """A job run from the command line while the app is open (another writer of the same
    history) shows up in the table with its progress, without F5, and its end is
    announced so that the browser and Compare can pick up its results."""
    store = JobStore(tmp_path / "history.sqlite3")
    view = JobsView(store=store)
    qtbot.addWidget(view)
    assert view.model.rowCount() == 0
    cli = JobStore(tmp_path / "history.sqlite3")  # the CLI's own connection
    job = cli.create_job("from-the-cli", "name: from-the-cli\n", str(tmp_path / "out"))
    cli.mark_running(job)
    cli.set_progress(job, 0.4)
    qtbot.waitUntil(lambda: view.model.row_of_job(job) is not None, timeout=10_000)
    assert status_cell(view, job) == "running"
    with qtbot.waitSignal(view.external_job_finished, timeout=10_000) as ended:
        cli.finish(job, "done")
    assert ended.args == [job]
    qtbot.waitUntil(lambda: status_cell(view, job) == "done", timeout=5_000)
    cli.close()
    assert view.shutdown(1)


# --------------------------------------------------------------------------- warnings


def test_a_step_warning_stays_readable_in_full_beside_its_job(qtbot, tiny_minilm, tmp_path):
    """A Fast job's quantize warning was cut at the window's edge in the status bar
    ('…more than quantize.tolerance (1.0); smaller losses canno'), then replaced by the
    next message; only Show log had it. It stays, in full, in the job's details, with a
    mark in the Jobs list (this session and the next); the status bar shows a short form
    with the whole text as its tooltip; and it names the wizard's field."""
    from slimpajama_gui.qt.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.models_view.scan_finished, timeout=JOB_TIMEOUT):
        win.show()
    bar = win.statusBar()
    seen: list[tuple[str, str]] = []  # (message, tooltip) as each message appears
    bar.messageChanged.connect(lambda m: seen.append((m, bar.toolTip())))
    view = win.jobs_view
    # 100 demo eval rows cannot show a 1-point loss beyond noise: the guard warns.
    recipe = make_recipe(
        tiny_minilm,
        tmp_path / "warned",
        FINETUNE.format(epochs=1, max_steps=2) + "  - {type: quantize, tolerance: 1.0}\n",
    )
    try:
        with qtbot.waitSignal(view.runner.job_finished, timeout=JOB_TIMEOUT) as finished:
            view.submit(recipe)
        job_id, status, error = finished.args
        assert status == "done", error
        qtbot.waitUntil(lambda: view.selected_row() is not None, timeout=JOB_TIMEOUT)
        view.select_job(job_id)

        [full] = view.selected_row().warnings
        assert full.startswith("on 100 eval rows") and full.endswith("can detect them.")
        assert "Max. loss of 1.0 pt (quantize.tolerance)" in full  # the wizard's words
        box = view.details.warnings
        assert box.isVisibleTo(view) and html.escape(full, quote=False) in box.text()
        row = view.model.row_of_job(job_id)
        cell = view.model.index(row, COL_STATUS)
        assert cell.data(Qt.ItemDataRole.DecorationRole) is not None
        assert full in cell.data(Qt.ItemDataRole.ToolTipRole)
        # The status bar said it short, with the whole text as the tooltip, and the next
        # message did not keep that tooltip.
        [(short, tip)] = [(m, t) for m, t in seen if "warns" in m]
        assert short.startswith(f"⚠ Job #{job_id} warns: on 100 eval rows")
        assert len(short) < len(full) and "job's details" in short and tip == full
        assert bar.currentMessage() != short and bar.toolTip() == ""
    finally:
        win.jobs_view.shutdown(timeout_s=10)

    # The next session reads it back from the job's log.
    later = JobsView()
    qtbot.addWidget(later)
    later.show()
    later.select_job(job_id)
    assert later.selected_row().warnings == [full]
    assert later.details.warnings.isVisibleTo(later)
    cell = later.model.index(later.model.row_of_job(job_id), COL_STATUS)
    assert cell.data(Qt.ItemDataRole.DecorationRole) is not None


def test_the_jobs_list_shows_several_whole_rows_at_1280_by_800(qtbot):
    """At 1280×800 the list showed about a row and a half, the second job cut in half,
    while the charts below took the rest."""
    from slimpajama_gui.qt.main_window import MainWindow

    with JobStore() as store:
        for n in range(1, 5):
            store.create_job(f"job-{n}", "name: job\n", f"/tmp/out-{n}")
    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    qtbot.waitExposed(win)
    win.show_area("jobs")
    view = win.jobs_view
    qtbot.waitUntil(lambda: view.model.rowCount() == 4, timeout=JOB_TIMEOUT)
    qtbot.wait(50)
    table = view.table
    rows = table.viewport().height() / table.rowHeight(0)
    assert rows >= 3.5, rows
    # The charts keep room enough for their two rows.
    assert all(c.height() >= c.minimumHeight() for c in view.live_charts.charts.values())
    win.jobs_view.shutdown(timeout_s=10)


def test_cancel_asks_first_once_a_job_has_run_a_while(
    view, qtbot, tiny_minilm, tmp_path, monkeypatch
):
    """Cancel stopped a job that had run for many minutes at once, without a word, as
    closing the window mid-job never does: past a short while it asks, saying what is
    kept, and Keep running (the default) leaves the job alone."""
    from slimpajama_gui.qt import job_actions

    monkeypatch.setattr(job_actions, "CONFIRM_CANCEL_AFTER_S", 0.0)  # 'a while' has passed
    # A finished evaluation, then a training that only ever ends by being cancelled.
    steps = "  - type: evaluate\n" + FINETUNE.format(epochs=200, max_steps=100_000)
    training: list[int] = []
    view.runner.bridge.progress.connect(lambda index, *_: training.append(index))
    view.submit(make_recipe(tiny_minilm, tmp_path / "long", steps))
    qtbot.waitUntil(lambda: 1 in training, timeout=JOB_TIMEOUT)
    job_id = view.runner.current_job_id
    cancels: list[int] = []
    real_cancel = view.runner.cancel
    monkeypatch.setattr(view.runner, "cancel", lambda: (cancels.append(1), real_cancel())[1])
    qtbot.mouseClick(view.cancel_button, Qt.MouseButton.LeftButton)
    box = view.cancel_question
    assert box is not None and box.isVisible()
    assert view.runner.is_running and not cancels
    said = f"{box.text()} {box.informativeText()}"
    assert f"#{job_id}" in said and "has run for" in said
    assert "finished steps stay saved with their results (step 1 of 2)" in said
    assert "step under way (step 2 of 2)" in said and "Resume" in said
    assert box.defaultButton().text() == "Keep running"
    box.defaultButton().click()  # as Enter or Esc would
    qtbot.waitUntil(lambda: not box.isVisible(), timeout=JOB_TIMEOUT)
    assert view.runner.is_running and not cancels
    assert view.cancel_button.isEnabled()

    qtbot.mouseClick(view.cancel_button, Qt.MouseButton.LeftButton)
    box = view.cancel_question
    with qtbot.waitSignal(view.runner.job_finished, timeout=JOB_TIMEOUT) as finished:
        next(b for b in box.buttons() if b.text() == "Cancel job").click()
    assert finished.args[:2] == [job_id, "cancelled"]
