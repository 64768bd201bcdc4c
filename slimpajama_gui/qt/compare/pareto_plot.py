"""The Pareto chart of Compare: accuracy against latency, point area by size on disk.

It shows one eval set at a time (Compare's filter): a model measured on other rows is
not on its accuracy axis. Source models are the baseline (stars, labelled); points
with too few eval rows are drawn hollow and never marked Pareto-optimal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontMetrics

from slimpajama_gui.core.jobs.index import Ranking, Variant, comparable_front, timed_with
from slimpajama_gui.core.units import human_bytes, human_count
from slimpajama_gui.qt.compare.table import ms, pct

#: Half the widest marker a point gets (the selection ring of the largest variant), px.
MARKER_RADIUS_PX = 27
#: Okabe-Ito colours, as in :mod:`slimpajama_gui.qt.charts`.
VARIANT_COLOR = "#0072B2"
SOURCE_COLOR = "#7F7F7F"
PARETO_COLOR = "#D55E00"
SELECTED_COLOR = "#CC79A7"


def describe(v: Variant, eval_set: str | None = None, why_unranked: str = "") -> str:
    """The numbers of one point, for its tooltip (accuracy on ``eval_set``; default: the
    one it was measured on)."""
    lines = [v.name + (" (baseline: the source model)" if v.is_source else "")]
    figures = v.accuracy_on(eval_set if eval_set is not None else v.eval_set)
    if figures is not None:
        lines.append(f"accuracy {pct(figures.accuracy)} · macro-F1 {pct(figures.macro_f1)}")
        lines.append(f"on {figures.label}")
    elif v.has_head is False:
        lines.append("no accuracy: no trained classifier head (an encoder only)")
    else:
        lines.append("accuracy not measured on this eval set")
    lines.append(f"latency p50 {ms(v.p50_ms)} · p95 {ms(v.p95_ms)}")
    size = "–" if v.size_bytes is None else human_bytes(v.size_bytes)
    params = "–" if v.parameters is None else human_count(v.parameters)
    lines.append(f"size {size} · {params} parameters")
    if v.throughput is not None:
        lines.append(f"throughput {v.throughput:,.0f} sentences/s")
    if v.int8_arithmetic:
        lines.append(f"int8 measured on {v.int8_arithmetic}")
    if v.bench_setup:
        lines.append(f"latency timed with {timed_with(v)}")
    if why_unranked:
        lines.append(why_unranked)
    return "\n".join(lines)


#: Length (px) of the rotated "baseline" label along its line, with a margin.
LINE_LABEL_PX = 64

#: Pixels between the legend and the plot's edges.
LEGEND_OFFSET_PX = 8

#: The legend entry of the source model's point.
SOURCE_LEGEND = "baseline (source model)"


class ParetoPlot(pg.PlotWidget):
    """Accuracy against latency; point area ∝ size on disk; the frontier as a step line.

    Items are created once and updated with ``setData``.
    """

    #: A point was clicked: its row in the variant list.
    point_clicked = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent, background=None)
        self.setMinimumSize(320, 240)
        self.setMenuEnabled(False)
        self.hideButtons()
        item = self.getPlotItem()
        item.setLabel("bottom", "latency p50, batch 1 (ms)")
        item.setLabel("left", "eval accuracy (%)")
        for axis in ("bottom", "left"):  # "(x0.001)" on a latency axis reads as an error
            item.getAxis(axis).enableAutoSIPrefix(False)
        item.showGrid(x=True, y=True, alpha=0.2)
        self.legend = item.addLegend(offset=(-LEGEND_OFFSET_PX, -8), labelTextSize="8pt")
        self.legend.setBrush(pg.mkBrush(255, 255, 255, 210))
        self.legend.setPen(pg.mkPen("#c8c8c8"))
        self._variants: list[Variant] = []

        def tip(x: float, y: float, data: Any) -> str:
            if data is None:
                return ""
            row = int(data)
            return describe(self._variants[row], self.eval_set, self.ranking.unranked.get(row, ""))

        self.frontier = pg.PlotDataItem(
            pen=pg.mkPen(PARETO_COLOR, width=1.5, style=Qt.PenStyle.DashLine),
            name="Pareto frontier",
        )
        self.variant_item = pg.ScatterPlotItem(
            symbol="o", hoverable=True, tip=tip, name="variant", pxMode=True
        )
        self.source_item = pg.ScatterPlotItem(
            symbol="star", hoverable=True, tip=tip, name=SOURCE_LEGEND, pxMode=True
        )
        self.variant_item.setData(
            [], [], brush=pg.mkBrush(VARIANT_COLOR), pen=pg.mkPen("w"), size=12
        )
        self.source_item.setData([], [], brush=pg.mkBrush(SOURCE_COLOR), pen=pg.mkPen("w"), size=16)
        # Only for the legend: what a Pareto-optimal point looks like.
        self.pareto_key = pg.ScatterPlotItem(
            symbol="o",
            size=12,
            brush=pg.mkBrush(VARIANT_COLOR),
            pen=pg.mkPen(PARETO_COLOR, width=3),
            name="Pareto-optimal",
        )
        self.selected_item = pg.ScatterPlotItem(
            symbol="o", brush=None, pen=pg.mkPen(SELECTED_COLOR, width=3), pxMode=True
        )
        self.selected_item.setZValue(10)
        for it in (self.frontier, self.variant_item, self.source_item, self.pareto_key):
            item.addItem(it)
        self._star_in_legend = True
        item.addItem(self.selected_item)
        for scatter in (self.variant_item, self.source_item, self.selected_item):
            scatter.sigClicked.connect(self._on_clicked)
        self.empty = pg.TextItem(
            html=(
                "<div style='text-align:center; color:#5f6b76'>No model has both an accuracy on<br>"
                "this eval set and a latency yet.<br>Right-click a row: Benchmark.</div>"
            ),
            anchor=(0.5, 0.5),
        )
        item.addItem(self.empty)
        #: Rows of the variant list drawn, and the Pareto-optimal ones among them.
        self.plotted: list[int] = []
        self.front: list[int] = []
        self.ranking = Ranking()
        self.eval_set = ""
        self._selected: int | None = None
        self._labels: list[pg.TextItem] = []
        #: Vertical lines at the latency of source models with no point on this chart.
        self.baseline_lines: list[pg.InfiniteLine] = []
        #: The legend's sample of those lines (never drawn on the plot) and its text.
        self._baseline_pen = pg.mkPen(SOURCE_COLOR, width=1.5, style=Qt.PenStyle.DotLine)
        self._line_sample = pg.PlotDataItem(pen=self._baseline_pen)
        self._line_in_legend = ""
        self._diameters: dict[int, float] = {}
        self._y_title = "eval accuracy (%)"

    def _set_y_title(self) -> None:
        """The accuracy axis's title, naming the eval set where the axis is tall enough:
        at 960x640 "accuracy on the demo set's dev split (100 rows) (%)" was cut at both
        ends. The eval set is then in the title's tooltip (and the Accuracy on: picker)."""
        axis = self.getPlotItem().getAxis("left")
        room = self.getPlotItem().getViewBox().height() - 8
        fits = room <= 0 or QFontMetrics(axis.label.font()).horizontalAdvance(self._y_title) <= room
        text = self._y_title if fits else "accuracy (%)"
        if axis.labelText != text:
            self.getPlotItem().setLabel("left", text)
        axis.setToolTip(self._y_title)

    def _y(self, row: int) -> float:
        figures = self._variants[row].accuracy_on(self.eval_set)
        return 100 * figures.accuracy if figures is not None else math.nan

    def set_variants(self, variants: Sequence[Variant], eval_set: str | None = None) -> list[int]:
        """Draw the variants measured on ``eval_set`` (default: the first one's); returns
        the rows that are Pareto-optimal among comparable points
        (:func:`~slimpajama_gui.core.jobs.index.comparable_front`)."""
        self._variants = list(variants)
        if eval_set is None:
            eval_set = next((v.eval_set for v in self._variants if v.eval_set), "")
        self.eval_set = eval_set
        self.ranking = comparable_front(self._variants, eval_set)
        label = next((v.evals[eval_set].label for v in self._variants if eval_set in v.evals), "")
        self._y_title = f"accuracy on {label} (%)" if label else "eval accuracy (%)"
        self._set_y_title()
        self.plotted = list(self.ranking.plotted)
        self.front = list(self.ranking.front)
        sizes = [self._variants[i].size_bytes or 0 for i in self.plotted]
        biggest = max(sizes, default=0) or 1
        front = set(self.front)

        # Marker diameters (px): area, not diameter, follows the size on disk.
        self._diameters = {
            i: 10 + 30 * math.sqrt((self._variants[i].size_bytes or 0) / biggest)
            for i in self.plotted
        }

        def spots(source: bool) -> dict[str, list]:
            rows = [i for i in self.plotted if self._variants[i].is_source == source]
            base = VARIANT_COLOR if not source else SOURCE_COLOR
            return {
                "x": [self._variants[i].p50_ms for i in rows],
                "y": [self._y(i) for i in rows],
                "size": [self._diameters[i] for i in rows],
                "data": rows,
                # Hollow: drawn, but with too few eval rows to be ranked.
                "brush": [
                    pg.mkBrush("w") if i in self.ranking.unranked else pg.mkBrush(base)
                    for i in rows
                ],
                "pen": [
                    pg.mkPen(PARETO_COLOR, width=3)
                    if i in front
                    else pg.mkPen(base, width=2, style=Qt.PenStyle.DashLine)
                    if i in self.ranking.unranked
                    else pg.mkPen("w", width=1)
                    for i in rows
                ],
            }

        self.variant_item.setData(**spots(False))
        self.source_item.setData(**spots(True))
        # The legend names the star only when one is drawn (a baseline without an
        # accuracy here is a line, labelled where it is).
        star_drawn = any(self._variants[i].is_source for i in self.plotted)
        if star_drawn != self._star_in_legend:
            if star_drawn:
                self.legend.addItem(self.source_item, SOURCE_LEGEND)
            else:
                self.legend.removeItem(self.source_item)
            self._star_in_legend = star_drawn
        for label in self._labels:
            self.getPlotItem().removeItem(label)
        self._labels = []
        for i in self.plotted:
            if self._variants[i].is_source:
                label = pg.TextItem("baseline", color=SOURCE_COLOR, anchor=(0.5, 1.6))
                label.setPos(self._variants[i].p50_ms, self._y(i))
                self.getPlotItem().addItem(label)
                self._labels.append(label)
        # A source model timed but without an accuracy here (a bare encoder, or not yet
        # evaluated on this set) is still the baseline of latency: a labelled line.
        for line in self.baseline_lines:
            self.getPlotItem().removeItem(line)
        self.baseline_lines = []
        # The line itself says only "baseline", at the top of the plot: a fine-tuned copy
        # of the source has its latency, so its point sits on the line, and the whole
        # sentence written along the line ran through that point. The legend says why.
        reasons = []
        for i, v in enumerate(self._variants):
            if v.is_source and v.p50_ms is not None and i not in self.plotted:
                why = "no classifier head" if v.has_head is False else "no accuracy on this set"
                reasons.append(why)
                line = pg.InfiniteLine(
                    pos=v.p50_ms,
                    angle=90,
                    pen=self._baseline_pen,
                    label="baseline",
                    labelOpts={"position": 0.85, "color": SOURCE_COLOR, "rotateAxis": (1, 0)},
                )
                line.setToolTip(describe(v, self.eval_set))
                self.getPlotItem().addItem(line)
                self.baseline_lines.append(line)
        wanted = f"baseline latency ({', '.join(dict.fromkeys(reasons))})" if reasons else ""
        if wanted != self._line_in_legend:
            if self._line_in_legend:
                self.legend.removeItem(self._line_sample)
            if wanted:
                self.legend.addItem(self._line_sample, wanted)
            self._line_in_legend = wanted
        # The step line joins the front of the largest group of comparable points only:
        # fronts of points timed differently are not one frontier.
        groups = sorted(self.ranking.groups.values(), key=len, reverse=True)
        line = [i for i in self.front if groups and i in groups[0]]
        fx, fy = [], []
        for k, i in enumerate(line):
            x, y = self._variants[i].p50_ms, self._y(i)
            if k:
                fx.append(x)
                fy.append(fy[-1])
            fx.append(x)
            fy.append(y)
        self.frontier.setData(fx, fy)
        self.empty.setVisible(not self.plotted)
        self.legend.setVisible(bool(self.plotted))
        # An empty chart's 0-1 range would show ticks 0.1 to 0.9 under "accuracy (%)"
        # and "latency (ms)": figures no model has. The axes keep their titles only.
        for axis in ("bottom", "left"):
            self.getPlotItem().getAxis(axis).setStyle(showValues=bool(self.plotted))
        self._fit()
        self.select(self._selected if self._selected in self.plotted else None)
        return list(self.front)

    def _fit(self) -> None:
        if not self.plotted:
            self.setXRange(0, 1, padding=0)
            self.setYRange(0, 1, padding=0)
            self.empty.setPos(0.5, 0.5)
            return
        xs = [self._variants[i].p50_ms for i in self.plotted]
        xs += [line.value() for line in self.baseline_lines]
        ys = [self._y(i) for i in self.plotted]
        x0, x1 = min(xs), max(xs)
        y0, y1 = min(ys), max(ys)
        dx = max(x1 - x0, 0.1 * max(abs(x1), 1e-3))
        dy = max(y1 - y0, 1.0)
        # Room for the biggest markers and for the legend in the lower right, which grows
        # a row for the star and one for a baseline line (at 0.45 for three rows, a
        # fourth one covered the lowest point).
        rows = 3 + self._star_in_legend + bool(self._line_in_legend)
        right = x1 + 0.2 * dx
        left = max(0.0, x0 - 0.15 * dx)
        # A 2 ms point beside a 400 ms one sits on the axis at 0 and loses half its marker:
        # start the axis far enough below 0 that the biggest marker (ring included) fits.
        width = self.getPlotItem().getViewBox().width()
        if width > 4 * MARKER_RADIUS_PX:
            share = MARKER_RADIUS_PX / width
            left = min(left, (x0 - share * right) / (1 - share))
        self.setXRange(left, right, padding=0)
        low, high = y0 - 0.15 * rows * dy, y1 + 0.15 * dy
        height = self.getPlotItem().getViewBox().height()
        legend = self.legend.boundingRect().height()
        # In pixels once the chart has a size: a share of the data's span left the
        # lowest point's rim under a legend taller than that share.
        below = legend + 2 * LEGEND_OFFSET_PX + MARKER_RADIUS_PX
        above = MARKER_RADIUS_PX + 4
        if legend > 0 and height > below + above + 60:
            per_px = dy / (height - below - above)
            low, high = y0 - below * per_px, y1 + above * per_px
        self.setYRange(low, high, padding=0)
        self._place_line_labels()

    def _place_line_labels(self) -> None:
        """Put each baseline line's "baseline" where no marker covers it.

        A fine-tuned copy of the source has the source's latency, so its point sits on
        the line, and it is often the most accurate one: at a fixed height near the top
        the label was drawn under that point. Heights from the top down are tried; the
        lowest ones stay above the legend in the lower right.
        """
        self._place_legend()
        if not self.baseline_lines:
            return
        box = self.getPlotItem().getViewBox()
        (x_lo, x_hi), (y_lo, y_hi) = box.viewRange()
        width, height = box.width(), box.height()
        if width <= 0 or height <= 0 or x_hi <= x_lo or y_hi <= y_lo:
            return
        px_x, px_y = width / (x_hi - x_lo), height / (y_hi - y_lo)
        markers = [
            (self._variants[i].p50_ms, self._y(i), self._diameters.get(i, 12) / 2 + 3)
            for i in self.plotted
        ]
        legend_px = self.legend.boundingRect().height() + 8 if self.legend.isVisible() else 0
        lowest = min(0.9, (legend_px + LINE_LABEL_PX) / height)
        spots = [f / 20 for f in range(18, -1, -1) if f / 20 >= lowest] or [0.9]
        for line in self.baseline_lines:
            chosen = spots[0]
            for spot in spots:
                y = y_lo + spot * (y_hi - y_lo)
                if not any(
                    abs(mx - line.value()) * px_x < r + 10
                    and abs(my - y) * px_y < r + LINE_LABEL_PX / 2
                    for mx, my, r in markers
                ):
                    chosen = spot
                    break
            line.label.setPosition(chosen)

    def _place_legend(self) -> None:
        """Keep the legend in the lower right unless a baseline line or a marker runs
        under it there and the lower left is freer: the source is usually the slowest
        model, so its line sat at the right edge, dashed under the legend's box."""
        box = self.getPlotItem().getViewBox()
        (x_lo, x_hi), (y_lo, y_hi) = box.viewRange()
        width, height = box.width(), box.height()
        side = "right"
        if self.baseline_lines and width > 0 and height > 0 and x_hi > x_lo and y_hi > y_lo:
            px_x, px_y = width / (x_hi - x_lo), height / (y_hi - y_lo)
            rect = self.legend.boundingRect()
            top = height - LEGEND_OFFSET_PX - rect.height()
            spans = {
                "right": (width - LEGEND_OFFSET_PX - rect.width(), width - LEGEND_OFFSET_PX),
                "left": (LEGEND_OFFSET_PX, LEGEND_OFFSET_PX + rect.width()),
            }

            def under(span: tuple[float, float]) -> float:
                # Pixels hidden: a line crosses the legend's whole height; a marker loses
                # what reaches into the box (a rim, most often).
                hidden = sum(
                    rect.height()
                    for line in self.baseline_lines
                    if span[0] - 4 <= (line.value() - x_lo) * px_x <= span[1] + 4
                )
                for i in self.plotted:
                    x = (self._variants[i].p50_ms - x_lo) * px_x
                    y = (y_hi - self._y(i)) * px_y
                    r = self._diameters.get(i, 12) / 2
                    dx = max(span[0] - x, 0.0, x - span[1])
                    dy = max(top - y, 0.0)
                    hidden += 2 * max(0.0, r - (dx * dx + dy * dy) ** 0.5)
                return hidden

            if under(spans["left"]) < under(spans["right"]):
                side = "left"
        if side != getattr(self, "_legend_side", "right"):
            x = 0 if side == "left" else 1
            sign = 1 if side == "left" else -1
            self.legend.anchor(
                itemPos=(x, 1), parentPos=(x, 1), offset=(sign * LEGEND_OFFSET_PX, -8)
            )
        self._legend_side = side

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        # Qt resizes the widget inside __init__, and pyqtgraph drops its plot on close.
        if hasattr(self, "_diameters") and getattr(self, "plotItem", None) is not None:
            self._fit()  # the legend's room is kept in pixels
            self._set_y_title()

    def select(self, row: int | None) -> None:
        """Ring the point of ``row`` (or none)."""
        self._selected = row
        if row is None or row not in self.plotted:
            self.selected_item.setData([], [])
            return
        v = self._variants[row]
        biggest = max((self._variants[i].size_bytes or 0 for i in self.plotted), default=0) or 1
        size = 10 + 30 * math.sqrt((v.size_bytes or 0) / biggest) + 10
        self.selected_item.setData([v.p50_ms], [self._y(row)], size=size, data=[row])

    def point_position(self, row: int):
        """The view coordinates of ``row``'s point (for tests and for scrolling to it)."""
        return self._variants[row].p50_ms, self._y(row)

    def _on_clicked(self, _item, points, _ev) -> None:
        if len(points):
            data = points[0].data()
            if data is not None:
                self.point_clicked.emit(int(data))
