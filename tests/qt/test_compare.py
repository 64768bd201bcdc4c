"""Compare as a user drives it: table and Pareto chart of variants, click, pick two, see flips."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QItemSelectionModel, QPoint, QPointF, Qt
from PySide6.QtGui import QHelpEvent
from PySide6.QtWidgets import QApplication, QBoxLayout, QMessageBox

from slimpajama_gui.core import data as data_mod
from slimpajama_gui.core.jobs.flips import EVAL_BATCH
from slimpajama_gui.core.model.encoder import EncoderClassifier
from slimpajama_gui.core.runtime.bench import BenchConfig
from slimpajama_gui.core.runtime.evaluate import predict, prediction_diff
from slimpajama_gui.core.runtime.loading import open_model
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.qt.compare import CompareView
from slimpajama_gui.qt.compare.pareto_plot import SOURCE_LEGEND, describe
from tests.figures import measured

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


def test_the_pickers_name_results_as_models_does_and_show_both_ends(view, history):
    """Compare called a result 'out-folder/02-distill' where Models says 'job › 02-distill',
    and a narrow picker cut at the right showed the same job prefix for both sides."""
    _store, folders = history
    view.set_pair(_row(view, folders["v1"]), _row(view, folders["v2"]))
    a, b = view.details.combo_a, view.details.combo_b
    a.setFixedWidth(150)
    b.setFixedWidth(150)
    assert " › " in a.currentText() and " › " in b.currentText()
    shown_a, shown_b = a.shown_text(), b.shown_text()
    assert shown_a != shown_b
    assert shown_a.endswith(a.currentText()[-6:]) and shown_b.endswith(b.currentText()[-6:])
    assert a.currentText() in a.toolTip()


def test_a_narrow_picker_drops_the_head_all_results_share(qtbot):
    """A new user's two results of one model both read "all-MiniL…02-quantize"."""
    from slimpajama_gui.qt.widgets.combos import ElidedComboBox

    names = [
        f"all-MiniLM-L6-v2-{preset}-20261203-1402 › 02-quantize" for preset in ("balanced", "fast")
    ]
    shown = []
    for pick in range(2):
        combo = ElidedComboBox()
        qtbot.addWidget(combo)
        combo.addItems(names)
        combo.setCurrentIndex(pick)
        combo.setFixedWidth(190)
        shown.append(combo.shown_text())
        assert combo.shown_text().endswith("02-quantize")
    assert "balanced" in shown[0] or "bal" in shown[0], shown
    assert shown[1].startswith("…fast"), shown
    combo.setFixedWidth(900)  # room for the whole name: shown whole
    assert combo.shown_text() == names[1]


def _tip_names(view, combo) -> str:
    """The model the picker's tooltip names: its first line, as hovering shows it."""
    return combo.toolTip().split("\n")[0]


def test_the_pickers_tooltips_follow_a_refresh(
    view, qtbot, history, monkeypatch, tmp_path, tiny_minilm
):
    """Reading the list again changed what the pickers held without a word to their
    tooltips, which went on naming the models picked before: after a result was deleted,
    and when the model picked as A lost its classifier head (greyed out, same place)."""
    store, folders = history
    a, b = view.details.combo_a, view.details.combo_b
    for combo in (a, b):
        assert _tip_names(view, combo) == combo.currentText()

    # The newest result goes: the default pair moves to another one.
    monkeypatch.setattr(QMessageBox, "question", lambda *_a: QMessageBox.StandardButton.Yes)
    before = (a.currentText(), b.currentText())
    with qtbot.waitSignal(view.loaded, timeout=TIMEOUT):
        assert view.delete_result(_row(view, folders["v3"])) is True
    assert (a.currentText(), b.currentText()) != before
    for combo in (a, b):
        assert _tip_names(view, combo) == combo.currentText()

    # A source the user picked loses its head: it stays picked, greyed out, and its
    # tooltip says why.
    from safetensors.torch import load_file, save_file

    source = tmp_path / "source"
    shutil.copytree(tiny_minilm, source)
    s_store, result = _one_variant_history(tmp_path / "other", source, tiny_minilm)
    other = _open(qtbot, s_store)
    other.set_pair(_row(other, source), _row(other, result))
    qtbot.waitUntil(lambda: not other.busy(), timeout=TIMEOUT)
    combo = other.details.combo_a
    assert "no classifier head" not in combo.toolTip()
    weights = source / "model.safetensors"
    tensors = {k: v for k, v in load_file(weights).items() if not k.startswith("classifier.")}
    save_file(tensors, weights, metadata={"format": "pt"})
    with qtbot.waitSignal(other.loaded, timeout=TIMEOUT):
        other.refresh()
    assert other.pair()[0].path == source and other.pair()[0].has_head is False
    assert _tip_names(other, combo) == combo.currentText()
    assert "no classifier head" in combo.currentText()
    assert "no classifier head" in combo.toolTip().split("\n", 1)[1]

    # A refill that does not say so is still right by the time the tooltip shows.
    combo.blockSignals(True)
    combo.setCurrentIndex(_row(other, result))
    combo.blockSignals(False)
    hover = QHelpEvent(QEvent.Type.ToolTip, QPoint(5, 5), combo.mapToGlobal(QPoint(5, 5)))
    QApplication.sendEvent(combo, hover)
    assert _tip_names(other, combo) == combo.currentText()


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
    assert names[:3] == [
        "tiny-int8 › 01-quantize",
        "sst2-small › 04-prune",
        "sst2-small › 03-finetune",
    ]
    assert view.model.rowCount() == 4
    # What the count of charted rows means is said, not left to guess (a tryout read
    # "1 measured on this eval set" while every row showed an accuracy on it).
    plotted = len(view.plot.plotted)
    assert f"{plotted} on the chart (an accuracy on this eval set and a measured latency)" in (
        view.summary.text()
    )
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
        "sst2-small › 04-prune", "#1 sst2-small", "4 · prune", "85.00 %", "84.00 %", "100",
        "2.0 MB", "1.0 M", "3.00 ms", "3.90 ms", "1,333/s", "2.0× smaller · 3.3× faster",
    ]  # fmt: skip
    assert view.model.index(3, 11).data() == "baseline"
    assert view.model.index(3, 1).data() == "source model"

    # Three variant points and one source point (a star).
    assert len(view.plot.variant_item.data) == 3
    assert len(view.plot.source_item.data) == 1
    assert view.plot.source_item.opts["symbol"] == "star"
    assert SOURCE_LEGEND in [label.text for _sample, label in view.plot.legend.items]
    # Point size grows with the size on disk.
    sizes = {int(p.data()): p.size() for p in view.plot.variant_item.points()}
    by = {name: sizes[_row(view, folders[name])] for name in ("v1", "v2", "v3")}
    assert by["v3"] < by["v2"] < by["v1"]
    # v1 (5 ms, 80 %) is beaten by v2 (3 ms, 85 %); the rest are on the frontier.
    front = {view.variants[i].name for i in view.plot.front}
    assert front == {"tiny-int8 › 01-quantize", "sst2-small › 04-prune", source.name}
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
    assert view.table.currentIndex().data() == "sst2-small › 03-finetune"


