"""A read-only table model over a list of rows, with columns described as data.

The model browser, Compare and the Jobs view each show a list of records in a sortable
``QTableView``. What differs is the columns and a few roles (tooltips, fonts); the Qt
plumbing (row and column counts, header titles, the display / sort / alignment roles)
is the same, so it lives here once. Sorting and filtering stay in a proxy model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

#: Role holding a cell's raw value, so sizes and counts sort as numbers.
SORT_ROLE = Qt.ItemDataRole.UserRole + 1

Index = QModelIndex | QPersistentModelIndex
T = TypeVar("T")

_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


class Column(NamedTuple):
    """One column: its title, the text shown for a row, the value it sorts by, and
    whether it is right-aligned (numbers are)."""

    title: str
    display: Callable[[Any], str]
    sort: Callable[[Any], Any]
    right: bool = False


class RowTableModel(QAbstractTableModel, Generic[T]):
    """Rows of ``T`` shown through :class:`Column` s; read-only.

    Subclasses answer the roles the columns do not cover in :meth:`role_data`.
    """

    def __init__(self, columns: Sequence[Column], parent=None) -> None:
        super().__init__(parent)
        self.columns = tuple(columns)
        self._rows: list[T] = []

    # Qt API ------------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.columns)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        item = self._rows[index.row()]
        column = self.columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.display(item)
        if role == SORT_ROLE:
            return self.sort_value(column.sort(item))
        if role == Qt.ItemDataRole.TextAlignmentRole and column.right:
            return _RIGHT
        return self.role_data(item, index.row(), index.column(), role)

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if (
            role == Qt.ItemDataRole.DisplayRole
            and orientation == Qt.Orientation.Horizontal
            and 0 <= section < len(self.columns)
        ):
            return self.columns[section].title
        return None

    # for subclasses ----------------------------------------------------------
    def role_data(self, item: T, row: int, column: int, role: int) -> Any:
        """The value of ``role`` for a cell, for roles the columns do not answer."""
        return None

    def sort_value(self, value: Any) -> Any:
        """What :data:`SORT_ROLE` returns for a column's sort value (override to map None)."""
        return value

    # our API -----------------------------------------------------------------
    def rows(self) -> list[T]:
        return list(self._rows)

    def row_at(self, row: int) -> T | None:
        """The item shown in ``row``; None when there is no such row."""
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def set_rows(self, rows: Sequence[T]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()


__all__ = ["SORT_ROLE", "Column", "Index", "RowTableModel"]
