"""The live charts: every point stays visible, the view moves rarely, the user's zoom wins;
each pipeline step is its own line with a labelled boundary; the theme restyles at once."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette

from slimpajama_gui.core.storage.history import MetricRecord
from slimpajama_gui.qt.charts import JobCharts, LiveCurves


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


# --------------------------------------------------------------------------- step segments


def _train_log(step: int, loss: float) -> dict:
    """One training log as ``train.train`` reports it through the bridge."""
    return {"loss": loss, "lr": 1e-4, "grad_norm": 1.0, "step": step, "epoch": 0.0}


def _two_step_job(charts: JobCharts) -> None:
    """A fine-tune of 3 optimizer steps, then a distillation of 3, as the bridge sends them."""
    charts.start_step(0, "finetune", 2)
    for step in (1, 2, 3):
        charts.add_metrics(0, _train_log(step, 0.7 - 0.1 * step))
    charts.add_metrics(0, {"eval_accuracy": 0.8, "step": 3})  # the teacher
    charts.start_step(1, "distill", 2)
    for step in (1, 2, 3):
        charts.add_metrics(1, {**_train_log(step, 0.9 - 0.1 * step), "kd": 0.5})
    charts.add_metrics(1, {"eval_accuracy": 0.7, "step": 3})  # the student
    charts.flush()


def _pieces(chart: LiveCurves, name: str) -> list[list[float]]:
    """The runs of x the drawn item connects: split where its y is NaN."""
    x, y = chart._series[name].item.getOriginalDataset()
    pieces, run = [], []
    for xi, yi in zip(x, y, strict=True):
        if np.isnan(yi):
            pieces.append(run)
            run = []
        else:
            run.append(float(xi))
    return [*pieces, run]


def _lines(chart: LiveCurves) -> list[tuple[float, str]]:
    return [
        (item.value(), item.label.toPlainText())
        for item in chart.getPlotItem().items
        if isinstance(item, pg.InfiniteLine)
    ]


def test_each_step_is_its_own_line_with_a_labelled_boundary(qtbot):
    charts = JobCharts()
    qtbot.addWidget(charts)
    _two_step_job(charts)
    # The distillation's loss is not joined to the fine-tune's: a gap between them,
    # and x keeps counting optimizer steps across the job.
    assert _pieces(charts.loss, "loss") == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert _pieces(charts.lr, "lr") == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert _pieces(charts.loss, "kd") == [[4.0, 5.0, 6.0]]
    # Teacher and student accuracy are two points, not one line from one to the other.
    assert _pieces(charts.accuracy, "eval") == [[3.0], [6.0]]
    marks = [(0.0, "01 finetune"), (3.0, "02 distill")]
    for chart in (charts.loss, charts.accuracy, charts.lr):
        assert chart.boundaries() == marks
        assert _lines(chart) == marks  # drawn, with its label
        assert "across the job" in chart.getPlotItem().getAxis("bottom").labelText
    exported = charts.loss.csv_rows()
    assert ("step boundary: 02 distill", 3.0) in [(name, x) for name, x, _ in exported]
    charts.clear()
    assert charts.loss.boundaries() == [] and _lines(charts.loss) == []


def test_a_finished_job_replays_its_step_segments_and_boundaries(qtbot):
    live = JobCharts()
    qtbot.addWidget(live)
    _two_step_job(live)
    # The same numbers as the history holds them: one timestamp per logged dict.
    records = []
    types = {0: "finetune", 1: "distill"}
    for ts, (index, metrics) in enumerate(
        [(0, _train_log(s, 0.7 - 0.1 * s)) for s in (1, 2, 3)]
        + [(0, {"eval_accuracy": 0.8, "step": 3})]
        + [(1, {**_train_log(s, 0.9 - 0.1 * s), "kd": 0.5}) for s in (1, 2, 3)]
        + [(1, {"eval_accuracy": 0.7, "step": 3})]
    ):
        records += [
            MetricRecord(1, index, types[index], k, v, float(ts)) for k, v in metrics.items()
        ]
    replay = JobCharts()
    qtbot.addWidget(replay)
    replay.load_history(records)
    for name in ("loss", "accuracy"):
        chart, again = live.charts[name], replay.charts[name]
        assert again.boundaries() == chart.boundaries()
        for curve in chart.names:
            assert _pieces(again, curve) == _pieces(chart, curve)


def test_a_one_point_curve_is_drawn_as_a_dot(qtbot):
    chart = LiveCurves("Training loss", y_label="loss")
    qtbot.addWidget(chart)
    chart.resize(400, 300)
    chart.show()
    chart.append("loss", 1, 0.7)
    chart.flush()
    item = chart._series["loss"].item
    # A line through one point draws nothing; the dot is the first measurement.
    assert item.opts["symbol"] is not None and item.scatter.isVisible()
    assert len(item.scatter.points()) == 1
    for x in range(2, 2 + LiveCurves.FEW_POINTS):
        chart.append("loss", x, 0.5)
    chart.flush()
    assert item.opts["symbol"] is None  # a long curve is a plain line
    chart.append("loss", 100, 0.4, segment="next step")
    chart.flush()
    assert item.opts["symbol"] is not None  # the next step's first point shows too


# --------------------------------------------------------------------------- theme


def _look(chart) -> tuple[str, str, str]:
    axis = chart.getPlotItem().getAxis("bottom")
    return (
        chart.backgroundBrush().color().name(),
        axis.textPen().color().name(),
        chart.getPlotItem().titleLabel.opts["color"],
    )


def test_a_theme_change_restyles_charts_at_once(qtbot):
    from slimpajama_gui.qt.settings_dialog import apply_theme, dark_palette

    charts = JobCharts()
    qtbot.addWidget(charts)
    charts.resize(900, 600)
    charts.show()
    qtbot.waitExposed(charts)
    _two_step_job(charts)
    hidden = LiveCurves("Learning rate", y_label="learning rate")  # a page not shown
    qtbot.addWidget(hidden)
    try:
        apply_theme("light")
        light = _look(charts.loss)
        apply_theme("dark")
        dark = dark_palette()
        base = dark.color(QPalette.ColorRole.Base).name()
        text = dark.color(QPalette.ColorRole.Text).name()
        # No re-show, no page switch: the palette change alone restyled every chart.
        for chart in (*charts.charts.values(), hidden):
            qtbot.waitUntil(lambda c=chart: _look(c)[:2] == (base, text), timeout=5_000)
            assert _look(chart)[2] == text
        assert _look(charts.loss) != light
        for _sample, label in charts.loss._legend.items:  # "loss" and "kd"
            assert text in label.item.toHtml(), label.item.toHtml()
        assert charts.loss._boundaries[0][2].label.color.name() != light[1]
        apply_theme("light")
        qtbot.waitUntil(lambda: _look(charts.loss) == light, timeout=5_000)
    finally:
        apply_theme("system")


# --------------------------------------------------------------------------- a real job

TRAIN = """
  - type: finetune
    epochs: 1
    max_steps: 3
    learning_rate: 3.0e-3
    batch_size: 16
    log_every_steps: 1
