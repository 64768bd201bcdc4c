"""Live charts of a job: loss terms, accuracy, learning rate, sparsity, size and latency.

Drawing follows pyqtgraph's ``examples/scrollingPlots.py``: each curve is created once;
new points go into numpy buffers that grow by doubling; one ``QTimer`` (80 ms) calls
``setData`` only for curves that changed, so a job logging every step costs at most
~12 redraws a second. Long curves are drawn with ``setDownsampling(mode='peak')`` and
``setClipToView(True)``.

:meth:`JobCharts.add_metrics` is the one entry point for numbers, whether they arrive
live from the bridge (``logged`` / ``evaluated``) or are replayed from the history by
:meth:`JobCharts.load_history`. It routes keys as follows (the metric key format):

- a training log (a dict with ``lr`` or ``grad_norm``, as ``train.train`` logs it):
  ``loss`` and every other loss term (``ce``, ``kd``, ``hidden``, ``attention``, ...)
  become curves of the loss chart; ``lr`` goes to the learning-rate chart;
  ``step``, ``epoch``, ``grad_norm`` and ``examples_per_second`` are not drawn.
- ``train_accuracy`` / ``eval_accuracy`` / ``test_accuracy`` → the accuracy chart, in
  percent: a line per split for evaluations during training (dicts with ``step``), and
  a marker series "<split> (pipeline step)" for figures measured by a whole step
  (evaluate, the quantize guard).
- ``sparsity/<layer name>`` → the per-layer sparsity bars, a fraction 0..1 of weights
  zeroed (magnitude) or removed (heads, FFN, layers), as the prune step reports them
  with ``on_eval`` (``sparsity/layer 0`` ...
  ``sparsity/layer 5``, ``sparsity/head``); the latest value per layer wins, layers are
  shown in natural order. ``sparsity/overall`` goes into the chart's title.
- ``latency_p50_ms`` / ``latency_p95_ms`` → the latency chart, ``size_bytes`` → the size
  chart, both at x = the pipeline step number (1-based).

The x axis of training charts is the optimizer step counted across every training step
of the job (a distillation after a fine-tune continues where the fine-tune ended).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from pyqtgraph.exporters import ImageExporter, SVGExporter
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.storage.history import MetricRecord
from slimpajama_gui.core.storage.safe_io import atomic_write_text

#: Colour-blind-safe palette (Okabe-Ito), in the order curves are created.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#7F7F7F")

#: Keys of a training log that are bookkeeping, not loss terms.
TRAIN_INFO_KEYS = frozenset({"lr", "grad_norm", "step", "epoch", "examples_per_second"})
SPARSITY_PREFIX = "sparsity/"
#: ``sparsity/overall`` is the whole model's share, shown in the chart title, not a bar.
SPARSITY_OVERALL = "overall"
#: Accuracy keys drawn: ``<split>_accuracy`` for these splits (not e.g. a quantize
#: step's ``baseline_accuracy``).
ACCURACY_SPLITS = ("train", "eval", "test")
EXPORT_SUFFIXES = (".png", ".svg", ".csv")


def natural_key(text: str) -> list[Any]:
    """'layer 10' sorts after 'layer 2'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


class _Series:
    """One curve and its growing buffers."""

    def __init__(self, item: pg.PlotDataItem, capacity: int = 64) -> None:
        self.item = item
        self.x = np.empty(capacity)
        self.y = np.empty(capacity)
        self.n = 0
        self.dirty = False

    def append(self, x: float, y: float) -> None:
        if self.n == len(self.x):
            # Doubling keeps appends amortised O(1) however long the job runs.
            self.x = np.resize(self.x, 2 * len(self.x))
            self.y = np.resize(self.y, 2 * len(self.y))
        self.x[self.n] = x
        self.y[self.n] = y
        self.n += 1
        self.dirty = True


class _EmptyHint(QLabel):
    """A centred grey sentence over an empty chart."""

    def __init__(self, text: str, parent: QWidget) -> None:
        super().__init__(text, parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        self.setStyleSheet("color: palette(mid); background: transparent;")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)

    def follow(self, size: QSize) -> None:
        self.setGeometry(0, 0, size.width(), size.height())


