"""A read-only table model over a list of rows, with columns described as data.

The model browser, Compare and the Jobs view each show a list of records in a sortable
``QTableView``. What differs is the columns and a few roles (tooltips, fonts); the Qt
plumbing (row and column counts, header titles, the display / sort / alignment roles)
is the same, so it lives here once. Sorting and filtering stay in a proxy model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from PySide6.QtCore import (
    QAbstractItemModel,
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtWidgets import QAbstractItemView, QTableView

#: Role holding a cell's raw value, so sizes and counts sort as numbers.
SORT_ROLE = Qt.ItemDataRole.UserRole + 1

Index = QModelIndex | QPersistentModelIndex
T = TypeVar("T")

#: The TextAlignmentRole value of a number column.
RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


def header_text(
    titles: Sequence[str], section: int, orientation: Qt.Orientation, role: int, *, numbered=False
) -> str | None:
    """``headerData`` of a table whose columns are ``titles``; rows are numbered from 1
    when ``numbered``."""
    if role != Qt.ItemDataRole.DisplayRole:
        return None
    if orientation == Qt.Orientation.Horizontal:
        return titles[section] if 0 <= section < len(titles) else None
    return str(section + 1) if numbered else None


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
        self.titles = [c.title for c in self.columns]
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
            return RIGHT
        return self.role_data(item, index.row(), index.column(), role)

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        return header_text(self.titles, section, orientation, role)

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


def sortable_table(
    model: QAbstractItemModel,
    proxy: QSortFilterProxyModel | None = None,
    *,
    sort_role: int = SORT_ROLE,
) -> tuple[QSortFilterProxyModel, QTableView]:
    """A table view of ``model`` through a sorting proxy: whole rows are selected, no row
    numbers, no word wrap; rows start in the model's order until a header is clicked.

    Args:
        model: the source model (its parent owns it).
        proxy: the proxy to use (a filtering subclass); a plain one by default.
        sort_role: the role the proxy sorts by.

    Returns:
        ``(proxy, view)``; the caller sets selection mode and column sizes.
    """
    proxy = proxy if proxy is not None else QSortFilterProxyModel(model)
    proxy.setSourceModel(model)
    proxy.setSortRole(sort_role)
    view = QTableView()
    view.setModel(proxy)
    view.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
    view.setSortingEnabled(True)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.verticalHeader().hide()
    view.setWordWrap(False)
    return proxy, view


def change_filter(proxy: QSortFilterProxyModel, apply: Callable[[], None]) -> None:
    """Run ``apply`` (which changes what ``proxy.filterAcceptsRow`` answers) and filter
    the rows again."""
    # Qt >= 6.9 wants begin/endFilterChange around the change; invalidateFilter is
    # deprecated there, and older versions have only it.
    if hasattr(proxy, "beginFilterChange"):
        proxy.beginFilterChange()
        apply()
        proxy.endFilterChange(QSortFilterProxyModel.Direction.Rows)
    else:
        apply()
        proxy.invalidateFilter()


__all__ = [
    "RIGHT",
    "SORT_ROLE",
    "header_text",
    "Column",
    "Index",
    "RowTableModel",
    "change_filter",
    "sortable_table",
]
