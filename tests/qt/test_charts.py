"""The live charts' view: every point stays visible, the view moves rarely, the user's zoom wins."""

from __future__ import annotations

import numpy as np

from slimpajama_gui.qt.charts import LiveCurves


def view_range(chart: LiveCurves) -> tuple[tuple[float, float], tuple[float, float]]:
    (x0, x1), (y0, y1) = chart.getPlotItem().getViewBox().viewRange()
    return (x0, x1), (y0, y1)


def in_view(chart: LiveCurves, x: np.ndarray, y: np.ndarray) -> bool:
    (x0, x1), (y0, y1) = view_range(chart)
    return bool(np.all((x0 <= x) & (x <= x1) & (y0 <= y) & (y <= y1)))


def test_a_growing_curve_stays_in_view_and_the_view_moves_in_steps(qtbot):
    chart = LiveCurves("Training loss", y_label="loss")
    qtbot.addWidget(chart)
    chart.resize(400, 300)
    chart.show()
    rng = np.random.default_rng(0)
    xs = np.arange(1, 301, dtype=float)
    ys = 0.2 + 0.5 * np.exp(-xs / 60) + 0.03 * rng.standard_normal(xs.size)
    moves = 0
    for x, y in zip(xs, ys, strict=True):
        before = view_range(chart)
        chart.append("loss", x, y)
        chart.flush()
        moves += view_range(chart) != before
        assert in_view(chart, xs[: int(x)], ys[: int(x)]), f"point {x} out of view"
    # pyqtgraph's auto-range would move the view on every one of the 300 points (and
    # re-render both axes each time); stepping keeps it to a few dozen.
    assert moves <= 40, moves
    # The data fills the view, not a corner of it.
    (x0, x1), (y0, y1) = view_range(chart)
    assert (xs.max() - xs.min()) >= 0.6 * (x1 - x0)
    assert (ys.max() - ys.min()) >= 0.6 * (y1 - y0)


def test_after_the_user_zooms_new_points_do_not_move_the_view_until_follow(qtbot):
    chart = LiveCurves("Training loss", y_label="loss")
    qtbot.addWidget(chart)
    chart.resize(400, 300)
    chart.show()
    for x in range(1, 21):
        chart.append("loss", x, 1.0 / x)
    chart.flush()
    view = chart.getPlotItem().getViewBox()
    view.scaleBy((0.5, 0.5))  # what the mouse wheel does
    view.sigRangeChangedManually.emit(view.state["mouseEnabled"])
    assert not chart.following
    zoomed = view_range(chart)
    for x in range(21, 200):
        chart.append("loss", x, 5.0)
    chart.flush()
    assert view_range(chart) == zoomed

    button = chart.getPlotItem().autoBtn  # the "A" button in the corner
    button.clicked.emit(button)
    assert chart.following
    xs, ys = chart.points("loss")
    assert in_view(chart, xs, ys)


def test_clearing_a_chart_resets_the_view_and_follows_again(qtbot):
    chart = LiveCurves("Learning rate", y_label="learning rate")
    qtbot.addWidget(chart)
    for x in range(1, 50):
        chart.append("lr", x, 1e-4 * x)
    chart.flush()
    chart.getPlotItem().getViewBox().sigRangeChangedManually.emit([True, True])
    chart.clear_data()
    assert chart.following
    chart.append("lr", 1, 5.0)
    chart.append("lr", 2, 7.0)
    chart.flush()
    assert in_view(chart, np.array([1.0, 2.0]), np.array([5.0, 7.0]))
