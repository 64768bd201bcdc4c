"""Text-classification datasets: reading the files of a spec, the bad-data checks, splits.

:func:`load_dataset` reads what a :class:`~slimpajama_gui.core.data.spec.DatasetSpec`
describes into a :class:`TextDataset` of ``train``, ``eval`` and optional ``test`` splits.
Every problem a user can fix is found before training starts, as a
:class:`~slimpajama_gui.core.errors.UserError` naming the file, column or line
(docs/reliability.md D1-D8). Reading (:mod:`.tables`) checks D1 missing columns, D2
encodings, D3 empty files and D6 CSV quoting; this module checks D3 no rows left after
filtering, D4 labels that are missing, fractional, negative, of mixed kinds or outside
the model's label set (:func:`validate_labels`), D7 a single class and D8 train/eval
duplicates (the last two as warnings). D5, truncation, is counted by
:func:`~slimpajama_gui.core.data.batching.encode`.

Example:
    >>> ds = load_dataset(DatasetSpec(train="demo"))
    >>> ds.label_names, len(ds.train) >= 400
    (['0', '1'], True)
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimpajama_gui.core.data.spec import DEMO, MAX_CLASSES, DatasetSpec, _resolve, demo_path
from slimpajama_gui.core.data.tables import Table, _numbers, _quote_list, brief, read_table
from slimpajama_gui.core.errors import UserError

__all__ = [
    "Split",
    "TextDataset",
    "label_counts",
    "load_dataset",
    "normalize_text",
    "validate_labels",
]

_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
#: Digits beyond which a number in a label cell is no class id (and Python refuses to
#: parse more than 4300 of them).
_MAX_LABEL_DIGITS = 18


def normalize_text(text: str) -> str:
    """The form used to spot duplicates: lower case, runs of whitespace made one space."""
    return " ".join(text.lower().split())


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
    label_column: str = "label"

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
            self.label_column,
        )


def _parse_label(cell: Any) -> tuple[str, Any]:
    """``("int", 3)``, ``("str", "pos")``, ``("missing", None)``, ``("fraction", 0.5)``, or
    ``("huge", "1234…")`` for a number too long to be a class id."""
    if cell is None:
        return "missing", None
    if isinstance(cell, bool):
        return "str", "true" if cell else "false"
    if isinstance(cell, int):
        return "int", cell
    if isinstance(cell, float):
        if cell != cell:
            return "missing", None
        if cell in (float("inf"), float("-inf")):
            return "huge", cell
        return ("int", int(cell)) if cell.is_integer() else ("fraction", cell)
    text = str(cell).strip()
    if not text:
        return "missing", None
    if _INT_RE.fullmatch(text):
        if len(text.lstrip("+-")) > _MAX_LABEL_DIGITS:
            return "huge", text
        return "int", int(text)
    if _FLOAT_RE.fullmatch(text):
        value = float(text)
        if value in (float("inf"), float("-inf")):
            return "huge", text
        return ("int", int(value)) if value.is_integer() else ("fraction", text)
    return "str", text


def _read_split(
    name: str, path: Path, spec: DatasetSpec, warnings: list[str], fields: dict[str, str]
) -> _Raw:
    def field(key: str) -> str:
        return fields.get(key, key)

    table = read_table(path, spec.format, spec.encoding, format_field=field("format"))
    ti = table.column_index(spec.text_column, field("text_column"))
    li = table.column_index(spec.label_column, field("label_column"), taken=(ti,))
    pi = None
    if spec.text_pair_column is not None:
        pi = table.column_index(spec.text_pair_column, field("text_pair_column"), taken=(ti, li))
    if ti == li:
        raise UserError(
            f"{field('text_column')} and {field('label_column')} both point at column "
            f"{table.columns[ti]!r} of "
            f"{path.name}; columns found: {_quote_list(table.columns)}."
        )
    texts: list[str] = []
    pairs: list[str] | None = [] if pi is not None else None
    labels: list[int | str] = []
    lines: list[int] = []
    empty: list[int] = []
    missing: list[int] = []
    fractions: dict[Any, list[int]] = {}
    huge: dict[Any, list[int]] = {}
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
        if kind == "huge":
            huge.setdefault(value, []).append(line)
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
    if huge:
        shown = ", ".join(f"{_plain(v)} ({table.where(ls)})" for v, ls in list(huge.items())[:5])
        raise UserError(
            f"column {label_col!r} of {path.name} holds numbers far too large to be class ids: "
            f"{shown}. Class ids run 0, 1, 2, …; fix {'that row' if len(huge) == 1 else 'those rows'}"
            " or check that label_column is the class column."
        )
    if fractions:
        shown = ", ".join(
            f"{_plain(v)} ({table.where(ls)})" for v, ls in list(fractions.items())[:5]
        )
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
    return _Raw(name, table, texts, pairs, labels, lines, label_col)


def _plain(value: Any) -> str:
    """A number as written in the file, cut to a readable length, without quotes."""
    shown = brief(value)
    return shown[1:-1] if isinstance(value, str) else shown


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

    def listed(found: list[Any], limit: int = 5) -> str:
        """``found`` with the rows each comes from, e.g. ``'neg' (train.csv line 4)``."""
        shown = ", ".join(f"{brief(v)} ({where(v)})" for v in found[:limit])
        return shown + (f" and {len(found) - limit} more" if len(found) > limit else "")

    if labels is None:
        _check_label_set({v: len(places) for v, places in values.items()}, listed, raws)

    if labels is not None:
        names = list(labels)
        if all(str(v) in names for v in values):
            mapping = {v: names.index(str(v)) for v in values}
        elif all(isinstance(v, int) for v in values):
            bad = sorted(v for v in values if not 0 <= v < len(names))
            if bad:
                raise UserError(
                    f"label ids {listed(bad)} are outside dataset.labels, which names "
                    f"{len(names)} classes (ids 0 to {len(names) - 1}: {_quote_list(names)}). "
                    "Add the missing labels to the list or fix those rows."
                )
            mapping = {v: v for v in values}
        else:
            bad = sorted((v for v in values if str(v) not in names), key=str)
            shown = listed(bad)
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
                f"the labels mix numbers and names: {listed(ints, 3)} and {listed(strs, 3)}"
                ". Use one kind throughout, or list every label in order in dataset.labels, "
                'e.g. labels: ["neg", "pos"].'
            )
        if strs:
            names = strs
            mapping = {v: i for i, v in enumerate(strs)}
        else:
            negative = [v for v in ints if v < 0]
            if negative:
                raise UserError(
                    f"negative labels {listed(negative)}: class ids must be 0, 1, 2, …. List the labels "
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


#: Unused ids always allowed: an eval file holding a few classes of a larger model, labels
#: numbered from 1. They cost a few rows of the classifier; _label_ids warns about them.
_FEW_UNUSED = 8


def _check_label_set(counts: dict[Any, int], listed: Any, raws: list[_Raw]) -> None:
    """Refuse a label set no classifier is meant to have (docs/reliability.md L1).

    ``counts`` is rows per raw label value. Integer labels are class ids, so one typo
    (``100000`` among 0/1) would give the model 100,001 classes and its evaluation a
    confusion matrix of 10^10 cells; it is refused here, naming the odd value's line,
    when the ids are huge (more than :data:`MAX_CLASSES` classes), sparse (more ids
    unused than used, and more than :data:`_FEW_UNUSED`) or one rare value lies past a
    gap (under 1% of the rows). Names
    are refused when there are more than :data:`MAX_CLASSES` of them or when most rows
    have a label of their own (a text column taken for the labels).

    Raises:
        UserError: naming the odd values with their lines and what to do.
    """
    total = sum(counts.values())
    ints = sorted(v for v in counts if isinstance(v, int))
    column = raws[0].label_column if raws else "label"
    files = ", ".join(dict.fromkeys(r.table.path.name for r in raws))
    check_column = (
        f"Check that label_column names the column of classes (it is {column!r}; columns found "
        f"in {raws[0].table.path.name}: {_quote_list(raws[0].table.columns)})."
        if raws
        else ""
    )
    if len(counts) > MAX_CLASSES:
        raise UserError(
            f"the labels in {files} have {len(counts):,} different values; a classifier here "
            f"has at most {MAX_CLASSES:,} classes. {check_column}"
        )
    if len(counts) >= 50 and 2 * len(counts) > total:
        raise UserError(
            f"the labels in {files} have {len(counts):,} different values among {total:,} rows, "
            f"so most classes would have a single row to learn from. {check_column}"
        )
    if not ints or len(ints) != len(counts) or ints[0] < 0:
        return  # names, mixed kinds and negative ids are explained by _label_ids
    classes = ints[-1] + 1
    unused = classes - len(ints)
    if unused == 0:
        return
    # The values past the widest gap between neighbouring ids are the odd ones.
    widest = max(range(1, len(ints)), key=lambda i: ints[i] - ints[i - 1], default=0)
    odd = ints[widest:] if widest else ints
    rare = [v for i, v in enumerate(ints[1:], 1) if v - ints[i - 1] > 1 and 100 * counts[v] < total]
    if classes > MAX_CLASSES:
        why = f" (at most {MAX_CLASSES:,} are supported)"
    elif unused > max(len(ints), _FEW_UNUSED):
        why = f", {unused:,} of them without a single row"
    elif rare:
        odd = rare
        rows = sum(counts[v] for v in rare)
        why = (
            f", and {'that value has' if len(rare) == 1 else 'those values have'} only "
            f"{rows} of the {total:,} rows"
        )
    else:
        return  # a few unused ids (e.g. labels numbered from 1): _label_ids warns
    rest = [v for v in ints if v not in odd]
    others = f" from the other labels ({_quote_list(rest)})" if rest else ""
    count = f"{classes:,}" if classes < 10**12 else f"about 10^{len(str(classes)) - 1}"
    advice = f"Fix {'that row' if len(odd) == 1 else 'those rows'}"
    if ints[-1] < 10**12:  # numbers that could be meant as codes (zip codes, ratings)
        mapping = json.dumps([str(v) for v in ints]) if len(ints) <= 20 else '["0", "1", …]'
        advice += (
            "; if the numbers are codes rather than ids, list them in dataset.labels to map "
            f"them to 0…{len(ints) - 1}, e.g. labels: {mapping}"
        )
    raise UserError(
        f"label{'s' if len(odd) > 1 else ''} {listed(odd)} {'lie' if len(odd) > 1 else 'lies'} "
        f"far{others}: as class ids they would give the model {count} classes{why}. {advice}."
    )


def load_dataset(
    spec: DatasetSpec,
    base_dir: str | Path | None = None,
    *,
    labels_from: str | None = None,
    fields: dict[str, str] | None = None,
) -> TextDataset:
    """Read, check and split the data described by ``spec``.

    Args:
        spec: the dataset settings.
        base_dir: folder that relative paths are read from (the recipe's folder).
        labels_from: who set ``spec.labels`` when the user did not (e.g. "the model's
            classifier"), so a label outside them is explained in those terms.
        fields: how the user sets a field where it is not a recipe key, e.g.
            ``{"text_column": "--text-column"}`` on the command line, so a sentence
            about a missing column or an unknown format gives advice that applies.

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

    fields = fields or {}
    whole = train = _read_split("train", train_path, spec, warnings, fields)
    if spec.labels is None:
        # The label checks (D4, L1) before the split: a label column that holds texts
        # would otherwise be reported as "too few rows" by the stratified split.
        _label_ids([whole], None, [], labels_from)
    sampled: list[int] | None = None  # rows of the train file that max_rows kept
    if spec.max_rows is not None and spec.max_rows < len(train.texts):
        sampled = _sample(len(train.texts), spec.max_rows, spec.seed)
        train = train.take(sampled, "train")
    held_out: set[int] = set()  # rows of the train file held out as eval
    if eval_path is not None:
        ev = _read_split("eval", eval_path, spec, warnings, fields)
    else:
        keep, held = _stratified_split(train, spec.eval_fraction, spec.seed)
        train, ev = train.take(keep, "train"), train.take(held, "eval")
        held_out = {sampled[i] if sampled is not None else i for i in held}
    test = _read_split("test", test_path, spec, warnings, fields) if test_path is not None else None
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
