"""The base of every chart: palette colours, the empty hint, scientific ticks, export.

:class:`ChartBase` gives each chart its look (following the palette, light or dark), the
grey sentence over an empty chart, and export to PNG, SVG and CSV; the widgets in
:mod:`.widgets` and :mod:`.sensitivity` build on it.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pyqtgraph as pg
from pyqtgraph.exporters import ImageExporter, SVGExporter
from PySide6.QtCore import QEvent, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import (
    QLabel,
    QWidget,
)

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.storage.atomic import atomic_write_text
from slimpajama_gui.qt.charts.series import (
    EXPORT_SUFFIXES,
    csv_number,
)

#: Where step labels sit on their dashed line (0 bottom .. 1 top), in turn.
BOUNDARY_LABEL_HEIGHTS = (0.96, 0.86)
#: The share of the view's height above the data that a chart with step labels keeps
#: free for them while it cannot measure them (not laid out yet).
BOUNDARY_LABEL_ROOM = 0.3


#: Significant digits a tick label of a :class:`ScientificAxis` has at most, unless it is
#: the one tick of a view too narrow for these.
TICK_DIGITS = 3
#: A :class:`ScientificAxis` view less high than this share of its values has one tick.
#: A learning-rate schedule changes by factors, not per cents: so narrow a view shows a
#: constant (the chart pads a flat line by under 1 % each way).
ONE_TICK_SHARE = 0.05


def scientific(value: float, digits: int = TICK_DIGITS) -> str:
    """A tick value as people write small numbers, to at most ``digits`` significant
    digits: 1e-4, 2.5e-5, 0."""
    if not math.isfinite(value):
        return ""
    if abs(value) < 1e-12:
        return "0"
    mantissa, exponent = f"{abs(value):.{max(digits, 1) - 1}e}".split("e")
    return f"{'-' if value < 0 else ''}{float(mantissa):.{digits}g}e{int(exponent)}"


def _reads_as_itself(value: float, spacing: float, digits: int) -> bool:
    """Whether ``value`` written to ``digits`` digits lies where its tick is drawn (within
    a hundredth of the ticks' spacing), so that two ticks never read the same."""
    text = scientific(value, digits)
    return bool(text) and abs(float(text) - value) <= 0.01 * abs(spacing)


def roundest(lo: float, hi: float) -> tuple[float, float]:
    """The value in ``lo..hi`` with the fewest significant digits (nearest the middle of
    those with as few), and the place value of its last digit."""
    largest = max(abs(lo), abs(hi))
    top = math.floor(math.log10(largest)) if largest > 0 else 0
    for place in range(top, top - 17, -1):
        step = 10.0**place
        value = round((lo + hi) / 2 / step) * step
        if lo <= value <= hi:
            return value, step
    return (lo + hi) / 2, hi - lo


class ScientificAxis(pg.AxisItem):
    """An axis whose tick labels are :func:`scientific` numbers, never two alike.

    Why: a constant learning rate gets a view a per cent or two of its value high, whose
    ticks all read "1e-4" to three digits. A view that narrow (:data:`ONE_TICK_SHARE`),
    or whose ticks need more digits than :data:`TICK_DIGITS` to tell apart, gets one
    tick instead, at the roundest value in it (the constant itself, as a rule): labels
    such as 2.99e-5, 3e-5, 3.01e-5 around a flat line suggest a change that is not there.
    """

    def tickValues(self, minVal, maxVal, size):  # noqa: N802 (pyqtgraph override)
        levels = super().tickValues(minVal, maxVal, size)
        lo, hi = sorted((minVal, maxVal))
        if self.logMode or not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            return levels
        readable = []
        if hi - lo >= ONE_TICK_SHARE * max(abs(lo), abs(hi)):
            for spacing, values in levels:
                if not all(_reads_as_itself(v, spacing, TICK_DIGITS) for v in values):
                    break  # finer levels need more digits still
                readable.append((spacing, values))
        if readable:
            return readable
        value, place = roundest(lo, hi)
        return [(place, [value])]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph override)
        return [self._label(v * scale, spacing * scale) for v in values]

    @staticmethod
    def _label(value: float, spacing: float) -> str:
        for digits in range(TICK_DIGITS, 18):
            if _reads_as_itself(value, spacing, digits):
                return scientific(value, digits)
        return scientific(value, 17)