def test_two_variants_side_by_side_with_real_flips(view, qtbot, history):
    _store, folders = history
    results = []
    view.flips_ready.connect(results.append)
    a_row, b_row = _row(view, folders["v1"]), _row(view, folders["v2"])
    _select_rows(view, a_row, b_row)
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


# --------------------------------------------------------------- baseline and Benchmark

#: Few timed calls: the test checks where figures go, not how stable they are.
QUICK = BenchConfig(threads=1, sentences=5, warmup=1, repeats=1, throughput_batch=4)


def _one_variant_history(tmp_path, source: Path, tiny_minilm: Path):
    """One job from ``source`` that never measured it: one saved, measured variant."""
    store = JobStore(tmp_path / "history.sqlite3")
    output = tmp_path / "out" / "job"
    job = store.create_job("job", "name: job\n", str(output))
    folder = output / "01-finetune"
    _save_model(tiny_minilm, folder, 1)
    info = _result_json(
        folder, job=job, step=0, step_type="finetune", created="2025-01-01T10:00:00+00:00",
        parent=source, source=source, output=output, accuracy=0.8, p50=3.0, size=2_000_000,
    )  # fmt: skip
    (folder / "slimpajama.json").write_text(json.dumps(info, indent=2))
    store.add_variant(job, 0, "model", folder, info["metrics"])
    return store, folder


def _open(qtbot, store) -> CompareView:
    view = CompareView(store, load_on_start=False, bench_config=QUICK)
    qtbot.addWidget(view, before_close_func=lambda w: _settle(w, qtbot))
    view.resize(1200, 800)
    view.show()
    qtbot.waitExposed(view)
    with qtbot.waitSignal(view.loaded, timeout=TIMEOUT):
        view.refresh()
    return view


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def _benchmarked(view, qtbot, start) -> str:
    """Run ``start()`` and wait for the Benchmark action and the refresh after it."""
    done = []
    view.benchmark_done.connect(done.append)
    with qtbot.waitSignal(view.loaded, timeout=TIMEOUT):
        start()
        qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT)
    return done[-1]


def test_benchmark_the_source_model_puts_the_baseline_on_the_chart(
    qtbot, tmp_path, tiny_minilm, gui_probe, monkeypatch, isolated_home
):
    from slimpajama_gui.qt.compare import view as view_mod

    source = tmp_path / "my-model"  # a folder the user owns
    shutil.copytree(tiny_minilm, source)
    store, folder = _one_variant_history(tmp_path, source, tiny_minilm)
    view = _open(qtbot, store)
    before = _files(source)
    base = next(i for i, v in enumerate(view.variants) if v.is_source)
    # Not measured yet: no baseline point, and the view offers to measure it.
    assert view.plot.source_item.data.size == 0
    assert view.baseline_button.isVisible()
    row = _row(view, folder)
    assert "not benchmarked" in view.model.index(row, 11).data(Qt.ItemDataRole.ToolTipRole)

    monkeypatch.setattr(view_mod, "measure_model", gui_probe.wrap(view_mod.measure_model))
    text = _benchmarked(view, qtbot, view.baseline_button.click)
    gui_probe.assert_work_ran_off_the_gui_thread(calls=1)

    src = view.variants[base]
    assert src.is_source and measured(src.p50_ms)
    # Its accuracy is measured on the job's eval rows: what the model really scores.
    preds, _ = _dev_predictions(source)
    expected = float((preds.predicted == preds.labels).mean())
    assert src.accuracy == pytest.approx(expected)
    assert src.eval_set == view.variants[row].eval_set == view.eval_set()
    assert "Benchmarked" in text and "not modified" in text
    # A baseline point on the chart, a star labelled as such, at the measured figures.
    assert list(view.plot.source_item.data["data"]) == [base]
    assert view.plot.point_position(base) == (src.p50_ms, pytest.approx(100 * expected))
    assert "baseline" in describe(src, view.eval_set())
    assert not view.baseline_button.isVisible()
    # The user's folder is untouched; the figures live in the app's data folder.
    assert _files(source) == before
    kept = list((isolated_home / "slimpajama" / "measurements").glob("*.json"))
    assert len(kept) == 1 and str(source.resolve()) in kept[0].read_text()

    # Benchmark the variant (its context menu): now both are timed the same way, and
    # the ratio against the source is a measured one.
    menu = view.context_menu(row)
    assert [a.text() for a in menu.actions() if a.text()] == [
        "Benchmark", "Open in Playground", "Reveal in file manager", "Delete result…",
        "Copy path",
    ]  # fmt: skip
    opened = []
    view.open_in_playground.connect(lambda a, b: opened.append((a, b)))
    next(a for a in menu.actions() if a.text() == "Open in Playground").trigger()
    assert opened == [(source, folder)]
    action = next(a for a in menu.actions() if a.text() == "Benchmark")
    _benchmarked(view, qtbot, action.trigger)
    record = json.loads((folder / "slimpajama.json").read_text())
    assert record["metrics"]["benchmark"]["machine"]
    assert record["metrics"]["earlier_benchmarks"][0]["latency_p50_ms"] == 3.0
    # The job's own evaluation is kept.
    assert record["metrics"]["eval"]["accuracy"] == 0.8
    v = view.variants[_row(view, folder)]
    assert v.bench_setup == view.variants[base].bench_setup
    # A measured ratio (the two tiny models may time within 0.5 %: "same"), not "–".
    speed = view.model.index(_row(view, folder), 11).data().split(" · ")[-1]
    assert re.fullmatch(r"same|\d+\.\d× (faster|slower)", speed), speed


