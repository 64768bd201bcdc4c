"""The Compare table: one row per variant of the results index, sortable, read-only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont

from slimpajama_gui.core.jobs.index import Variant
from slimpajama_gui.core.units import human_bytes, human_count
from slimpajama_gui.qt.widgets.tables import Column, RowTableModel

#: Role holding the row's position in :attr:`CompareView.variants`.
ROW_ROLE = Qt.ItemDataRole.UserRole + 2


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f} ms"


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
)
COLUMN_TITLES = tuple(c.title for c in COLUMNS)


class VariantTableModel(RowTableModel[Variant]):
    """One row per :class:`Variant`; read-only."""

    def __init__(self, parent=None) -> None:
        super().__init__(COLUMNS, parent)
        self.pareto: set[int] = set()

    def set_variants(self, variants: Sequence[Variant], pareto: set[int]) -> None:
        self.pareto = set(pareto)
        self.set_rows(variants)

    def sort_value(self, value: Any) -> Any:
        # Missing figures sort below every real one, whichever way.
        return -math.inf if value is None else value

    def role_data(self, v: Variant, row: int, column: int, role: int) -> Any:
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [v.name, str(v.path)]
            if v.nonzero_parameters is not None and v.parameters:
                lines.append(f"{v.parameters:,} parameters ({v.nonzero_parameters:,} non-zero)")
            if row in self.pareto:
                lines.append("Pareto-optimal: nothing else is both faster and more accurate")
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
