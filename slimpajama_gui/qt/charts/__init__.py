"""Live charts of a job: loss terms, accuracy, learning rate, sparsity, size and latency.

:mod:`.series` holds the numbers (curve buffers, axis steps, the metric keys drawn),
:mod:`.base` what every chart shares (palette colours, export),
:mod:`.widgets` the chart widgets, and :mod:`.job_charts` the grid of one job's charts
and how each metric key reaches its chart.
"""

from slimpajama_gui.qt.charts.job_charts import JobCharts
from slimpajama_gui.qt.charts.series import PALETTE, group_records, natural_key
from slimpajama_gui.qt.charts.widgets import LiveCurves, SparsityBars

__all__ = ["PALETTE", "JobCharts", "LiveCurves", "SparsityBars", "group_records", "natural_key"]