def _select_rows(view, *rows: int) -> None:
    """Select these rows of the table, as clicking the first and Ctrl+clicking the rest does."""
    selection = view.table.selectionModel()
    flags = QItemSelectionModel.SelectionFlag
    for n, row in enumerate(rows):
        how = flags.ClearAndSelect if n == 0 else flags.Select
        selection.select(view.proxy.mapFromSource(view.model.index(row, 0)), how | flags.Rows)


def test_a_model_without_a_classifier_head_is_greyed_out_in_both_pickers(
    qtbot, tmp_path, tiny_minilm
):
    """Picking the packaged MiniLM (an encoder without a classifier head) as A or B ran the
    comparison into a red error. It stays listed, greyed out with the reason, and neither
    the mouse nor the keyboard picks it; a pair that holds it anyway (two table rows) gets a
    plain sentence saying what to do, in the normal colour, and no model is run."""
    from slimpajama_gui.core.model.catalog import packaged_minilm_path

    packaged = packaged_minilm_path()
    store, folder = _one_variant_history(tmp_path, packaged, tiny_minilm)
    view = _open(qtbot, store)
    failures = []
    view.flips_failed.connect(failures.append)
    encoder, result = _row(view, packaged), _row(view, folder)
    name = view.variants[encoder].name
    for combo in (view.details.combo_a, view.details.combo_b):
        assert combo.itemText(encoder).startswith(name)
        assert "no classifier head" in combo.itemText(encoder)
        assert not combo.model().item(encoder).isEnabled()
        assert combo.model().item(result).isEnabled()
        tip = combo.itemData(encoder, Qt.ItemDataRole.ToolTipRole)
        assert "no classifier head" in tip and "fine-tune it first" in tip.lower()

        # A click on it in the open list picks nothing.
        combo.showPopup()
        popup = combo.view()
        qtbot.waitUntil(popup.isVisible, timeout=TIMEOUT)
        spot = popup.visualRect(popup.model().index(encoder, 0)).center()
        qtbot.mouseClick(popup.viewport(), Qt.MouseButton.LeftButton, pos=spot)
        assert combo.currentIndex() != encoder
        combo.hidePopup()
        # The keys that walk the list pass over it.
        combo.setFocus()
        for key in (Qt.Key.Key_Home, Qt.Key.Key_End, Qt.Key.Key_Up, Qt.Key.Key_Down):
            qtbot.keyClick(combo, key)
            assert combo.currentIndex() != encoder
    qtbot.waitUntil(lambda: not view.busy(), timeout=TIMEOUT)

    # Two rows of the table, one of them the encoder: its figures, and a sentence.
    details = view.details
    before = details.flip_summary.text()
    _select_rows(view, encoder, result)
    assert view.pair() == (view.variants[encoder], view.variants[result])
    qtbot.waitUntil(
        lambda: details.flip_summary.text() != before and not view.busy(), timeout=TIMEOUT
    )
    text = details.flip_summary.text()
    assert not failures and details.status.text() == ""
    assert "no classifier head" in text and "fine-tune it first" in text.lower()
    assert "#a1261b" not in text and "color" not in text  # the normal text colour
    assert "no classifier head" in details.combo_a.toolTip()
    for caption in (details.caption_a, details.caption_b):
        assert "computing" not in caption.text()
    assert details.metrics.item(0, 1).text() != "–"  # B's figures are there


def test_stopping_the_flips_leaves_no_computing_behind(view, qtbot, history):
    _store, folders = history
    view.set_pair(_row(view, folders["v1"]), _row(view, folders["v2"]))
    qtbot.waitUntil(lambda: view._flip_worker is not None, timeout=TIMEOUT)
    view.stop_flips()
    qtbot.waitUntil(lambda: not view.busy(), timeout=TIMEOUT)
    assert all(
        "computing" not in c.text() for c in (view.details.caption_a, view.details.caption_b)
    )


