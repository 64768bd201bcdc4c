"""The results index: every saved variant with its figures, the default A/B pair, the
Pareto front. Qt-free; Compare shows it, and the CLI can use it.

The index lists :class:`Variant` rows: each variant in the job history
(``JobStore.variants()``) with the figures of its :class:`VariantRecord` (its
``slimpajama.json``; the history row's copy of the same figures when the file cannot be
read), plus the source models the variants came from. A source model has figures only
if its job evaluated and benchmarked it before the first model-changing step (those
numbers are in the job's logged metrics) or if Compare's Benchmark action measured it
(:mod:`~slimpajama_gui.core.jobs.remeasure` keeps those in the app's data folder, never
in the user's model folder).

Accuracies are only comparable on the same eval rows: every accuracy carries the
identity of its eval set (:func:`eval_set_identity`: where the rows come from and how
many), and :func:`comparable_front` ranks only points measured on one eval set, with
latency measured the same way (threads, batch 1, machine; any backend) and enough eval rows.

Example:
    >>> data = load_variants(JobStore())                      # doctest: +SKIP
    >>> front = pareto_front([(v.p50_ms, v.accuracy) for v in data.variants if v.plotted])
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.inspection import ModelInfo
from slimpajama_gui.core.model.result_names import distinct_result_names
from slimpajama_gui.core.storage.history import JobStore, VariantRow
from slimpajama_gui.core.storage.variant import VariantRecord, finite_number

#: Fewer eval rows than this and an accuracy says too little to rank a model by it.
MIN_PARETO_ROWS = 30


@dataclass
class EvalFigures:
    """An accuracy and what it was measured on.

    Attributes:
        accuracy: fraction correct (0..1).
        macro_f1: macro-averaged F1 (0..1), ``None`` when not recorded.
        rows: eval rows it was computed on, ``None`` when not recorded.
        label: the eval set as people read it, e.g. ``"dev.tsv (872 rows)"``.
    """

    accuracy: float
    macro_f1: float | None
    rows: int | None
    label: str


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
    #: Identity of the eval set ``accuracy`` was measured on (:func:`eval_set_identity`);
    #: empty when unknown. ``evals`` holds every accuracy of it, by eval set.
    eval_set: str = ""
    evals: dict[str, EvalFigures] = field(default_factory=dict)
    #: How its latency was measured: threads, batch 1, machine (empty: never). Latencies
    #: are compared when these are equal, whatever runs the model (``backend``).
    bench_setup: str = ""
    #: What ran the model when its latency was measured (pytorch, onnxruntime; "" unknown).
    backend: str = ""
    #: The CPU its latency was measured on ("" when not recorded).
    machine: str = ""
    #: Whether it has a trained classifier head (``None``: not known). A model without
    #: one (a bare encoder) has latency and size, never an accuracy.
    has_head: bool | None = None
    #: Where the latency of a source model came from (a job's step, or Compare).
    measured_by: str = ""

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

    @property
    def eval_rows(self) -> int | None:
        """Rows of the eval set its ``accuracy`` was measured on (``None``: not recorded)."""
        figures = self.evals.get(self.eval_set)
        return figures.rows if figures is not None else None

    def accuracy_on(self, eval_set: str) -> EvalFigures | None:
        """Its accuracy on ``eval_set`` (an :func:`eval_set_identity` key), if measured."""
        return self.evals.get(eval_set) if eval_set else None

    def measured_on(self) -> str:
        """The eval sets it has an accuracy on, as people read them ("" when none)."""
        return "; ".join(f.label for f in self.evals.values())


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


def _absolute(value: str, base: Path | None) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return resolved(path)


def eval_set_identity(
    dataset: Any, recipe_dir: Path | str | None, rows: int | None
) -> tuple[str, str]:
    """(key, label) of the eval rows a recipe's ``dataset:`` section evaluates on.

    The key is the eval file (absolute), the demo's dev split, or the train file with
    the held-out share and seed, followed by the row count: two accuracies are on the
    same rows only when their keys are equal. The label says the same for people, e.g.
    ``"dev.tsv (872 rows)"``. ``("", ...)`` when the section is missing or unreadable.
    """
    from slimpajama_gui.core.data.spec import DEMO, DatasetSpec

    try:
        spec = DatasetSpec.from_dict(dataset) if isinstance(dataset, dict) else None
    except (UserError, TypeError, ValueError):
        spec = None
    if spec is None:
        return "", "an eval set that was not recorded"
    base = Path(recipe_dir) if recipe_dir else None
    demo = spec.train.strip().lower() == DEMO
    held_out = spec.eval if spec.eval is not None else (DEMO if demo else None)
    if held_out is not None and held_out.strip().lower() == DEMO:
        where, label = "demo:dev", "the demo set's dev split"
    elif held_out is not None:
        path = _absolute(held_out, base)
        where, label = f"file:{path}", path.name
    else:
        path = _absolute(spec.train, base)
        where = f"held-out:{path}:{spec.eval_fraction}:{spec.seed}"
        label = f"{spec.eval_fraction:.0%} held out of {path.name}"
    rows_text = f"{rows:,} rows" if rows is not None else "rows not recorded"
    return f"{where}#{'?' if rows is None else rows}", f"{label} ({rows_text})"


def bench_setup(figures: dict[str, Any]) -> str:
    """How a latency was measured (threads, batch 1, machine), as one string.

    Latencies are compared only between equal strings. The backend is not part of it:
    every backend is timed by the same harness (``runtime.bench.benchmark``: the same
    sentences, warm-up and threads), and a user compares an ONNX Runtime int8 variant with
    its PyTorch source precisely to see what the change of runtime gained. Empty when
    nothing was timed.
    """
    if finite_number(figures.get("latency_p50_ms")) is None:
        return ""
    threads = _int(figures.get("threads"))
    machine = str(figures.get("machine") or "machine not recorded")
    threads_text = (
        "threads not recorded"
        if threads is None
        else f"{threads} thread{'s' if threads != 1 else ''}"
    )
    return f"{threads_text} · batch 1 · {machine}"


def timed_with(variant: Variant) -> str:
    """How a variant's latency was taken, for a tooltip: backend, threads, batch 1, machine."""
    if not variant.bench_setup:
        return ""
    return " · ".join(x for x in (variant.backend, variant.bench_setup) if x)


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
    variant = Variant(
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
        bench_setup=bench_setup(bench),
        backend=str(bench.get("backend") or ""),
        machine=str(bench.get("machine") or ""),
        has_head=True,  # a job only saves classifiers
    )
    if variant.accuracy is not None:
        dataset = variant.recipe.get("dataset") if variant.recipe else None
        training = record.metrics.get("training")
        n = _int(ev.get("n")) if ev.get("accuracy") is not None else None
        if n is None and isinstance(training, dict):
            n = _int(training.get("eval_n"))
        key, label = eval_set_identity(dataset, variant.recipe_dir, n)
        variant.eval_set = key
        variant.evals[key] = EvalFigures(variant.accuracy, variant.macro_f1, n, label)
    return variant