"""


def test_a_job_with_vocabulary_pruning_charts_its_steps_and_names_the_vocabulary(
    qtbot, tiny_minilm, tmp_path
):
    """Fine-tune, prune the vocabulary, fine-tune again: the engine's own events, through
    the bridge, draw two separate loss lines and say what the pruning kept."""
    from slimpajama_gui.core.jobs.pipeline import run
    from slimpajama_gui.core.plan.recipe import recipe_from_yaml
    from slimpajama_gui.core.storage.history import JobStore
    from slimpajama_gui.core.storage.variant import VariantRecord
    from slimpajama_gui.qt.bridge import JobBridge

    out = tmp_path / "out"
    recipe = recipe_from_yaml(
        f"name: vocab\nmodel: {tiny_minilm}\n"
        "dataset:\n  train: demo\n  labels: [negative, positive]\n  max_length: 48\n"
        f"output: {out}\nsteps:\n{TRAIN}  - {{type: prune, method: vocabulary}}\n{TRAIN}",
        source="test.yaml",
        base_dir=tmp_path,
    )
    charts = JobCharts()
    qtbot.addWidget(charts)
    bridge = JobBridge()  # same thread as the charts here: its signals arrive at once
    bridge.step_started.connect(charts.start_step)
    bridge.logged.connect(charts.add_metrics)
    bridge.evaluated.connect(charts.add_metrics)
    with JobStore(tmp_path / "history.sqlite3") as store:
        result = run(recipe, bridge, store=store)
        assert result.status == "done", result.error
        records = store.metrics(result.job_id)
    charts.flush()

    assert _pieces(charts.loss, "loss") == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert charts.loss.boundaries() == [(0.0, "01 finetune"), (3.0, "03 finetune")]
    # The pruned variant's own record gives the figures the chart must show.
    prune = VariantRecord.read(out / "02-prune").prune
    kept, original = f"{prune['kept']:,}", f"{prune['original']:,}"
    summary = charts.sparsity.summary()
    assert f"{original} → {kept} tokens" in summary, summary
    assert "no weights pruned in the layers" in summary
    assert charts.sparsity._hint.isVisibleTo(charts.sparsity)

    replay = JobCharts()
    qtbot.addWidget(replay)
    replay.load_history(records)
    assert replay.sparsity.summary() == summary
    assert replay.loss.boundaries() == charts.loss.boundaries()


def test_a_point_on_the_views_edge_moves_the_view_so_its_marker_shows(qtbot):
    """The final evaluation (94 %) landed on the accuracy chart's top edge, its marker
    cut in half: a point counts as in view only with room for its marker."""
    chart = LiveCurves("Accuracy", y_label="accuracy (%)", symbols=True)
    qtbot.addWidget(chart)
    chart.resize(400, 300)
    chart.show()
    for x, y in [(10, 67.0), (30, 83.0), (50, 90.0), (80, 93.0)]:
        chart.append("eval", x, y)
    chart.flush()
    (_x0, _x1), (y0, y1) = view_range(chart)
    chart.append("eval", 90, y1 - 0.001 * (y1 - y0))  # just inside the old view
    chart.flush()
    (_x0, _x1), (y0, y1) = view_range(chart)
    top = chart.points("eval")[1].max()
    assert y1 - top >= 0.02 * (y1 - y0), (top, y1)


def test_step_labels_take_turns_at_two_heights_and_loss_terms_say_unweighted(qtbot):
    """A short fine-tune then a distillation: '01 finetune' and '02 distill' sit at
    different heights (they ran into each other), the learning rate reads 1e-4, and
    the loss chart says its terms are unweighted."""
    from slimpajama_gui.qt.charts.job_charts import LOSS_TERMS_TITLE
    from slimpajama_gui.qt.charts.widgets import scientific

    charts = JobCharts()
    qtbot.addWidget(charts)
    charts.start_step(0, "finetune")
    charts.start_step(1, "distill")
    for step in (1, 2, 3):
        charts.add_metrics(0, {"step": step, "loss": 0.6 / step, "lr": 1e-4})
    assert charts.loss.shown_title == "Training loss"
    for step in (1, 2, 3):
        charts.add_metrics(
            1, {"step": step, "loss": 0.3, "ce": 0.2, "kd": 0.05, "hidden": 0.1, "lr": 5e-5}
        )
    charts.flush()
    lines = [line for _x, _label, line in charts.loss._boundaries]
    assert [line.label.orthoPos for line in lines][:2] == [0.96, 0.86]
    assert charts.loss.shown_title == LOSS_TERMS_TITLE
    assert (
        "ce: cross-entropy" in charts.loss.toolTip() and "kd: KL(teacher" in charts.loss.toolTip()
    )
    axis = charts.lr.getPlotItem().getAxis("left")
    assert axis.tickStrings([1e-4, 5e-5, 0.0], 1.0, 5e-5) == ["1e-4", "5e-5", "0"]
    assert axis.labelUnits == "" and axis.autoSIPrefixScale == 1.0
    assert scientific(2.5e-5) == "2.5e-5" and scientific(-1e-3) == "-1e-3"
    charts.clear()
    assert charts.loss.shown_title == "Training loss" and not charts.loss.toolTip()


# --------------------------------------------------------------------------- what the axes say


def _shown(charts: JobCharts, qtbot) -> None:
    charts.resize(1100, 600)
    charts.show()
    qtbot.waitExposed(charts)


def test_an_empty_accuracy_chart_reads_in_percent(qtbot):
    """Its axis says 'accuracy (%)' but the empty chart showed ticks 0 to 1.0."""
    charts = JobCharts()
    qtbot.addWidget(charts)
    _, (y0, y1) = view_range(charts.accuracy)
    assert y0 <= 0 and 100 <= y1 < 110, (y0, y1)
    _two_step_job(charts)
    charts.clear()  # another job selected: empty again, in percent again
    _, (y0, y1) = view_range(charts.accuracy)
    assert y0 <= 0 and 100 <= y1 < 110, (y0, y1)


def test_the_step_axis_never_shows_negative_optimizer_steps(qtbot):
    """The view left a quarter of the data's span of headroom below step 0 too, so the
    x axis read -10, -5 while steps only count up from 0."""
    charts = JobCharts()
    qtbot.addWidget(charts)
    _shown(charts, qtbot)
    charts.start_step(0, "finetune")
    for step in range(1, 40, 3):
        charts.add_metrics(0, _train_log(step, 0.7 - 0.01 * step))
    for step in (13, 26, 39):
        charts.add_metrics(0, {"eval_accuracy": 0.8 + step / 1000, "step": step})
    charts.flush()
    for chart in (charts.loss, charts.accuracy, charts.lr):
        (x0, x1), _ = view_range(chart)
        # Room for the first marker, never a whole step below 0.
        assert -1 < x0 <= 0 and x1 >= 39, (chart.title, x0, x1)


def test_a_legend_marker_has_its_points_colour_before_the_points_are_drawn(qtbot):
    """The legend's marker of 'eval (pipeline step)' was purple while its points were
    orange: the legend drew it with pyqtgraph's default symbol brush, which the curve set
    only with its first points, and the legend was not drawn again."""
    from slimpajama_gui.qt.charts.series import PALETTE

    chart = LiveCurves("Accuracy", y_label="accuracy (%)", symbols=True)
    qtbot.addWidget(chart)
    chart.resize(400, 300)
    chart.show()
    chart.add_curve("eval")
    chart.add_curve("eval (pipeline step)", line=False, symbol="d")
    for (sample, _label), color in zip(chart._legend.items, PALETTE, strict=False):
        opts = sample.item.scatter.opts  # what the legend draws its marker with
        assert opts["brush"].color().name() == QColor(color).name(), sample.item.name()
        assert opts["pen"].style() == Qt.PenStyle.NoPen
    chart.append("eval (pipeline step)", 3, 85.0)
    chart.flush()
    sample = chart._legend.items[1][0]
    point = sample.item.scatter.points()[0]
    assert point.brush().color().name() == sample.item.scatter.opts["brush"].color().name()


def test_a_step_label_is_never_drawn_over_a_point(qtbot):
    """'01 finetune' sat at the top left, over the first points of a loss that starts
    high (or an accuracy that starts high): the view keeps room above the data."""
    from PySide6.QtCore import QPointF

    charts = JobCharts()
    qtbot.addWidget(charts)
    _shown(charts, qtbot)
    charts.start_step(0, "finetune")
    charts.start_step(1, "distill")
    for step in range(1, 30):
        charts.add_metrics(0, _train_log(step, 0.7 / step**0.3))
    charts.add_metrics(0, {"eval_accuracy": 0.92, "step": 2})
    charts.add_metrics(0, {"eval_accuracy": 0.91, "step": 29})
    for step in range(1, 30):
        charts.add_metrics(1, {**_train_log(step, 0.9 / step**0.3), "kd": 0.5})
    charts.flush()
    qtbot.wait(50)
    for chart in (charts.loss, charts.accuracy, charts.lr):
        view = chart.getPlotItem().getViewBox()
        for _x, label, line in chart._boundaries:
            box = line.label.sceneBoundingRect().adjusted(-4, -4, 4, 4)  # the marker's size
            for name in chart.names:
                xs, ys = chart.points(name)
                for x, y in zip(xs, ys, strict=True):
                    spot = view.mapViewToScene(QPointF(x, y))
                    assert not box.contains(spot), (chart.title, label, name, x, y)


def _drawn_tick_labels(chart: LiveCurves) -> list[tuple[float, str]]:
    """The left axis's labels as it draws them now, each with the height it sits at (in
    the axis's own coordinates, 0 at the top)."""
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtWidgets import QApplication

    # Painted once first, as on screen: a label wider than the axis is left out of that
    # paint and widens the axis for the next one.
    chart.grab()
    QApplication.processEvents()
    axis = chart.getPlotItem().getAxis("left")
    image = QImage(10, 10, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    assert specs is not None, "the axis is not laid out"
    return [(rect.center().y(), text) for rect, _flags, text in specs[2]]


def test_a_constant_learning_rate_reads_once_on_its_axis(qtbot):
    """A constant learning rate left a view a fraction of a per cent high, and the axis
    printed '1e-4' at each of its ticks: labels that repeat say nothing about where the
    line is. A flat line reads once, at its value; a changing one keeps distinct labels."""
    from slimpajama_gui.qt.charts.base import scientific

    charts = JobCharts()
    qtbot.addWidget(charts)
    _shown(charts, qtbot)
    for lr in (1e-4, 3e-5, 2.5e-5):
        charts.clear()
        charts.start_step(0, "finetune")
        for step in range(1, 30):
            charts.add_metrics(0, _train_log(step, 0.7 - 0.01 * step) | {"lr": lr})
        charts.flush()
        drawn = [text for _y, text in _drawn_tick_labels(charts.lr)]
        assert drawn, lr
        assert len(set(drawn)) == len(drawn), (lr, drawn)
        assert drawn == [scientific(lr)], (lr, drawn)

    # A decaying one: several labels, all different, each the value its tick sits at.
    charts.clear()
    charts.start_step(0, "finetune")
    for step in range(1, 30):
        charts.add_metrics(0, _train_log(step, 0.5) | {"lr": 1e-4 * (1 - step / 30)})
    charts.flush()
    drawn = _drawn_tick_labels(charts.lr)
    texts = [text for _y, text in drawn]
    assert len(texts) >= 3 and len(set(texts)) == len(texts), texts
    # Higher on screen (smaller y) is a larger value.
    by_height = [float(text) for _y, text in sorted(drawn)]
    assert by_height == sorted(by_height, reverse=True), drawn

    # Zoomed in on a sliver of it, the labels still differ from each other.
    charts.lr.getPlotItem().setYRange(5.0001e-5, 5.0009e-5, padding=0)
    texts = [text for _y, text in _drawn_tick_labels(charts.lr)]
    assert texts and len(set(texts)) == len(texts), texts


def _points_under_legend(chart: LiveCurves) -> list[tuple[str, float, float]]:
    from PySide6.QtCore import QPointF

    box = chart.getPlotItem().getViewBox()
    legend = chart._legend.sceneBoundingRect()
    under = []
    for name in chart.names:
        xs, ys = chart.points(name)
        for x, y in zip(xs, ys, strict=True):
            if legend.contains(box.mapViewToScene(QPointF(float(x), float(y)))):
                under.append((name, float(x), float(y)))
    return under


def _four_curves(chart: LiveCurves) -> None:
    chart.mark_boundary(0, "01 finetune")
    chart.mark_boundary(5, "02 distill")
    xs = np.arange(1, 13, dtype=float)
    curves = {
        "loss": 1.1 - 0.07 * xs,  # high on the left
        "ce": 0.7 - 0.01 * xs,
        "hidden": 0.4 + 0 * xs,
        "kd": (55 + 0.8 * xs) / 100,  # rising: highest on the right
    }
    for name, ys in curves.items():
        chart.extend(name, xs, ys, segment=0)
    chart.flush()


def test_the_legend_never_covers_a_point_when_the_chart_has_room(qtbot):
    # In a 960x640 window the legend of four entries in one column sat on the loss
    # curves (top right) and on the eval points (bottom right): the entries now share
    # rows, and a band above (or below) the data is kept free for them.
    for at_bottom in (False, True):
        chart = LiveCurves(
            "Training loss", y_label="loss", symbols=True, legend_at_bottom=at_bottom
        )
        qtbot.addWidget(chart)
        chart.resize(360, 240)
        chart.show()
        qtbot.waitExposed(chart)
        _four_curves(chart)
        qtbot.wait(20)
        assert chart._legend.columnCount > 1  # entries side by side where they fit
        assert chart._bands()[2]
        assert _points_under_legend(chart) == [], at_bottom


def test_a_legend_too_tall_for_a_band_takes_the_emptiest_corner(qtbot):
    chart = LiveCurves("Training loss", y_label="loss", symbols=True)
    qtbot.addWidget(chart)
    chart.resize(260, 130)
    chart.show()
    qtbot.waitExposed(chart)
    _four_curves(chart)
    qtbot.wait(20)
    assert not chart._bands()[2]
    chosen = len(_points_under_legend(chart))
    for corner in ((0, 0), (1, 0), (0, 1), (1, 1)):
        offset = (-8 if corner[0] else 8, -8 if corner[1] else 8)
        chart._legend.anchor(itemPos=corner, parentPos=corner, offset=offset)
        qtbot.wait(5)
        assert chosen <= len(_points_under_legend(chart)), corner


def test_in_a_short_window_the_charts_scroll_and_keep_their_legends_off_the_data(qtbot):
    """At 960x640 the Jobs area gives the chart grid about 930x300 px: the charts shrank
    below their minimum, the lower row lost its axis titles, and the accuracy legend sat
    on the eval points. The grid now scrolls, and each chart keeps its height."""
    from slimpajama_gui.qt.charts.job_charts import GRID_CHART_MIN_HEIGHT

    charts = JobCharts()
    qtbot.addWidget(charts)
    charts.resize(790, 300)
    charts.show()
    qtbot.waitExposed(charts)
    # The preset-balanced job of the screenshot: a fine-tune with rising eval accuracy,
    # a distillation that holds ~90 %, and a pipeline step's eval at the end.
    charts.start_step(0, "finetune")
    for step in range(1, 90, 4):
        charts.add_metrics(0, _train_log(step, 0.7 / step**0.2))
    for step, acc in ((30, 0.66), (55, 0.82), (85, 0.89)):
        charts.add_metrics(0, {"eval_accuracy": acc, "step": step})
    charts.start_step(1, "distill")
    for step in range(1, 330, 8):
        charts.add_metrics(1, {**_train_log(step, 0.6 / step**0.3), "kd": 0.1, "hidden": 0.05})
    for step, acc in ((80, 0.89), (160, 0.905), (240, 0.905), (320, 0.905)):
        charts.add_metrics(1, {"eval_accuracy": acc, "step": step})
    charts.add_metrics(1, {"eval_accuracy": 0.90})  # the pipeline step's evaluation
    charts.flush()
    qtbot.wait(50)
    for name in ("loss", "accuracy", "learning-rate", "sparsity", "size", "latency"):
        chart = charts.charts[name]
        assert chart.height() >= GRID_CHART_MIN_HEIGHT, (name, chart.height())
        # Drawn whole inside the grid page: the page is taller than the view and scrolls.
        assert chart.geometry().bottom() <= chart.parentWidget().height(), name
    assert charts.charts["latency"].geometry().bottom() > charts.height()
    for chart in (charts.accuracy, charts.loss):
        assert _points_under_legend(chart) == [], chart.title
