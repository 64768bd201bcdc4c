"""Text-classification datasets: reading, column mapping, checks, splits and tokenization.

A dataset is described by a :class:`DatasetSpec` (plain fields, embedded in YAML recipes)
and loaded with :func:`load_dataset` into a :class:`TextDataset` of ``train``, ``eval``
and optional ``test`` splits. Every problem a user can fix is found here, before any
training starts, and reported as a :class:`~slimpajama_gui.core.errors.UserError` that
names the file, the column or the line (docs/reliability.md D1-D8):

* D1 a missing text/label column lists the columns found and how to map them;
* D2 a file that is not in the given encoding names the line and byte and offers one;
* D3 an empty file, a header without rows, or no rows left after filtering is refused;
* D4 labels that are missing, fractional, negative, of mixed kinds, or outside the
  model's label set (:func:`validate_labels`) are refused, naming the values and lines;
* D5 texts longer than ``max_length`` are truncated by :func:`encode` with a warning;
* D6 CSV/TSV go through the :mod:`csv` module with strict quoting, so quotes, commas,
  tabs and newlines inside quoted text parse, and ragged rows are refused by line;
* D7 a single class and D8 train/eval duplicates become warnings (sentences).

Formats: CSV, TSV, JSON Lines (and a JSON array of objects), and Parquet (needs
``pyarrow``, imported only when a Parquet file is read). No pandas.

Example:
    >>> spec = DatasetSpec(train="demo")
    >>> ds = load_dataset(spec)
    >>> ds.label_names, len(ds.train) >= 400
    (['0', '1'], True)
    >>> tok = AutoTokenizer.from_pretrained(path, local_files_only=True)  # doctest: +SKIP
    >>> enc = encode_split(ds.train, tok, spec.max_length)  # doctest: +SKIP
    >>> for batch in batches(enc, ds.train.labels, 32, True, 0, tok.pad_token_id):  # doctest: +SKIP
    ...     logits = model(batch["input_ids"], batch["attention_mask"])
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from slimpajama_gui.core.errors import UserError

__all__ = [
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

#: The special value of ``DatasetSpec.train`` / ``eval`` that selects the built-in demo set.
DEMO = "demo"

#: Formats :func:`read_table` understands, and the file suffixes that select them.
FORMATS = ("csv", "tsv", "jsonl", "json", "parquet")
_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_FORMAT_ALIASES = {"ndjson": "jsonl", "jsonlines": "jsonl", "pq": "parquet"}

#: Before tokenizing, a text is cut to ``max_length * CHARS_PER_TOKEN`` characters, so a
#: 1 MB text costs no more than a page (no tokenizer makes a token of over 20 characters
#: before truncation matters). A cut text always counts as truncated.
CHARS_PER_TOKEN = 20

_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")


# --------------------------------------------------------------------------- helpers


def _quote_list(values: Sequence[Any], limit: int = 12) -> str:
    shown = ", ".join(repr(v) for v in list(values)[:limit])
    if len(values) > limit:
        shown += f", … ({len(values) - limit} more)"
    return shown


def _numbers(numbers: Sequence[int], limit: int = 5) -> str:
    """``"3, 8, 12 and 4 more"``."""
    head = ", ".join(str(n) for n in numbers[:limit])
    if len(numbers) > limit:
        head += f" and {len(numbers) - limit} more"
    return head


def normalize_text(text: str) -> str:
    """The form used to spot duplicates: lower case, runs of whitespace made one space."""
    return " ".join(text.lower().split())


def demo_path(split: str = "train") -> Path:
    """The file of the built-in demo set (``split`` is ``"train"`` or ``"dev"``)."""
    if split not in ("train", "dev"):
        raise ValueError(f"the demo set has splits 'train' and 'dev', not {split!r}")
    return Path(str(resources.files("slimpajama_gui.resources") / "demo" / f"{split}.tsv"))


# --------------------------------------------------------------------------- tables


@dataclass
class Table:
    """The rows of one file, every cell as read (strings for CSV/TSV).

    ``rows[i]`` lines up with ``columns``; ``lines[i]`` is where row ``i`` starts in the
    file, counted in ``unit`` (``"line"`` for text files, ``"row"`` for Parquet,
    ``"record"`` for a JSON array), so messages can point at it.
    """

    path: Path
    format: str
    columns: list[str]
    rows: list[list[Any]]
    lines: list[int]
    unit: str = "line"

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, key: str | int, field_name: str = "column") -> list[Any]:
        """All cells of one column, by name or 0-based index (D1 error if absent)."""
        i = self.column_index(key, field_name)
        return [row[i] for row in self.rows]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def where(self, numbers: Sequence[int]) -> str:
        """``"train.csv lines 3, 8"`` for the given line numbers."""
        unit = self.unit if len(numbers) == 1 else self.unit + "s"
        return f"{self.path.name} {unit} {_numbers(numbers)}"

    def column_index(self, key: str | int, field_name: str = "column") -> int:
        """Resolve a column name or 0-based index, or explain what the file has (D1)."""
        found = f"Columns found: {_quote_list(self.columns)}."
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise UserError(
                f"{field_name} must be a column name or a 0-based column number, not {key!r}. "
                + found
            )
        if isinstance(key, int):
            if 0 <= key < len(self.columns):
                return key
            raise UserError(
                f"{field_name}: {key} is not a column of {self.path.name}, which has "
                f"{len(self.columns)} columns (numbered 0 to {len(self.columns) - 1}). {found}"
            )
        if key in self.columns:
            return self.columns.index(key)
        folded = [i for i, c in enumerate(self.columns) if c.strip().lower() == key.strip().lower()]
        if len(folded) == 1:
            return folded[0]
        guess_text, guess_label = guess_columns(self.columns)
        guess = guess_label if "label" in field_name else guess_text
        example = guess if guess is not None else (self.columns[0] if self.columns else "NAME")
        hint = ""
        if len(self.columns) == 1 and any(sep in self.columns[0] for sep in ",;\t|"):
            hint = (
                " The file seems to have a single column; check that its separator matches "
                "its format (CSV uses commas, TSV tabs) or set `format:`."
            )
        raise UserError(
            f"{self.path.name} has no column {key!r} ({field_name}). {found} Map the right "
            f"one in the dataset settings, e.g. `{field_name}: {example}`, or give its "
            f"0-based number, e.g. `{field_name}: {self.columns.index(example) if example in self.columns else 0}`."
            + hint
        )


def _detect_format(path: Path, format: str | None) -> str:
    if format:
        fmt = _FORMAT_ALIASES.get(format.lower(), format.lower())
        if fmt not in FORMATS:
            raise UserError(
                f"unknown dataset format {format!r} for {path.name}; use one of "
                f"{', '.join(FORMATS)}."
            )
        return fmt
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise UserError(
            f"cannot tell the format of {path.name} from its suffix {path.suffix or '(none)'!r}; "
            f"rename it to .csv, .tsv, .jsonl or .parquet, or set `format:` to one of "
            f"{', '.join(FORMATS)}."
        )
    return fmt


def _suggest_encoding(data: bytes) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return "latin-1"
    return "cp1252"


def _decode(path: Path, data: bytes, encoding: str) -> str:
    """Decode the whole file, or say where and how it fails (D2)."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise UserError(
            f"unknown encoding {encoding!r} for {path.name}; use a Python codec name such as "
            "'utf-8', 'cp1252' or 'latin-1'."
        ) from None
    is_utf8 = codecs.lookup(encoding).name == "utf-8"
    try:
        # utf-8-sig drops the byte-order mark Excel and Notepad put in front.
        return data.decode("utf-8-sig" if is_utf8 else encoding)
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if is_utf8 and data.startswith(codecs.BOM_UTF8) else 0)
        line = data.count(b"\n", 0, start) + 1
        col = start - (data.rfind(b"\n", 0, start) + 1) + 1
        bad = data[start : start + 1].hex()
        suggestion = _suggest_encoding(data)
        raise UserError(
            f"{path.name} is not valid {encoding}: line {line}, byte {col} (0x{bad}, offset "
            f"{start} in the file) cannot be decoded. Save the file as UTF-8, or set the "
            f"dataset's encoding to the one it was written in — try encoding='{suggestion}'."
        ) from None


