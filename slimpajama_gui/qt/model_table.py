"""The model browser's table: one row per model, sortable and searchable.

The table model is a thin adapter over a list of :class:`ModelInfo`; sorting and
filtering live only in the proxy (napari/Qt convention). Each cell also holds its raw
value under :data:`SORT_ROLE`, so sizes and counts sort as numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QModelIndex,
    QSortFilterProxyModel,
    Qt,
)

from slimpajama_gui.core.model.inspection import ModelInfo
from slimpajama_gui.core.units import human_bytes, human_count
from slimpajama_gui.qt.widgets.tables import (
    SORT_ROLE,
    Column,
    Index,
    RowTableModel,
    change_filter,
)

#: Role holding the row's ModelInfo.
INFO_ROLE = Qt.ItemDataRole.UserRole + 2


def heads_text(info: ModelInfo) -> str:
    heads = info.layer_heads or (info.heads,)
    return str(heads[0]) if len(set(heads)) <= 1 else "/".join(map(str, heads))


#: Families as people write them.
FAMILY_NAMES = {"bert": "BERT", "roberta": "RoBERTa"}
#: How weights are stored, in words: safetensors dtypes, quantize methods, ONNX formats.
WEIGHTS_NAMES = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I8": "int8",
    "U8": "uint8",
    "fp32": "float32",
    "fp16": "float16",
    "bf16": "bfloat16",
    "dynamic_int8": "int8 (PyTorch dynamic quantization)",
    "weight_int8": "int8 weights, computed in float",
    "weight_int4": "int4 weights, computed in float",
    "onnx_int8": "int8 (ONNX Runtime)",
    "onnx_fp32": "float32 (ONNX Runtime)",
    "onnx": "ONNX Runtime",
}


def family_text(info: ModelInfo) -> str:
    """'BERT', 'RoBERTa', 'SlimPajama result (BERT family)': what the model is, in words
    (``ModelInfo.family`` is config.json's ``model_type``)."""
    if info.family != "slimpajama":
        return FAMILY_NAMES.get(info.family, info.family)
    if info.base_family == "static":
        return "SlimPajama result (static token embeddings)"
    base = FAMILY_NAMES.get(info.base_family)
    return f"SlimPajama result ({base} family)" if base else "SlimPajama result"


def weights_text(dtype: str) -> str:
    """How the weights are stored, in words: 'float32', 'int8 (ONNX Runtime)'."""
    if dtype in WEIGHTS_NAMES:
        return WEIGHTS_NAMES[dtype]
    if dtype.startswith("onnx-"):  # an ONNX folder whose record names another format
        return f"{weights_text(dtype[len('onnx-') :])} (ONNX Runtime)"
    if dtype.startswith("static-"):
        return f"{dtype[len('static-') :]} static token vectors"
    return dtype


COLUMNS = (
    Column("Name", lambda i: i.name, lambda i: i.name.lower(), False),
    Column("Family", family_text, family_text, False),
    Column("Parameters", lambda i: human_count(i.parameters), lambda i: i.parameters, True),
    Column("Size on disk", lambda i: human_bytes(i.size_bytes), lambda i: i.size_bytes, True),
    Column("Layers", lambda i: str(i.layers), lambda i: i.layers, True),
    Column("Hidden", lambda i: str(i.hidden), lambda i: i.hidden, True),
    Column("Heads", heads_text, lambda i: sum(i.layer_heads or (i.heads,)), True),
    Column("Vocabulary", lambda i: f"{i.vocab:,}", lambda i: i.vocab, True),
    Column("Source", lambda i: i.source, lambda i: i.source, False),
    Column("Path", lambda i: str(i.path), lambda i: str(i.path), False),
)
COLUMN_TITLES = tuple(c.title for c in COLUMNS)


class ModelTableModel(RowTableModel[ModelInfo]):
    """One row per :class:`ModelInfo`; read-only."""

    def __init__(self, parent=None) -> None:
        super().__init__(COLUMNS, parent)

    def role_data(self, info: ModelInfo, row: int, column: int, role: int) -> Any:
        if role == INFO_ROLE:
            return info
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{info.name}\n{info.path}\n{info.parameters:,} parameters"
        return None

    # our API -----------------------------------------------------------------
    def infos(self) -> list[ModelInfo]:
        return self.rows()

    def set_infos(self, infos: Sequence[ModelInfo]) -> None:
        self.set_rows(infos)

    def upsert(self, infos: Iterable[ModelInfo]) -> None:
        """Add new models; replace rows whose folder is already listed."""
        for info in infos:
            row = self.row_of(info.path)
            if row is None:
                self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows))
                self._rows.append(info)
                self.endInsertRows()
            else:
                self._rows[row] = info
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def row_of(self, path: Path) -> int | None:
        target = Path(path).resolve()
        for row, info in enumerate(self._rows):
            if Path(info.path).resolve() == target:
                return row
        return None


class ModelFilterProxy(QSortFilterProxyModel):
    """Keeps rows where every word typed appears in some column (case-insensitive)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._words: list[str] = []
        self.setSortRole(SORT_ROLE)
        self.setSortCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)

    def set_search(self, text: str) -> None:
        words = text.lower().split()
        if words == self._words:
            return
        change_filter(self, lambda: setattr(self, "_words", words))

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:  # noqa: N802
        if not self._words:
            return True
        model = self.sourceModel()
        haystack = " ".join(
            str(model.data(model.index(source_row, col, source_parent)) or "")
            for col in range(model.columnCount(source_parent))
        ).lower()
        return all(word in haystack for word in self._words)
