"""Reading a table of rows from a CSV, TSV, JSON Lines, JSON or Parquet file.

:func:`read_table` gives a :class:`Table`: the header, every row as read (strings for
CSV/TSV) and the line (or row, or record) each row starts on, so every later message can
point at a place in the file. The checks that belong to reading are made here (docs/
reliability.md): D1 a missing column names the columns found (:meth:`Table.column_index`),
D2 a file that is not in the given encoding names the line and byte and offers one, D3 an
empty file or a header without rows is refused, and D6 CSV/TSV go through the :mod:`csv`
module with strict quoting, so ragged rows are refused by line. Every file is bounded
before it is read: it must be a regular file (not a device such as ``/dev/zero``, a pipe
or a socket) of at most :data:`MAX_FILE_BYTES`. R1: a field of any length is read the same
way by every reader (the CSV module's field limit is raised to the file's size), and the
model's maximum length cuts it later with a warning (D5, :mod:`.batching`).

Parquet needs ``pyarrow``, imported only when a Parquet file is read. No pandas.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import reprlib
import stat
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimpajama_gui.core.errors import UserError

__all__ = [
    "FORMATS",
    "MAX_FILE_BYTES",
    "Table",
    "brief",
    "check_data_file",
    "check_encoding",
    "guess_columns",
    "read_table",
]

#: The largest data file read (1 GiB). Rows are held in memory as Python strings, which
#: take several times the file's size, so a larger file would exhaust a desktop's memory.
MAX_FILE_BYTES = 1 << 30

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


#: A repr that stays short whatever it is given (a label cell can hold a 1 MB text or a
#: nested JSON value): every message that quotes a value from a file uses it.
_brief = reprlib.Repr()
_brief.maxstring = 80
_brief.maxother = 80
_brief.maxlong = 40
_brief.maxlist = _brief.maxtuple = _brief.maxdict = _brief.maxset = 6
_brief.maxlevel = 2


def brief(value: Any) -> str:
    """``repr(value)`` cut to a readable length (long texts, huge numbers, nested values)."""
    try:
        return _brief.repr(value)
    except ValueError:  # an int too long for repr (Python's 4300-digit limit)
        if isinstance(value, int):
            return f"a {value.bit_length():,}-bit number"
        return f"a {type(value).__name__} holding a number too long to show"


def _quote_list(values: Sequence[Any], limit: int = 12) -> str:
    shown = ", ".join(brief(v) for v in list(values)[:limit])
    if len(values) > limit:
        shown += f", … ({len(values) - limit} more)"
    return shown


def _numbers(numbers: Sequence[int], limit: int = 5) -> str:
    """``"3, 8, 12 and 4 more"``."""
    head = ", ".join(str(n) for n in numbers[:limit])
    if len(numbers) > limit:
        head += f" and {len(numbers) - limit} more"
    return head


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

    def column_index(
        self, key: str | int, field_name: str = "column", taken: Sequence[int] = ()
    ) -> int:
        """Resolve a column name or 0-based index, or explain what the file has (D1).

        ``taken``: columns already given to other fields, never suggested for this one.
        """
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
        free = [c for i, c in enumerate(self.columns) if i not in taken]
        example = guess if guess in free else (free[0] if free else "NAME")
        flag = field_name.startswith("--")
        hint = ""
        if len(self.columns) == 1 and any(sep in self.columns[0] for sep in ",;\t|"):
            hint = (
                " The file seems to have a single column; check that its separator matches "
                "its format (CSV uses commas, TSV tabs) or give "
                + ("`--format`." if flag else "`format:`.")
            )
        number = self.columns.index(example) if example in self.columns else 0
        if flag:  # a command line's flag takes a column name
            advice = f"Give the right one, e.g. `{field_name} {example}`."
        else:
            advice = (
                f"Map the right one in the dataset settings, e.g. `{field_name}: {example}`, "
                f"or give its 0-based number, e.g. `{field_name}: {number}`."
            )
        raise UserError(
            f"{self.path.name} has no column {key!r} ({field_name}). {found} {advice}" + hint
        )


def _detect_format(path: Path, format: str | None, format_field: str = "format") -> str:
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
        how = f"`{format_field}`" if format_field.startswith("--") else f"`{format_field}:`"
        raise UserError(
            f"cannot tell the format of {path.name} from its suffix {path.suffix or '(none)'!r}; "
            f"rename it to .csv, .tsv, .jsonl or .parquet, or give {how} one of "
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


def check_encoding(encoding: Any, where: str) -> None:
    """Refuse a name that is not a text encoding (``where`` names the file or field).

    ``base64``, ``zlib`` or ``rot13`` are codecs but do not turn bytes into text, so
    decoding a file with them fails inside Python; they are refused here by name.

    Raises:
        UserError: not a string, an unknown codec, or a codec that is not a text encoding.
    """
    advice = "use a text encoding such as 'utf-8', 'cp1252' or 'latin-1'"
    if not isinstance(encoding, str) or not encoding.strip() or len(encoding) > 64:
        raise UserError(f"the encoding {brief(encoding)} of {where} is not a codec name; {advice}.")
    try:
        codecs.lookup(encoding)
        # Decoding one byte is what tells a text codec from a bytes-to-bytes one (an
        # empty input never reaches the codec). A text codec may well refuse that byte.
        b"a".decode(encoding)
    except UnicodeDecodeError:
        pass
    except UnicodeError:  # the 'undefined' codec refuses every input
        raise UserError(f"{encoding!r} ({where}) decodes nothing; {advice}.") from None
    except (LookupError, ValueError):  # ValueError: a NUL character in the name
        try:
            codecs.lookup(encoding)
        except (LookupError, ValueError):
            raise UserError(f"unknown encoding {encoding!r} for {where}; {advice}.") from None
        raise UserError(
            f"{encoding!r} (the encoding for {where}) converts bytes to bytes, not to text; "
            f"{advice}."
        ) from None


def _decode(path: Path, data: bytes, encoding: str) -> str:
    """Decode the whole file, or say where and how it fails (D2)."""
    check_encoding(encoding, path.name)
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
    except (UnicodeError, ValueError) as exc:  # codecs such as idna or punycode
        raise UserError(
            f"{path.name} cannot be decoded as {encoding} ({str(exc)[:120]}); save the file as "
            f"UTF-8, or set the dataset's encoding to the one it was written in."
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


def _raise_field_limit(size: int) -> None:
    """Let the CSV module read a field as long as the whole text (R1).

    Its default limit (131,072 characters) refused a long text with a message about
    quoting, while JSON Lines read the same text; every reader must take it and leave
    the cut to the model's maximum length, with a warning (D5). The limit is
    process-wide and only ever raised, so concurrent readers never lower it under
    each other; the file itself is bounded by :data:`MAX_FILE_BYTES`.
    """
    if size >= csv.field_size_limit():
        csv.field_size_limit(size + 1)


def _csv_problem(path: Path, line: int, fmt: str, error: csv.Error, sep_name: str) -> UserError:
    """A sentence for a :class:`csv.Error` with only the advice that fits its cause."""
    message = str(error)
    head = f"{path.name} line {line} cannot be read as {fmt.upper()}"
    if "NUL" in message:
        return UserError(
            f"{head}: it contains a NUL byte (0x00), so it is probably not a text file in "
            "the given encoding; if it was saved as UTF-16, set the dataset's encoding to "
            "'utf-16', otherwise remove the NUL bytes."
        )
    return UserError(
        f"{head}: {message}. A text that contains quotes or {sep_name} must be wrapped in "
        'double quotes, with inner quotes doubled ("").'
    )


def _parse_delimited(path: Path, text: str, fmt: str, delimiter: str, quoting: int) -> Table:
    sep_name = "commas" if delimiter == "," else "tabs"
    _raise_field_limit(len(text))
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
            raise _csv_problem(path, start, fmt, exc, sep_name) from None
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
                f"{path.name} line {start} has {_fields(len(record))} but the header has "
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


def _json_record(obj: Any, where: str) -> dict:
    """``obj`` if it is a JSON object (one row with named fields); else a sentence."""
    if not isinstance(obj, dict):
        raise UserError(
            f"{where} is not a JSON object with named fields; each record must look like "
            '{"sentence": "...", "label": 1}.'
        )
    return obj


def _json_loads(text: str, name: str, line: int | None) -> Any:
    """``json.loads``, with every way it can fail turned into a sentence naming the place."""
    where = name if line is None else f"{name} line {line}"
    rule = (
        "each line of a JSON Lines file must be one JSON object"
        if line is not None
        else "fix the file or save it as JSON Lines, one object per line"
    )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"column {exc.colno}" if line is not None else f"line {exc.lineno}, column {exc.colno}"
        raise UserError(f"{where} is not valid JSON ({exc.msg} at {at}); {rule}.") from None
    except RecursionError:
        raise UserError(
            f"{where} nests JSON values too deeply to read; a record must be a flat object "
            'such as {"sentence": "...", "label": 1}.'
        ) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise UserError(f"{where} holds a value that cannot be read: {exc}; {rule}.") from None


def _read_json(path: Path, text: str, fmt: str) -> Table:
    objects: list[dict] = []
    lines: list[int] = []
    unit = "line"
    stripped = text.lstrip()
    if fmt == "json" and stripped.startswith("["):
        unit = "record"
        data = _json_loads(text, path.name, None)
        if not isinstance(data, list):
            raise UserError(
                f"{path.name} is not a JSON array of records; write it as [{{...}}, {{...}}] "
                "or as JSON Lines, one object per line."
            )
        for i, obj in enumerate(data, 1):
            objects.append(_json_record(obj, f"{path.name} record {i}"))
            lines.append(i)
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            obj = _json_loads(line, path.name, number)
            objects.append(_json_record(obj, f"{path.name} line {number}"))
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
        # The file is bounded by check_data_file; its compressed pages are not, so the
        # size they decompress to (recorded in the footer) is checked before reading.
        # (Dictionary-encoded pages expand further when decoded; the footer cannot say.)
        meta = pq.ParquetFile(path).metadata
        unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    except Exception as exc:  # pyarrow raises several types for damaged files
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(
            f"{path.name} is not a readable Parquet file ({reason}); save it again or "
            "export the data as CSV or JSON Lines."
        ) from None
    if unpacked > MAX_FILE_BYTES:
        raise UserError(
            f"{path.name} holds {unpacked / 2**30:.1f} GiB of data once decompressed; the "
            f"largest data the app reads is {MAX_FILE_BYTES / 2**30:.0f} GiB. Train on a "
            "sample: keep a share of its rows in a new file."
        )
    try:
        table = pq.read_table(path)
        columns = [str(c) for c in table.column_names]
        data = [table.column(i).to_pylist() for i in range(len(columns))]
    except Exception as exc:  # pyarrow raises several types for damaged files
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(
            f"{path.name} is not a readable Parquet file ({reason}); save it again or "
            "export the data as CSV or JSON Lines."
        ) from None
    if table.num_rows == 0:
        if not columns:
            raise UserError(f"{path.name} is empty; it has no columns and no rows.")
        raise UserError(f"{path.name} has columns ({_quote_list(columns)}) but no rows.")
    dup = [c for c, n in Counter(columns).items() if n > 1]
    if dup:
        raise UserError(
            f"{path.name} has the column {dup[0]!r} more than once; give each column its own name."
        )
    rows = [list(r) for r in zip(*data, strict=True)]
    return Table(path, "parquet", columns, rows, list(range(1, len(rows) + 1)), "row")


def _too_large(path: Path, size: int | None = None) -> UserError:
    shown = f" is {size / 2**30:.1f} GiB;" if size is not None else " is larger than"
    return UserError(
        f"{path.name}{shown} the largest data file the app reads is "
        f"{MAX_FILE_BYTES / 2**30:.0f} GiB. Train on a sample: split the file or keep "
        "a share of its rows in a new file."
    )


def check_data_file(path: Path) -> None:
    """Refuse what is not a regular, readable file of at most :data:`MAX_FILE_BYTES`.

    A device (``/dev/zero``), a pipe or a socket would be read until memory runs out,
    so they are refused by their kind before a byte is read.

    Raises:
        UserError: missing, a folder, not a regular file, or too large.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"dataset file not found: {path}. Check the path.") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}.") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(
            f"{path} is a folder; the dataset must be a file (CSV, TSV, JSONL, Parquet)."
        )
    if not stat.S_ISREG(info.st_mode):
        kind = (
            "a device"
            if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
            else "a pipe"
            if stat.S_ISFIFO(info.st_mode)
            else "a socket"
            if stat.S_ISSOCK(info.st_mode)
            else "not a regular file"
        )
        raise UserError(
            f"{path} is {kind}, not a data file; save the data to a CSV, TSV, JSONL or "
            "Parquet file and give its path."
        )
    if info.st_size > MAX_FILE_BYTES:
        raise _too_large(path, info.st_size)


