"""The sensitivity panel: a layer x head heat map and bars per layer, FFN block and linear.

:class:`SensitivityPanel` draws a sensitivity step's measurements
(:mod:`slimpajama_gui.core.techniques.sensitivity`) as they arrive from the bridge
(``sensitivity_measured``: :meth:`SensitivityPanel.add_measurement`) or from a saved
``sensitivity.json`` (:meth:`SensitivityPanel.set_report`). One selector chooses what
every chart shows: the change of the eval loss, or of the accuracy in points, against
the unchanged model on the same sampled rows. Red is always worse. Like the other
charts, new values wait in a dict and one 80 ms timer redraws what changed.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from slimpajama_gui.core.techniques.sensitivity import SensitivityReport
from slimpajama_gui.qt.charts.base import ChartBase

#: Selector text -> (effect key, scale to display units, axis label).
MEASURES: dict[str, tuple[str, float, str]] = {
    "Loss change": ("loss_change", 1.0, "eval loss change (nats)"),
    "Accuracy change": ("accuracy_change", 100.0, "accuracy change (points)"),
}
#: Pixels a bar chart of the panel needs for its labels to be read whole.
BAR_CHART_MIN_HEIGHT = 210
#: A diverging map, white at no change (Kovesi's CET-D1).
_DIVERGING = "CET-D1"
_SHORT = {
    "attention.query": "q", "attention.key": "k", "attention.value": "v",
    "attention.output": "o", "ffn.intermediate": "in", "ffn.output": "out",
}  # fmt: skip


def short_linear(name: str) -> str:
    """'layers.3.attention.query' → '3.q', 'pooler.dense' → 'pool', 'classifier' → 'cls'."""
    parts = name.split(".")
    if parts[0] == "layers" and len(parts) >= 4:
        return f"{parts[1]}.{_SHORT.get('.'.join(parts[2:]), parts[-1])}"
    return {"pooler.dense": "pool", "classifier": "cls"}.get(name, name[:4])


class EffectBars(ChartBase):
    """One bar per measured item (a layer, an FFN block, a linear), in model order."""

    def __init__(self, title: str, x_label: str, empty: str, parent: QWidget | None = None):
        super().__init__(title, y_label="", x_label=x_label, empty=empty, parent=parent)
        self.setMouseEnabled(x=False, y=False)
        self.setMenuEnabled(False)
        self.hideButtons()
        # Title, x-axis label and a y label such as "accuracy change (points)" need this
        # much; less cuts the y label's ends.
        self.setMinimumHeight(BAR_CHART_MIN_HEIGHT)
        self._bars = pg.BarGraphItem(x=[], height=[], width=0.7, brushes=[], pen=None)
        self.addItem(self._bars)
        self._values: dict[str, float] = {}
        self.apply_palette()

    def values(self) -> dict[str, float]:
        """Item label → the value drawn (display units), in model order."""
        return dict(self._values)

    def set_values(self, values: dict[str, float], y_label: str, worse_up: bool) -> None:
        self._values = dict(values)
        self.getPlotItem().setLabel("left", y_label)
        heights = np.asarray(list(values.values()), dtype=float)
        worse = heights > 0 if worse_up else heights < 0
        brushes = [pg.mkBrush("#d6604d") if w else pg.mkBrush("#4393c3") for w in worse]
        x = np.arange(len(values), dtype=float)
        self._bars.setOpts(x=x, height=np.nan_to_num(heights), width=0.7, brushes=brushes)
        labels = list(values)
        step = max(1, math.ceil(len(labels) / 16))  # pyqtgraph drops colliding labels
        ticks = [(i, lab) for i, lab in enumerate(labels) if i % step == 0]
        self.getPlotItem().getAxis("bottom").setTicks([ticks, []])
        if labels:
            self.setXRange(-0.6, len(labels) - 0.4, padding=0)
            finite = heights[np.isfinite(heights)]
            low, high = (min(0.0, finite.min()), max(0.0, finite.max())) if finite.size else (0, 1)
            if high - low < 1e-12:
                high = low + 1e-6
            self.setYRange(low, high, padding=0.08)
        self._set_empty(not labels)

    def clear_data(self) -> None:
        self._values = {}
        self._bars.setOpts(x=[], height=[], brushes=[])
        self._set_empty(True)

    def csv_rows(self) -> list[tuple[str, float, float]]:
        return [(name, float(i), v) for i, (name, v) in enumerate(self._values.items())]


class HeadHeatMap(ChartBase):
    """What removing each attention head costs: layer (rows) x head (columns)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(
            "Removing one attention head",
            y_label="layer",
            x_label="head",
            empty="Head measurements appear here as the step runs",
            parent=parent,
        )
        self.setMenuEnabled(False)
        self.hideButtons()
        self.setMouseEnabled(x=False, y=False)
        plot = self.getPlotItem()
        plot.invertY(True)  # layer 0 on top, as the model reads
        self.image = pg.ImageItem(axisOrder="row-major")
        plot.addItem(self.image)
        # CET-D1 runs blue (low) → white → red (high): as it is for loss, where high is
        # worse, and reversed for accuracy, where low is worse. pg.colormap.get returns one
        # shared object, so each chart reverses its own copy.
        base = pg.colormap.get(_DIVERGING)
        self.cmap = copy.deepcopy(base)
        self.cmap_down = copy.deepcopy(base)
        self.cmap_down.reverse()
        self.colorbar = pg.ColorBarItem(values=(-1, 1), colorMap=self.cmap, interactive=False)
        self.colorbar.setImageItem(self.image, insert_in=plot)
        # Plain decimals: an SI factor beside the bar's label was cut off at the edge.
        self.colorbar.axis.enableAutoSIPrefix(False)
        #: (layers, heads) in display units; NaN where not measured.
        self.values = np.zeros((0, 0))
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.readout = ""
        self._label = ""
        self.apply_palette()

    def set_values(self, values: np.ndarray, label: str, worse_up: bool) -> None:
        """Show ``values`` (layers x heads, NaN = not measured) in display units."""
        self.values = np.asarray(values, dtype=float)
        self._label = label
        layers, heads = self.values.shape if self.values.ndim == 2 else (0, 0)
        if not layers or not heads:
            self.image.clear()
            self._set_empty(True)
            return
        finite = self.values[np.isfinite(self.values)]
        bound = float(np.abs(finite).max()) if finite.size else 1.0
        bound = bound if bound > 0 else 1e-6
        self.image.setImage(self.values, levels=(-bound, bound), autoLevels=False)
        # The colour bar owns the image's colours and levels (setImageItem links them).
        self.colorbar.setColorMap(self.cmap if worse_up else self.cmap_down)
        self.colorbar.setLevels((-bound, bound))
        self.colorbar.axis.setLabel(label)
        self.image.setRect(QRectF(-0.5, -0.5, heads, layers))
        plot = self.getPlotItem()
        step = max(1, math.ceil(heads / 16))
        plot.getAxis("bottom").setTicks([[(h, str(h)) for h in range(0, heads, step)], []])
        plot.getAxis("left").setTicks([[(i, str(i)) for i in range(layers)], []])
        self.setXRange(-0.5, heads - 0.5, padding=0)
        self.setYRange(-0.5, layers - 0.5, padding=0)
        self._set_empty(False)

    def _on_mouse_moved(self, pos) -> None:
        if not self.values.size:
            return
        point = self.getPlotItem().vb.mapSceneToView(pos)
        head, layer = round(point.x()), round(point.y())
        if 0 <= layer < self.values.shape[0] and 0 <= head < self.values.shape[1]:
            value = self.values[layer, head]
            shown = "not measured" if math.isnan(value) else f"{value:+.4g}"
            self.readout = f"layer {layer}, head {head}: {self._label} {shown}"
            self.setToolTip(self.readout)

    def clear_data(self) -> None:
        self.values = np.zeros((0, 0))
        self.image.clear()
        self._set_empty(True)

    def csv_rows(self) -> list[tuple[str, float, float]]:
        return [
            (f"layer {i}", float(h), float(self.values[i, h]))
            for i in range(self.values.shape[0])
            for h in range(self.values.shape[1])
        ]