def _read_delimited(path: Path, text: str, fmt: str) -> Table:
    delimiter = "," if fmt == "csv" else "\t"
    attempts = [csv.QUOTE_MINIMAL] if fmt == "csv" else [csv.QUOTE_MINIMAL, csv.QUOTE_NONE]
    first_error: UserError | None = None
    for quoting in attempts:
        try:
            return _parse_delimited(path, text, fmt, delimiter, quoting)
        except UserError as exc:
            # Many TSV writers never quote, so a text that merely starts with a quote
            # breaks the quoted reading; such a file is read again without quoting.
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def _parse_delimited(path: Path, text: str, fmt: str, delimiter: str, quoting: int) -> Table:
    sep_name = "commas" if delimiter == "," else "tabs"
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=delimiter,
        quotechar='"',
        doublequote=True,
        strict=True,
        quoting=quoting,
    )
    header: list[str] | None = None
    rows: list[list[Any]] = []
    lines: list[int] = []
    end = 0
    while True:
        start = end + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise UserError(
                f"{path.name} line {start} cannot be read as {fmt.upper()}: {exc}. A text that "
                f'contains quotes or {sep_name} must be wrapped in double quotes, with inner quotes doubled ("").'
            ) from None
        end = reader.line_num
        if not record or (len(record) == 1 and not record[0].strip() and header is not None):
            continue  # blank line
        if header is None:
            header = [c.strip() or f"column_{i}" for i, c in enumerate(record)]
            dup = [c for c, n in Counter(header).items() if n > 1]
            if dup:
                raise UserError(
                    f"{path.name} has the column {dup[0]!r} more than once in its header "
                    "(line 1); give each column its own name."
                )
            continue
        if len(record) != len(header):
            raise UserError(
                f"{path.name} line {start} has {len(record)} fields but the header has "
                f"{len(header)} ({_quote_list(header)}). If the text contains {sep_name}, wrap it "
                "in double quotes; otherwise fix or remove that line."
            )
        rows.append(record)
        lines.append(start)
    if header is None:
        raise UserError(f"{path.name} is empty; it needs a header line and at least one row.")
    if not rows:
        raise UserError(
            f"{path.name} has a header ({_quote_list(header)}) but no rows; add data to it."
        )
    return Table(path, fmt, header, rows, lines)


