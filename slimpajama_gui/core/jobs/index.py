"""The results index: every saved variant with its figures, the default A/B pair, the
Pareto front. Qt-free; Compare shows it, and the CLI can use it.

The index lists :class:`Variant` rows: each variant in the job history
(``JobStore.variants()``) with the figures of its :class:`VariantRecord` (its
``slimpajama.json``; the history row's copy of the same figures when the file cannot be
read), plus the source models the variants came from. A source model has figures only
if its job evaluated and benchmarked it before the first model-changing step (those
numbers are in the job's logged metrics).

Example:
    >>> data = load_variants(JobStore())                      # doctest: +SKIP
    >>> front = pareto_front([(v.p50_ms, v.accuracy) for v in data.variants if v.plotted])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.inspection import ModelInfo
from slimpajama_gui.core.storage.history import JobStore, VariantRow
from slimpajama_gui.core.storage.variant import VariantRecord, finite_number


@dataclass
class Variant:
    """One row of the results index (a saved variant, or a source model).

    Figures are ``None`` when they were never measured. Accuracy and macro-F1 are
    fractions (0..1); latencies in milliseconds; throughput in sentences per second;
    sizes in bytes.
    """

    path: Path
    name: str
    is_source: bool = False
    job_id: int | None = None
    job_name: str = ""
    step_index: int | None = None
    step_type: str = ""
    accuracy: float | None = None
    macro_f1: float | None = None
    size_bytes: int | None = None
    parameters: int | None = None
    nonzero_parameters: int | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    throughput: float | None = None
    confusion: list[list[int]] | None = None
    label_names: list[str] = field(default_factory=list)
    recipe: dict[str, Any] | None = None
    #: The folder the recipe's relative paths are read from, when the record says.
    recipe_dir: Path | None = None
    parent: Path | None = None
    source_model: Path | None = None
    created_at: str = ""
    note: str = ""  # why figures are missing (a damaged or deleted folder)
    #: For int8 variants: the CPU arithmetic its figures were measured with, e.g.
    #: "x86 with AVX512-VNNI (8-bit activations)"; accuracy can differ on another path.
    int8_arithmetic: str = ""

    #: The resolved folder, and those of the parent and the source model. Worked out
    #: once where the variant is built (a worker), since resolving touches the disk.
    key: str = field(default="", compare=False)
    parent_key: str = field(default="", compare=False)
    source_key: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        self.key = self.key or str(resolved(self.path))
        if self.parent is not None and not self.parent_key:
            self.parent_key = str(resolved(self.parent))
        if self.source_model is not None and not self.source_key:
            self.source_key = str(resolved(self.source_model))

    @property
    def plotted(self) -> bool:
        """Whether it has both figures of the Pareto chart (accuracy and p50 latency)."""
        return self.accuracy is not None and self.p50_ms is not None


def resolved(path: Path | str) -> Path:
    """``path`` made absolute with links resolved (as given when that fails)."""
    try:
        return Path(path).expanduser().resolve()
    except OSError:
        return Path(path)


def _int(value: Any) -> int | None:
    number = finite_number(value)
    return None if number is None else int(number)


@dataclass
class CompareData:
    """The index: its rows, and sentences about folders that could not be read."""

    variants: list[Variant]
    notes: list[str] = field(default_factory=list)


def variant_from_record(path: Path, record: VariantRecord) -> Variant:
    """The index row of the variant saved in ``path`` with ``record``."""
    ev, bench = record.evaluation, record.benchmark
    size = _int(bench.get("size_bytes"))
    if size is None and path.is_dir():
        from slimpajama_gui.core.runtime.bench import size_on_disk

        size = size_on_disk(path)
    confusion = ev.get("confusion")
    parameters = record.parameters if record.parameters is not None else bench.get("parameters")
    nonzero = record.nonzero_parameters
    if nonzero is None:
        nonzero = bench.get("nonzero_parameters")
    return Variant(
        int8_arithmetic=record.int8_arithmetic,
        path=path,
        name=f"{path.parent.name}/{path.name}",
        job_id=_int(record.job_id),
        step_index=_int(record.step_index),
        step_type=record.step_type,
        accuracy=record.accuracy,
        macro_f1=finite_number(ev.get("macro_f1")),
        size_bytes=size,
        parameters=_int(parameters),
        nonzero_parameters=_int(nonzero),
        p50_ms=finite_number(bench.get("latency_p50_ms")),
        p95_ms=finite_number(bench.get("latency_p95_ms")),
        throughput=finite_number(bench.get("throughput_per_s")),
        confusion=confusion if isinstance(confusion, list) else None,
        label_names=list(record.label_names),
        recipe=record.recipe if isinstance(record.recipe, dict) else None,
        recipe_dir=Path(record.recipe_dir) if record.recipe_dir else None,
        parent=Path(record.parent) if record.parent else None,
        source_model=Path(record.source_model) if record.source_model else None,
        created_at=str(record.created_at or ""),
    )


#: Keys a job logs when it measures its source model before changing it.
_SOURCE_KEYS = {
    "eval_accuracy": "accuracy",
    "eval_macro_f1": "macro_f1",
    "latency_p50_ms": "p50_ms",
    "latency_p95_ms": "p95_ms",
    "throughput_per_s": "throughput",
    "size_bytes": "size_bytes",
    "parameters": "parameters",
}


def _source_figures(store: JobStore, job_id: int, first_variant_step: int) -> dict[str, Any]:
    """Figures an evaluate/benchmark step measured before the job changed the model."""
    figures: dict[str, Any] = {}
    for m in store.metrics(job_id):
        if m.step_index >= first_variant_step or m.step_type not in ("evaluate", "benchmark"):
            continue
        attr = _SOURCE_KEYS.get(m.key)
        if attr is not None and finite_number(m.value) is not None:
            figures[attr] = m.value
    for attr in ("size_bytes", "parameters"):
        if attr in figures:
            figures[attr] = int(figures[attr])
    return figures


def _source_variant(path: Path, figures: dict[str, Any]) -> Variant:
    from slimpajama_gui.core.runtime.loading import open_model

    name, size, params, note = path.name, None, None, ""
    try:
        info = open_model(path).info  # headers only; names the packaged MiniLM properly
        name, size, params = info.name, info.size_bytes, info.parameters
    except UserError as exc:
        note = str(exc)
    variant = Variant(path=path, name=name, is_source=True, size_bytes=size, parameters=params)
    variant.note = note
    for attr, value in figures.items():
        setattr(variant, attr, value)
    return variant


def load_variants(store: JobStore | None) -> CompareData:
    """The variants in the history, then the sources they came from (reads files: run it
    on a worker). ``store`` defaults to the app's history, opened and closed here."""
    own = store is None
    store = store or JobStore()
    try:
        return _load_variants(store)
    finally:
        if own:
            store.close()


