"""The sensitivity panel as a user meets it: filled live while the step runs, and shown
again from the saved report when the finished job is selected. (The wizard's check box:
tests/qt/test_wizard.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QTabWidget

from slimpajama_gui.core.techniques.sensitivity import load_report
from slimpajama_gui.qt.charts.sensitivity import short_linear
from slimpajama_gui.qt.jobs_view import JobsView

from .test_jobs import JOB_TIMEOUT, make_recipe


def saved_head_values(report, key: str = "loss_change", scale: float = 1.0) -> np.ndarray:
    return np.array([[scale * getattr(e, key) for e in row] for row in report.heads])


def test_a_sensitivity_job_fills_the_heat_map_live_and_again_from_its_saved_report(
    qtbot, tiny_minilm, tmp_path
):
    view = JobsView()
    qtbot.addWidget(view)
    view.resize(1200, 820)
    view.show()
    out = tmp_path / "out"
    live = []
    view.runner.bridge.sensitivity_measured.connect(lambda i, m: live.append(m))
    recipe = make_recipe(tiny_minilm, out, "  - {type: sensitivity, rows: 32, seed: 5}\n")
    with qtbot.waitSignal(view.runner.job_finished, timeout=JOB_TIMEOUT) as finished:
        view.submit(recipe)
    job_id, status, error = finished.args
    assert status == "done", error
    report = load_report(out / "01-sensitivity")

    # Live: every measurement reached the panel through the bridge, on its own tab.
    charts = view.current_charts()
    assert charts is view.live_charts and charts.sensitivity_shown()
    assert charts.tabs.currentWidget() is charts.sensitivity
    panel = charts.sensitivity
    panel.flush()
    assert len(live) == live[-1]["total"] and live[-1]["done"] == live[-1]["total"]
    heat = panel.heads.values
    assert heat.shape == (2, 4) and not np.isnan(heat).any()  # 2 layers x 4 heads
    np.testing.assert_allclose(heat, saved_head_values(report), rtol=1e-6, atol=1e-9)
    assert panel.heads.image.image is not None and panel.heads.image.image.shape == (2, 4)
    assert list(panel.layers.values()) == ["0", "1"] and list(panel.ffn.values()) == ["0", "1"]
    assert len(panel.linears.values()) == len(report.linears)
    assert "measurements" in panel.caption.text()

    # Selected later (a new window): the same values, read from sensitivity.json.
    later = JobsView(store=view.store)
    qtbot.addWidget(later)
    later.select_job(job_id)
    history = later.current_charts()
    assert history is later.history_charts and history.sensitivity_shown()
    shown = history.sensitivity
    np.testing.assert_allclose(shown.heads.values, saved_head_values(report))
    assert "measured on 32 sampled rows" in shown.caption.text()
    first = next(iter(report.linears))
    assert shown.linears.values()[short_linear(first)] == pytest.approx(
        report.linears[first].loss_change
    )
    # The accuracy view: the same cells in points.
    shown.measure.setCurrentText("Accuracy change")
    np.testing.assert_allclose(
        shown.heads.values, saved_head_values(report, "accuracy_change", 100.0)
    )
    assert shown.heads.colorbar.axis.labelText == "accuracy change (points)"
    # A job without a sensitivity step shows no tab.
    later.history_charts.clear()
    assert not later.history_charts.sensitivity_shown()
    assert isinstance(later.history_charts.tabs, QTabWidget)
    assert later.shutdown(timeout_s=30) and view.shutdown(timeout_s=30)


def test_in_a_1280x800_window_every_axis_label_can_be_read_whole(qtbot):
    from PySide6.QtCore import QPoint, QRect

    view = JobsView()
    qtbot.addWidget(view)
    view.resize(1280, 800)  # the screenshots' window: the jobs table takes the top
    view.show()
    charts = view.current_charts()
    charts.show_sensitivity(True, select=True)
    panel = charts.sensitivity
    for layer in range(6):
        for kind, value in (("layer", 0.1 * layer), ("ffn", -0.02 * layer)):
            panel.add_measurement({"kind": kind, "layer": layer, "loss_change": value,
                                   "accuracy_change": -value / 10})  # fmt: skip
        panel.add_measurement({"kind": "linear", "name": f"layers.{layer}.attention.q",
                               "loss_change": 0.001, "accuracy_change": 0.0})  # fmt: skip
    panel.flush()
    page = panel.scroll
    qtbot.waitUntil(lambda: page.viewport().height() > 0)
    # The charts keep the height they need (not more); what the window cannot show scrolls.
    body = page.widget()
    assert body.height() == max(body.minimumSizeHint().height(), page.viewport().height())
    assert page.verticalScrollBar().maximum() > 0
    for measure in ("Loss change", "Accuracy change"):
        panel.measure.setCurrentText(measure)
        for chart in (panel.layers, panel.ffn, panel.linears):
            # Scrolled to (its top at the window's), a chart fits the window whole.
            page.verticalScrollBar().setValue(chart.mapTo(body, QPoint(0, 0)).y())
            qtbot.wait(1)
            placed = QRect(chart.mapTo(page.viewport(), QPoint(0, 0)), chart.size())
            assert page.viewport().rect().contains(placed), (chart.title, placed)
            for side in ("left", "bottom"):
                label = chart.getPlotItem().getAxis(side).label
                # The glyphs: the text item's rect less the margin Qt keeps around text.
                box = chart.mapFromScene(label.mapRectToScene(label.boundingRect()))
                rect = box.boundingRect().adjusted(4, 4, -4, -4)
                assert QRect(0, 0, chart.width(), chart.height()).contains(rect), (
                    chart.title,
                    side,
                    measure,
                    rect,
                    chart.size(),
                )
    assert view.shutdown(timeout_s=30)
