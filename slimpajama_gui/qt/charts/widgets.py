"""The chart widgets: a line chart that grows while a job runs, and per-layer bars.

Drawing follows pyqtgraph's ``examples/scrollingPlots.py``: each curve is created once;
new points go into :class:`~.series.Series` buffers; one ``QTimer`` (80 ms) calls
``setData`` only for curves that changed, so a job logging every step costs at most
~12 redraws a second. Long curves are drawn with ``setDownsampling(mode='peak')`` and
``setClipToView(True)``. Every chart exports to PNG, SVG and CSV.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QWidget,
)

from slimpajama_gui.qt.charts.base import (
    BOUNDARY_LABEL_HEIGHTS,
    BOUNDARY_LABEL_ROOM,
    ChartBase,
    ChartColors,
    ScientificAxis,
    scientific,
)
from slimpajama_gui.qt.charts.series import (
    PALETTE,
    Series,
    fmt_value,
    natural_key,
    short_layer,
    stepped_range,
)

__all__ = [
    "BOUNDARY_LABEL_HEIGHTS",
    "ChartBase",
    "ChartColors",
    "LiveCurves",
    "ScientificAxis",
    "SparsityBars",
    "scientific",
]


#: Pixels kept free between the legend and the data, besides the legend's own offset.
LEGEND_MARGIN_PX = 14
#: Width of a legend entry's sample and spacing, besides its text (px).
LEGEND_SAMPLE_PX = 34
#: The tallest band (share of the view's height) kept free for the legend.
LEGEND_BAND_MAX = 0.45


def _free_bands(
    view: tuple[float, float], low: float, high: float, top: float, bottom: float
) -> tuple[float, float]:
    """Widen ``view`` (y0, y1) until the data [low, high] leaves the top ``top`` and the
    bottom ``bottom`` shares of it free (``top + bottom`` < 1)."""
    lo, hi = view
    for _ in range(60):  # each pass closes the gap by a factor top + bottom
        height = hi - lo
        new = (min(lo, low - bottom * height), max(hi, high + top * height))
        if abs(new[0] - lo) + abs(new[1] - hi) <= 1e-9 * max(height, 1e-12):
            break
        lo, hi = new
    return lo, hi


class LiveCurves(ChartBase):
    """A line chart whose named curves grow while a job runs.

    A curve is drawn in segments (see :class:`~.series.Series`): points appended with
    another ``segment`` start a new, unconnected line, and :meth:`mark_boundary` draws a
    labelled vertical line where a pipeline step begins. A curve with few points, or a
    segment of a single point, is drawn with a dot per point: a line alone would leave
    a lone first measurement invisible.

    Args:
        title: shown above the chart.
        y_label, x_label: axis titles.
        symbols: draw a marker on every point (for charts with few points).
        empty: the sentence shown while there is no data.
        empty_y: the y range of the empty chart, in the axis's unit (0 to 100 for a
            percentage).

    Signals:
        hovered(str): the read-out of the point nearest the mouse ("" when none).

    Example:
        >>> chart = LiveCurves("Loss", y_label="loss", x_label="step")  # doctest: +SKIP
        >>> chart.append("loss", 1, 0.69)
        >>> chart.export("loss.png")
    """

    hovered = Signal(str)

    REFRESH_MS = 80
    #: How close (pixels) the mouse must be to a point for the read-out.
    HOVER_PIXELS = 24
    #: Line curves with fewer points than this also get a dot per point.
    FEW_POINTS = 20

    def __init__(
        self,
        title: str,
        *,
        y_label: str,
        x_label: str = "training step",
        symbols: bool = False,
        empty: str = "No data yet",
        legend_at_bottom: bool = False,
        scientific: bool = False,
        empty_y: tuple[float, float] = (0.0, 1.0),
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(
            title, y_label=y_label, x_label=x_label, empty=empty, scientific=scientific,
            parent=parent,
        )  # fmt: skip
        self.empty_y = empty_y
        plot = self.getPlotItem()
        plot.setDownsampling(mode="peak", auto=True)
        plot.setClipToView(True)
        self._legend = plot.addLegend(
            offset=(-8, -8 if legend_at_bottom else 8), labelTextSize="8pt"
        )
        self._legend.hide()  # an empty legend is a stray white box
        self._legend_at_bottom = legend_at_bottom
        self._symbols = symbols
        self._series: dict[str, Series] = {}
        #: Step boundaries: (x, label, the line drawn).
        self._boundaries: list[tuple[float, str, pg.InfiniteLine]] = []
        self._boundary_added = False
        self._timer = QTimer(self)
        self._timer.setInterval(self.REFRESH_MS)
        self._timer.timeout.connect(self.flush)
        # The hover read-out: a marker on the nearest point and its values beside it.
        self._marker = pg.ScatterPlotItem(size=9, brush=None)
        self._label = pg.TextItem(anchor=(0, 1))
        for item in (self._marker, self._label):
            item.setZValue(100)
            item.hide()
            plot.addItem(item, ignoreBounds=True)
        self._mouse = pg.SignalProxy(
            self.scene().sigMouseMoved, rateLimit=30, slot=self._on_mouse_moved
        )
        # The view follows the data in steps (see _follow_data) until the user pans or
        # zooms; pyqtgraph's "A" button and "View All" hand it back.
        self._follow = True
        view = plot.getViewBox()
        view.sigRangeChangedManually.connect(self._stop_following)
        plot.autoBtn.clicked.connect(self.follow_data)
        self.apply_palette()

    def _restyle(self, colors: ChartColors) -> None:
        self._legend.setBrush(colors.translucent(170))
        self._legend.setLabelTextColor(colors.text)
        for _sample, label in self._legend.items:
            label.setText(label.text)  # pyqtgraph only stores the colour for new labels
        self._marker.setPen(pg.mkPen(colors.text, width=1.5))
        self._label.setColor(colors.text)
        self._label.fill = pg.mkBrush(colors.translucent(220))
        self._label.update()
        for _x, _label, line in self._boundaries:
            self._style_boundary(line, colors)

    @staticmethod
    def _style_boundary(line: pg.InfiniteLine, colors: ChartColors) -> None:
        line.setPen(pg.mkPen(colors.muted, width=1, style=Qt.PenStyle.DashLine))
        line.label.setColor(colors.muted)

    # ------------------------------------------------------------------ data
    @property
    def names(self) -> list[str]:
        return list(self._series)

    def add_curve(self, name: str, *, line: bool = True, symbol: str | None = None) -> None:
        """Create the curve ``name`` with its own style (once; later calls do nothing).

        Curves that are only appended to get a line, and a dot per point when the chart
        was made with ``symbols=True``.
        """
        if name in self._series:
            return
        color = PALETTE[len(self._series) % len(PALETTE)]
        options: dict[str, Any] = {"pen": pg.mkPen(color, width=2) if line else None}
        symbol = symbol or ("o" if self._symbols else None)
        if symbol is not None:
            size = 6 if line else 9
            options.update(symbol=symbol, symbolSize=size, symbolBrush=color, symbolPen=None)
        item = self.getPlotItem().plot([], [], connect="finite", name=name, **options)
        if symbol is not None:
            # The legend draws the marker with the scatter's own style, which pyqtgraph
            # sets only with the first points: until then, and until the legend happened
            # to be drawn again, the marker was its default slate purple.
            item.scatter.setSymbol(symbol, update=False)
            item.scatter.setSize(size, update=False)
            item.scatter.setBrush(pg.mkBrush(color), update=False)
            item.scatter.setPen(pg.mkPen(None), update=False)
        series = Series(item)
        series.color = color
        series.own_symbol = symbol is not None
        self._series[name] = series
        self._legend.show()
        self._fit_legend()
        self._set_empty(False)

    def _curve(self, name: str) -> Series:
        if name not in self._series:
            self.add_curve(name)
        return self._series[name]

    def append(self, name: str, x: float, y: float, segment: object = None) -> None:
        """Add one point to the curve ``name`` (created on first use).

        A ``segment`` other than the previous point's starts a new line (not joined to
        the one before); the pipeline step index is the segment of a training curve.
        """
        self._curve(name).append(float(x), float(y), segment)
        if not self._timer.isActive():
            self._timer.start()

    def extend(
        self, name: str, xs: Iterable[float], ys: Iterable[float], segment: object = None
    ) -> None:
        series = self._curve(name)
        for x, y in zip(xs, ys, strict=True):
            series.append(float(x), float(y), segment)
        if not self._timer.isActive():
            self._timer.start()

    def mark_boundary(self, x: float, label: str) -> None:
        """A dashed vertical line at ``x`` labelled ``label`` (where a pipeline step begins)."""
        # Labels of neighbouring steps take turns at two heights: a short step's
        # "01 finetune" would otherwise run into the next one's "02 distill".
        height = BOUNDARY_LABEL_HEIGHTS[len(self._boundaries) % len(BOUNDARY_LABEL_HEIGHTS)]
        line = pg.InfiniteLine(
            pos=float(x),
            angle=90,
            movable=False,
            label=label,
            labelOpts={"position": height, "anchors": [(0, 0), (0, 0)]},
        )
        line.setZValue(-5)  # under the curves
        self._style_boundary(line, self.colors)
        self.getPlotItem().addItem(line, ignoreBounds=True)
        self._boundaries.append((float(x), label, line))
        self._boundary_added = True  # the view must take it in at the next flush
        if not self._timer.isActive():
            self._timer.start()

    def boundaries(self) -> list[tuple[float, str]]:
        """The step boundaries drawn, as ``(x, label)``, in the order they were added."""
        return [(x, label) for x, label, _line in self._boundaries]

    def points(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the x and y values of one curve (empty if it does not exist)."""
        series = self._series.get(name)
        if series is None:
            return np.empty(0), np.empty(0)
        return series.x[: series.n].copy(), series.y[: series.n].copy()

    def count(self, name: str | None = None) -> int:
        """Points in one curve, or in all curves."""
        if name is not None:
            series = self._series.get(name)
            return 0 if series is None else series.n
        return sum(s.n for s in self._series.values())

    def flush(self) -> None:
        """Hand changed buffers to pyqtgraph (the timer calls this every 80 ms)."""
        changed = False
        for series in self._series.values():
            if series.dirty:
                self._show_points(series)
                series.item.setData(*series.drawn())
                series.dirty = False
                changed = True
        self._timer.stop()
        if changed or self._boundary_added:
            self._boundary_added = False
            self._follow_data()

    def _show_points(self, series: Series) -> None:
        """Dots on a line curve while it has few points or a one-point segment."""
        if series.own_symbol:
            return
        few = series.n < self.FEW_POINTS or 1 in series.segment_lengths()
        if few != (series.item.opts["symbol"] is not None):
            if few:
                series.item.setSymbol("o")
                series.item.setSymbolSize(5)
                series.item.setSymbolBrush(series.color)
                series.item.setSymbolPen(None)
            else:
                series.item.setSymbol(None)

    # ------------------------------------------------------------------ view range
    @property
    def following(self) -> bool:
        """True while the view follows new points (the user has not panned or zoomed)."""
        return self._follow

    def follow_data(self) -> None:
        """Fit the view to the data again and keep following new points."""
        self._follow = True
        self.getPlotItem().disableAutoRange()
        self._follow_data(refit=True)

    def _stop_following(self, *_args) -> None:
        self._follow = False

    def _data_bounds(self) -> tuple[float, float, float, float] | None:
        lo_x = lo_y = math.inf
        hi_x = hi_y = -math.inf
        for series in self._series.values():
            xs, ys = series.x[: series.n], series.y[: series.n]
            ok = np.isfinite(xs) & np.isfinite(ys)
            if not ok.any():
                continue
            lo_x, hi_x = min(lo_x, float(xs[ok].min())), max(hi_x, float(xs[ok].max()))
            lo_y, hi_y = min(lo_y, float(ys[ok].min())), max(hi_y, float(ys[ok].max()))
        if not math.isfinite(lo_x):
            return None
        for x, _label, _line in self._boundaries:
            lo_x, hi_x = min(lo_x, x), max(hi_x, x)
        return lo_x, hi_x, lo_y, hi_y

    def _follow_data(self, refit: bool = False) -> None:
        """Keep every point in view, moving the view only when a point leaves it.

        Why not pyqtgraph's auto-range: it re-fits the view on every ``setData``, so
        each new point re-lays out and re-renders both axes. Measured with two live
        charts: ~33 ms of GUI-thread work per new point with auto-range, ~1 ms with a
        view that changes only when the data leaves it (benchmarks/gui_responsiveness.py
        counts the resulting event-loop stalls).
        """
        if not self._follow:
            return
        bounds = self._data_bounds()
        if bounds is None:
            return
        (x0, x1), (y0, y1) = self.getPlotItem().getViewBox().viewRange()
        # x is a step number, which only counts up.
        new_x = stepped_range(
            x0, x1, bounds[0], bounds[1], refit, grow=0.25, pad=0.02, grow_below=False
        )
        new_y = stepped_range(y0, y1, bounds[2], bounds[3], refit, grow=0.1, pad=0.08)
        # Room above the data for the step labels, which were drawn over the first points
        # of a loss (or an accuracy) that starts high, and a band for the legend at its
        # side, which covered the lines of a small chart (a 960x640 window).
        top, bottom, _banded = self._bands()
        new_y = _free_bands(new_y, bounds[2], bounds[3], top, bottom)
        if (new_x, new_y) != ((x0, x1), (y0, y1)):
            self.getPlotItem().setRange(xRange=new_x, yRange=new_y, padding=0)
        self._place_legend()

    def _legend_room(self) -> float:
        """The share of the view's height kept free for the legend at its edge; 0 when
        there is no legend or when a band that tall would squeeze the data (then
        :meth:`_place_legend` picks the corner that covers the fewest points)."""
        if not self._series or not self._legend.isVisible():
            return 0.0
        pixels = self.getPlotItem().getViewBox().height()
        needed = self._legend.boundingRect().height() + LEGEND_MARGIN_PX
        if pixels <= 0 or needed > LEGEND_BAND_MAX * pixels:
            return 0.0
        return needed / pixels

    def _bands(self) -> tuple[float, float, bool]:
        """(top, bottom, legend banded): the shares of the view's height kept free above
        and below the data, for the step labels and the legend, and whether the legend
        has its band (else it goes to the emptiest corner)."""
        legend, at_bottom = self._legend_room(), self._legend_below()
        labels = self._label_room() if self._boundaries else 0.0
        top = max(labels, 0.0 if at_bottom else legend)
        bottom = legend if at_bottom else 0.0
        if top + bottom > LEGEND_BAND_MAX + BOUNDARY_LABEL_ROOM:  # the data would be a sliver
            return labels, 0.0, False
        return top, bottom, legend > 0

    def _legend_below(self) -> bool:
        """The legend's band is below the data where asked, and wherever step labels take
        the top (at the top it covered "01 finetune" and "02 distill")."""
        return self._legend_at_bottom or bool(self._boundaries)

    def _place_legend(self) -> None:
        """Anchor the legend in its own corner when a band is kept free for it, else in
        the corner over the fewest points and line midpoints (matplotlib's "best")."""
        if not self._series or not self._legend.isVisible():
            return
        home = (1, 1 if self._legend_below() else 0)
        corner = home
        if not self._bands()[2]:
            box = self.getPlotItem().getViewBox()
            (x0, x1), (y0, y1) = box.viewRange()
            width, height = box.width(), box.height()
            if width > 0 and height > 0 and x1 > x0 and y1 > y0:
                px = []
                for series in self._series.values():
                    xs, ys = series.drawn()
                    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
                    mids_x, mids_y = (xs[1:] + xs[:-1]) / 2, (ys[1:] + ys[:-1]) / 2
                    for cx, cy in ((xs, ys), (mids_x, mids_y)):
                        ok = np.isfinite(cx) & np.isfinite(cy)
                        px.append(
                            ((cx[ok] - x0) / (x1 - x0) * width, (y1 - cy[ok]) / (y1 - y0) * height)
                        )
                rect = self._legend.boundingRect()
                w, h = rect.width() + 8, rect.height() + 8
                # The step labels count too: a legend on "02 distill" hides which step
                # the points belong to.
                origin = box.sceneBoundingRect().topLeft()
                labels = [
                    line.label.sceneBoundingRect().translated(-origin.x(), -origin.y())
                    for _x, _l, line in self._boundaries
                ]

                def covered(c: tuple[int, int]) -> int:
                    left = width - w if c[0] else 0.0
                    top = height - h if c[1] else 0.0
                    spot = QRectF(left, top, w, h)
                    return sum(
                        int(np.sum((xs >= left) & (xs <= left + w) & (ys >= top) & (ys <= top + h)))
                        for xs, ys in px
                    ) + sum(spot.intersects(label) for label in labels)

                corners = [home, (home[0], 1 - home[1]), (0, home[1]), (0, 1 - home[1])]
                corner = min(corners, key=lambda c: (covered(c), corners.index(c)))
        offset = (-8 if corner[0] else 8, -8 if corner[1] else 8)
        self._legend.anchor(itemPos=corner, parentPos=corner, offset=offset)

    def _fit_legend(self) -> None:
        """As many legend columns as the chart's width holds: one column of four entries
        took most of a small chart's height. The legend fills its rows left to right and
        each column is as wide as its widest entry, so a short name beside a long one
        ("eval", "eval (pipeline step)") shares a row the widest name alone would not."""
        items = self._legend.items
        if not items:
            return
        entries = [label.boundingRect().width() + LEGEND_SAMPLE_PX for _sample, label in items]
        width = 0.8 * self.getPlotItem().getViewBox().width()
        fits = [
            n
            for n in range(1, len(items) + 1)
            if sum(max(entries[c::n]) for c in range(n)) <= width
        ]
        columns = max(fits, default=1)
        if columns != self._legend.columnCount:
            self._legend.setColumnCount(columns)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        # pyqtgraph resizes from inside __init__ and drops its plot on close.
        if self.__dict__.get("_series") and getattr(self, "plotItem", None) is not None:
            self._fit_legend()
            self._follow_data(refit=True)

    def _label_room(self) -> float:
        """The share of the view's height the step labels take, from the top: down to the
        lowest label's line of text, with a marker's size to spare."""
        pixels = self.getPlotItem().getViewBox().height()
        lowest = min(BOUNDARY_LABEL_HEIGHTS[: len(self._boundaries)])
        text = max(line.label.boundingRect().height() for _x, _l, line in self._boundaries)
        if pixels < 4 * text:  # not laid out yet, or too small to measure
            return BOUNDARY_LABEL_ROOM
        return min(0.6, 1 - lowest + (text + 6) / pixels)

    def clear_data(self) -> None:
        """Remove every curve (a new job starts)."""
        self._timer.stop()
        for series in self._series.values():
            self.getPlotItem().removeItem(series.item)
        self._series.clear()
        for _x, _label, line in self._boundaries:
            self.getPlotItem().removeItem(line)
        self._boundaries.clear()
        self._legend.clear()
        self._legend.hide()
        self._hide_readout()
        self._set_empty(True)
        _reset_range(self)

    def csv_rows(self) -> list[tuple[str, float, float]]:
        """Every point, then every step boundary as ``("step boundary: <label>", x, NaN)``."""
        rows = [
            (name, float(s.x[i]), float(s.y[i]))
            for name, s in self._series.items()
            for i in range(s.n)
        ]
        rows += [(f"step boundary: {label}", x, math.nan) for x, label, _ in self._boundaries]
        return rows

    # ------------------------------------------------------------------ hover
    def nearest_point(self, x: float, y: float) -> tuple[str, float, float, float] | None:
        """The drawn point nearest ``(x, y)`` in view coordinates.

        Returns:
            ``(curve name, x, y, distance in pixels)``, or None without points.
        """
        view = self.getPlotItem().getViewBox()
        px, py = view.viewPixelSize()
        px, py = px or 1.0, py or 1.0
        best: tuple[str, float, float, float] | None = None
        for name, series in self._series.items():
            if series.n == 0:
                continue
            xs, ys = series.x[: series.n], series.y[: series.n]
            with np.errstate(invalid="ignore"):
                d2 = ((xs - x) / px) ** 2 + ((ys - y) / py) ** 2
            d2 = np.where(np.isfinite(d2), d2, np.inf)
            i = int(np.argmin(d2))
            if math.isfinite(d2[i]) and (best is None or d2[i] < best[3] ** 2):
                best = (name, float(xs[i]), float(ys[i]), math.sqrt(float(d2[i])))
        return best

    def readout(self, name: str, x: float, y: float) -> str:
        return f"{name}: {fmt_value(y)} at {fmt_value(x)}"

    def _on_mouse_moved(self, event: tuple) -> None:
        pos: QPointF = event[0]
        view = self.getPlotItem().getViewBox()
        if not view.sceneBoundingRect().contains(pos):
            self._hide_readout()
            return
        point = view.mapSceneToView(pos)
        hit = self.nearest_point(point.x(), point.y())
        if hit is None or hit[3] > self.HOVER_PIXELS:
            self._hide_readout()
            return
        name, x, y, _distance = hit
        text = self.readout(name, x, y)
        self._marker.setData([x], [y])
        self._marker.show()
        self._label.setText(text)
        self._label.setPos(x, y)
        self._label.show()
        self.hovered.emit(text)

    def _hide_readout(self) -> None:
        if self._label.isVisible():
            self._marker.hide()
            self._label.hide()
            self.hovered.emit("")