def test_a_no_head_source_gets_latency_only(qtbot, tmp_path, tiny_minilm):
    from slimpajama_gui.core.model.catalog import packaged_minilm_path

    packaged = packaged_minilm_path()
    store, folder = _one_variant_history(tmp_path, packaged, tiny_minilm)
    view = _open(qtbot, store)
    src = next(i for i, v in enumerate(view.variants) if v.is_source)

    # The details pane's button benchmarks the model picked as A.
    view.set_pair(src, _row(view, folder))
    text = _benchmarked(view, qtbot, view.details.bench_a.click)
    s = view.variants[src]
    assert s.p50_ms is not None and s.has_head is False
    assert s.accuracy is None and "latency and size only" in text
    # Why is said once, in the note: the benchmark line repeated it.
    shown = f"{text}\n{view.notes.text()}"
    assert shown.count("classifier head") == 1, shown
    cell = view.model.index(src, 3)
    assert cell.data() == "–" and "classifier head" in cell.data(Qt.ItemDataRole.ToolTipRole)
    # No accuracy, so no point: the baseline's latency is a labelled line instead; the
    # line says "baseline" at its top (a point at its latency is not written over) and the
    # legend says why it is a line.
    assert src not in view.plot.plotted
    [line] = view.plot.baseline_lines
    assert line.value() == pytest.approx(s.p50_ms) and line.label.format == "baseline"
    assert line.label.orthoPos > 0.8
    legend = [label.text for _sample, label in view.plot.legend.items]
    assert "baseline latency (no classifier head)" in legend
    # ... and the legend does not name a star that is not drawn.
    assert SOURCE_LEGEND not in legend


def test_compare_never_opens_on_the_head_less_encoder(qtbot, tmp_path, tiny_minilm):
    """A job from the packaged MiniLM (no classifier head) as a new user runs it: while it
    has saved one result, Compare opens on a plain sentence, not a red error; when it
    saves the next, Compare picks those two and shows their flips."""
    from slimpajama_gui.core.model.catalog import packaged_minilm_path

    packaged = packaged_minilm_path()
    store, first = _one_variant_history(tmp_path, packaged, tiny_minilm)
    view = CompareView(store, load_on_start=False)
    qtbot.addWidget(view, before_close_func=lambda w: _settle(w, qtbot))
    view.resize(1200, 800)
    view.show()
    qtbot.waitExposed(view)
    failures, ready = [], []
    view.flips_failed.connect(failures.append)
    view.flips_ready.connect(ready.append)
    with qtbot.waitSignal(view.loaded, timeout=TIMEOUT):
        view.refresh()
    details = view.details
    qtbot.waitUntil(lambda: "Nothing to compare" in details.flip_summary.text(), timeout=TIMEOUT)
    a, b = view.pair()
    assert a is None and b.path == first  # never the encoder, which cannot classify
    text = details.flip_summary.text()
    assert "no classifier head" in text and view.variants[_row(view, packaged)].name in text
    assert details.status.text() == "" and not view.busy() and not failures

    # The job saves its next step (the app refreshes Compare): that pair, with its flips.
    second = first.parent / "02-distill"
    _save_model(tiny_minilm, second, 2)
    job = json.loads((first / "slimpajama.json").read_text())["job_id"]
    info = _result_json(
        second, job=job, step=1, step_type="distill", created="2025-01-01T10:05:00+00:00",
        parent=first, source=packaged, output=first.parent, accuracy=0.85, p50=2.0, size=10**6,
    )  # fmt: skip
    (second / "slimpajama.json").write_text(json.dumps(info, indent=2))
    store.add_variant(job, 1, "model", second, info["metrics"])
    with qtbot.waitSignal(view.loaded, timeout=TIMEOUT):
        view.refresh()
    qtbot.waitUntil(lambda: bool(ready or failures), timeout=TIMEOUT)
    a, b = view.pair()
    assert (a.path, b.path) == (first, second) and not failures
    assert "#a1261b" not in details.status.text()  # no error colour
    assert details.flip_summary.text().startswith("<b>")

    # A pair the user picks is kept when the list is read again, head-less or not.
    view.set_pair(_row(view, packaged), _row(view, second))
    with qtbot.waitSignal(view.loaded, timeout=TIMEOUT):
        view.refresh()
    a, b = view.pair()
    assert (a.path, b.path) == (packaged, second)


def test_the_summary_line_is_readable_in_full_in_a_1280_by_800_window(view, qtbot):
    view.resize(1280 - 150, 800)  # the Compare area of the window (beside the navigation)
    qtbot.waitUntil(lambda: view.summary.width() < 1280 - 150, timeout=TIMEOUT)
    view.layout().activate()
    summary = view.summary
    assert summary.text().endswith("select two rows to compare them.")
    assert summary.wordWrap()
    # Wrapped, every line of it fits in the label: nothing is cut off.
    assert summary.height() >= summary.heightForWidth(summary.width()) > 0


# --------------------------------------------------------------- eval sets and Pareto marks


def _measured_folder(root: Path, name: str, *, job: int, dataset: dict, n: int, accuracy: float,
                     p50: float, created: str, source: Path) -> Path:  # fmt: skip
    folder = root / name
    folder.mkdir(parents=True)
    info = _result_json(
        folder, job=job, step=0, step_type="finetune", created=created, parent=source,
        source=source, output=root, accuracy=accuracy, p50=p50, size=1_000_000,
    )  # fmt: skip
    info["recipe"]["dataset"] = dataset
    info["recipe_dir"] = str(root)
    info["version"] = 2
    info["metrics"]["eval"]["n"] = n
    (folder / "slimpajama.json").write_text(json.dumps(info))
    return folder