class SensitivityPanel(QWidget):
    """A sensitivity step's measurements: the head heat map and three bar charts.

    Attributes:
        heads: :class:`HeadHeatMap`; layers, ffn, linears: :class:`EffectBars`.
        measure: the selector (loss change or accuracy change).
        caption: what was measured on how many rows, and the unchanged model's figures.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.measure = QComboBox()
        self.measure.addItems(list(MEASURES))
        self.measure.setToolTip("What every chart of this panel shows")
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.heads = HeadHeatMap()
        self.layers = EffectBars(
            "Dropping one layer", "layer", "Layer measurements appear here as the step runs"
        )
        self.ffn = EffectBars(
            "Removing one FFN block", "layer", "FFN measurements appear here as the step runs"
        )
        self.linears = EffectBars(
            "int8 on one linear (others float)",
            "linear (layer.q/k/v/o/in/out)",
            "Linear measurements appear here as the step runs",
        )
        top = QHBoxLayout()
        top.addWidget(QLabel("Show:"))
        top.addWidget(self.measure)
        top.addWidget(self.caption, 1)
        # Four charts need more height than a short window leaves below the jobs table:
        # they scroll (under the selector, which stays) rather than lose their axis labels
        # at the window's edge.
        body = QWidget()
        grid = QGridLayout(body)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(6)
        grid.addWidget(self.heads, 0, 0, 2, 1)
        grid.addWidget(self.layers, 0, 1)
        grid.addWidget(self.ffn, 1, 1)
        grid.addWidget(self.linears, 2, 0, 1, 2)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        self.scroll = QScrollArea()
        self.scroll.setWidget(body)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        layout.addWidget(self.scroll, 1)
        self._timer = QTimer(self)
        self._timer.setInterval(80)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.flush)
        self.measure.currentTextChanged.connect(lambda _t: self.flush())
        self.clear()

    # ------------------------------------------------------------------ data
    def clear(self) -> None:
        """Forget every measurement."""
        self._effects: dict[tuple[str, Any], dict[str, float]] = {}
        self._rows: int | None = None
        self._baseline: tuple[float, float] | None = None
        self._done: tuple[int, int] | None = None
        self._layer_heads: list[int] | None = None
        self.source = ""
        self.flush()

    def has_data(self) -> bool:
        return bool(self._effects)

    def add_measurement(self, event: dict[str, Any]) -> None:
        """One live measurement (the bridge's ``sensitivity_measured`` dict)."""
        kind = event.get("kind")
        if kind == "head":
            key: Any = (int(event["layer"]), int(event["head"]))
        elif kind in ("layer", "ffn"):
            key = int(event["layer"])
        elif kind == "linear":
            key = str(event["name"])
        else:
            return
        self._effects[(kind, key)] = {
            k: float(event[k]) for k in ("loss_change", "accuracy_change", "kl") if k in event
        }
        if "done" in event and "total" in event:
            self._done = (int(event["done"]), int(event["total"]))
        if not self._timer.isActive():
            self._timer.start()

    def set_report(self, report: SensitivityReport, source: str | Path = "") -> None:
        """Show a whole saved report (a finished job)."""
        self.clear()
        self._layer_heads = list(report.layer_heads)
        self._rows = report.rows
        self._baseline = (report.baseline_loss, report.baseline_accuracy)
        self.source = str(source)
        for i, e in enumerate(report.layers):
            if e:
                self._effects[("layer", i)] = e.to_dict()
        for i, row in enumerate(report.heads):
            for h, e in enumerate(row):
                if e:
                    self._effects[("head", (i, h))] = e.to_dict()
        for i, e in enumerate(report.ffn):
            if e:
                self._effects[("ffn", i)] = e.to_dict()
        for name, e in report.linears.items():
            self._effects[("linear", name)] = e.to_dict()
        self.flush()

    # ------------------------------------------------------------------ views
    def _shown(self) -> tuple[str, float, str]:
        return MEASURES[self.measure.currentText()]

    def head_values(self) -> np.ndarray:
        """(layers, heads) in display units (NaN: not measured, or no such head)."""
        key, scale, _ = self._shown()
        heads = {k: v for (kind, k), v in self._effects.items() if kind == "head"}
        if self._layer_heads is not None:
            layers, width = len(self._layer_heads), max(self._layer_heads, default=0)
        elif heads:
            layers = 1 + max(i for i, _ in heads)
            width = 1 + max(h for _, h in heads)
        else:
            layers = width = 0
        out = np.full((layers, width), np.nan)
        for (i, h), effect in heads.items():
            if i < layers and h < width and key in effect:
                out[i, h] = scale * effect[key]
        return out

    def bar_values(self, kind: str) -> dict[str, float]:
        """Item label → value in display units, in model order, for layer/ffn/linear."""
        key, scale, _ = self._shown()
        items = [(k, v) for (kd, k), v in self._effects.items() if kd == kind and key in v]
        if kind == "linear":
            return {short_linear(k): scale * v[key] for k, v in items}
        return {str(k): scale * v[key] for k, v in sorted(items)}

    def flush(self) -> None:
        """Redraw every chart from the measurements now."""
        key, _, label = self._shown()
        worse_up = key == "loss_change"
        self.heads.set_values(self.head_values(), label, worse_up)
        self.layers.set_values(self.bar_values("layer"), label, worse_up)
        self.ffn.set_values(self.bar_values("ffn"), label, worse_up)
        self.linears.set_values(self.bar_values("linear"), label, worse_up)
        self.caption.setText(self._caption())

    def _caption(self) -> str:
        parts = []
        if self._done is not None and self._done[0] < self._done[1]:
            parts.append(f"measuring: {self._done[0]} of {self._done[1]} done")
        elif self._done is not None:
            parts.append(f"{self._done[1]} measurements")
        if self._rows is not None:
            parts.append(f"measured on {self._rows} sampled rows")
        if self._baseline is not None:
            loss, acc = self._baseline
            parts.append(f"unchanged model: loss {loss:.4f}, accuracy {100 * acc:.2f} %")
        parts.append("red = worse")
        return "; ".join(parts)

    def export_all(self, folder: str | Path) -> list[Path]:
        """Each chart as ``sensitivity-<chart>.png`` and ``.csv`` in ``folder``."""
        folder = Path(folder)
        written = []
        for name, chart in (("heads", self.heads), ("layers", self.layers),
                            ("ffn", self.ffn), ("linears", self.linears)):  # fmt: skip
            for suffix in (".png", ".csv"):
                written.append(chart.export(folder / f"sensitivity-{name}{suffix}"))
        return written
