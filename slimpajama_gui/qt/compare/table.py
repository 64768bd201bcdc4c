"""The Compare table: one row per variant of the results index, sortable, read-only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont

from slimpajama_gui.core.jobs.index import Variant, timed_with
from slimpajama_gui.core.units import human_bytes, human_count
from slimpajama_gui.qt.widgets.tables import SORT_ROLE, Column, RowTableModel

#: Role holding the row's position in :attr:`CompareView.variants`.
ROW_ROLE = Qt.ItemDataRole.UserRole + 2


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f} ms"


def against_source(v: Variant, base: Variant | None) -> tuple[str, str]:
    """(cell, tooltip) of a variant's ratios against its source model (the baseline).

    Size is compared whenever both are known; latency only when the source was timed
    the same way (threads, batch 1, machine; any backend).
    """
    if v.is_source:
        return "baseline", "The source model: the other rows' ratios are against it"
    if base is None:
        return "–", "Its source model is not listed"
    parts, notes = [], []
    if v.size_bytes and base.size_bytes:
        parts.append(ratio(base.size_bytes, v.size_bytes, "smaller", "larger"))
    if base.p50_ms is None:
        notes.append("the source model is not benchmarked yet (right-click it: Benchmark)")
    elif v.p50_ms is None:
        notes.append("this variant is not benchmarked yet")
    elif base.bench_setup != v.bench_setup:
        notes.append(
            f"latencies were timed differently ({v.bench_setup} against {base.bench_setup})"
        )
    else:
        parts.append(ratio(base.p50_ms, v.p50_ms, "faster", "slower"))
    tip = f"Against {base.name}" + ("" if not notes else ": " + "; ".join(notes))
    return (" · ".join(parts) or "–"), tip


def ratio(base: float, value: float, smaller: str, larger: str) -> str:
    """``base / value`` as "2.0× smaller" (or ``value / base`` "× larger")."""
    if abs(base - value) / base < 0.005:
        return "same"
    return f"{base / value:.1f}× {smaller}" if value < base else f"{value / base:.1f}× {larger}"


COLUMNS = (
    Column("Name", lambda v: v.name, lambda v: v.name.lower(), False),
    Column(
        "Job",
        lambda v: "source model" if v.is_source else f"#{v.job_id} {v.job_name}".strip(),
        lambda v: -1 if v.is_source else v.job_id or 0,
        False,
    ),
    Column(
        "Step",
        lambda v: "–" if v.step_index is None else f"{v.step_index + 1} · {v.step_type}",
        lambda v: -1 if v.step_index is None else v.step_index,
        False,
    ),
    Column("Accuracy", lambda v: pct(v.accuracy), lambda v: v.accuracy, True),
    Column("Macro-F1", lambda v: pct(v.macro_f1), lambda v: v.macro_f1, True),
    Column("Eval rows", lambda v: "–", lambda v: None, True),
    Column(
        "Size on disk",
        lambda v: "–" if v.size_bytes is None else human_bytes(v.size_bytes),
        lambda v: v.size_bytes,
        True,
    ),
    Column(
        "Parameters",
        lambda v: "–" if v.parameters is None else human_count(v.parameters),
        lambda v: v.parameters,
        True,
    ),
    Column("p50 latency", lambda v: ms(v.p50_ms), lambda v: v.p50_ms, True),
    Column("p95", lambda v: ms(v.p95_ms), lambda v: v.p95_ms, True),
    Column(
        "Throughput",
        lambda v: "–" if v.throughput is None else f"{v.throughput:,.0f}/s",
        lambda v: v.throughput,
        True,
    ),
    Column("Against source", lambda v: "–", lambda v: None, False),
)
COLUMN_TITLES = tuple(c.title for c in COLUMNS)


#: Columns whose figures depend on the eval set picked in the filter.
_ACCURACY, _F1, _ROWS = 3, 4, 5
_AGAINST = len(COLUMNS) - 1


class VariantTableModel(RowTableModel[Variant]):
    """One row per :class:`Variant`; read-only.

    Accuracy, macro-F1 and eval rows are those on :attr:`eval_set` (the Compare
    filter): a variant measured on another set shows "–" and says which in its tooltip.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(COLUMNS, parent)
        self.pareto: set[int] = set()
        self.unranked: dict[int, str] = {}
        self.eval_set = ""
        self.eval_label = ""
        self._variants: list[Variant] = []

    def set_variants(
        self,
        variants: Sequence[Variant],
        pareto: set[int],
        *,
        eval_set: str = "",
        eval_label: str = "",
        unranked: dict[int, str] | None = None,
    ) -> None:
        self.pareto = set(pareto)
        self.unranked = dict(unranked or {})
        self.eval_set, self.eval_label = eval_set, eval_label
        self._variants = list(variants)
        self.set_rows(variants)

    def baseline(self, v: Variant) -> Variant | None:
        """The listed source model ``v`` was made from (``None``: not listed)."""
        return next(
            (s for s in self._variants if s.is_source and v.source_key and s.key == v.source_key),
            None,
        )

    def data(self, index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if index.isValid() and 0 <= index.row() < len(self._rows):
            v, col = self._rows[index.row()], index.column()
            if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE) and col in (
                _ACCURACY,
                _F1,
                _ROWS,
                _AGAINST,
            ):
                value = self._cell(v, col)
                if role == SORT_ROLE:
                    return self.sort_value(value)
                return self._text(v, col, value)
        return super().data(index, role)

    def _cell(self, v: Variant, col: int) -> Any:
        if col == _AGAINST:
            return against_source(v, self.baseline(v))[0]
        figures = v.accuracy_on(self.eval_set)
        if figures is None:
            return None
        return {_ACCURACY: figures.accuracy, _F1: figures.macro_f1, _ROWS: figures.rows}[col]

    def _text(self, v: Variant, col: int, value: Any) -> str:
        if col == _AGAINST:
            return str(value)
        if col == _ROWS:
            return "–" if value is None else f"{value:,}"
        return pct(value)

    def accuracy_tip(self, v: Variant) -> str:
        """Why a variant's accuracy on the chosen eval set is what it shows."""
        if v.accuracy_on(self.eval_set) is not None:
            return f"Measured on {self.eval_label or 'the chosen eval set'}"
        if v.has_head is False:
            return "No accuracy: it has no trained classifier head (an encoder only)"
        if v.evals:
            return (
                f"Not measured on {self.eval_label or 'the chosen eval set'}; measured on "
                f"{v.measured_on()}. Pick that set in the eval-set filter to see it."
            )
        return "Not evaluated yet"

    def sort_value(self, value: Any) -> Any:
        # Missing figures sort below every real one, whichever way.
        return -math.inf if value is None else value

    def role_data(self, v: Variant, row: int, column: int, role: int) -> Any:
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.ToolTipRole and column in (_ACCURACY, _F1, _ROWS):
            return self.accuracy_tip(v)
        if role == Qt.ItemDataRole.ToolTipRole and column == _AGAINST:
            return against_source(v, self.baseline(v))[1]
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [v.name, str(v.path)]
            if v.nonzero_parameters is not None and v.parameters:
                lines.append(f"{v.parameters:,} parameters ({v.nonzero_parameters:,} non-zero)")
            if row in self.pareto:
                lines.append(
                    "Pareto-optimal: no comparable model (same eval set, latency timed the "
                    "same way) is at least as fast and as accurate and better in one"
                )
            if row in self.unranked:
                lines.append(self.unranked[row])
            if v.bench_setup:
                lines.append(f"latency timed with {timed_with(v)}")
            if v.note:
                lines.append(v.note)
            return "\n".join(lines)
        if role == Qt.ItemDataRole.FontRole and (v.is_source or row in self.pareto):
            font = QFont()
            font.setItalic(v.is_source)
            font.setBold(row in self.pareto)
            return font
        if role == Qt.ItemDataRole.ForegroundRole and v.note:
            return QBrush(QColor("#8a8a8a"))
        return None