def _two_jobs(qtbot, tmp_path, source: Path, older: dict, newer: dict, *, edit=None):
    """Compare over two one-variant jobs, ``older`` then ``newer`` (``_measured_folder``
    arguments: name, dataset, n, accuracy, p50); ``edit`` may change the newer record."""
    store = JobStore(tmp_path / "history.sqlite3")
    root = tmp_path / "out"
    folders = []
    for day, spec in enumerate((older, newer), start=1):
        job = store.create_job(spec["name"], f"name: {spec['name']}\n", str(root))
        folder = _measured_folder(
            root, job=job, created=f"2025-01-0{day}T00:00:00+00:00", source=source, **spec
        )
        folders.append((job, folder))
    if edit is not None:
        record = json.loads((folders[1][1] / "slimpajama.json").read_text())
        edit(record)
        (folders[1][1] / "slimpajama.json").write_text(json.dumps(record))
    for job, folder in folders:
        store.add_variant(job, 0, "model", folder)
    return _open(qtbot, store), folders[0][1], folders[1][1]


def test_two_eval_sets_are_never_on_one_accuracy_axis(qtbot, tmp_path, tiny_minilm):
    two_rows = {"train": "train.csv", "eval": "two.csv", "labels": LABELS}
    view, big, small = _two_jobs(
        qtbot, tmp_path, tiny_minilm,
        {"name": "big", "dataset": DATASET, "n": 100, "accuracy": 0.8, "p50": 5.0},
        {"name": "small", "dataset": two_rows, "n": 2, "accuracy": 0.5, "p50": 1.0},
    )  # fmt: skip
    b, s = _row(view, big), _row(view, small)

    labels = [view.eval_filter.itemText(i) for i in range(view.eval_filter.count())]
    assert sorted(labels) == ["the demo set's dev split (100 rows)", "two.csv (2 rows)"]
    # The newest job's eval set first: only the 2-row variant has an accuracy there.
    assert view.eval_filter.currentText() == "two.csv (2 rows)"
    assert view.plot.plotted == [s]
    assert view.model.index(b, 3).data() == "–"
    tip = view.model.index(b, 3).data(Qt.ItemDataRole.ToolTipRole)
    assert "the demo set's dev split (100 rows)" in tip
    # 50 % on 2 rows is drawn, hollow, never Pareto-optimal, and its tooltip says why.
    assert view.plot.front == [] and view.model.pareto == set()
    assert "2 eval rows are too few" in view.plot.ranking.unranked[s]
    point_tip = view.plot.variant_item.opts["tip"](x=1.0, y=50.0, data=s)
    assert "too few" in point_tip and "two.csv (2 rows)" in point_tip
    assert "too few" in view.model.index(s, 0).data(Qt.ItemDataRole.ToolTipRole)

    view.eval_filter.setCurrentIndex(view.eval_filter.findText(labels[labels.index(
        "the demo set's dev split (100 rows)")]))  # fmt: skip
    assert view.plot.plotted == [b] and view.plot.front == [b]
    assert view.model.index(b, 3).data() == "80.00 %" and view.model.index(s, 3).data() == "–"
    assert "two.csv (2 rows)" in view.model.index(s, 3).data(Qt.ItemDataRole.ToolTipRole)
    assert view.plot.getPlotItem().getAxis("left").labelText.startswith("accuracy on the demo")


def test_a_newest_job_without_a_row_count_opens_on_the_counted_split(qtbot, tmp_path, tiny_minilm):
    """Compare opens on the newest job's eval set; when that job did not record how many
    rows it evaluated, the same split with a count is shown, not an empty chart."""
    view, counted, _uncounted = _two_jobs(
        qtbot, tmp_path, tiny_minilm,
        {"name": "counted", "dataset": DATASET, "n": 100, "accuracy": 0.8, "p50": 5.0},
        {"name": "uncounted", "dataset": DATASET, "n": 100, "accuracy": 0.7, "p50": 2.0},
        edit=lambda record: record["metrics"]["eval"].pop("n"),
    )  # fmt: skip
    labels = sorted(view.eval_filter.itemText(i) for i in range(view.eval_filter.count()))
    assert labels == [
        "the demo set's dev split (100 rows)", "the demo set's dev split (rows not recorded)",
    ]  # fmt: skip
    assert view.eval_filter.currentText() == "the demo set's dev split (100 rows)"
    assert view.plot.plotted == [_row(view, counted)]


# --------------------------------------------------------------- delete


def test_delete_asks_and_removes_only_an_app_written_folder(
    view, qtbot, history, monkeypatch, tiny_minilm
):
    store, folders = history
    asked, told = [], []

    def question(_parent, _title, text, *_args):
        asked.append(text)
        return answers.pop(0)

    monkeypatch.setattr(QMessageBox, "question", question)
    monkeypatch.setattr(QMessageBox, "information", lambda _p, _t, text: told.append(text))
    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]
    row = _row(view, folders["v1"])
    # "No" keeps everything.
    assert view.delete_result(row) is False
    assert folders["v1"].is_dir() and str(folders["v1"]) in asked[-1]
    # "Yes" deletes that folder only, and its history row; Compare reloads without it.
    with qtbot.waitSignal(view.loaded, timeout=TIMEOUT):
        assert view.delete_result(row) is True
    assert not folders["v1"].exists() and folders["v2"].is_dir()
    assert str(folders["v1"]) not in [r.path for r in store.variants()]
    assert folders["v1"] not in [v.path for v in view.variants]
    # The source model is never deleted, and no question is asked about it.
    n_asked = len(asked)
    src = next(i for i, v in enumerate(view.variants) if v.is_source)
    assert view.delete_result(src) is False
    assert tiny_minilm.is_dir() and len(asked) == n_asked and "does not delete" in told[-1]
    # Nor a folder the history does not list, even one with a record.
    stray = folders["v2"].parent / "stray"
    shutil.copytree(folders["v2"], stray)
    from slimpajama_gui.core.jobs.index import variant_from_record
    from slimpajama_gui.core.storage.variant import VariantRecord

    view.variants.append(variant_from_record(stray, VariantRecord.read(stray)))
    assert view.delete_result(len(view.variants) - 1) is False and stray.is_dir()