def read_table(
    path: str | Path,
    format: str | None = None,
    encoding: str = "utf-8",
    *,
    format_field: str = "format",
) -> Table:
    """Read a CSV, TSV, JSON Lines, JSON array or Parquet file into a :class:`Table`.

    Args:
        path: the file; its suffix selects the format unless ``format`` is given.
        format: ``"csv"``, ``"tsv"``, ``"jsonl"`` (``"ndjson"``), ``"json"`` or ``"parquet"``.
        encoding: the text encoding of CSV/TSV/JSON files (a UTF-8 byte-order mark is
            skipped).
        format_field: how the user gives the format, for the sentence when the suffix
            does not tell it: a recipe key (``format``) or a flag (``--format``).

    Raises:
        UserError: the file is missing, not a regular file, larger than
            :data:`MAX_FILE_BYTES`, empty, has only a header (D3), is not in ``encoding``
            (D2), has ragged rows or broken quoting (D6) or a bad JSON line.
    """
    path = Path(path)
    fmt = _detect_format(path, format, format_field)
    if fmt != "parquet":
        check_encoding(encoding, path.name)
    check_data_file(path)
    if fmt == "parquet":
        return _read_parquet(path)
    try:
        with path.open("rb") as fh:
            # Bounded even when the size on record lies (files under /proc report 0).
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}.") from None
    if len(data) > MAX_FILE_BYTES:
        raise _too_large(path)
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


def _fields(n: int) -> str:
    return "1 field" if n == 1 else f"{n} fields"