def _read_record(row: VariantRow) -> tuple[VariantRecord, str]:
    """The variant's record, or (its folder unreadable) one from the history row's figures."""
    try:
        return VariantRecord.read(row.path), ""
    except UserError as exc:
        return VariantRecord(metrics=dict(row.metrics)), str(exc).rstrip(".")


def _load_variants(store: JobStore) -> CompareData:
    notes: list[str] = []
    variants: list[Variant] = []
    seen: set[Path] = set()
    first_step: dict[int, int] = {}
    job_names: dict[int, str] = {}
    sources: dict[Path, int] = {}  # source folder → a job that started from it
    for row in store.variants():
        if row.kind != "model":
            continue
        path = Path(row.path)
        key = resolved(path)
        if key in seen:
            continue
        seen.add(key)
        record, problem = _read_record(row)
        variant = variant_from_record(path, record)
        if variant.job_id is None:
            variant.job_id = row.job_id
        if variant.step_index is None:
            variant.step_index = row.step_index
        if problem:
            variant.note = problem
            notes.append(f"{variant.name}: {problem}.")
        if row.job_id not in job_names:
            try:
                job_names[row.job_id] = store.get_job(row.job_id).name
            except (KeyError, LookupError, UserError):
                job_names[row.job_id] = ""
        variant.job_name = job_names[row.job_id]
        first_step[row.job_id] = min(first_step.get(row.job_id, 1 << 30), row.step_index)
        if variant.source_model is not None:
            sources.setdefault(resolved(variant.source_model), row.job_id)
        variants.append(variant)
    for source, job_id in sources.items():
        if source in seen:
            continue  # a variant of an earlier job, already listed with its own figures
        seen.add(source)
        figures: dict[str, Any] = {}
        # The newest job that measured this source wins.
        for v in variants:
            if v.source_model is not None and resolved(v.source_model) == source:
                found = _source_figures(store, v.job_id, first_step.get(v.job_id, 0))
                if found:
                    figures = found
                    break
        variant = _source_variant(source, figures)
        variant.job_id = job_id
        variant.job_name = job_names.get(job_id, "")
        if variant.note:
            notes.append(f"source model {source}: {variant.note}")
        variants.append(variant)
    return CompareData(variants, notes)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower x (latency), higher y (accuracy).

    A point is dominated when another is at least as good on both axes and better on
    one. Returned in order of increasing x.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best_y = -math.inf
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def default_pair(variants: Sequence[Variant]) -> tuple[int | None, int | None]:
    """(A, B): the newest variant as B; its parent, its source, or another row as A."""
    results = [i for i, v in enumerate(variants) if not v.is_source]
    if not results:
        return (0, None) if variants else (None, None)
    b = max(results, key=lambda i: (variants[i].created_at, -i))
    by_key = {v.key: i for i, v in enumerate(variants)}
    nb = variants[b]
    for candidate in (nb.parent_key, nb.source_key):
        a = by_key.get(candidate) if candidate else None
        if a is not None and a != b:
            return a, b
    others = [i for i in range(len(variants)) if i != b]
    return (others[0] if others else None), b