#: Keys a job logs when it measures its source model before changing it.
_SOURCE_KEYS = {
    "eval_accuracy": "accuracy",
    "eval_macro_f1": "macro_f1",
    "eval_n": "eval_rows",
    "latency_p50_ms": "p50_ms",
    "latency_p95_ms": "p95_ms",
    "throughput_per_s": "throughput",
    "size_bytes": "size_bytes",
    "parameters": "parameters",
}


def _source_figures(
    store: JobStore, job_id: int, first_variant_step: int, recipe: dict[str, Any] | None
) -> dict[str, Any]:
    """Figures an evaluate/benchmark step measured before the job changed the model.

    The benchmark step's settings (threads, backend) come from the job's recipe, which
    the history's metrics do not repeat; a source model always runs in PyTorch.
    """
    figures: dict[str, Any] = {}
    steps = recipe.get("steps") if isinstance(recipe, dict) else None
    for m in store.metrics(job_id):
        if m.step_index >= first_variant_step or m.step_type not in ("evaluate", "benchmark"):
            continue
        attr = _SOURCE_KEYS.get(m.key)
        if attr is not None and finite_number(m.value) is not None:
            figures[attr] = m.value
        if m.step_type == "benchmark" and isinstance(steps, list) and m.step_index < len(steps):
            step = steps[m.step_index]
            if isinstance(step, dict) and step.get("type") == "benchmark":
                backend = step.get("backend", "auto")
                figures["_backend"] = "pytorch" if backend in (None, "auto") else backend
                figures["_threads"] = step.get("threads", 2)
    for attr in ("size_bytes", "parameters", "eval_rows"):
        if attr in figures:
            figures[attr] = int(figures[attr])
    return figures