def test_latency_axis_never_shows_a_scale_factor(view, qtbot):
    """Static-embedding variants sit at hundredths of a millisecond: the axis keeps its
    own unit (ms) instead of pyqtgraph's "(x0.001)" scale factor."""
    item = view.plot.getPlotItem()
    item.setXRange(0.01, 0.05, padding=0)
    item.setYRange(0.001, 0.002, padding=0)
    qtbot.wait(10)
    for name in ("bottom", "left"):
        axis = item.getAxis(name)
        assert axis.scale == 1.0, name
        assert "x0.0" not in axis.labelString(), name


# --------------------------------------------------------------- a head-less pair, buttons, layout


def _figures(view) -> dict[str, list[str]]:
    metrics = view.details.metrics
    return {
        metrics.verticalHeaderItem(r).text(): [metrics.item(r, c).text() for c in range(3)]
        for r in range(metrics.rowCount())
    }


def test_a_head_less_model_paired_from_the_table_gets_no_misleading_figures(
    qtbot, tmp_path, tiny_minilm
):
    """Ctrl-click a result and the packaged MiniLM (no classifier head): the Accuracy row's
    'B against A' said 'other eval sets', but B has no accuracy at all. Every cell says
    what is true, either way round."""
    from slimpajama_gui.core.model.catalog import packaged_minilm_path

    packaged = packaged_minilm_path()
    store, folder = _one_variant_history(tmp_path, packaged, tiny_minilm)
    view = _open(qtbot, store)
    encoder, result = _row(view, packaged), _row(view, folder)
    for first, second, side in ((result, encoder, "B"), (encoder, result, "A")):
        _select_rows(view, first, second)
        assert view.pair() == (view.variants[first], view.variants[second])
        qtbot.waitUntil(lambda: not view._pair_timer.isActive(), timeout=TIMEOUT)
        qtbot.waitUntil(lambda: not view.busy(), timeout=TIMEOUT)
        rows = _figures(view)
        for name in ("Accuracy", "Macro-F1"):
            assert rows[name][2] == f"– ({side} has no classifier head)", rows
        assert not any("eval sets" in cell for row in rows.values() for cell in row), rows
        ours = 0 if side == "A" else 1
        assert rows["Accuracy"][ours] == "–" and rows["Accuracy"][1 - ours] == "80.00 %"
    store.close()


def test_benchmark_buttons_are_off_with_nothing_to_benchmark(qtbot, tmp_path, tiny_minilm):
    """With no results, Benchmark A and B were enabled and did nothing when clicked."""
    store = JobStore(tmp_path / "empty.sqlite3")
    view = _open(qtbot, store)
    details = view.details
    for button in (details.bench_a, details.bench_b):
        assert not button.isEnabled()
        assert "nothing to benchmark" in button.toolTip().lower()
    store.close()
    # One result: B is it, A is empty (nothing else can classify).
    from slimpajama_gui.core.model.catalog import packaged_minilm_path

    store, folder = _one_variant_history(tmp_path / "one", packaged_minilm_path(), tiny_minilm)
    view = _open(qtbot, store)
    qtbot.waitUntil(lambda: not view.busy(), timeout=TIMEOUT)
    assert view.pair()[0] is None and view.pair()[1].path == folder
    assert not view.details.bench_a.isEnabled() and view.details.bench_b.isEnabled()
    assert "no model is picked as A" in view.details.bench_a.toolTip()
    assert "Time B" in view.details.bench_b.toolTip()
    store.close()


def test_computing_flips_never_moves_the_pickers_or_the_panes(qtbot, history, monkeypatch):
    """While the flips were computed, the progress bar and Stop button appeared in the
    picker row: the pickers shrank to 'all-Mi…netune' and the right-hand pane moved."""
    import threading

    from slimpajama_gui.qt.compare import view as view_mod

    never = threading.Event()

    def slow_flips(a, b):
        yield ("status", "Loading A…")
        while not never.wait(0.02):
            yield ("progress", "A", 0, 4)

    monkeypatch.setattr(view_mod, "flip_job", slow_flips)
    store, folders = history
    view = _open(qtbot, store)
    details = view.details
    pair = _row(view, folders["v1"]), _row(view, folders["v2"])

    def computing() -> None:
        view.set_pair(*pair)
        qtbot.waitUntil(
            lambda: not view._pair_timer.isActive() and details.progress.isVisible(),
            timeout=TIMEOUT,
        )
        assert details.stop_button.isVisible()

    def geometry():
        QApplication.processEvents()
        return [
            (w.mapTo(view, QPoint(0, 0)), w.size())
            for w in (details.combo_a, details.combo_b, details.metrics, view.plot)
        ]

    computing()
    view.stop_flips()
    qtbot.waitUntil(lambda: not view.busy(), timeout=TIMEOUT)
    idle = geometry()
    computing()  # the same pair again: only the loading indicator differs
    assert geometry() == idle
    view.stop_flips()
    qtbot.waitUntil(lambda: not view.busy(), timeout=TIMEOUT)
    assert geometry() == idle


