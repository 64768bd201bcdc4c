"""Compare's Benchmark action without Qt: measuring a model, and where its figures go."""

from __future__ import annotations

import json
import shutil

import pytest

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.index import Variant, eval_set_identity
from slimpajama_gui.core.jobs.remeasure import (
    app_written,
    delete_variant,
    measure_model,
    read_source_measurement,
    save_measurement,
)
from slimpajama_gui.core.runtime.bench import BenchConfig
from slimpajama_gui.core.storage.history import JobStore
from tests.figures import measured

DATASET = {"train": "demo", "labels": ["negative", "positive"], "max_length": 64}
EVAL = {"accuracy": 0.7, "macro_f1": 0.69, "n": 100}
QUICK = BenchConfig(threads=1, sentences=4, warmup=1, repeats=1, throughput_batch=2)


def _run(gen):
    """Drive a worker generator to its return value, collecting what it yielded."""
    seen = []
    while True:
        try:
            seen.append(next(gen))
        except StopIteration as done:
            return done.value, seen


def _files(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_a_source_model_is_measured_and_its_folder_left_alone(tmp_path, tiny_minilm):
    source = tmp_path / "mine"
    shutil.copytree(tiny_minilm, source)
    before = _files(source)
    variant = Variant(source, "mine", is_source=True, recipe={"dataset": DATASET})
    measurement, seen = _run(measure_model(variant, QUICK))
    assert ("status", "Timing mine at batch 1…") in seen
    b = measurement.benchmark
    assert measured(b["latency_p50_ms"]) and b["threads"] == 1 and b["machine"]
    key, label = eval_set_identity(DATASET, None, 100)
    assert measurement.evaluation["eval_set"] == key
    assert measurement.evaluation["n"] == 100 and 0 <= measurement.evaluation["accuracy"] <= 1

    with JobStore(tmp_path / "history.sqlite3") as store:
        assert not app_written(variant, store)
        where = save_measurement(variant, measurement, store)
        with pytest.raises(UserError, match="not a result this app saved"):
            delete_variant(variant, store)
    assert "not modified" in where and _files(source) == before
    stored = read_source_measurement(source)
    shown = Variant(source, "mine", is_source=True)
    stored.apply(shown)
    assert shown.p50_ms == b["latency_p50_ms"] and shown.accuracy_on(key).label == label
    assert shown.accuracy == measurement.evaluation["accuracy"]


def test_only_a_folder_the_history_lists_is_written_or_deleted(tmp_path, tiny_minilm):
    folder = tmp_path / "out" / "01-finetune"
    shutil.copytree(tiny_minilm, folder)
    record = {"format": "slimpajama-result", "version": 2, "metrics": {"eval": EVAL}}
    (folder / "slimpajama.json").write_text(json.dumps(record))
    variant = Variant(folder, "01-finetune", recipe={"dataset": DATASET})
    with JobStore(tmp_path / "history.sqlite3") as store:
        assert not app_written(variant, store)  # a record alone is not enough
        job = store.create_job("j", "name: j\n", str(folder.parent))
        store.add_variant(job, 0, "model", folder, record["metrics"])
        assert app_written(variant, store)
        measurement, _ = _run(measure_model(variant, QUICK))
        save_measurement(variant, measurement, store)
        saved = json.loads((folder / "slimpajama.json").read_text())
        # The job's own evaluation stays; the new latency is in the record and the row.
        assert saved["metrics"]["eval"] == EVAL
        assert saved["metrics"]["benchmark"]["machine"]
        [row] = store.variants()
        assert row.metrics["benchmark"]["latency_p50_ms"] == measurement.benchmark["latency_p50_ms"]
        delete_variant(variant, store)
        assert not folder.exists() and store.variants() == []
        assert store.get_job(job).name == "j"  # the job's history stays