def _source_variant(
    path: Path, figures: dict[str, Any], recipe: dict[str, Any] | None, recipe_dir: Path | None
) -> Variant:
    from slimpajama_gui.core.jobs.remeasure import read_source_measurement
    from slimpajama_gui.core.runtime.loading import open_model

    name, size, params, note, head = path.name, None, None, "", None
    try:
        info = open_model(path).info  # headers only; names the packaged MiniLM properly
        name, size, params = info.name, info.size_bytes, info.parameters
        head = info.num_labels is not None
    except UserError as exc:
        note = str(exc)
    variant = Variant(path=path, name=name, is_source=True, size_bytes=size, parameters=params)
    variant.note = note
    variant.has_head = head
    rows = figures.pop("eval_rows", None)
    backend, threads = figures.pop("_backend", None), figures.pop("_threads", None)
    machine = figures.pop("_machine", "")
    for attr, value in figures.items():
        setattr(variant, attr, value)
    if variant.p50_ms is not None:
        variant.machine = machine
        variant.backend = str(backend or "")
        variant.bench_setup = bench_setup(
            {
                "latency_p50_ms": variant.p50_ms,
                "backend": backend,
                "threads": threads,
                "machine": machine,
            }
        )
        variant.measured_by = f"the benchmark step of job #{variant.job_id or '?'}"
    if variant.accuracy is not None:
        dataset = recipe.get("dataset") if recipe else None
        key, label = eval_set_identity(dataset, recipe_dir, rows)
        variant.eval_set = key
        variant.evals[key] = EvalFigures(variant.accuracy, variant.macro_f1, rows, label)
    # What Compare's Benchmark action measured: newer, and on this machine.
    stored = read_source_measurement(path)
    if stored is not None:
        stored.apply(variant)
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
        recipe, recipe_dir = None, None
        # The newest job that measured this source wins.
        for v in variants:
            if v.source_model is not None and resolved(v.source_model) == source:
                if recipe is None:
                    recipe, recipe_dir = v.recipe, v.recipe_dir
                found = _source_figures(store, v.job_id, first_step.get(v.job_id, 0), v.recipe)
                if "p50_ms" in found:
                    # The job timed its source in the same process as its variants: on the
                    # machine their records name.
                    found["_machine"] = next(
                        (o.machine for o in variants if o.job_id == v.job_id and o.machine), ""
                    )
                if found:
                    figures, recipe, recipe_dir = found, v.recipe, v.recipe_dir
                    break
        figures_job = next(
            (v.job_id for v in variants if v.recipe is recipe and recipe is not None), job_id
        )
        variant = _source_variant(source, figures, recipe, recipe_dir)
        # The job whose eval set the source is measured on (its Benchmark action uses it).
        variant.recipe, variant.recipe_dir = recipe, recipe_dir
        variant.job_id = figures_job
        variant.job_name = job_names.get(variant.job_id, "")
        if variant.note:
            notes.append(f"source model {source}: {variant.note}")
        variants.append(variant)
    _join_unrecorded_rows(variants)
    _name_results(variants)
    return CompareData(variants, notes)


def _name_results(variants: list[Variant]) -> None:
    """Results named as the Models list and the Playground name them: ``"job › 02-distill"``
    (its job's name, else its output folder), two runs of one job told apart by their
    output folder (:func:`~slimpajama_gui.core.model.result_names.distinct_result_names`)."""
    results = [v for v in variants if not v.is_source]
    named = [(f"{v.job_name or v.path.parent.name} › {v.path.name}", v.path) for v in results]
    for v, name in zip(results, distinct_result_names(named), strict=True):
        v.name = name


def _join_unrecorded_rows(variants: list[Variant]) -> None:
    """Accuracies a training step measured on its job's eval split without recording the
    row count (records written before steps saved it as ``eval_n``) are put with that
    job's recorded count for the same split: one job's dataset section gives every step
    the same eval rows, so they share an axis. Another job's count is not assumed (its
    file may have changed between the jobs)."""
    known: dict[tuple[int | None, str], tuple[str, EvalFigures]] = {}
    for v in variants:
        for key, figures in v.evals.items():
            where, _, rows = key.rpartition("#")
            if rows != "?":
                known.setdefault((v.job_id, where), (key, figures))
    for v in variants:
        for key in [k for k in v.evals if k.endswith("#?")]:
            match = known.get((v.job_id, key[:-2]))
            if match is None:
                continue
            new_key, figures = match
            old = v.evals.pop(key)
            v.evals[new_key] = dataclasses.replace(old, rows=figures.rows, label=figures.label)
            if v.eval_set == key:
                v.eval_set = new_key


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the Pareto-optimal points, minimising x (latency), maximising y (accuracy).

    Standard Pareto dominance: point p dominates q when p is no worse than q on both
    objectives (``p.x <= q.x`` and ``p.y >= q.y``) and strictly better on at least one.
    The front is every point no other point dominates; equal points do not dominate
    each other, so both stay. Returned in order of increasing x.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best_y = -math.inf
    for i in order:
        same_as_last = bool(front) and tuple(points[i]) == tuple(points[front[-1]])
        if points[i][1] > best_y or same_as_last:
            front.append(i)
            best_y = max(best_y, points[i][1])
    return front


