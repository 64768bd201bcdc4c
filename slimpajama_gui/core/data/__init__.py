"""Datasets: reading tables, the bad-data checks, tokenizing and batching.

Four modules, each a stage of the way from a file to a batch: :mod:`.tables` reads a
file into rows, :mod:`.spec` is the recipe's ``dataset:`` section, :mod:`.dataset`
checks and splits the rows, :mod:`.batching` tokenizes and pads. Their public names are
gathered here, so callers write ``from slimpajama_gui.core import data`` and
``data.load_dataset(...)``. Nothing here imports torch at import time.
"""

from slimpajama_gui.core.data.batching import (
    CHARS_PER_TOKEN,
    Encoded,
    batches,
    collate,
    encode,
    encode_split,
    restore_order,
)
from slimpajama_gui.core.data.dataset import (
    Split,
    TextDataset,
    label_counts,
    load_dataset,
    normalize_text,
    validate_labels,
)
from slimpajama_gui.core.data.spec import DEMO, DatasetSpec, Preview, demo_path, preview
from slimpajama_gui.core.data.tables import FORMATS, Table, guess_columns, read_table

__all__ = [
    "CHARS_PER_TOKEN",
    "DEMO",
    "FORMATS",
    "DatasetSpec",
    "Encoded",
    "Preview",
    "Split",
    "Table",
    "TextDataset",
    "batches",
    "collate",
    "demo_path",
    "encode",
    "encode_split",
    "guess_columns",
    "label_counts",
    "load_dataset",
    "normalize_text",
    "preview",
    "read_table",
    "restore_order",
    "validate_labels",
]
