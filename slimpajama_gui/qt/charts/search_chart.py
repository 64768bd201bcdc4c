"""The search's live Pareto chart: each trial's dev accuracy against its latency or size.

Fed by :meth:`~.job_charts.JobCharts.add_metrics` with the ``search/...`` figures a
search step reports once per trial (core/jobs/search.py, ``SearchRun._report``), live
through the bridge's ``evaluated`` signal or replayed from the history. Points within the
accuracy budget and over it are told apart, the Pareto front is a line, the best within
budget a star, the starting model a diamond, and the budget a dashed horizontal line.
"""

from __future__ import annotations

import math
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from slimpajama_gui.qt.charts.series import finite
from slimpajama_gui.qt.charts.widgets import LiveCurves

PREFIX = "search/"
WITHIN, OVER, FRONT, BEST, START = (
    "within budget", "over budget", "Pareto front", "best so far", "starting model",
)  # fmt: skip
X_LABELS = {
    "latency": "latency p50, batch 1, CPU (ms, measured per trial)",
    "size": "size on disk (MB)",
}


def is_search_metrics(metrics: dict[str, Any]) -> bool:
    return any(str(key).startswith(PREFIX) for key in metrics)


class SearchPareto(LiveCurves):
    """Dev accuracy (%) against cost, one point per finished search trial.

    Attributes:
        trials: trial number -> (accuracy %, cost) of every finished trial.
        best: the number of the best trial so far (None before one finished).
        within_budget: whether that best is within the budget.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(
            "Search: dev accuracy against cost, one point per trial",
            y_label="dev accuracy (%)",
            x_label=X_LABELS["latency"],
            symbols=True,
            empty="Each search trial appears here as it finishes",
            legend_at_bottom=True,
            parent=parent,
        )
        self._budget_line = pg.InfiniteLine(angle=0, movable=False, label="",
                                            labelOpts={"position": 0.05})  # fmt: skip
        self._budget_line.setZValue(-5)
        self._budget_line.hide()
        self.getPlotItem().addItem(self._budget_line, ignoreBounds=True)
        self._reset()

    def _reset(self) -> None:
        self.trials: dict[int, tuple[float, float]] = {}
        self.best: int | None = None
        self.within_budget = False
        self._budget_pct: float | None = None
        self._baseline: tuple[float, float] | None = None

    def clear_data(self) -> None:
        super().clear_data()
        self._reset()
        if hasattr(self, "_budget_line"):
            self._budget_line.hide()

    def add_trial(self, metrics: dict[str, Any]) -> None:
        """One trial's ``search/...`` figures (an unfinished trial only moves the best)."""
        objective = "size" if "search/size_mb" in metrics else "latency"
        if finite(metrics.get("search/size_mb")) or finite(metrics.get("search/latency_ms")):
            self.getPlotItem().setLabel("bottom", X_LABELS[objective])
        base_acc, budget = (
            metrics.get("search/baseline_accuracy"),
            metrics.get("search/budget_points"),
        )
        if finite(base_acc) and finite(budget):
            self._budget_pct = 100.0 * float(base_acc) - float(budget)
            self._budget_line.setPos(self._budget_pct)
            self._budget_line.label.setFormat(f"budget: −{float(budget):g} points")
            self._budget_line.setPen(pg.mkPen(self.colors.muted, style=Qt.PenStyle.DashLine))
            self._budget_line.show()
        base_cost = metrics.get("search/baseline_cost")
        if finite(base_acc) and finite(base_cost):
            self._baseline = (100.0 * float(base_acc), float(base_cost))
        cost = metrics.get("search/latency_ms", metrics.get("search/size_mb"))
        number, acc = metrics.get("search/trial"), metrics.get("search/accuracy")
        if metrics.get("search/complete") and finite(number) and finite(acc) and finite(cost):
            self.trials[int(number)] = (100.0 * float(acc), float(cost))
        best = metrics.get("search/best_trial")
        self.best = int(best) if finite(best) and not math.isnan(float(best)) else None
        self.within_budget = bool(metrics.get("search/best_within_budget"))
        self._redraw()

    def _redraw(self) -> None:
        if BEST not in self.names:  # drawn in this order: the best's star on top
            self.add_curve(FRONT, line=True)
            for name, symbol in ((WITHIN, "o"), (OVER, "x"), (START, "d"), (BEST, "star")):
                self.add_curve(name, line=False, symbol=symbol)
            self._curve(BEST).item.setSymbolSize(20)
            self._curve(START).item.setSymbolSize(12)
        limit = self._budget_pct if self._budget_pct is not None else -math.inf
        points = sorted(self.trials.items())
        self._set(WITHIN, [p for _n, p in points if p[0] >= limit - 1e-9])
        self._set(OVER, [p for _n, p in points if p[0] < limit - 1e-9])
        front = [
            p for _n, p in points
            if not any(q[0] >= p[0] and q[1] <= p[1] and q != p for _m, q in points)
        ]  # fmt: skip
        self._set(FRONT, sorted(front, key=lambda p: p[1]))
        self._set(BEST, [self.trials[self.best]] if self.best in self.trials else [])
        self._set(START, [self._baseline] if self._baseline else [])
        title = "Search: dev accuracy against cost, one point per trial"
        if self.best in self.trials:
            where = "within budget" if self.within_budget else "closest to the budget"
            title += f" — best: trial {self.best} ({where})"
        self.set_title(title)

    def _set(self, name: str, points: list[tuple[float, float]]) -> None:
        """Replace the points of curve ``name`` (accuracy %, cost) → (x = cost, y = accuracy)."""
        series = self._curve(name)
        series.n, series.breaks, series.segment = 0, [], None
        for acc, cost in points:
            series.append(float(cost), float(acc), None)
        series.dirty = True
        if not self._timer.isActive():
            self._timer.start()