class _ChartBase(pg.PlotWidget):
    """Shared look, the empty hint, and export to PNG / SVG / CSV."""

    def __init__(
        self,
        title: str,
        *,
        y_label: str,
        x_label: str,
        empty: str,
        si_prefix: bool = False,
        parent=None,
    ):
        super().__init__(parent, background=None)
        self.title = title
        self.setMinimumSize(220, 170)
        plot = self.getPlotItem()
        plot.setTitle(title, size="10pt")
        plot.setLabel("left", y_label)
        plot.setLabel("bottom", x_label)
        # "loss (x0.001)" reads worse than plain decimals; only tiny values need a prefix.
        plot.getAxis("left").enableAutoSIPrefix(si_prefix)
        plot.getAxis("bottom").enableAutoSIPrefix(False)
        # Grid lines from a GridItem, not the axes' own grid: an axis that draws the grid
        # covers the whole plot, so every new point re-renders its tick labels too
        # (~8 ms a chart per redraw, against ~1 ms; see LiveCurves._follow_data).
        grid = pg.GridItem(textPen=None)
        grid.setPen(pg.mkPen(128, 128, 128, 60))
        plot.addItem(grid, ignoreBounds=True)
        self._hint = _EmptyHint(empty, self)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        hint = self.__dict__.get("_hint")  # pyqtgraph resizes from inside __init__
        if hint is not None:
            hint.follow(self.size())

    def set_empty_text(self, text: str) -> None:
        self._hint.setText(text)

    def _set_empty(self, empty: bool) -> None:
        self._hint.setVisible(empty)

    def csv_rows(self) -> list[tuple[str, float, float]]:
        raise NotImplementedError

    def flush(self) -> None:
        """Draw pending points now (exports and tests)."""

    def export(self, path: str | Path) -> Path:
        """Save the chart as PNG or SVG (what is drawn) or CSV (every point).

        Raises:
            UserError: the file name does not end in .png, .svg or .csv.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in EXPORT_SUFFIXES:
            raise UserError(
                f"cannot export a chart as '{path.name}'; use a name ending in .png, .svg or .csv."
            )
        self.flush()
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(["series", "x", "y"])
            writer.writerows(
                (name, _csv_number(x), _csv_number(y)) for name, x, y in self.csv_rows()
            )
            atomic_write_text(path, buffer.getvalue())
        elif suffix == ".png":
            exporter = ImageExporter(self.getPlotItem())
            # Twice the on-screen width gives a sharp picture for documents.
            exporter.parameters()["width"] = max(2 * self.width(), 800)
            exporter.export(str(path))
        else:
            self._export_svg(path)
        return path

    def _export_svg(self, path: Path) -> None:
        try:
            SVGExporter(self.getPlotItem()).export(str(path))
        except ValueError:
            # pyqtgraph 0.14's SVG post-processing cannot parse the closed paths newer
            # Qt writes (pyqtgraph issue #3495); Qt's own SVG of the widget is still exact.
            from PySide6.QtSvg import QSvgGenerator

            size = self.size() if self.width() > 10 else QSize(640, 400)
            generator = QSvgGenerator()
            generator.setFileName(str(path))
            generator.setSize(size)
            generator.setViewBox(QRectF(0, 0, size.width(), size.height()))
            generator.setTitle(self.title)
            painter = QPainter(generator)
            try:
                self.render(painter)
            finally:
                painter.end()


def _csv_number(value: float) -> str:
    return "" if not math.isfinite(value) else repr(float(value))


class LiveCurves(_ChartBase):
    """A line chart whose named curves grow while a job runs.

    Args:
        title: shown above the chart.
        y_label, x_label: axis titles.
        symbols: draw a marker on every point (for charts with few points).
        empty: the sentence shown while there is no data.

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

    def __init__(
        self,
        title: str,
        *,
        y_label: str,
        x_label: str = "training step",
        symbols: bool = False,
        empty: str = "No data yet",
        legend_at_bottom: bool = False,
        si_prefix: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(
            title, y_label=y_label, x_label=x_label, empty=empty, si_prefix=si_prefix, parent=parent
        )
        plot = self.getPlotItem()
        plot.setDownsampling(mode="peak", auto=True)
        plot.setClipToView(True)
        self._legend = plot.addLegend(
            offset=(-8, -8 if legend_at_bottom else 8),
            labelTextSize="8pt",
            brush=QColor(255, 255, 255, 170),
        )
        self._legend.hide()  # an empty legend is a stray white box
        self._symbols = symbols
        self._series: dict[str, _Series] = {}
        self._timer = QTimer(self)
        self._timer.setInterval(self.REFRESH_MS)
        self._timer.timeout.connect(self.flush)
        # The hover read-out: a marker on the nearest point and its values beside it.
        self._marker = pg.ScatterPlotItem(size=9, pen=pg.mkPen("#222", width=1.5), brush=None)
        self._label = pg.TextItem(anchor=(0, 1), color="#222", fill=QColor(255, 255, 255, 220))
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
        self._series[name] = _Series(item)
        self._legend.show()
        self._set_empty(False)

    def _curve(self, name: str) -> _Series:
        if name not in self._series:
            self.add_curve(name)
        return self._series[name]

    def append(self, name: str, x: float, y: float) -> None:
        """Add one point to the curve ``name`` (created on first use)."""
        self._curve(name).append(float(x), float(y))
        if not self._timer.isActive():
            self._timer.start()

    def extend(self, name: str, xs: Iterable[float], ys: Iterable[float]) -> None:
        series = self._curve(name)
        for x, y in zip(xs, ys, strict=True):
            series.append(float(x), float(y))
        if not self._timer.isActive():
            self._timer.start()

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
                series.item.setData(series.x[: series.n], series.y[: series.n])
                series.dirty = False
                changed = True
        self._timer.stop()
        if changed:
            self._follow_data()

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
        new_x = _stepped_range(x0, x1, bounds[0], bounds[1], refit, grow=0.25, pad=0.02)
        new_y = _stepped_range(y0, y1, bounds[2], bounds[3], refit, grow=0.1, pad=0.08)
        if (new_x, new_y) != ((x0, x1), (y0, y1)):
            self.getPlotItem().setRange(xRange=new_x, yRange=new_y, padding=0)

    def clear_data(self) -> None:
        """Remove every curve (a new job starts)."""
        self._timer.stop()
        for series in self._series.values():
            self.getPlotItem().removeItem(series.item)
        self._series.clear()
        self._legend.clear()
        self._legend.hide()
        self._hide_readout()
        self._set_empty(True)
        _reset_range(self)

    def csv_rows(self) -> list[tuple[str, float, float]]:
        return [
            (name, float(s.x[i]), float(s.y[i]))
            for name, s in self._series.items()
            for i in range(s.n)
        ]

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
        return f"{name}: {_fmt(y)} at {_fmt(x)}"

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
    """An empty chart shows 0..1, not the range of the job shown before."""
    plot = chart.getPlotItem()
    plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0.02)
    if isinstance(chart, LiveCurves):
        chart.follow_data()
    else:
        plot.enableAutoRange()