def _reset_range(chart: pg.PlotWidget) -> None:
    """An empty chart shows 0..1 (its ``empty_y``), not the range of the job shown before."""
    plot = chart.getPlotItem()
    y_range = chart.empty_y if isinstance(chart, LiveCurves) else (0, 1)
    plot.setRange(xRange=(0, 1), yRange=y_range, padding=0.02)
    if isinstance(chart, LiveCurves):
        chart.follow_data()
    else:
        plot.enableAutoRange()


class SparsityBars(ChartBase):
    """Share of each layer's weights pruned, as bars updated in place (0..100 %).

    Zeroed by magnitude pruning, or removed by head, FFN and layer pruning (a dropped
    layer is 100 %): the pipeline reports both under the same ``sparsity/`` keys.
    Vocabulary pruning removes embedding rows, not layer weights: :meth:`set_vocabulary`
    says so in words (over the empty chart, or in the title beside bars).
    """

    EMPTY = "No pruning in this job"

    def __init__(
        self, title: str = "Pruned weights per layer", parent: QWidget | None = None
    ) -> None:
        super().__init__(
            title,
            y_label="pruned weights (%)",
            x_label="layer",
            empty=self.EMPTY,
            parent=parent,
        )
        self.setMouseEnabled(x=False, y=False)
        self.setMenuEnabled(False)
        self.hideButtons()
        self._bars = pg.BarGraphItem(x=[], height=[], width=0.7, brush=PALETTE[0], pen=None)
        self.addItem(self._bars)
        self._values: dict[str, float] = {}
        self.overall: float | None = None
        #: ``(kept, original)`` token ids of a vocabulary pruning, or None.
        self.vocabulary: tuple[int, int] | None = None
        self.setYRange(0, 100, padding=0.02)
        self.apply_palette()

    def values(self) -> dict[str, float]:
        """Layer name → fraction of its weights pruned (0..1), in display order."""
        return {k: self._values[k] for k in sorted(self._values, key=natural_key)}

    def set_value(self, layer: str, fraction: float) -> None:
        self.set_values({layer: fraction})

    def set_values(self, values: dict[str, float]) -> None:
        changed = False
        for layer, fraction in values.items():
            fraction = float(fraction)
            if self._values.get(layer) != fraction:
                self._values[layer] = fraction
                changed = True
        if changed:
            self._redraw()

    def set_overall(self, fraction: float | None) -> None:
        """The whole encoder's share of pruned weights, shown in the title."""
        self.overall = fraction
        self._retitle()

    def set_vocabulary(self, kept: int, original: int) -> None:
        """Say that vocabulary pruning kept ``kept`` of ``original`` token ids (rows)."""
        self.vocabulary = (int(kept), int(original))
        self._redraw()

    def summary(self) -> str:
        """What the chart says in words: the empty sentence, or the title with its figures."""
        return self._hint.text() if not self._values else self._title_text

    def _vocabulary_text(self) -> str:
        if self.vocabulary is None:
            return ""
        kept, original = self.vocabulary
        return f"Vocabulary pruned: {original:,} → {kept:,} tokens"

    def _retitle(self) -> None:
        suffix = "" if self.overall is None else f" (overall {100 * self.overall:.0f} %)"
        if self.vocabulary is not None and self._values:
            suffix += f"; {self._vocabulary_text().lower()}"
        self.set_title(self.title + suffix)

    def clear_data(self) -> None:
        self._values.clear()
        self.vocabulary = None
        self.set_overall(None)
        self._redraw()
        self.setXRange(0, 1, padding=0.02)

    def _redraw(self) -> None:
        ordered = self.values()
        labels = list(ordered)
        heights = np.asarray([100.0 * v for v in ordered.values()], dtype=float)
        x = np.arange(len(labels), dtype=float)
        self._bars.setOpts(x=x, height=heights, width=0.7)
        short = [short_layer(name) for name in labels]
        self.getPlotItem().getAxis("bottom").setTicks([list(enumerate(short))])
        if labels:
            self.setXRange(-0.6, len(labels) - 0.4, padding=0)
        if self.vocabulary is not None:
            self.set_empty_text(f"{self._vocabulary_text()};\nno weights pruned in the layers")
        else:
            self.set_empty_text(self.EMPTY)
        self._retitle()
        self._set_empty(not labels)

    def csv_rows(self) -> list[tuple[str, float, float]]:
        return [(name, float(i), 100.0 * v) for i, (name, v) in enumerate(self.values().items())]