class _EmptyHint(QLabel):
    """A centred grey sentence over an empty chart."""

    def __init__(self, text: str, parent: QWidget) -> None:
        super().__init__(text, parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        self.setMargin(12)
        self.set_color(QColor(128, 128, 128))
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)

    def follow(self, size: QSize) -> None:
        self.setGeometry(0, 0, size.width(), size.height())

    def set_color(self, color: QColor) -> None:
        self.setStyleSheet(f"color: {color.name()}; background: transparent;")


class ChartColors:
    """The colours a chart draws with, taken from a widget palette (light or dark theme).

    Attributes:
        background: the plot's canvas (the palette's Base).
        text: titles, tick labels, read-outs (Text).
        axis: axis lines and ticks, between text and background.
        muted: the empty-chart sentence and step markers (PlaceholderText).
    """

    def __init__(self, palette: QPalette) -> None:
        self.background = palette.color(QPalette.ColorRole.Base)
        self.text = palette.color(QPalette.ColorRole.Text)
        self.axis = _mix(self.text, self.background, 0.6)
        self.muted = palette.color(QPalette.ColorRole.PlaceholderText)

    def translucent(self, alpha: int) -> QColor:
        """The background with ``alpha`` (0..255): legend and read-out boxes."""
        color = QColor(self.background)
        color.setAlpha(alpha)
        return color


def _mix(a: QColor, b: QColor, share_a: float) -> QColor:
    return QColor(
        round(share_a * a.red() + (1 - share_a) * b.red()),
        round(share_a * a.green() + (1 - share_a) * b.green()),
        round(share_a * a.blue() + (1 - share_a) * b.blue()),
    )


class ChartBase(pg.PlotWidget):
    """Shared look, the empty hint, and export to PNG / SVG / CSV.

    Colours come from the widget's palette and follow it: a theme change (the settings
    dialog sets the application palette) restyles every chart at once, shown or not.
    """

    def __init__(
        self,
        title: str,
        *,
        y_label: str,
        x_label: str,
        empty: str,
        scientific: bool = False,
        parent=None,
    ):
        # Learning rates read as people write them ("1e-4"), not as "100 (x1e-06)".
        axes = {"left": ScientificAxis("left")} if scientific else None
        super().__init__(parent, background=None, axisItems=axes)
        self.title = title
        self._title_text = title
        self.colors = ChartColors(self.palette())
        self.setMinimumSize(220, 170)
        plot = self.getPlotItem()
        plot.setTitle(title, size="10pt")
        plot.setLabel("left", y_label)
        plot.setLabel("bottom", x_label)
        # "loss (x0.001)" reads worse than plain decimals.
        plot.getAxis("left").enableAutoSIPrefix(False)
        plot.getAxis("bottom").enableAutoSIPrefix(False)
        # Grid lines from a GridItem, not the axes' own grid: an axis that draws the grid
        # covers the whole plot, so every new point re-renders its tick labels too
        # (~8 ms a chart per redraw, against ~1 ms; see LiveCurves._follow_data).
        grid = pg.GridItem(textPen=None)
        grid.setPen(pg.mkPen(128, 128, 128, 60))
        plot.addItem(grid, ignoreBounds=True)
        self._hint = _EmptyHint(empty, self)
        # Subclasses call apply_palette() once their own items exist.

    @property
    def shown_title(self) -> str:
        """The title as shown now (``title`` is the one it was made with)."""
        return self._title_text

    def set_title(self, text: str) -> None:
        """The title above the plot, in the palette's text colour."""
        self._title_text = text
        self.getPlotItem().setTitle(text, size="10pt", color=self.colors.text.name())

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt override)
        super().changeEvent(event)
        changed = (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange)
        # Qt may send a palette change from inside pyqtgraph's __init__, before our items.
        if event.type() in changed and self.__dict__.get("_styled"):
            self.apply_palette()

    def apply_palette(self) -> None:
        """Redraw background, axes, title and overlays in the current palette's colours."""
        self._styled = True
        colors = self.colors = ChartColors(self.palette())
        self.setBackground(colors.background)
        plot = self.getPlotItem()
        for name in ("left", "bottom"):
            axis = plot.getAxis(name)
            axis.setPen(colors.axis)
            axis.setTextPen(colors.text)
        self.set_title(self._title_text)
        self._hint.set_color(colors.muted)
        self._restyle(colors)

    def _restyle(self, colors: ChartColors) -> None:
        """Subclasses recolour their own items here."""

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
            writer.writerows((name, csv_number(x), csv_number(y)) for name, x, y in self.csv_rows())
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