def _read_json(path: Path, text: str, fmt: str) -> Table:
    objects: list[dict] = []
    lines: list[int] = []
    unit = "line"
    stripped = text.lstrip()
    if fmt == "json" and stripped.startswith("["):
        unit = "record"
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{path.name} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
            ) from None
        for i, obj in enumerate(data, 1):
            if not isinstance(obj, dict):
                raise UserError(
                    f"{path.name} record {i} is not a JSON object with named fields; "
                    'each record must look like {"sentence": "...", "label": 1}.'
                )
            objects.append(obj)
            lines.append(i)
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(
                    f"{path.name} line {number} is not valid JSON ({exc.msg} at column "
                    f"{exc.colno}); each line of a JSON Lines file must be one JSON object."
                ) from None
            if not isinstance(obj, dict):
                raise UserError(
                    f"{path.name} line {number} is not a JSON object; each line must look "
                    'like {"sentence": "...", "label": 1}.'
                )
            objects.append(obj)
            lines.append(number)
    if not objects:
        raise UserError(f"{path.name} is empty; it has no records.")
    columns: dict[str, None] = {}
    for obj in objects:
        for key in obj:
            columns.setdefault(str(key), None)
    names = list(columns)
    rows = [[obj.get(c) for c in names] for obj in objects]
    return Table(path, fmt, names, rows, lines, unit)