def test_a_fast_point_beside_a_slow_one_is_drawn_whole(qtbot, tmp_path):
    # 2 ms next to 450 ms: on an axis from 0 the fast point's marker was cut in half.
    from PySide6.QtCore import QPointF

    from slimpajama_gui.core.jobs.index import EvalFigures, Variant
    from slimpajama_gui.qt.compare.pareto_plot import MARKER_RADIUS_PX, ParetoPlot

    plot = ParetoPlot()
    qtbot.addWidget(plot)
    plot.resize(600, 420)
    plot.show()
    qtbot.waitExposed(plot)
    variants = []
    for name, p50, acc in (("int8", 2.0, 0.91), ("fp32", 450.0, 0.90)):
        v = Variant(tmp_path / name, name, p50_ms=p50, accuracy=acc, size_bytes=90_000_000)
        v.bench_setup, v.eval_set = "2 threads · batch 1 · cpu", "demo:dev#100"
        v.evals[v.eval_set] = EvalFigures(acc, None, 100, "demo (100 rows)")
        variants.append(v)
    plot.set_variants(variants, "demo:dev#100")
    box = plot.getPlotItem().getViewBox()
    left = box.mapViewToScene(QPointF(box.viewRange()[0][0], 0.91)).x()
    fast = box.mapViewToScene(QPointF(2.0, 0.91)).x()
    assert fast - left >= MARKER_RADIUS_PX - 1
    # The axis starts below 0 by less than its first tick: no negative latency is labelled.
    assert -0.1 * 450 < box.viewRange()[0][0] < 0


def test_in_a_short_window_the_pair_figures_never_overlap(view, qtbot, history):
    # In a 960x640 window Confusion B was drawn over Confusion A's second row, the
    # figures' last rows were cut, and the parameter counts read "22,7…". Offscreen
    # fonts are smaller than a desktop's, so the same squeeze needs a shorter area here.
    _store, folders = history
    view.resize(960 - 150, 460)
    _select_rows(view, _row(view, folders["v1"]), _row(view, folders["v2"]))
    details = view.details
    qtbot.waitUntil(lambda: details.confusion_b.isVisible(), timeout=TIMEOUT)
    view.layout().activate()
    qtbot.wait(50)

    def box(widget):
        top_left = widget.mapTo(details, widget.rect().topLeft())
        return top_left.y(), top_left.y() + widget.height()

    stack = [details.caption_a, details.confusion_a, details.caption_b, details.confusion_b]
    for upper, lower in zip(stack, stack[1:], strict=False):
        assert box(upper)[1] <= box(lower)[0], (upper, lower)
    # Each widget is as tall as it needs; what does not fit scrolls.
    for table in (details.metrics, details.confusion_a, details.confusion_b):
        assert table.height() >= table.horizontalHeader().height() + table.verticalHeader().length()
    # Every figure cell shows its whole text (no "…").
    metrics = details.metrics
    fm = metrics.fontMetrics()
    for r in range(metrics.rowCount()):
        for c in range(3):
            item = metrics.item(r, c)
            lines = item.text().split()
            widest = max(fm.horizontalAdvance(word) for word in lines) if lines else 0
            assert widest <= metrics.columnWidth(c) - 4, (item.text(), metrics.columnWidth(c))
    params = next(
        r for r in range(metrics.rowCount()) if metrics.verticalHeaderItem(r).text() == "Parameters"
    )
    assert metrics.item(params, 0).toolTip().endswith(" parameters")
    assert (
        "," in metrics.item(params, 0).toolTip()
        or int(metrics.item(params, 0).toolTip().split()[0]) < 1000
    )
    # What does not fit scrolls, and the flip list keeps room to show rows.
    scroll = details.figures_scroll
    if scroll.widget().height() > scroll.viewport().height():
        assert scroll.verticalScrollBar().isVisible()
        assert scroll.verticalScrollBar().maximum() > 0
    assert details.flip_table.height() >= 80


def test_in_a_narrow_window_the_figures_stack_and_read_whole(view, qtbot, history):
    # At 960x640 a new user read "90.00 / %" on two lines, "5.8× smal…" and "› negativ",
    # and each picker showed "pre…une" beside the two Benchmark buttons.
    from slimpajama_gui.qt.compare.details import SIDE_BY_SIDE_PX

    _store, folders = history
    details = view.details
    _select_rows(view, _row(view, folders["v1"]), _row(view, folders["v3"]))
    view.resize(960 - 150, 560)
    view.lower.setSizes([360, 450])
    qtbot.waitUntil(lambda: 0 < details.width() < SIDE_BY_SIDE_PX, timeout=TIMEOUT)
    qtbot.waitUntil(
        lambda: details.figures_layout.direction() == QBoxLayout.Direction.TopToBottom,
        timeout=TIMEOUT,
    )
    metrics = details.metrics
    fm = metrics.fontMetrics()
    qtbot.wait(50)
    for r in range(metrics.rowCount()):
        name = metrics.verticalHeaderItem(r).text()
        for c in range(3):
            text = metrics.item(r, c).text()
            if name != "int8 measured on":  # figures on one line, not wrapped or cut
                assert fm.horizontalAdvance(text) <= metrics.columnWidth(c) - 4, (text, c)
    for combo in (details.combo_a, details.combo_b):  # the pickers have the row
        assert combo.width() >= (details.width() - 120) // 2 - 20, combo.width()
    # Wide again: side by side.
    view.resize(1500, 800)
    view.lower.setSizes([500, 1000])
    qtbot.waitUntil(
        lambda: details.figures_layout.direction() == QBoxLayout.Direction.LeftToRight,
        timeout=TIMEOUT,
    )


