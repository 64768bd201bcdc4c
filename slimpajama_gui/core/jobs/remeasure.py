"""Benchmark (and evaluate) one model outside a job: Compare's Benchmark action.

:func:`measure_model` times a saved variant or a source model the way a job's benchmark
step does (:func:`~slimpajama_gui.core.runtime.bench.benchmark`, batch-1 latency on
pre-tokenized eval sentences) and, when the model has a trained classifier head and
the job's eval set is known, computes its accuracy on that eval set through the same
inference path as Compare's flips (:class:`~slimpajama_gui.core.runtime.predictor.ModelPredictor`).

:func:`save_measurement` keeps the figures. A folder the app wrote (it holds a
:class:`~slimpajama_gui.core.storage.variant.VariantRecord` and is in the job history)
gets them in its record and history row; any other folder (the packaged MiniLM, a
user's own model) is never written to: its figures go to a file in the app's data
folder (:func:`measurements_dir`), read back by the results index.

Example:
    >>> gen = measure_model(variant)                                # doctest: +SKIP
    >>> # a worker runs it; the generator returns a Measurement
    >>> save_measurement(variant, measurement, JobStore())          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.index import EvalFigures, Variant, bench_setup, eval_set_identity
from slimpajama_gui.core.paths import data_dir
from slimpajama_gui.core.storage.atomic import atomic_write_text
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.storage.safe_io import read_json
from slimpajama_gui.core.storage.variant import VariantRecord, finite_number, is_variant_folder

FORMAT = "slimpajama-measurement"


@dataclass
class Measurement:
    """What :func:`measure_model` measured.

    Attributes:
        path: the model folder.
        benchmark: :class:`~slimpajama_gui.core.runtime.bench.BenchResult` as a dict
            (latencies in ms, throughput in sentences/s, sizes in bytes, ``machine``).
        evaluation: the evaluation report on the eval set (accuracy and macro-F1 as
            fractions, ``n`` rows, ``confusion``) with ``eval_set`` and
            ``eval_set_label``; ``None`` when no accuracy was computed.
        has_head: whether the model has a trained classifier head.
        note: why there is no accuracy, for people ("" when there is one).
    """

    path: Path
    benchmark: dict[str, Any]
    evaluation: dict[str, Any] | None = None
    has_head: bool = True
    note: str = ""
    measured_at: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )


def measurements_dir() -> Path:
    """The app's folder for figures of models it must not write into."""
    folder = data_dir() / "measurements"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _measurement_file(path: Path | str) -> Path:
    key = str(Path(path).expanduser().resolve())
    return measurements_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"


@dataclass
class SourceMeasurement:
    """The figures Compare measured for a model folder the app did not write."""

    path: str
    benchmark: dict[str, Any]
    evals: dict[str, dict[str, Any]]
    has_head: bool
    note: str
    measured_at: str

    def apply(self, variant: Variant) -> None:
        """Put these figures on ``variant`` (its latency; an accuracy per eval set)."""
        b = self.benchmark
        if finite_number(b.get("latency_p50_ms")) is not None:
            variant.p50_ms = finite_number(b.get("latency_p50_ms"))
            variant.p95_ms = finite_number(b.get("latency_p95_ms"))
            variant.throughput = finite_number(b.get("throughput_per_s"))
            variant.bench_setup = bench_setup(b)
            variant.backend = str(b.get("backend") or "")
            variant.machine = str(b.get("machine") or "")
            variant.measured_by = f"Compare's Benchmark action ({self.measured_at})"
        for attr in ("size_bytes", "parameters", "nonzero_parameters"):
            value = finite_number(b.get(attr))
            if value is not None:
                setattr(variant, attr, int(value))
        variant.has_head = self.has_head
        if not self.has_head and self.note and not variant.note:
            variant.note = self.note
        for key, report in self.evals.items():
            accuracy = finite_number(report.get("accuracy"))
            if accuracy is None:
                continue
            n = finite_number(report.get("n"))
            variant.evals[key] = EvalFigures(
                accuracy,
                finite_number(report.get("macro_f1")),
                None if n is None else int(n),
                str(report.get("eval_set_label", "")),
            )
            if not variant.eval_set or variant.eval_set == key:
                variant.eval_set = key
                variant.accuracy = accuracy
                variant.macro_f1 = finite_number(report.get("macro_f1"))
                confusion = report.get("confusion")
                variant.confusion = confusion if isinstance(confusion, list) else None
                variant.label_names = [str(x) for x in report.get("label_names", [])]


