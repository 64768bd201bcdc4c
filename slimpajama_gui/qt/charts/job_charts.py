"""One job's charts in a grid: loss, accuracy, learning rate, sparsity, size and latency.

The drawing itself is in :mod:`.widgets`.

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
- ``vocabulary/kept`` / ``vocabulary/original`` → the sparsity chart's sentence: token
  ids a vocabulary pruning kept of those before (embedding rows, not layer weights).
- ``latency_p50_ms`` / ``latency_p95_ms`` → the latency chart, ``size_bytes`` → the size
  chart, both at x = the pipeline step number (1-based).
- ``search/...`` (one dict per finished trial of a search step) → the search's Pareto
  chart (:mod:`.search_chart`), shown across the grid once a search reports.

A sensitivity step's measurements do not go through :meth:`JobCharts.add_metrics`: they
arrive one by one through :meth:`JobCharts.add_sensitivity` (the bridge's
``sensitivity_measured``) or whole from the saved report (:meth:`JobCharts.load_sensitivity`),
and fill the :class:`~.sensitivity.SensitivityPanel` on a "Sensitivity" tab that
appears only for a job with such a step.

The x axis of training charts is the optimizer step counted across every training step
of the job (a distillation after a fine-tune continues where the fine-tune ended). Each
pipeline step's points are their own line segment, and a dashed line labelled with the
step ("03 distill") marks where each training step begins; the step types come from
:meth:`JobCharts.start_step` (the bridge's ``step_started``) or from the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from slimpajama_gui.core.storage.history import MetricRecord
from slimpajama_gui.core.techniques.sensitivity import load_report
from slimpajama_gui.qt.charts.base import ChartBase
from slimpajama_gui.qt.charts.search_chart import SearchPareto, is_search_metrics
from slimpajama_gui.qt.charts.sensitivity import SensitivityPanel
from slimpajama_gui.qt.charts.series import (
    ACCURACY_SPLITS,
    EXPORT_SUFFIXES,
    SPARSITY_OVERALL,
    SPARSITY_PREFIX,
    TRAIN_INFO_KEYS,
    VOCABULARY_KEPT,
    VOCABULARY_ORIGINAL,
    finite,
    group_records,
    is_nan,
)
from slimpajama_gui.qt.charts.widgets import LiveCurves, SparsityBars

#: The x axis of the training charts (see the module doc).
TRAINING_X_LABEL = "optimizer step, counted across the job"

#: Least height of a chart in the grid (px). At 960x640 the charts shrank below their
#: minimum and lost the lower row's axis titles, and a two-row legend covered the
#: accuracy curve; at this height the legend has its own band beside the data.
GRID_CHART_MIN_HEIGHT = 200
#: The loss chart's title once a distillation logs its terms beside the total.
LOSS_TERMS_TITLE = "Training loss (terms unweighted)"
#: What each curve of a distillation's loss is (the chart's tooltip once they appear);
#: the total follows core/techniques/distill/loss.py.
LOSS_TERMS_TIP = (
    "loss: what the optimizer minimises, (1 − α)·ce + α·T²·kd + w_h·hidden + w_a·attention "
    "(α: KD weight, T: KD temperature, w: the MSE weights).\n"
    "ce: cross-entropy of the student's logits with the labels.\n"
    "kd: KL(teacher ‖ student) of their probabilities softened by T.\n"
    "hidden / attention: MSE between the student's and its teacher layers' hidden states / "
    "attention maps.\n"
    "The terms are drawn as measured, before their weights."
)


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
            "Training loss",
            y_label="loss",
            x_label=TRAINING_X_LABEL,
            empty="The loss appears once training starts",
        )
        self.accuracy = LiveCurves(
            "Accuracy",
            y_label="accuracy (%)",
            x_label=TRAINING_X_LABEL,
            symbols=True,
            empty="No evaluation yet",
            legend_at_bottom=True,  # accuracy rises towards the top-right corner
            empty_y=(0.0, 100.0),
        )
        self.lr = LiveCurves(
            "Learning rate",
            y_label="learning rate",
            x_label=TRAINING_X_LABEL,
            empty="No training yet",
            scientific=True,
        )
        self.sparsity = SparsityBars()
        per_step = {
            "x_label": "pipeline step",
            "symbols": True,
            "empty": "Measured by a benchmark step",
        }
        self.size = LiveCurves("Size on disk", y_label="MB", **per_step)
        self.latency = LiveCurves("Latency (batch 1, CPU)", y_label="ms", **per_step)
        for chart in (self.size, self.latency):
            chart.getPlotItem().getAxis("bottom").setTickSpacing(major=1, minor=1)
        self.charts: dict[str, ChartBase] = {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "learning-rate": self.lr,
            "sparsity": self.sparsity,
            "size": self.size,
            "latency": self.latency,
        }
        self.search = SearchPareto()  # shown once a search step reports a trial
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

        grid_page = QWidget()
        grid = QGridLayout(grid_page)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(6)
        for i, chart in enumerate(self.charts.values()):
            chart.setMinimumHeight(GRID_CHART_MIN_HEIGHT)
            grid.addWidget(chart, i // 3, i % 3)
        grid.addWidget(self.search, 2, 0, 1, 3)
        # A short window scrolls the charts instead of cutting off the lower row's axes.
        grid_scroll = QScrollArea()
        grid_scroll.setObjectName("chart-grid-scroll")
        grid_scroll.setWidgetResizable(True)
        grid_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        grid_scroll.setWidget(grid_page)
        self.search.hovered.connect(self.hovered)
        self.charts["search"] = self.search
        self.sensitivity = SensitivityPanel()
        # Tabs appear only when a job has a sensitivity step; otherwise the grid alone.
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(grid_scroll, "Training and size")
        self.tabs.addTab(self.sensitivity, "Sensitivity")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.tabs, 1)
        self.clear()

    # ------------------------------------------------------------------ data
    def clear(self) -> None:
        """Forget every point (a new job, or another job selected)."""
        for chart in self.charts.values():
            chart.clear_data()
        self.loss.set_title(self.loss.title)
        self.loss.setToolTip("")
        self.search.hide()
        self._offsets: dict[int, float] = {}
        self._step_types: dict[int, str] = {}
        self._last_x = 0.0
        self.readout.setText("")
        self.sensitivity.clear()
        self.show_sensitivity(False)

    def show_sensitivity(self, shown: bool, *, select: bool = False) -> None:
        """Show (and with ``select`` bring forward) the Sensitivity tab, or hide the tabs."""
        self.tabs.setTabVisible(1, shown)
        self.tabs.tabBar().setVisible(shown)
        if select and shown:
            self.tabs.setCurrentWidget(self.sensitivity)
        elif not shown:
            self.tabs.setCurrentIndex(0)

    def sensitivity_shown(self) -> bool:
        return self.tabs.isTabVisible(1)

    def add_sensitivity(self, index: int, measurement: dict[str, Any]) -> None:
        """One live measurement of a sensitivity step (the bridge's ``sensitivity_measured``)."""
        if not self.sensitivity_shown():
            self.show_sensitivity(True, select=True)
        self.sensitivity.add_measurement(measurement)

    def load_sensitivity(self, path: str | Path) -> None:
        """Show a saved ``sensitivity.json`` (a finished job's step).

        Raises:
            UserError: the file is missing, not a report, or damaged (named).
        """
        self.sensitivity.set_report(load_report(path), source=path)
        self.show_sensitivity(True)

    def start_step(self, index: int, step_type: str, count: int = 0) -> None:
        """Step ``index`` (0-based) of type ``step_type`` begins (the bridge's step_started).

        Only the type is kept, for the label of the step's boundary; ``count`` (steps in
        the job) is accepted so the signal connects directly.
        """
        self._step_types[index] = str(step_type)
        if step_type == "sensitivity":
            self.sensitivity.clear()
            self.show_sensitivity(True, select=True)

    def step_label(self, index: int) -> str:
        """'02 distill': the step's number (1-based, as its variant folder) and type."""
        kind = self._step_types.get(index)
        return f"{index + 1:02d} {kind}" if kind else f"step {index + 1:02d}"

    def _begin_training_segment(self, index: int) -> None:
        self._offsets[index] = self._last_x
        label = self.step_label(index)
        for chart in (self.loss, self.accuracy, self.lr):
            chart.mark_boundary(self._last_x, label)

    def add_metrics(self, index: int, metrics: dict[str, Any]) -> None:
        """Route one dict of numbers of step ``index`` to the charts (see module doc)."""
        if is_search_metrics(metrics):
            self.search.add_trial(metrics)
            self.search.show()
            return
        if "step" in metrics and finite(metrics["step"]):
            if index not in self._offsets:
                self._begin_training_segment(index)
            x = self._offsets[index] + float(metrics["step"])
            self._last_x = max(self._last_x, x)
        else:
            x = self._last_x
        if "lr" in metrics or "grad_norm" in metrics:
            for key, value in metrics.items():
                if key in TRAIN_INFO_KEYS or key.startswith(SPARSITY_PREFIX):
                    continue
                if finite(value) or is_nan(value):
                    self.loss.append(key, x, float(value), segment=index)
                    if key != "loss" and self.loss.shown_title != LOSS_TERMS_TITLE:
                        # The terms are logged before their weights (KD temperature,
                        # alpha, hidden/attention weights): they do not add up to "loss".
                        self.loss.set_title(LOSS_TERMS_TITLE)
                        self.loss.setToolTip(LOSS_TERMS_TIP)
            if finite(metrics.get("lr")):
                self.lr.append("lr", x, float(metrics["lr"]), segment=index)
        for split in ACCURACY_SPLITS:
            value = metrics.get(f"{split}_accuracy")
            if not finite(value):
                continue
            name = split
            if "step" not in metrics:
                # Measured by a pipeline step (evaluate, or a quantize guard) on the model
                # as it is then, perhaps the best checkpoint rather than the last: a
                # marker, not a continuation of the training curve.
                name = f"{split} (pipeline step)"
                self.accuracy.add_curve(name, line=False, symbol="d")
            self.accuracy.append(name, x, 100.0 * float(value), segment=index)
        sparsity = {
            key[len(SPARSITY_PREFIX) :]: float(value)
            for key, value in metrics.items()
            if key.startswith(SPARSITY_PREFIX) and finite(value)
        }
        overall = sparsity.pop(SPARSITY_OVERALL, None)
        if overall is not None:
            self.sparsity.set_overall(overall)
        if sparsity:
            self.sparsity.set_values(sparsity)
        kept, original = metrics.get(VOCABULARY_KEPT), metrics.get(VOCABULARY_ORIGINAL)
        if finite(kept) and finite(original):
            self.sparsity.set_vocabulary(int(kept), int(original))
        step_number = index + 1
        for key, name in (("latency_p50_ms", "p50"), ("latency_p95_ms", "p95")):
            if finite(metrics.get(key)):
                self.latency.append(name, step_number, float(metrics[key]))
        if finite(metrics.get("size_bytes")):
            self.size.append("size", step_number, float(metrics["size_bytes"]) / 1e6)

    def load_history(self, records: Sequence[MetricRecord]) -> None:
        """Fill the charts from a job's logged numbers (``JobStore.metrics(job_id)``).

        Each ``log_metrics`` call of the pipeline wrote its numbers with one timestamp,
        so consecutive records of one step with the same ``ts`` are one logged dict.
        """
        self.clear()
        for record in records:
            self._step_types.setdefault(record.step_index, record.step_type)
        for index, metrics in group_records(records):
            self.add_metrics(index, metrics)
        self.flush()

    def flush(self) -> None:
        for chart in self.charts.values():
            chart.flush()
        if self.sensitivity.has_data():
            self.sensitivity.flush()

    # ------------------------------------------------------------------ export
    def export_all(self, folder: str | Path) -> list[Path]:
        """Write ``<chart>.png``, ``.svg`` and ``.csv`` for every chart that is shown into
        ``folder`` (the search's Pareto chart and the sensitivity panel only when their
        step reported)."""
        folder = Path(folder)
        written = []
        for name, chart in self.charts.items():
            if chart is self.search and self.search.isHidden():
                continue  # no search step reported: an empty chart is no export
            for suffix in EXPORT_SUFFIXES:
                written.append(chart.export(folder / f"{name}{suffix}"))
        if self.sensitivity.has_data():
            written += self.sensitivity.export_all(folder)
        return written

    def _ask_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export the charts to a folder")
        if folder:
            written = self.export_all(folder)
            self.readout.setText(f"Saved {len(written)} files in {folder}")