def _stepped_range(
    v0: float, v1: float, lo: float, hi: float, refit: bool, *, grow: float, pad: float
) -> tuple[float, float]:
    """The view ``(v0, v1)``, or a new one when the data ``lo..hi`` has left it.

    A new view leaves ``grow`` of the data's span as headroom on the side the data
    left by (so a falling loss or a growing step count moves the view every few points
    rather than on every one) and re-fits when the data fills less than 40 % of it.
    """
    span = hi - lo
    if span <= 0:
        span = abs(hi) * 0.1 or 1.0
    inside = v0 <= lo and hi <= v1
    if inside and not refit and span >= 0.4 * (v1 - v0):
        return v0, v1
    below = 0.0 if refit or lo >= v0 else grow
    above = 0.0 if refit or hi <= v1 else grow
    return lo - (pad + below) * span, hi + (pad + above) * span


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3g}"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


class SparsityBars(_ChartBase):
    """Share of each layer's weights pruned, as bars updated in place (0..100 %).

    Zeroed by magnitude pruning, or removed by head, FFN and layer pruning (a dropped
    layer is 100 %): the pipeline reports both under the same ``sparsity/`` keys.
    """

    def __init__(
        self, title: str = "Pruned weights per layer", parent: QWidget | None = None
    ) -> None:
        super().__init__(
            title,
            y_label="pruned weights (%)",
            x_label="layer",
            empty="No pruning in this job",
            parent=parent,
        )
        self.setMouseEnabled(x=False, y=False)
        self.setMenuEnabled(False)
        self.hideButtons()
        self._bars = pg.BarGraphItem(x=[], height=[], width=0.7, brush=PALETTE[0], pen=None)
        self.addItem(self._bars)
        self._values: dict[str, float] = {}
        self.overall: float | None = None
        self.setYRange(0, 100, padding=0.02)

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
        suffix = "" if fraction is None else f" (overall {100 * fraction:.0f} %)"
        self.getPlotItem().setTitle(self.title + suffix, size="10pt")

    def clear_data(self) -> None:
        self._values.clear()
        self.set_overall(None)
        self._redraw()
        self.setXRange(0, 1, padding=0.02)

    def _redraw(self) -> None:
        ordered = self.values()
        labels = list(ordered)
        heights = np.asarray([100.0 * v for v in ordered.values()], dtype=float)
        x = np.arange(len(labels), dtype=float)
        self._bars.setOpts(x=x, height=heights, width=0.7)
        short = [_short_layer(name) for name in labels]
        self.getPlotItem().getAxis("bottom").setTicks([list(enumerate(short))])
        if labels:
            self.setXRange(-0.6, len(labels) - 0.4, padding=0)
        self._set_empty(not labels)

    def csv_rows(self) -> list[tuple[str, float, float]]:
        return [(name, float(i), 100.0 * v) for i, (name, v) in enumerate(self.values().items())]