def read_source_measurement(path: Path | str) -> SourceMeasurement | None:
    """What Compare measured for the folder ``path``; ``None`` when nothing (or the file
    cannot be read: the figures are then simply not shown)."""
    file = _measurement_file(path)
    if not file.is_file():
        return None
    try:
        data = read_json(file)
    except UserError:
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    bench = data.get("benchmark")
    evals = data.get("evals")
    return SourceMeasurement(
        path=str(data.get("path", "")),
        benchmark=bench if isinstance(bench, dict) else {},
        evals={k: v for k, v in evals.items() if isinstance(v, dict)}
        if isinstance(evals, dict)
        else {},
        has_head=bool(data.get("has_head", True)),
        note=str(data.get("note", "")),
        measured_at=str(data.get("measured_at", "")),
    )


def app_written(variant: Variant, store: JobStore) -> bool:
    """Whether the app wrote ``variant``'s folder: it holds a variant record and the job
    history lists it. Only such folders are written to or deleted."""
    if variant.is_source or not is_variant_folder(variant.path):
        return False
    key = variant.key
    return any(
        str(Path(row.path).expanduser().resolve()) == key
        for row in store.variants()
        if row.kind == "model"
    )


def measure_model(variant: Variant, config: Any = None, control: Any = None) -> Iterator[tuple]:
    """Benchmark ``variant`` and, if it can classify, evaluate it (run it on a worker).

    Latency is timed on the eval sentences of the job it belongs to (the demo dev
    split when no recipe says), with ``config`` (a
    :class:`~slimpajama_gui.core.runtime.bench.BenchConfig`; by default the settings of
    a recipe's benchmark step: 2 threads, 200 sentences, about 3 s of timed passes).
    Accuracy is computed only when the model has a trained classifier head and the
    job's eval set is known; a bare encoder gets latency and size only.

    Yields ``("status", text)`` and ``("progress", side, done, total)``. Returns a
    :class:`Measurement`.

    Raises:
        UserError: the model or the data cannot be read.
    """
    from slimpajama_gui.core import data as data_mod
    from slimpajama_gui.core.jobs.flips import _predict
    from slimpajama_gui.core.runtime.bench import BenchConfig, benchmark, runner_for
    from slimpajama_gui.core.runtime.evaluate import classification_report
    from slimpajama_gui.core.runtime.inputs import model_inputs
    from slimpajama_gui.core.runtime.loading import open_model

    dataset_section = variant.recipe.get("dataset") if variant.recipe else None
    spec = data_mod.DatasetSpec.from_dict(
        dataset_section if isinstance(dataset_section, dict) else {"train": data_mod.DEMO}
    )
    yield ("status", f"Reading the eval data for {variant.name}…")
    dataset = data_mod.load_dataset(spec, base_dir=variant.recipe_dir or Path.cwd())
    yield ("status", f"Loading {variant.name}…")
    handle = open_model(variant.path)
    has_head = handle.info.num_labels is not None
    evaluation: dict[str, Any] | None = None
    note = ""
    if has_head and isinstance(dataset_section, dict):
        names = list(dataset.label_names)
        split = dataset.eval
        preds = yield from _predict("the model", variant, dataset, split, names, spec.max_length)
        report = classification_report(preds, names)
        key, label = eval_set_identity(dataset_section, variant.recipe_dir, report.n)
        evaluation = dict(report.to_dict(), eval_set=key, eval_set_label=label, label_names=names)
    elif not has_head:
        note = (
            f"{variant.name} has no trained classifier head (an encoder only): its latency "
            "and size are measured, it has no accuracy."
        )
    else:
        note = "no job records an eval set for it, so only latency and size are measured."
    yield ("status", f"Timing {variant.name} at batch 1…")
    model = handle.load_model()
    tokenizer = handle.load_tokenizer()
    length = model_inputs(model, tokenizer, variant.name).fit_length(spec.max_length)
    config = replace(config, max_length=length) if config is not None else None
    config = config or BenchConfig(repeats=None, max_length=length)
    # The variant's own runtime with the thread count asked for (an ONNX variant's
    # session is made with config.threads), as every benchmark path does.
    runner = runner_for(model, threads=config.threads)
    source = (
        f"{spec.eval} (column {spec.text_column}, the eval set of its job)"
        if spec.eval and isinstance(dataset_section, dict)
        else f"the eval rows of {spec.train} (column {spec.text_column})"
    )
    result = benchmark(
        runner,
        tokenizer,
        dataset.eval.texts,
        config,
        folder=handle.info.path,
        control=control,
        source=source,
    )
    if control is not None and control.should_stop:
        raise UserError(f"Benchmarking {variant.name} was stopped; nothing was saved.")
    if not has_head or result.parameters is None:
        # A bare encoder was given a new head to run: count what the folder holds.
        result.parameters, result.nonzero_parameters = handle.info.parameters, None
    return Measurement(
        path=Path(handle.info.path),
        benchmark=result.to_dict(),
        evaluation=evaluation,
        has_head=has_head,
        note=note,
    )