@dataclass
class Ranking:
    """What the Pareto chart shows for one eval set (rows are positions in the list).

    Attributes:
        plotted: rows with an accuracy on that eval set and a measured p50 latency.
        front: the Pareto-optimal rows: each is on the front of its own group of
            comparable points (same eval set and :func:`bench_setup`).
        groups: bench setup → the rows plotted with it.
        unranked: row → why it is plotted but never marked Pareto-optimal.
    """

    plotted: list[int] = field(default_factory=list)
    front: list[int] = field(default_factory=list)
    groups: dict[str, list[int]] = field(default_factory=dict)
    unranked: dict[int, str] = field(default_factory=dict)


def comparable_front(
    variants: Sequence[Variant], eval_set: str, min_rows: int = MIN_PARETO_ROWS
) -> Ranking:
    """The points measured on ``eval_set``, and the Pareto-optimal ones among comparable points.

    Two points are comparable when their accuracies are on the same eval set (the same
    key of :func:`eval_set_identity`) and their latencies were measured the same way
    (equal :func:`bench_setup`: threads, batch 1, machine). A point with fewer
    than ``min_rows`` eval rows, or an unrecorded count, is drawn but never ranked: it
    neither is Pareto-optimal nor dominates another. The front of each group is
    :func:`pareto_front`'s.
    """
    ranking = Ranking()
    for i, v in enumerate(variants):
        figures = v.accuracy_on(eval_set)
        if figures is None or v.p50_ms is None:
            continue
        ranking.plotted.append(i)
        ranking.groups.setdefault(v.bench_setup, []).append(i)
        if figures.rows is None:
            ranking.unranked[i] = "not ranked: its number of eval rows was not recorded"
        elif figures.rows < min_rows:
            ranking.unranked[i] = (
                f"not ranked: {figures.rows} eval rows are too few for a meaningful accuracy "
                f"(at least {min_rows})"
            )
    for rows in ranking.groups.values():
        ranked = [i for i in rows if i not in ranking.unranked]
        points = [(variants[i].p50_ms, variants[i].accuracy_on(eval_set).accuracy) for i in ranked]
        ranking.front += [ranked[k] for k in pareto_front(points)]  # type: ignore[misc]
    ranking.front.sort(key=lambda i: (variants[i].p50_ms, i))
    return ranking


def eval_sets(variants: Sequence[Variant]) -> dict[str, str]:
    """Every eval set some accuracy was measured on: key → label, in first-seen order."""
    found: dict[str, str] = {}
    for v in variants:
        for key, figures in v.evals.items():
            if key:
                found.setdefault(key, figures.label)
    return found


def baseline_of(variants: Sequence[Variant], row: int) -> int | None:
    """The row of the source model ``variants[row]`` was made from (itself for a source)."""
    v = variants[row]
    if v.is_source:
        return row
    for i, other in enumerate(variants):
        if other.is_source and v.source_key and other.key == v.source_key:
            return i
    return None


def can_classify(variant: Variant) -> bool:
    """Whether ``variant`` can be evaluated: False only for a model known to have no
    classifier head (a bare encoder such as the packaged MiniLM); unknown counts as yes."""
    return variant.has_head is not False


def default_pair(variants: Sequence[Variant]) -> tuple[int | None, int | None]:
    """(A, B): the pair Compare opens on; never a model that cannot classify.

    B is the newest variant. A is, in order of preference, B's parent, B's source, the
    first other variant of B's job, or any other row, each only if it can classify
    (:func:`can_classify`): a job started from a head-less encoder has that encoder as
    the parent of its first variant, and comparing predictions with it fails. A is None
    when no other row can classify; with no variant at all, A is the first source that
    can and B is None.
    """
    usable = [i for i, v in enumerate(variants) if can_classify(v)]
    results = [i for i in usable if not variants[i].is_source]
    if not results:
        return (usable[0] if usable else None), None
    b = max(results, key=lambda i: (variants[i].created_at, -i))
    by_key = {variants[i].key: i for i in usable}
    nb = variants[b]
    same_job = sorted(
        (variants[i].step_index if variants[i].step_index is not None else 1 << 30, i)
        for i in results
        if i != b and nb.job_id is not None and variants[i].job_id == nb.job_id
    )
    candidates = [
        by_key.get(nb.parent_key) if nb.parent_key else None,
        by_key.get(nb.source_key) if nb.source_key else None,
        same_job[0][1] if same_job else None,
        *usable,
    ]
    a = next((i for i in candidates if i is not None and i != b), None)
    return a, b


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