def _read_parquet(path: Path) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(
            f"reading the Parquet file {path.name} needs the pyarrow package; install it "
            "with `pip install pyarrow`, or save the data as CSV, TSV or JSON Lines."
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise UserError(f"{path.name} is not a readable Parquet file: {exc}.") from None
    columns = [str(c) for c in table.column_names]
    if table.num_rows == 0:
        if not columns:
            raise UserError(f"{path.name} is empty; it has no columns and no rows.")
        raise UserError(f"{path.name} has columns ({_quote_list(columns)}) but no rows.")
    data = [table.column(i).to_pylist() for i in range(len(columns))]
    rows = [list(r) for r in zip(*data, strict=True)]
    return Table(path, "parquet", columns, rows, list(range(1, len(rows) + 1)), "row")


def read_table(path: str | Path, format: str | None = None, encoding: str = "utf-8") -> Table:
    """Read a CSV, TSV, JSON Lines, JSON array or Parquet file into a :class:`Table`.

    Args:
        path: the file; its suffix selects the format unless ``format`` is given.
        format: ``"csv"``, ``"tsv"``, ``"jsonl"`` (``"ndjson"``), ``"json"`` or ``"parquet"``.
        encoding: the text encoding of CSV/TSV/JSON files (a UTF-8 byte-order mark is
            skipped).

    Raises:
        UserError: the file is missing, empty, has only a header (D3), is not in
            ``encoding`` (D2), has ragged rows or broken quoting (D6) or a bad JSON line.
    """
    path = Path(path)
    fmt = _detect_format(path, format)
    if not path.exists():
        raise UserError(f"dataset file not found: {path}. Check the path.")
    if path.is_dir():
        raise UserError(
            f"{path} is a folder; the dataset must be a file (CSV, TSV, JSONL, Parquet)."
        )
    if fmt == "parquet":
        return _read_parquet(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}.") from exc
    text = _decode(path, data, encoding)
    if not text.strip():
        raise UserError(f"{path.name} is empty; it needs a header line and at least one row.")
    if fmt in ("csv", "tsv"):
        return _read_delimited(path, text, fmt)
    return _read_json(path, text, fmt)


def guess_columns(columns: Sequence[str]) -> tuple[str | None, str | None]:
    """Likely (text, label) columns by their names, for pre-filling a mapping form."""
    text_names = ("sentence", "text", "review", "content", "document", "sentence1", "question")
    label_names = ("label", "labels", "target", "class", "sentiment", "category", "y")
    lowered = {c.strip().lower(): c for c in columns}
    text = next((lowered[n] for n in text_names if n in lowered), None)
    label = next((lowered[n] for n in label_names if n in lowered), None)
    return text, label


# --------------------------------------------------------------------------- spec


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
            return UserError(f"dataset.{name} must be {want}, not {getattr(self, name)!r}.")

        if not isinstance(self.train, str) or not self.train.strip():
            raise bad("train", 'a file path or "demo"')
        for name in ("eval", "test", "format"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise bad(name, "a file path" if name != "format" else "a format name or empty")
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
        if (
            isinstance(self.eval_fraction, bool)
            or not isinstance(self.eval_fraction, (int, float))
            or not 0.0 < self.eval_fraction < 1.0
        ):
            raise bad("eval_fraction", "a number between 0 and 1 (e.g. 0.1)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise bad("seed", "a whole number")
        if self.max_rows is not None and (
            isinstance(self.max_rows, bool)
            or not isinstance(self.max_rows, int)
            or self.max_rows < 1
        ):
            raise bad("max_rows", "a whole number of at least 1, or empty for all rows")
        if (
            isinstance(self.max_length, bool)
            or not isinstance(self.max_length, int)
            or self.max_length < 4
        ):
            raise bad("max_length", "a whole number of tokens, at least 4 (e.g. 128)")
        if self.labels is not None:
            if not isinstance(self.labels, (list, tuple)) or not self.labels:
                raise bad("labels", "a list of label names in id order, or empty")
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
                f"dataset must be a mapping of settings (train, eval, text_column, …), not {data!r}."
            )
        known = [f.name for f in fields(cls)]
        unknown = [k for k in data if k not in known]
        if unknown:
            raise UserError(
                f"unknown dataset setting{'s' if len(unknown) > 1 else ''} "
                f"{_quote_list(unknown)}; the known settings are {', '.join(known)}."
            )
        return cls(**data)


# --------------------------------------------------------------------------- dataset


@dataclass
class Split:
    """One split: texts (and optional second texts) with integer labels.

    ``path`` and ``lines`` say where each row came from, so later checks can point at it.
    """

    name: str
    texts: list[str]
    labels: list[int]
    pairs: list[str] | None = None
    label_names: list[str] = field(default_factory=list)
    path: str = ""
    lines: list[int] = field(default_factory=list)
    unit: str = "line"

    def __len__(self) -> int:
        return len(self.texts)

    def where(self, indices: Sequence[int]) -> str:
        numbers = [self.lines[i] for i in indices] if self.lines else [i + 1 for i in indices]
        unit = self.unit if len(numbers) == 1 else self.unit + "s"
        return f"{Path(self.path).name or self.name} {unit} {_numbers(numbers)}"


@dataclass
class TextDataset:
    """The loaded splits, the label names (id → name) and warnings for the user."""

    train: Split
    eval: Split
    test: Split | None
    label_names: list[str]
    warnings: list[str] = field(default_factory=list)
    spec: DatasetSpec | None = None
    #: When ``max_rows`` sampled the train split: every row of the train file but those
    #: held out as eval (else None, and :meth:`vocabulary_rows` gives the train split).
    vocabulary_texts: list[str] | None = None
    #: The second texts of those rows, for sentence-pair data.
    vocabulary_pairs: list[str] | None = None

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def vocabulary_rows(self) -> tuple[list[str], list[str] | None]:
        """The train rows vocabulary pruning keeps tokens from: (texts, second texts).

        Every row of the train file, also those ``max_rows`` left out of training (a
        word dropped there would be [UNK] for good), never the rows held out as eval.
        The second texts are None unless ``text_pair_column`` is set.
        """
        if self.vocabulary_texts is None:
            return self.train.texts, self.train.pairs
        return self.vocabulary_texts, self.vocabulary_pairs

    def splits(self) -> list[Split]:
        return [s for s in (self.train, self.eval, self.test) if s is not None]


@dataclass
class _Raw:
    """A split as read, before labels become ids."""

    name: str
    table: Table
    texts: list[str]
    pairs: list[str] | None
    labels: list[int | str]
    lines: list[int]

    def where(self, indices: Sequence[int]) -> str:
        return self.table.where([self.lines[i] for i in indices])

    def take(self, indices: Sequence[int], name: str) -> _Raw:
        return _Raw(
            name,
            self.table,
            [self.texts[i] for i in indices],
            None if self.pairs is None else [self.pairs[i] for i in indices],
            [self.labels[i] for i in indices],
            [self.lines[i] for i in indices],
        )


def _resolve(value: str, base_dir: Path | None, field_name: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    if not path.exists():
        where = f"the recipe's folder {base_dir}" if base_dir else "the current folder"
        raise UserError(
            f"dataset file not found: {path} (dataset.{field_name}). Check the path; relative "
            f"paths are read from {where}."
        )
    return path


def _parse_label(cell: Any) -> tuple[str, Any]:
    """``("int", 3)``, ``("str", "pos")``, ``("missing", None)`` or ``("fraction", 0.5)``."""
    if cell is None:
        return "missing", None
    if isinstance(cell, bool):
        return "str", "true" if cell else "false"
    if isinstance(cell, int):
        return "int", cell
    if isinstance(cell, float):
        if cell != cell or cell in (float("inf"), float("-inf")):
            return "missing", None
        return ("int", int(cell)) if cell.is_integer() else ("fraction", cell)
    text = str(cell).strip()
    if not text:
        return "missing", None
    if _INT_RE.fullmatch(text):
        return "int", int(text)
    if _FLOAT_RE.fullmatch(text):
        value = float(text)
        return ("int", int(value)) if value.is_integer() else ("fraction", text)
    return "str", text


def _read_split(name: str, path: Path, spec: DatasetSpec, warnings: list[str]) -> _Raw:
    table = read_table(path, spec.format, spec.encoding)
    ti = table.column_index(spec.text_column, "text_column")
    li = table.column_index(spec.label_column, "label_column")
    pi = None
    if spec.text_pair_column is not None:
        pi = table.column_index(spec.text_pair_column, "text_pair_column")
    if ti == li:
        raise UserError(
            f"text_column and label_column both point at column {table.columns[ti]!r} of "
            f"{path.name}; columns found: {_quote_list(table.columns)}."
        )
    texts: list[str] = []
    pairs: list[str] | None = [] if pi is not None else None
    labels: list[int | str] = []
    lines: list[int] = []
    empty: list[int] = []
    missing: list[int] = []
    fractions: dict[Any, list[int]] = {}
    for row, line in zip(table.rows, table.lines, strict=True):
        text = row[ti]
        text = "" if text is None else text if isinstance(text, str) else str(text)
        if not text.strip():
            empty.append(line)
            continue
        kind, value = _parse_label(row[li])
        if kind == "missing":
            missing.append(line)
            continue
        if kind == "fraction":
            fractions.setdefault(value, []).append(line)
            continue
        texts.append(text)
        if pairs is not None:
            pair = row[pi]
            pairs.append("" if pair is None else pair if isinstance(pair, str) else str(pair))
        labels.append(value)
        lines.append(line)
    label_col = table.columns[li]
    if missing:
        raise UserError(
            f"{table.where(missing)} {'has' if len(missing) == 1 else 'have'} no label in "
            f"column {label_col!r}. Fill in the label or remove "
            f"{'that row' if len(missing) == 1 else 'those rows'}."
        )
    if fractions:
        shown = ", ".join(f"{v} ({table.where(ls)})" for v, ls in list(fractions.items())[:5])
        raise UserError(
            f"column {label_col!r} of {path.name} holds fractional labels: {shown}. A classifier "
            'needs whole-number class ids (0, 1, …) or names ("neg", "pos"); this looks like a '
            "regression target — bin it into classes first."
        )
    if empty:
        warnings.append(
            f"{len(empty)} row{'s' if len(empty) > 1 else ''} of {path.name} "
            f"({table.where(empty)}) had no text in column {table.columns[ti]!r} and "
            f"{'were' if len(empty) > 1 else 'was'} skipped."
        )
    if not texts:
        raise UserError(
            f"{path.name} has no rows left to use: all {len(table)} rows have an empty "
            f"text in column {table.columns[ti]!r}. Check text_column (columns found: "
            f"{_quote_list(table.columns)})."
        )
    return _Raw(name, table, texts, pairs, labels, lines)


def _sample(n: int, k: int, seed: int) -> list[int]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[:k])


def _stratified_split(raw: _Raw, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, eval), each in file order; every class with 2+ rows gets 1+ in eval."""
    by_label: dict[Any, list[int]] = {}
    for i, label in enumerate(raw.labels):
        by_label.setdefault(label, []).append(i)
    rng = random.Random(seed)
    held: list[int] = []
    for label in sorted(by_label, key=lambda v: (isinstance(v, str), v)):
        idx = by_label[label]
        rng.shuffle(idx)
        n = len(idx)
        k = round(fraction * n)
        k = 0 if n < 2 else min(max(k, 1), n - 1)
        held.extend(idx[:k])
    held_set = set(held)
    keep = [i for i in range(len(raw.labels)) if i not in held_set]
    if not held:
        raise UserError(
            f"{raw.table.path.name} has only {len(raw.labels)} usable rows, too few to hold "
            "some out for evaluation; add rows or give an eval file (dataset.eval)."
        )
    return keep, sorted(held)


def _label_ids(
    raws: list[_Raw], labels: list[str] | None, warnings: list[str], labels_from: str | None = None
) -> tuple[list[list[int]], list[str]]:
    """Map raw labels of all splits to ids (D4) and return the id → name list."""
    values: dict[Any, list[tuple[_Raw, int]]] = {}
    for raw in raws:
        for i, v in enumerate(raw.labels):
            values.setdefault(v, []).append((raw, i))

    def where(value: Any) -> str:
        return _where_lines(
            (raw.table.path, raw.table.unit, raw.lines[i]) for raw, i in values[value]
        )

    if labels is not None:
        names = list(labels)
        if all(str(v) in names for v in values):
            mapping = {v: names.index(str(v)) for v in values}
        elif all(isinstance(v, int) for v in values):
            bad = sorted(v for v in values if not 0 <= v < len(names))
            if bad:
                shown = ", ".join(f"{v} ({where(v)})" for v in bad[:5])
                raise UserError(
                    f"label ids {shown} are outside dataset.labels, which names "
                    f"{len(names)} classes (ids 0 to {len(names) - 1}: {_quote_list(names)}). "
                    "Add the missing labels to the list or fix those rows."
                )
            mapping = {v: v for v in values}
        else:
            bad = sorted((v for v in values if str(v) not in names), key=str)
            shown = ", ".join(f"{v!r} ({where(v)})" for v in bad[:5])
            if labels_from is not None:
                raise UserError(
                    f"labels {shown} are not among {labels_from}'s labels "
                    f"({_quote_list(names)}), so it cannot predict them. Fix those rows, or "
                    "use a model trained with these labels."
                )
            raise UserError(
                f"labels {shown} are not in dataset.labels ({_quote_list(names)}). Add them to "
                "the list or fix those rows."
            )
    else:
        ints = sorted(v for v in values if isinstance(v, int))
        strs = sorted(v for v in values if isinstance(v, str))
        if ints and strs:
            raise UserError(
                "the labels mix numbers and names: "
                + ", ".join(f"{v} ({where(v)})" for v in ints[:3])
                + " and "
                + ", ".join(f"{v!r} ({where(v)})" for v in strs[:3])
                + ". Use one kind throughout, or list every label in order in dataset.labels, "
                'e.g. labels: ["neg", "pos"].'
            )
        if strs:
            names = strs
            mapping = {v: i for i, v in enumerate(strs)}
        else:
            negative = [v for v in ints if v < 0]
            if negative:
                shown = ", ".join(f"{v} ({where(v)})" for v in negative[:5])
                raise UserError(
                    f"negative labels {shown}: class ids must be 0, 1, 2, …. List the labels "
                    f"in order to map them, e.g. labels: {json.dumps([str(v) for v in ints])}, "
                    "or renumber them."
                )
            names = [str(i) for i in range(ints[-1] + 1)]
            mapping = {v: v for v in ints}
            unused = [i for i in range(len(names)) if i not in values]
            if unused:
                warnings.append(
                    f"the labels are {_quote_list(ints)} but id{'s' if len(unused) > 1 else ''} "
                    f"{_numbers(unused)} never appear{'s' if len(unused) == 1 else ''}, so the "
                    f"model gets {len(names)} classes. If the labels are numbered from 1, set "
                    f"labels: {json.dumps([str(v) for v in ints])} to map them to 0…{len(ints) - 1}."
                )
    return [[mapping[v] for v in raw.labels] for raw in raws], names


def load_dataset(
    spec: DatasetSpec, base_dir: str | Path | None = None, *, labels_from: str | None = None
) -> TextDataset:
    """Read, check and split the data described by ``spec``.

    Args:
        spec: the dataset settings.
        base_dir: folder that relative paths are read from (the recipe's folder).
        labels_from: who set ``spec.labels`` when the user did not (e.g. "the model's
            classifier"), so a label outside them is explained in those terms.

    Raises:
        UserError: any of docs/reliability.md D1-D4, D6 (see the module docstring).
    """
    base = Path(base_dir) if base_dir is not None else None
    warnings: list[str] = []
    demo = spec.train.strip().lower() == DEMO
    train_path = demo_path("train") if demo else _resolve(spec.train, base, "train")
    eval_value = spec.eval
    if eval_value is None and demo:
        eval_value = DEMO
    eval_path = None
    if eval_value is not None:
        is_demo = eval_value.strip().lower() == DEMO
        eval_path = demo_path("dev") if is_demo else _resolve(eval_value, base, "eval")
    test_path = None if spec.test is None else _resolve(spec.test, base, "test")

    whole = train = _read_split("train", train_path, spec, warnings)
    sampled: list[int] | None = None  # rows of the train file that max_rows kept
    if spec.max_rows is not None and spec.max_rows < len(train.texts):
        sampled = _sample(len(train.texts), spec.max_rows, spec.seed)
        train = train.take(sampled, "train")
    held_out: set[int] = set()  # rows of the train file held out as eval
    if eval_path is not None:
        ev = _read_split("eval", eval_path, spec, warnings)
    else:
        keep, held = _stratified_split(train, spec.eval_fraction, spec.seed)
        train, ev = train.take(keep, "train"), train.take(held, "eval")
        held_out = {sampled[i] if sampled is not None else i for i in held}
    test = _read_split("test", test_path, spec, warnings) if test_path is not None else None
    vocabulary = None
    if sampled is not None:
        vocabulary = whole.take([i for i in range(len(whole.texts)) if i not in held_out], "train")

    raws = [r for r in (train, ev, test) if r is not None]
    ids, names = _label_ids(raws, spec.labels, warnings, labels_from)
    splits = [
        Split(
            r.name,
            r.texts,
            label_ids,
            r.pairs,
            names,
            str(r.table.path),
            r.lines,
            r.table.unit,
        )
        for r, label_ids in zip(raws, ids, strict=True)
    ]
    ds = TextDataset(
        splits[0],
        splits[1],
        splits[2] if test else None,
        names,
        warnings,
        spec,
        vocabulary.texts if vocabulary is not None else None,
        vocabulary.pairs if vocabulary is not None else None,
    )

    counts = Counter(ds.train.labels)
    if len(counts) == 1:
        only = names[next(iter(counts))]
        warnings.append(
            f"train has only one class ({only!r}); accuracy will be meaningless — the model "
            "can score perfectly by always answering it. Add rows of the other classes."
        )
    elif len(set(ds.eval.labels)) == 1 and len(names) > 1:
        only = names[ds.eval.labels[0]]
        warnings.append(
            f"eval has only one class ({only!r}); accuracy will be meaningless as a measure "
            "of the model. Use an eval set with every class."
        )
    if len(counts) > 1:
        absent = [names[i] for i in range(len(names)) if counts[i] == 0]
        if absent and spec.labels is not None:
            warnings.append(
                f"train has no rows of label{'s' if len(absent) > 1 else ''} "
                f"{_quote_list(absent)}; the model cannot learn {'them' if len(absent) > 1 else 'it'}."
            )
    seen = {_key(ds.train, i) for i in range(len(ds.train))}
    for split in (ds.eval, ds.test):
        # The same file on both sides (e.g. `slimpajama eval` of one file) is not a leak.
        if split is None or split.path == ds.train.path:
            continue
        dup = sum(_key(split, i) in seen for i in range(len(split)))
        if dup:
            warnings.append(
                f"{dup} of {len(split)} {split.name} rows ({100 * dup / len(split):.1f}%) also "
                "appear in train (same text, ignoring case and spacing); "
                f"{split.name} accuracy will look better than it is. Remove the duplicates "
                "from one side."
            )
    return ds


def _key(split: Split, i: int) -> str:
    text = normalize_text(split.texts[i])
    return text if split.pairs is None else text + "\x00" + normalize_text(split.pairs[i])


def _where_lines(places: Iterator[tuple[Path, str, int]] | Any) -> str:
    """``"train.csv lines 3, 9; dev.csv line 4"``; a file read twice is named once."""
    by_file: dict[tuple[Path, str], set[int]] = {}
    for path, unit, line in places:
        by_file.setdefault((path, unit), set()).add(line)
    parts = []
    for (path, unit), lines in by_file.items():
        numbers = sorted(lines)
        parts.append(f"{path.name} {unit}{'s' if len(numbers) > 1 else ''} {_numbers(numbers)}")
    return "; ".join(parts)


def validate_labels(dataset: TextDataset, num_labels: int) -> None:
    """Refuse labels the model cannot hold (D4): ids must be below ``num_labels``.

    On a GPU an out-of-range label is an opaque device-side assert, so this runs
    before training starts.
    """
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise UserError(
            f"the model's num_labels must be a whole number of at least 1, not {num_labels!r}."
        )
    bad: dict[int, list[tuple[Split, int]]] = {}
    for split in dataset.splits():
        for i, label in enumerate(split.labels):
            if not 0 <= label < num_labels:
                bad.setdefault(label, []).append((split, i))
    if not bad:
        return
    parts = []
    for label in sorted(bad)[:5]:
        where = _where_lines(
            (Path(s.path or s.name), s.unit, s.lines[i] if s.lines else i + 1)
            for s, i in bad[label]
        )
        name = dataset.label_names[label] if 0 <= label < len(dataset.label_names) else str(label)
        parts.append(f"{name!r} (id {label}, {where})")
    raise UserError(
        f"the dataset has {dataset.num_labels} labels ({_quote_list(dataset.label_names)}) but "
        f"the model has num_labels={num_labels} (ids 0 to {num_labels - 1}); outside its label "
        f"set: {', '.join(parts)}. Fine-tune with a new classifier head of "
        f"{dataset.num_labels} labels, or remove or re-map those rows."
    )


def label_counts(split: Split) -> dict[str, int]:
    """Rows per label name, in id order (labels with no rows included as 0)."""
    counts = Counter(split.labels)
    names = split.label_names or [str(i) for i in range(max(counts, default=-1) + 1)]
    return {name: counts.get(i, 0) for i, name in enumerate(names)}


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
    rows = [["" if c is None else str(c) for c in row] for row in table.rows[:n]]
    text, label = guess_columns(table.columns)
    return Preview(path, table.format, table.columns, rows, len(table), text, label)


# --------------------------------------------------------------------------- tokens


@dataclass
class Encoded:
    """Token ids of one split, unpadded; ``warnings`` holds the D5 sentence if any."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    max_length: int
    truncated_count: int = 0
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]


def encode(
    texts: Sequence[str],
    tokenizer: Any,
    max_length: int,
    pairs: Sequence[str] | None = None,
    *,
    truncate: bool = True,
) -> Encoded:
    """Tokenize ``texts`` (and ``pairs``) with special tokens, truncated to ``max_length``.

    A text longer than ``max_length`` tokens is truncated and counted (D5). Texts are first
    cut to ``max_length * CHARS_PER_TOKEN`` characters so a 1 MB text takes milliseconds.

    Args:
        truncate: False keeps every token of the (character-cut) texts: what the
            tokenizer sees before truncation decides which tokens the model reads.
            ``truncated_count`` then counts only the character cuts.
    """
    texts = list(texts)
    if pairs is not None:
        pairs = list(pairs)
        if len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs")
    if not texts:
        return Encoded([], None, max_length)
    limit = max_length * CHARS_PER_TOKEN
    cut = [len(t) > limit for t in texts]
    texts = [t[:limit] if c else t for t, c in zip(texts, cut, strict=True)]
    if pairs is not None:
        pair_cut = [len(p) > limit for p in pairs]
        pairs = [p[:limit] if c else p for p, c in zip(pairs, pair_cut, strict=True)]
        cut = [a or b for a, b in zip(cut, pair_cut, strict=True)]

    def run(idx: Sequence[int] | None, length: int | None) -> Any:
        a = texts if idx is None else [texts[i] for i in idx]
        b = None if pairs is None else pairs if idx is None else [pairs[i] for i in idx]
        return tokenizer(
            a,
            b,
            truncation=length is not None,
            max_length=length,
            padding=False,
            return_attention_mask=False,
            # Untruncated ids are counted, never fed to the model: no "too long" warning.
            verbose=length is not None,
        )

    if not truncate:
        whole = run(None, None)
        type_ids = whole.get("token_type_ids")
        return Encoded(
            [list(ids) for ids in whole["input_ids"]],
            None if type_ids is None else [list(t) for t in type_ids],
            max_length,
            sum(cut),
        )

    # One token of headroom tells a text that fits exactly from one that was cut; only
    # the few long ones are tokenized a second time at the real limit.
    out = run(None, max_length + 1)
    input_ids = [list(ids) for ids in out["input_ids"]]
    type_ids = out.get("token_type_ids")
    token_type_ids = None if type_ids is None else [list(t) for t in type_ids]
    long = [i for i, ids in enumerate(input_ids) if len(ids) > max_length]
    if long:
        again = run(long, max_length)
        for j, i in enumerate(long):
            input_ids[i] = list(again["input_ids"][j])
            if token_type_ids is not None:
                token_type_ids[i] = list(again["token_type_ids"][j])
    truncated = set(long) | {i for i, c in enumerate(cut) if c}
    enc = Encoded(input_ids, token_type_ids, max_length, len(truncated))
    if truncated:
        n = len(truncated)
        enc.warnings.append(
            f"{n} text{'s were' if n > 1 else ' was'} longer than max_length={max_length} "
            "tokens and " + ("were" if n > 1 else "was") + " truncated."
        )
    return enc


def encode_split(split: Split, tokenizer: Any, max_length: int) -> Encoded:
    """:func:`encode` for a :class:`Split`, naming the split in the warning."""
    enc = encode(split.texts, tokenizer, max_length, split.pairs)
    enc.warnings = [f"{split.name}: {w}" for w in enc.warnings]
    return enc


def collate(batch: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Pad a list of examples to the longest one.

    Each example is a mapping with ``input_ids`` (list of ints), and optionally
    ``token_type_ids`` and ``label``. Returns int64 tensors ``input_ids``,
    ``attention_mask`` (1 on real tokens) and ``token_type_ids``, all (B, T), and
    ``labels`` (B,) when the examples carry labels.
    """
    import torch

    if not batch:
        raise ValueError("cannot collate an empty batch")
    width = max(len(ex["input_ids"]) for ex in batch)
    n = len(batch)
    input_ids = torch.full((n, width), int(pad_id), dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    types = torch.zeros((n, width), dtype=torch.long)
    for row, ex in enumerate(batch):
        ids = ex["input_ids"]
        length = len(ids)
        if length:
            input_ids[row, :length] = torch.as_tensor(ids, dtype=torch.long)
            attention[row, :length] = 1
            tt = ex.get("token_type_ids")
            if tt is not None:
                types[row, :length] = torch.as_tensor(tt, dtype=torch.long)
    out = {"input_ids": input_ids, "attention_mask": attention, "token_type_ids": types}
    if any(ex.get("label") is not None for ex in batch):
        out["labels"] = torch.tensor([int(ex["label"]) for ex in batch], dtype=torch.long)
    return out


def batches(
    encoded: Encoded,
    labels: Sequence[int] | None,
    batch_size: int,
    shuffle: bool,
    seed: int,
    pad_id: int,
    *,
    sort_by_length: bool = False,
    drop_last: bool = False,
) -> Iterator[dict[str, Any]]:
    """Padded batches of ``encoded`` (see :func:`collate`), each with an ``index`` tensor.

    The order depends only on ``seed`` (pass ``seed + epoch`` for a new order each epoch).
    ``sort_by_length`` groups texts of similar length so evaluation pads less; with
    ``shuffle`` it sorts within chunks of 50 batches and shuffles the batches. ``index``
    holds each row's position in ``encoded``, so :func:`restore_order` puts outputs back.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    n = len(encoded)
    if labels is not None and len(labels) != n:
        raise ValueError(f"{n} encoded texts but {len(labels)} labels")
    order = list(range(n))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
    if sort_by_length:
        lengths = encoded.lengths()
        if shuffle:
            chunk = batch_size * 50
            order = [
                i
                for s in range(0, n, chunk)
                for i in sorted(order[s : s + chunk], key=lambda i: lengths[i])
            ]
        else:
            order.sort(key=lambda i: lengths[i])
    groups = [order[s : s + batch_size] for s in range(0, n, batch_size)]
    if drop_last and groups and len(groups[-1]) < batch_size:
        groups.pop()
    if shuffle and sort_by_length:
        rng.shuffle(groups)
    for group in groups:
        examples = []
        for i in group:
            ex: dict[str, Any] = {"input_ids": encoded.input_ids[i]}
            if encoded.token_type_ids is not None:
                ex["token_type_ids"] = encoded.token_type_ids[i]
            if labels is not None:
                ex["label"] = labels[i]
            examples.append(ex)
        out = collate(examples, pad_id)
        out["index"] = torch.tensor(group, dtype=torch.long)
        yield out


def restore_order(values: Sequence[Any], indices: Sequence[Any]) -> Any:
    """Undo batch order: concatenate per-batch ``values`` and place row ``index[k]`` at k.

    ``values`` and ``indices`` are lists of per-batch tensors (as yielded in ``index``).
    """
    import torch

    flat = torch.cat([torch.as_tensor(v) for v in values])
    idx = torch.cat([torch.as_tensor(i) for i in indices])
    out = torch.empty_like(flat)
    out[idx] = flat
    return out