def save_measurement(variant: Variant, measurement: Measurement, store: JobStore) -> str:
    """Keep ``measurement``; returns where, as a sentence.

    A folder the app wrote (:func:`app_written`) gets the figures in its record
    (``metrics.benchmark``; ``metrics.eval`` only when it had no evaluation, so a
    job's own evaluation is never replaced) and its history row; the benchmark it
    replaces is kept under ``metrics.earlier_benchmarks``. Any other folder is left
    untouched: the figures go to :func:`measurements_dir`.

    Raises:
        UserError: the record or the measurements file cannot be written.
    """
    if app_written(variant, store):
        record = VariantRecord.read(variant.path)
        earlier = record.metrics.get("benchmark")
        if isinstance(earlier, dict):
            kept = record.metrics.get("earlier_benchmarks")
            kept = kept if isinstance(kept, list) else []
            record.metrics["earlier_benchmarks"] = [*kept, earlier]
        record.metrics["benchmark"] = measurement.benchmark
        if measurement.evaluation is not None and not record.evaluation:
            record.metrics["eval"] = measurement.evaluation
        record.write(variant.path)
        for row in store.variants():
            if row.kind == "model" and str(Path(row.path).expanduser().resolve()) == variant.key:
                store.update_variant_metrics(row.id, record.metrics)
        return f"saved in {variant.path / 'slimpajama.json'}"
    file = _measurement_file(measurement.path)
    earlier = read_source_measurement(measurement.path)
    evals = dict(earlier.evals) if earlier is not None else {}
    if measurement.evaluation is not None:
        evals[measurement.evaluation["eval_set"]] = measurement.evaluation
    data = {
        "format": FORMAT,
        "path": str(measurement.path),
        "benchmark": measurement.benchmark,
        "evals": evals,
        "has_head": measurement.has_head,
        "note": measurement.note,
        "measured_at": measurement.measured_at,
    }
    atomic_write_text(file, json.dumps(data, indent=2, allow_nan=True) + "\n")
    return f"kept in the app's data folder ({file}); {measurement.path} is not modified"


def delete_variant(variant: Variant, store: JobStore) -> None:
    """Delete a saved variant's folder and its history row (see
    :func:`~slimpajama_gui.core.jobs.cleanup.delete_result`, the one way results go).

    Raises:
        UserError: the folder is not one the app wrote (a source model, a folder
            without a variant record, or one the history does not list), its job is
            still running, or it cannot be removed.
    """
    from slimpajama_gui.core.jobs.cleanup import delete_result

    if not app_written(variant, store):
        raise UserError(
            f"{variant.path} is not a result this app saved (no slimpajama.json, or not in "
            "the job history); it is left untouched."
        )
    delete_result(variant.path, store)
