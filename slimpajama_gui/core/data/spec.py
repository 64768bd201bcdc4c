"""The ``dataset:`` section of a recipe: :class:`DatasetSpec`, and where its files are.

A spec is plain fields (embedded in YAML recipes), checked when it is built, so a bad value
is a sentence naming the field before any file is read. Relative paths are read from the
recipe's folder; ``"demo"`` selects the built-in demo set. :func:`preview` shows the first
rows of a spec's train file (or of any file) with a suggested column mapping, for a data page.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from slimpajama_gui.core.data.tables import (
    _FORMAT_ALIASES,
    FORMATS,
    _quote_list,
    brief,
    check_encoding,
    guess_columns,
    read_table,
)
from slimpajama_gui.core.errors import UserError

__all__ = [
    "DEMO",
    "MAX_CLASSES",
    "MAX_LENGTH",
    "MAX_SEED",
    "DatasetSpec",
    "Preview",
    "demo_path",
    "preview",
]

#: The special value of ``DatasetSpec.train`` / ``eval`` that selects the built-in demo set.
DEMO = "demo"
#: The most classes a dataset may have. The evaluation keeps a classes x classes
#: confusion matrix and the model a classifier row per class; beyond this a label set
#: is a mistake (a text column taken for labels, a typo such as 100000 among 0/1).
MAX_CLASSES = 1000
#: The longest ``max_length`` accepted, in tokens: above every encoder's position table
#: (the model's own limit is applied later, with a note).
MAX_LENGTH = 65536
#: Seeds go to Python, NumPy and torch; NumPy's generators take at most 32 bits.
MAX_SEED = 2**32 - 1
#: Longest path accepted in a path field (Linux's PATH_MAX).
_MAX_PATH_CHARS = 4096
#: Characters of one cell shown by :func:`preview`; the data page shows a row per line.
PREVIEW_CHARS = 500


def demo_path(split: str = "train") -> Path:
    """The file of the built-in demo set (``split`` is ``"train"`` or ``"dev"``)."""
    if split not in ("train", "dev"):
        raise ValueError(f"the demo set has splits 'train' and 'dev', not {split!r}")
    return Path(str(resources.files("slimpajama_gui.resources") / "demo" / f"{split}.tsv"))


@dataclass
class DatasetSpec:
    """Where the data is and how to read it; the ``dataset:`` section of a recipe.

    Relative paths are read from the recipe's folder (``base_dir`` of :func:`load_dataset`).
    """

    #: Training file, or ``"demo"`` for the built-in demo set.
    train: str = DEMO
    #: Evaluation file; when None, ``eval_fraction`` of train is held out (stratified).
    #: With ``train: demo`` it defaults to the demo's dev split.
    eval: str | None = None
    #: Optional test file, for final reports only.
    test: str | None = None
    #: Column with the text: a header name or a 0-based column number.
    text_column: str | int = "sentence"
    #: Column with the label: a header name or a 0-based column number.
    label_column: str | int = "label"
    #: Optional second text (sentence-pair tasks).
    text_pair_column: str | int | None = None
    #: ``csv``, ``tsv``, ``jsonl``, ``json`` or ``parquet``; None = from the file suffix.
    format: str | None = None
    #: Text encoding of CSV/TSV/JSON files.
    encoding: str = "utf-8"
    #: Share of train held out for evaluation when ``eval`` is None.
    eval_fraction: float = 0.1
    #: Seed for the held-out split and the ``max_rows`` sample.
    seed: int = 0
    #: Train on only this many train rows (a seeded sample), for a quick run. Vocabulary
    #: pruning still reads every train row but those held out as eval: it is only
    #: tokenizing, and a word it drops becomes [UNK] for good.
    max_rows: int | None = None
    #: Tokens per text; longer texts are truncated with a warning.
    max_length: int = 128
    #: Label names in id order; None = sorted string labels, or ids 0..K-1 as "0".."K-1".
    labels: list[str] | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check field types and ranges; a bad value is a sentence naming the field."""

        def bad(name: str, want: str) -> UserError:
            return UserError(f"dataset.{name} must be {want}, not {brief(getattr(self, name))}.")

        if not isinstance(self.train, str) or not self.train.strip():
            raise bad("train", 'a file path or "demo"')
        for name in ("eval", "test", "format"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise bad(name, "a file path" if name != "format" else "a format name or empty")
        for name in ("train", "eval", "test"):
            value = getattr(self, name)
            if value is not None and ("\0" in value or len(value) > _MAX_PATH_CHARS):
                raise bad(
                    name,
                    f"a file path (without NUL characters, at most {_MAX_PATH_CHARS} characters)",
                )
        if self.format is not None:
            fmt = _FORMAT_ALIASES.get(self.format.lower(), self.format.lower())
            if fmt not in FORMATS:
                raise bad("format", f"one of {', '.join(FORMATS)}")
        for name in ("text_column", "label_column", "text_pair_column"):
            value = getattr(self, name)
            if value is None and name == "text_pair_column":
                continue
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise bad(name, "a column name or a 0-based column number")
            if isinstance(value, int) and value < 0:
                raise bad(name, "a column name or a 0-based column number (0 or more)")
            if isinstance(value, str) and not value.strip():
                raise bad(name, "a column name or a 0-based column number")
        if not isinstance(self.encoding, str) or not self.encoding:
            raise bad("encoding", "a codec name such as 'utf-8' or 'latin-1'")
        check_encoding(self.encoding, "dataset.encoding")
        if (
            isinstance(self.eval_fraction, bool)
            or not isinstance(self.eval_fraction, (int, float))
            or not 0.0 < self.eval_fraction < 1.0
        ):
            raise bad("eval_fraction", "a number between 0 and 1 (e.g. 0.1)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise bad("seed", "a whole number")
        if not 0 <= self.seed <= MAX_SEED:
            raise bad("seed", f"a whole number from 0 to {MAX_SEED}")
        if self.max_rows is not None and (
            isinstance(self.max_rows, bool)
            or not isinstance(self.max_rows, int)
            or self.max_rows < 1
        ):
            raise bad("max_rows", "a whole number of at least 1, or empty for all rows")
        if (
            isinstance(self.max_length, bool)
            or not isinstance(self.max_length, int)
            or not 4 <= self.max_length <= MAX_LENGTH
        ):
            raise bad("max_length", f"a whole number of tokens from 4 to {MAX_LENGTH} (e.g. 128)")
        if self.labels is not None:
            if not isinstance(self.labels, (list, tuple)) or not self.labels:
                raise bad("labels", "a list of label names in id order, or empty")
            if len(self.labels) > MAX_CLASSES:
                raise UserError(
                    f"dataset.labels lists {len(self.labels)} labels; a classifier here has at "
                    f"most {MAX_CLASSES} classes. Check that the list holds class names."
                )
            for i, x in enumerate(self.labels):
                if (
                    isinstance(x, bool)
                    or not isinstance(x, (str, int, float))
                    or not str(x).strip()
                ):
                    raise UserError(
                        f"dataset.labels[{i}] must be a label name (text or a number), not "
                        f"{brief(x)}."
                    )
            names = [str(x) for x in self.labels]
            dup = [n for n, c in Counter(names).items() if c > 1]
            if dup:
                raise UserError(
                    f"dataset.labels lists {dup[0]!r} more than once; list each label once."
                )
            self.labels = names

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["labels"] is not None:
            d["labels"] = list(d["labels"])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DatasetSpec:
        """Build from a recipe's ``dataset:`` mapping; unknown keys are refused by name."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise UserError(
                f"dataset must be a mapping of settings (train, eval, text_column, …), not {brief(data)}."
            )
        known = [f.name for f in fields(cls)]
        unknown = [k for k in data if k not in known]
        if unknown:
            raise UserError(
                f"unknown dataset setting{'s' if len(unknown) > 1 else ''} "
                f"{_quote_list(unknown)}; the known settings are {', '.join(known)}."
            )
        return cls(**data)


def _resolve(value: str, base_dir: Path | None, field_name: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    try:
        found = path.exists()
    except (OSError, ValueError) as exc:  # a name too long, a NUL character
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UserError(
            f"dataset.{field_name} is not a usable path ({reason}); give the path of a data file."
        ) from None
    if not found:
        where = f"the recipe's folder {base_dir}" if base_dir else "the current folder"
        raise UserError(
            f"dataset file not found: {path} (dataset.{field_name}). Check the path; relative "
            f"paths are read from {where}."
        )
    return path


@dataclass
class Preview:
    """The first rows of a file for a data page, plus suggested column mapping."""

    path: Path
    format: str
    columns: list[str]
    rows: list[list[str]]
    total_rows: int
    text_column: str | None
    label_column: str | None


def preview(
    source: str | Path | DatasetSpec,
    n: int = 10,
    base_dir: str | Path | None = None,
    *,
    format: str | None = None,
    encoding: str = "utf-8",
) -> Preview:
    """The first ``n`` rows of a file (or of a spec's train file) as strings."""
    if isinstance(source, DatasetSpec):
        format, encoding = source.format, source.encoding
        base = Path(base_dir) if base_dir is not None else None
        if source.train.strip().lower() == DEMO:
            path = demo_path("train")
        else:
            path = _resolve(source.train, base, "train")
    else:
        path = Path(source)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
    table = read_table(path, format, encoding)
    rows = [[_cell_text(c) for c in row] for row in table.rows[:n]]
    text, label = guess_columns(table.columns)
    return Preview(path, table.format, table.columns, rows, len(table), text, label)


def _cell_text(cell: Any) -> str:
    """A cell as shown in a preview: a 1 MB text is cut, and says so."""
    text = "" if cell is None else str(cell)
    if len(text) > PREVIEW_CHARS:
        text = text[:PREVIEW_CHARS] + f"… ({len(text):,} characters)"
    return text