def test_the_figures_keep_every_row_whole_as_their_pane_changes_width(view, qtbot, history):
    # At 1280 px a new user saw the "int8 measured on" row cut off with no scroll bar:
    # its words wrap onto more lines as the columns narrow, and the rows kept the heights
    # they had for the width the pair was first shown at.
    _store, folders = history
    details = view.details
    view.lower.setSizes([300, 900])  # wide: the pair is shown at this width
    qtbot.waitUntil(lambda: details.width() > 800, timeout=TIMEOUT)
    details.show_pair(*(view.variants[_row(view, folders[k])] for k in ("v1", "v3")))
    metrics, scroll = details.metrics, details.figures_scroll
    last = metrics.rowCount() - 1
    assert metrics.verticalHeaderItem(last).text() == "int8 measured on"

    def whole() -> bool:
        bottom = metrics.rowViewportPosition(last) + metrics.rowHeight(last)
        return metrics.rowHeight(last) >= metrics.sizeHintForRow(last) and (
            bottom <= metrics.viewport().height()
        )

    for width, height, details_px in ((1200, 800, 330), (1200, 800, 900), (700, 480, 400)):
        view.resize(width, height)
        view.lower.setSizes([width - details_px, details_px])
        qtbot.waitUntil(whole, timeout=TIMEOUT)
        # The pane shows the whole table, or it scrolls to it.
        inner = scroll.widget()
        qtbot.waitUntil(
            lambda inner=inner: (
                metrics.mapTo(inner, metrics.rect().bottomLeft()).y() <= inner.height()
            ),
            timeout=TIMEOUT,
        )
        hidden = inner.height() - scroll.viewport().height()
        assert hidden <= 0 or scroll.verticalScrollBar().maximum() >= hidden, (width, height)


def test_the_baseline_line_label_is_never_under_a_point(qtbot, tmp_path):
    # A fine-tuned copy of a head-less source has its latency and the best accuracy, so
    # its point sat on the line's "baseline" label near the top of the chart.
    from PySide6.QtCore import QPointF

    from slimpajama_gui.core.jobs.index import EvalFigures, Variant
    from slimpajama_gui.qt.compare.pareto_plot import ParetoPlot

    plot = ParetoPlot()
    qtbot.addWidget(plot)
    plot.resize(420, 380)
    plot.show()
    qtbot.waitExposed(plot)
    source = Variant(tmp_path / "src", "all-MiniLM", is_source=True, has_head=False)
    source.p50_ms, source.size_bytes, source.bench_setup = 9.9, 91_600_000, "2 threads"
    variants = [source]
    for name, p50, acc, size in (
        ("finetune", 9.92, 0.61, 91_600_000),
        ("int8", 0.83, 0.57, 15_800_000),
    ):
        v = Variant(tmp_path / name, name, p50_ms=p50, accuracy=acc, size_bytes=size)
        v.bench_setup, v.eval_set = "2 threads", "demo:dev#100"
        v.evals[v.eval_set] = EvalFigures(acc, None, 100, "demo (100 rows)")
        variants.append(v)
    plot.set_variants(variants, "demo:dev#100")
    qtbot.wait(20)
    (line,) = plot.baseline_lines
    label = line.label.sceneBoundingRect()
    box = plot.getPlotItem().getViewBox()
    for row in plot.plotted:
        v = plot._variants[row]
        centre = box.mapViewToScene(QPointF(v.p50_ms, 100 * v.accuracy))
        r = plot._diameters[row] / 2
        near_x = max(label.left(), min(centre.x(), label.right()))
        near_y = max(label.top(), min(centre.y(), label.bottom()))
        assert (near_x - centre.x()) ** 2 + (near_y - centre.y()) ** 2 > r**2, v.name
    # The label stays inside the chart and above the legend.
    assert box.sceneBoundingRect().contains(label)
    legend = plot.legend.sceneBoundingRect()
    assert label.bottom() <= legend.top() or (
        label.left() > legend.right() or label.right() < legend.left()
    )
    # The line itself does not run under the legend's box (the source, the slowest model,
    # drew it at the right edge, where the legend sits), nor does any point.
    line_x = box.mapViewToScene(QPointF(line.value(), 0)).x()
    assert not legend.left() - 2 <= line_x <= legend.right() + 2, (line_x, legend)
    for row in plot.plotted:  # not even a marker's rim
        v = plot._variants[row]
        centre = box.mapViewToScene(QPointF(v.p50_ms, 100 * v.accuracy))
        near_x = max(legend.left(), min(centre.x(), legend.right()))
        near_y = max(legend.top(), min(centre.y(), legend.bottom()))
        r = plot._diameters[row] / 2
        assert (near_x - centre.x()) ** 2 + (near_y - centre.y()) ** 2 > r**2, v.name
    assert box.sceneBoundingRect().contains(legend)


def test_an_empty_chart_has_no_tick_values(qtbot):
    from slimpajama_gui.qt.compare.pareto_plot import ParetoPlot

    plot = ParetoPlot()
    qtbot.addWidget(plot)
    plot.set_variants([])
    assert plot.empty.isVisible()
    for axis in ("bottom", "left"):
        assert plot.getPlotItem().getAxis(axis).style["showValues"] is False