def _short_layer(name: str) -> str:
    """'layer 3' → 'L3', 'embeddings' → 'emb' (pyqtgraph drops tick labels that collide)."""
    match = re.fullmatch(r"layer[\s_]*(\d+)", name.strip(), flags=re.IGNORECASE)
    if match:
        return f"L{match.group(1)}"
    return name if len(name) <= 4 else name[:3]


class JobCharts(QWidget):
    """The charts of one job in a grid; fed live or from the history.

    Attributes:
        loss, accuracy, lr, size, latency: :class:`LiveCurves`.
        sparsity: :class:`SparsityBars`.

    Signals:
        hovered(str): the read-out under the mouse in any chart.
    """

    hovered = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss = LiveCurves(
            "Training loss", y_label="loss", empty="The loss appears once training starts"
        )
        self.accuracy = LiveCurves(
            "Accuracy",
            y_label="accuracy (%)",
            symbols=True,
            empty="No evaluation yet",
            legend_at_bottom=True,  # accuracy rises towards the top-right corner
        )
        self.lr = LiveCurves(
            "Learning rate", y_label="learning rate", empty="No training yet", si_prefix=True
        )
        self.sparsity = SparsityBars()
        self.size = LiveCurves(
            "Size on disk",
            y_label="MB",
            x_label="pipeline step",
            symbols=True,
            empty="Measured by a benchmark step",
        )
        self.latency = LiveCurves(
            "Latency (batch 1, CPU)",
            y_label="ms",
            x_label="pipeline step",
            symbols=True,
            empty="Measured by a benchmark step",
        )
        for chart in (self.size, self.latency):
            chart.getPlotItem().getAxis("bottom").setTickSpacing(major=1, minor=1)
        self.charts: dict[str, _ChartBase] = {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "learning-rate": self.lr,
            "sparsity": self.sparsity,
            "size": self.size,
            "latency": self.latency,
        }
        for chart in self.charts.values():
            if isinstance(chart, LiveCurves):
                chart.hovered.connect(self.hovered)

        self.export_button = QPushButton("Export charts…")
        self.export_button.setToolTip(
            "Save every chart as PNG and SVG pictures and as CSV numbers in a folder"
        )
        self.export_button.clicked.connect(self._ask_export)
        self.readout = QLabel()
        self.readout.setStyleSheet("color: palette(mid);")
        self.hovered.connect(self.readout.setText)
        top = QHBoxLayout()
        top.addWidget(self.readout, 1)
        top.addWidget(self.export_button)

        grid = QGridLayout()
        grid.setSpacing(6)
        for i, chart in enumerate(self.charts.values()):
            grid.addWidget(chart, i // 3, i % 3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addLayout(grid, 1)
        self.clear()

    # ------------------------------------------------------------------ data
    def clear(self) -> None:
        """Forget every point (a new job, or another job selected)."""
        for chart in self.charts.values():
            chart.clear_data()
        self._offsets: dict[int, float] = {}
        self._last_x = 0.0
        self.readout.setText("")

    def add_metrics(self, index: int, metrics: dict[str, Any]) -> None:
        """Route one dict of numbers of step ``index`` to the charts (see module doc)."""
        if "step" in metrics and _finite(metrics["step"]):
            if index not in self._offsets:
                self._offsets[index] = self._last_x
            x = self._offsets[index] + float(metrics["step"])
            self._last_x = max(self._last_x, x)
        else:
            x = self._last_x
        if "lr" in metrics or "grad_norm" in metrics:
            for key, value in metrics.items():
                if key in TRAIN_INFO_KEYS or key.startswith(SPARSITY_PREFIX):
                    continue
                if _finite(value) or _is_nan(value):
                    self.loss.append(key, x, float(value))
            if _finite(metrics.get("lr")):
                self.lr.append("lr", x, float(metrics["lr"]))
        for split in ACCURACY_SPLITS:
            value = metrics.get(f"{split}_accuracy")
            if not _finite(value):
                continue
            name = split
            if "step" not in metrics:
                # Measured by a pipeline step (evaluate, or a quantize guard) on the model
                # as it is then, perhaps the best checkpoint rather than the last: a
                # marker, not a continuation of the training curve.
                name = f"{split} (pipeline step)"
                self.accuracy.add_curve(name, line=False, symbol="d")
            self.accuracy.append(name, x, 100.0 * float(value))
        sparsity = {
            key[len(SPARSITY_PREFIX) :]: float(value)
            for key, value in metrics.items()
            if key.startswith(SPARSITY_PREFIX) and _finite(value)
        }
        overall = sparsity.pop(SPARSITY_OVERALL, None)
        if overall is not None:
            self.sparsity.set_overall(overall)
        if sparsity:
            self.sparsity.set_values(sparsity)
        step_number = index + 1
        for key, name in (("latency_p50_ms", "p50"), ("latency_p95_ms", "p95")):
            if _finite(metrics.get(key)):
                self.latency.append(name, step_number, float(metrics[key]))
        if _finite(metrics.get("size_bytes")):
            self.size.append("size", step_number, float(metrics["size_bytes"]) / 1e6)

    def load_history(self, records: Sequence[MetricRecord]) -> None:
        """Fill the charts from a job's logged numbers (``JobStore.metrics(job_id)``).

        Each ``log_metrics`` call of the pipeline wrote its numbers with one timestamp,
        so consecutive records of one step with the same ``ts`` are one logged dict.
        """
        self.clear()
        for index, metrics in group_records(records):
            self.add_metrics(index, metrics)
        self.flush()

    def flush(self) -> None:
        for chart in self.charts.values():
            chart.flush()

    # ------------------------------------------------------------------ export
    def export_all(self, folder: str | Path) -> list[Path]:
        """Write ``<chart>.png``, ``.svg`` and ``.csv`` for every chart into ``folder``."""
        folder = Path(folder)
        written = []
        for name, chart in self.charts.items():
            for suffix in EXPORT_SUFFIXES:
                written.append(chart.export(folder / f"{name}{suffix}"))
        return written

    def _ask_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export the charts to a folder")
        if folder:
            written = self.export_all(folder)
            self.readout.setText(f"Saved {len(written)} files in {folder}")


def group_records(records: Iterable[MetricRecord]) -> list[tuple[int, dict[str, float]]]:
    """Rebuild the dicts the pipeline logged from flat history records."""
    groups: list[tuple[int, dict[str, float]]] = []
    last: tuple[int, float] | None = None
    for record in records:
        key = (record.step_index, record.ts)
        if key != last or record.key in groups[-1][1]:
            groups.append((record.step_index, {}))
            last = key
        groups[-1][1][record.key] = record.value
    return groups


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
