"""Compare as a user drives it: table and Pareto chart of variants, click, pick two, see flips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QItemSelectionModel, QPoint, QPointF, Qt

from slimpajama_gui.core import data as data_mod
from slimpajama_gui.core.jobs.flips import EVAL_BATCH
from slimpajama_gui.core.model.encoder import EncoderClassifier
from slimpajama_gui.core.runtime.evaluate import predict, prediction_diff
from slimpajama_gui.core.runtime.loading import open_model
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.qt.compare import CompareView
from slimpajama_gui.qt.compare.pareto_plot import describe

TIMEOUT = 60_000
LABELS = ["negative", "positive"]
DATASET = {"train": "demo", "labels": LABELS, "max_length": 64}


def _dev():
    return data_mod.load_dataset(data_mod.DatasetSpec.from_dict(DATASET)).eval


def _dev_predictions(folder: Path):
    """What the Compare worker must reproduce: the model on the demo dev split."""
    handle = open_model(folder)
    model, tokenizer = handle.load_model(), handle.load_tokenizer()
    split = _dev()
    enc = data_mod.encode_split(split, tokenizer, DATASET["max_length"])
    batches = data_mod.batches(
        enc, split.labels, EVAL_BATCH, False, 0, tokenizer.pad_token_id or 0, sort_by_length=True
    )
    return predict(model, batches), split.texts


def _save_model(source: Path, folder: Path, seed: int) -> None:
    """A tiny classifier whose random head splits the dev sentences about in half.

    A random encoder gives nearly the same [CLS] vector for every text; centring the
    bias on the median margin makes different seeds disagree on many rows, not all.
    """
    import torch

    model = EncoderClassifier.from_pretrained(source, id2label=dict(enumerate(LABELS)))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=g))
        model.classifier.bias.zero_()
    model.save_pretrained(folder, tokenizer_from=source)
    preds, _texts = _dev_predictions(folder)
    margin = preds.logits[:, 1] - preds.logits[:, 0]
    with torch.no_grad():
        model.classifier.bias[1] = -float(np.median(margin))
    model.save_pretrained(folder, tokenizer_from=source)


def _result_json(
    folder: Path, *, job: int, step: int, step_type: str, created: str, parent: Path,
    source: Path, output: Path, accuracy: float, p50: float, size: int,
) -> dict:  # fmt: skip
    """A version-1 VariantRecord as the pipeline wrote it, with evaluate and benchmark figures."""
    n = 100
    right = round(accuracy * n)
    confusion = [
        [right // 2, n // 2 - right // 2],
        [n // 2 - (right - right // 2), right - right // 2],
    ]
    return {
        "format": "slimpajama-result",
        "version": 1,
        "app_version": "test",
        "created_at": created,
        "job_id": job,
        "step_index": step,
        "step": {"type": step_type, "version": 1},
        "parent": str(parent),
        "source_model": str(source),
        "label_names": LABELS,
        "weights_format": "fp32",
        "parameters": 1_000_000 + step,
        "nonzero_parameters": 900_000,
        "recipe": {
            "version": 1,
            "name": f"job{job}",
            "model": str(source),
            "dataset": DATASET,
            "output": str(output),
            "device": "cpu",
            "threads": None,
            "seed": 0,
            "save_each_step": True,
            # As job 1 ran: evaluate and benchmark the source, then change it.
            "steps": [
                {"type": "evaluate", "version": 1},
                {"type": "benchmark", "version": 1, "threads": 2, "backend": "auto"},
                {"type": step_type, "version": 1},
            ],
        },  # fmt: skip
        "metrics": {
            "training": {"eval_accuracy": accuracy, "train_steps": 10},
            "eval": {
                "accuracy": accuracy,
                "macro_f1": accuracy - 0.01,
                "n": n,
                "confusion": confusion,
                "per_class": {},
            },  # fmt: skip
            "benchmark": {
                "backend": "pytorch",
                "threads": 2,
                "sentences": 100,
                "latency_samples": 300,
                "latency_p50_ms": p50,
                "latency_p95_ms": p50 * 1.3,
                "latency_mean_ms": p50,
                "throughput_per_s": 1000 / p50 * 4,
                "throughput_batch": 32,
                "peak_rss_mb": 300,
                "size_bytes": size,
                "parameters": 1_000_000,
                "nonzero_parameters": 900_000,
                "versions": "test",
                "method": "test",
            },  # fmt: skip
        },
    }


INT8_PATH = {
    "name": "no-vnni",
    "activation_bits": 7,
    "forced": False,
    "description": "x86 without AVX512-VNNI (7-bit activations)",
}


@pytest.fixture
def history(tmp_path, tiny_minilm):
    """Two jobs from one source: three saved variants, and the source measured by job 1."""
    store = JobStore(tmp_path / "history.sqlite3")
    out = tmp_path / "out"
    job1 = store.create_job("sst2-small", "name: sst2-small\n", str(out / "sst2-small"))
    job2 = store.create_job("tiny-int8", "name: tiny-int8\n", str(out / "tiny-int8"))
    # Job 1 evaluated and benchmarked its source before changing it (steps 1 and 2).
    store.log_metrics(
        job1, 0, "evaluate", {"eval_accuracy": 0.90, "eval_macro_f1": 0.89, "eval_n": 100}
    )
    store.log_metrics(
        job1, 1, "benchmark",
        {"latency_p50_ms": 10.0, "latency_p95_ms": 12.0, "throughput_per_s": 300.0,
         "size_bytes": 4_000_000, "parameters": 1_000_000},
    )  # fmt: skip
    specs = [
        # name, job, step, type, created, accuracy, p50, size
        ("v1", job1, 2, "finetune", "2025-01-01T10:00:00+00:00", 0.80, 5.0, 3_000_000),
        ("v2", job1, 3, "prune", "2025-01-01T10:05:00+00:00", 0.85, 3.0, 2_000_000),
        ("v3", job2, 0, "quantize", "2025-01-02T09:00:00+00:00", 0.70, 2.0, 1_000_000),
    ]
    folders: dict[str, Path] = {}
    for seed, (name, job, step, kind, created, acc, p50, size) in enumerate(specs, start=1):
        output = out / ("sst2-small" if job == job1 else "tiny-int8")
        folder = output / f"{step + 1:02d}-{kind}"
        _save_model(tiny_minilm, folder, seed)
        parent = folders["v1"] if name == "v2" else tiny_minilm
        info = _result_json(
            folder, job=job, step=step, step_type=kind, created=created, parent=parent,
            source=tiny_minilm, output=output, accuracy=acc, p50=p50, size=size,
        )  # fmt: skip
        if kind == "quantize":  # as the quantize step records it
            info["quantization"] = {"method": "dynamic_int8", "int8_path": INT8_PATH}
        (folder / "slimpajama.json").write_text(json.dumps(info, indent=2))
        store.add_variant(job, step, "model", folder, info["metrics"])
        folders[name] = folder
    yield store, folders
    store.close()


@pytest.fixture
def view(qtbot, history):
    store, _folders = history
    v = CompareView(store, load_on_start=False)
    qtbot.addWidget(v, before_close_func=lambda w: _settle(w, qtbot))
    v.resize(1200, 800)
    v.show()
    qtbot.waitExposed(v)
    with qtbot.waitSignal(v.loaded, timeout=TIMEOUT):
        v.refresh()
    return v


def _settle(view, qtbot) -> None:
    """Let workers end before the widget closes, as the app does."""
    view.stop_flips()
    qtbot.waitUntil(lambda: not view.busy(), timeout=TIMEOUT)


def _row(view, folder: Path) -> int:
    return next(i for i, v in enumerate(view.variants) if v.path == folder)


def _click_point(view, qtbot, row: int) -> None:
    x, y = view.plot.point_position(row)
    vb = view.plot.getPlotItem().getViewBox()
    scene = vb.mapViewToScene(QPointF(x, y))
    pos = view.plot.mapFromScene(scene)
    qtbot.mouseClick(view.plot.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(pos.x(), pos.y()))


def test_table_and_chart_list_every_variant_and_the_source(view, history, tiny_minilm):
    _store, folders = history
    names = [v.name for v in view.variants]
    assert names[:3] == ["tiny-int8/01-quantize", "sst2-small/04-prune", "sst2-small/03-finetune"]
    assert view.model.rowCount() == 4
    source = view.variants[3]
    assert source.is_source and source.path == tiny_minilm
    # The source's figures come from job 1's evaluate and benchmark steps.
    assert (source.accuracy, source.p50_ms, source.size_bytes) == (0.90, 10.0, 4_000_000)

    headers = [view.proxy.headerData(c, Qt.Orientation.Horizontal) for c in range(12)]
    assert headers == [
        "Name", "Job", "Step", "Accuracy", "Macro-F1", "Eval rows", "Size on disk",
        "Parameters", "p50 latency", "p95", "Throughput", "Against source",
    ]  # fmt: skip
    v2 = view.model.index(_row(view, folders["v2"]), 0)
    cells = [view.model.index(v2.row(), c).data() for c in range(12)]
    assert cells == [
        "sst2-small/04-prune", "#1 sst2-small", "4 · prune", "85.00 %", "84.00 %", "100",
        "2.0 MB", "1.0 M", "3.00 ms", "3.90 ms", "1,333/s", "2.0× smaller · 3.3× faster",
    ]  # fmt: skip
    assert view.model.index(3, 11).data() == "baseline"
    assert view.model.index(3, 1).data() == "source model"

    # Three variant points and one source point (a star).
    assert len(view.plot.variant_item.data) == 3
    assert len(view.plot.source_item.data) == 1
    assert view.plot.source_item.opts["symbol"] == "star"
    # Point size grows with the size on disk.
    sizes = {int(p.data()): p.size() for p in view.plot.variant_item.points()}
    by = {name: sizes[_row(view, folders[name])] for name in ("v1", "v2", "v3")}
    assert by["v3"] < by["v2"] < by["v1"]
    # v1 (5 ms, 80 %) is beaten by v2 (3 ms, 85 %); the rest are on the frontier.
    front = {view.variants[i].name for i in view.plot.front}
    assert front == {"tiny-int8/01-quantize", "sst2-small/04-prune", source.name}
    assert view.model.pareto == set(view.plot.front)
    fx, fy = view.plot.frontier.getData()
    assert list(fx) == [2.0, 3.0, 3.0, 10.0, 10.0]
    assert list(fy) == [70.0, 70.0, 85.0, 85.0, 90.0]
    # Hovering shows the numbers.
    tip = view.plot.variant_item.opts["tip"]
    text = tip(x=3.0, y=85.0, data=_row(view, folders["v2"]))
    assert "85.00 %" in text and "3.00 ms" in text and "2.0 MB" in text
    assert text == describe(view.variants[_row(view, folders["v2"])], view.eval_set())


def test_clicking_a_point_selects_its_row_and_back(view, qtbot, history):
    _store, folders = history
    row = _row(view, folders["v1"])
    _click_point(view, qtbot, row)
    assert view.selected_rows() == [row]
    assert list(view.plot.selected_item.data["x"]) == [5.0]
    # Selecting another row in the table moves the ring on the chart.
    other = _row(view, folders["v3"])
    view.table.selectRow(view.proxy.mapFromSource(view.model.index(other, 0)).row())
    assert list(view.plot.selected_item.data["x"]) == [2.0]
    # Sorting the table does not confuse which row a point selects.
    view.table.sortByColumn(3, Qt.SortOrder.AscendingOrder)
    _click_point(view, qtbot, row)
    assert view.selected_rows() == [row]
    assert view.table.currentIndex().data() == "sst2-small/03-finetune"


def test_two_variants_side_by_side_with_real_flips(view, qtbot, history):
    _store, folders = history
    results = []
    view.flips_ready.connect(results.append)
    a_row, b_row = _row(view, folders["v1"]), _row(view, folders["v2"])
    selection = view.table.selectionModel()
    flags = QItemSelectionModel.SelectionFlag
    selection.select(
        view.proxy.mapFromSource(view.model.index(a_row, 0)), flags.ClearAndSelect | flags.Rows
    )
    selection.select(
        view.proxy.mapFromSource(view.model.index(b_row, 0)), flags.Select | flags.Rows
    )
    assert view.pair() == (view.variants[a_row], view.variants[b_row])

    def done() -> bool:
        last = results[-1] if results else None
        return last is not None and (last.a.path, last.b.path) == (folders["v1"], folders["v2"])

    qtbot.waitUntil(done, timeout=TIMEOUT)
    result = results[-1]
    details = view.details
    # Figures side by side.
    cells = {
        details.metrics.verticalHeaderItem(r).text(): [
            details.metrics.item(r, c).text() for c in range(3)
        ]
        for r in range(details.metrics.rowCount())
    }
    assert cells["Accuracy"] == ["80.00 %", "85.00 %", "+5.00 pt"]
    assert cells["Latency p50"] == ["5.00 ms", "3.00 ms", "1.7× faster"]
    assert cells["Size on disk"] == ["3.0 MB", "2.0 MB", "1.5× smaller"]
    # Both stored confusion matrices.
    assert details.confusion_a.matrix == view.variants[a_row].confusion
    assert details.confusion_b.matrix == view.variants[b_row].confusion
    assert details.confusion_a.item(0, 0).text() == str(view.variants[a_row].confusion[0][0])

    # The flips are what prediction_diff says on the same predictions.
    pa, texts = _dev_predictions(folders["v1"])
    pb, _ = _dev_predictions(folders["v2"])
    expected = prediction_diff(pa, pb, texts)
    got = result.diff
    assert [f.index for f in got.flips] == [f.index for f in expected.flips]
    assert [(f.before, f.after, f.label) for f in got.flips] == [
        (f.before, f.after, f.label) for f in expected.flips
    ]
    np.testing.assert_allclose(
        [f.confidence_after for f in got.flips],
        [f.confidence_after for f in expected.flips],
        atol=1e-5,
    )
    assert (got.fixed, got.broken) == (expected.fixed, expected.broken)
    assert 0 < len(got.flips) < 100
    assert result.rows == len(texts) == 100
    # And the table shows them, text and both predictions.
    table = details.flips
    assert table.rowCount() == len(expected.flips)
    first = expected.flips[0]
    assert table.index(0, 1).data() == first.text
    assert table.index(0, 2).data() == ["negative", "positive"][first.label]
    assert table.index(0, 3).data() == ["negative", "positive"][first.before]
    assert table.index(0, 5).data() == ["negative", "positive"][first.after]
    assert details.flip_summary.text().startswith(f"<b>{len(expected.flips)} of 100</b>")


def test_a_missing_model_is_a_sentence(view, qtbot, history):
    _store, folders = history
    failures = []
    view.flips_failed.connect(failures.append)
    (folders["v3"] / "model.safetensors").unlink()
    view.set_pair(_row(view, folders["v1"]), _row(view, folders["v3"]))
    qtbot.waitUntil(lambda: bool(failures), timeout=TIMEOUT)
    assert "01-quantize" in failures[-1] and "Traceback" not in failures[-1]
    assert "01-quantize" in view.details.status.text()


def test_an_empty_history_says_what_to_do(qtbot, tmp_path):
    store = JobStore(tmp_path / "empty.sqlite3")
    view = CompareView(store, load_on_start=False)
    qtbot.addWidget(view, before_close_func=lambda w: _settle(w, qtbot))
    with qtbot.waitSignal(view.loaded, timeout=TIMEOUT):
        view.refresh()
    assert view.model.rowCount() == 0 and "No saved variants yet" in view.summary.text()
    assert view.plot.plotted == [] and view.plot.empty.isVisible()
    _settle(view, qtbot)
    store.close()


def test_an_int8_variant_says_which_cpu_arithmetic_measured_it(view, history):
    """Its accuracy depends on the int8 path: the figures table and the tooltip say it."""
    _store, folders = history
    v1, v3 = (view.variants[_row(view, folders[k])] for k in ("v1", "v3"))
    details = view.details
    details.show_pair(v1, v3)
    rows = {
        details.metrics.verticalHeaderItem(r).text(): [
            details.metrics.item(r, c).text() for c in range(2)
        ]
        for r in range(details.metrics.rowCount())
    }
    assert rows["int8 measured on"] == ["–", INT8_PATH["description"]]
    assert f"int8 measured on {INT8_PATH['description']}" in describe(v3)
    # Two float models: no int8 row at all.
    details.show_pair(v1, view.variants[_row(view, folders["v2"])])
    labels = [
        details.metrics.verticalHeaderItem(r).text() for r in range(details.metrics.rowCount())
    ]
    assert "int8 measured on" not in labels and labels[0] == "Accuracy"