def playground_pair(infos: Sequence[ModelInfo]) -> tuple[Path | None, Path | None]:
    """The Playground's default (original, compressed) pair; reads variant records.

    B is the newest variant (by ``created_at``). A is, in order of preference, B's parent,
    the source model B came from, the first variant of B's job, any model that is not a
    variant, or any other model; each only if it has a classifier head and is listed.
    """
    usable = [i for i in infos if i.num_labels]
    if not usable:
        return None, None
    by_path = {Path(i.path).resolve(): Path(i.path) for i in usable}

    def listed(value: Any) -> Path | None:
        if not value:
            return None
        try:
            return by_path.get(Path(str(value)).expanduser().resolve())
        except OSError:
            return None

    def record(path: Path) -> VariantRecord:  # an empty one when it cannot be read
        return VariantRecord.read_or_none(path) or VariantRecord(created_at="")

    results = [(i, record(i.path)) for i in usable if i.source == "result"]
    if not results:
        a = usable[0].path
        b = next((i.path for i in usable if i.path != a), a)
        return Path(a), Path(b)
    latest, meta = max(results, key=lambda r: str(r[1].created_at or ""))
    b = Path(latest.path)
    same_job = sorted(
        (m.step_index or 0, Path(i.path))
        for i, m in results
        if m.job_id is not None and m.job_id == meta.job_id
    )
    candidates = [
        listed(meta.parent),
        listed(meta.source_model),
        next((p for _, p in same_job if p != b), None),
        next((Path(i.path) for i in usable if i.source != "result"), None),
        next((Path(i.path) for i in usable if Path(i.path) != b), None),
    ]
    a = next((c for c in candidates if c is not None and c != b), b)
    return a, b
