"""The Models area as a user drives it: list, search, add a folder, drop a folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent

from slimpajama_gui.core.model.catalog import discover_models, packaged_minilm_path
from slimpajama_gui.qt import models_view as mv
from slimpajama_gui.qt.main_window import AREAS, MainWindow
from slimpajama_gui.qt.model_table import COLUMN_TITLES, INFO_ROLE, ModelTableModel
from slimpajama_gui.qt.models_view import ModelsView

from ..conftest import write_tiny_bert

SCAN_TIMEOUT = 30_000


def _row_texts(view: ModelsView) -> list[dict[str, str]]:
    proxy = view.proxy
    return [
        {
            proxy.headerData(c, Qt.Orientation.Horizontal): proxy.index(r, c).data()
            for c in range(proxy.columnCount())
        }
        for r in range(proxy.rowCount())
    ]


@pytest.fixture
def window(qtbot):
    win = MainWindow()
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.models_view.scan_finished, timeout=SCAN_TIMEOUT):
        win.show()
    return win


def test_browser_lists_the_packaged_minilm(window):
    rows = _row_texts(window.models_view)
    minilm = [r for r in rows if r["Source"] == "packaged"]
    assert len(minilm) == 1, rows
    row = minilm[0]
    assert row["Parameters"] == "22.7 M"
    assert (row["Layers"], row["Hidden"], row["Heads"], row["Vocabulary"]) == (
        "6",
        "384",
        "12",
        "30,522",
    )
    assert Path(row["Path"]) == packaged_minilm_path()
    # The details pane shows the selected model with one bar per block.
    info = window.models_view.selected_info()
    assert info is not None and info.source == "packaged"
    assert window.models_view.details.fields["Parameters"].text().startswith("22,713,216")
    assert window.models_view.details.bars.labels == [
        "emb",
        "L0",  # numbered from 0, as the wizard's layer buttons and student_layers
        "L1",
        "L2",
        "L3",
        "L4",
        "L5",
        "pooler",  # an encoder only: no classifier head to show (Labels: none yet)
    ]
    assert sum(window.models_view.details.bars.values) == 22_713_216


def test_unbuilt_areas_say_what_they_will_do(window):
    from slimpajama_gui.qt.main_window import PlannedArea

    for area in [a for a in AREAS if isinstance(window.pages[a.key], PlannedArea)]:
        window.show_area(area.key)
        page = window.stack.currentWidget()
        text = " ".join(label.text() for label in page.findChildren(mv.QLabel))
        assert area.title in text and "not available yet" in text


def test_typing_in_search_narrows_rows(window, qtbot, tiny_bert):
    view = window.models_view
    with qtbot.waitSignal(view.scan_finished, timeout=SCAN_TIMEOUT):
        view.add_folders([tiny_bert])
    assert view.proxy.rowCount() == 2
    qtbot.keyClicks(view.search, "tiny")
    assert [r["Name"] for r in _row_texts(view)] == ["tiny-bert"]
    view.search.clear()
    qtbot.keyClicks(view.search, "MINILM packaged")
    assert [r["Source"] for r in _row_texts(view)] == ["packaged"]
    view.search.clear()
    qtbot.keyClicks(view.search, "no-such-model")
    assert view.proxy.rowCount() == 0
    assert view.empty_hint.isVisibleTo(view) and "no-such-model" in view.empty_hint.text()
    view.search.clear()
    assert view.proxy.rowCount() == 2


def test_add_folder_adds_a_row_and_selects_it(window, qtbot, tiny_bert):
    view = window.models_view
    before = view.model.rowCount()
    with qtbot.waitSignal(view.scan_finished, timeout=SCAN_TIMEOUT):
        view.add_folders([tiny_bert])
    assert view.model.rowCount() == before + 1
    info = view.selected_info()
    assert info.name == "tiny-bert" and info.layers == 2 and info.num_labels == 2
    assert view.details.bars.labels == ["emb", "L0", "L1", "head"]
    # Adding the same folder again updates its row instead of duplicating it.
    with qtbot.waitSignal(view.scan_finished, timeout=SCAN_TIMEOUT):
        view.add_folders([tiny_bert])
    assert view.model.rowCount() == before + 1


def test_a_pruned_heads_folder_shows_its_heads_per_layer(window, qtbot, tmp_path):
    from ..core.test_configs import build

    folder = tmp_path / "pruned"
    build(folder, prune={0: [1, 3], 1: [0]})
    view = window.models_view
    with qtbot.waitSignal(view.scan_finished, timeout=SCAN_TIMEOUT):
        view.add_folders([folder])
    row = next(r for r in _row_texts(view) if r["Name"] == "pruned")
    assert row["Heads"] == "2/3"
    assert view.details.fields["Heads per layer"].text() == "2/3"


def test_add_folder_button_uses_the_file_dialog(window, qtbot, tiny_bert, monkeypatch):
    monkeypatch.setattr(mv.QFileDialog, "getExistingDirectory", lambda *a, **k: str(tiny_bert))
    with qtbot.waitSignal(window.models_view.scan_finished, timeout=SCAN_TIMEOUT):
        qtbot.mouseClick(window.models_view.add_button, Qt.MouseButton.LeftButton)
    assert window.models_view.selected_info().name == "tiny-bert"


def test_dropping_a_folder_adds_it(window, qtbot, tiny_bert):
    view = window.models_view
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tiny_bert))])
    enter = QDragEnterEvent(
        QPoint(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    view.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(view.scan_finished, timeout=SCAN_TIMEOUT):
        view.dropEvent(drop)
    assert "tiny-bert" in [r["Name"] for r in _row_texts(view)]


def test_dropping_text_is_ignored(window):
    mime = QMimeData()
    mime.setText("not a folder")
    enter = QDragEnterEvent(
        QPoint(1, 1),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.models_view.dragEnterEvent(enter)
    assert not enter.isAccepted()


def test_pickle_only_folder_is_refused_with_a_sentence(window, qtbot, tmp_path):
    bad = tmp_path / "pickled"
    write_tiny_bert(bad)
    (bad / "model.safetensors").rename(bad / "pytorch_model.bin")
    view = window.models_view
    before = view.model.rowCount()
    with qtbot.waitSignal(view.scan_finished, timeout=SCAN_TIMEOUT):
        view.add_folders([bad])
    assert view.model.rowCount() == before
    assert view.banner.isVisibleTo(view)
    assert "pickle" in view.banner.label.text() and "pickled" in view.banner.label.text()


def test_table_model_passes_qtmodeltester(qtmodeltester, tiny_bert):
    infos, _ = discover_models([tiny_bert])
    model = ModelTableModel()
    model.set_infos(infos)
    assert model.rowCount() == len(infos) >= 2
    qtmodeltester.check(model, force_py=True)
    model.upsert(infos[:1])
    qtmodeltester.check(model, force_py=True)


def test_sorting_by_parameters_is_numeric(window, qtbot, tiny_bert):
    view = window.models_view
    with qtbot.waitSignal(view.scan_finished, timeout=SCAN_TIMEOUT):
        view.add_folders([tiny_bert])
    view.table.sortByColumn(COLUMN_TITLES.index("Parameters"), Qt.SortOrder.AscendingOrder)
    parameters = [
        view.proxy.index(r, 0).data(INFO_ROLE).parameters for r in range(view.proxy.rowCount())
    ]
    assert parameters == sorted(parameters) and parameters[0] < 1_000_000 < parameters[-1]


def test_scanning_runs_off_the_gui_thread(qtbot, monkeypatch, gui_probe):
    """The scan runs on a worker, and the GUI thread handles events while it does."""
    monkeypatch.setattr(mv, "discover_models", gui_probe.wrap(discover_models))
    view = ModelsView(scan_on_start=False)
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.scan_finished, timeout=SCAN_TIMEOUT):
        view.rescan()
    gui_probe.assert_work_ran_off_the_gui_thread(calls=1)
    assert packaged_minilm_path() in [i.path for i in view.model.infos()]


def test_window_geometry_and_area_persist(qtbot, tiny_bert):
    first = MainWindow()
    qtbot.addWidget(first)
    with qtbot.waitSignal(first.models_view.scan_finished, timeout=SCAN_TIMEOUT):
        first.show()
    first.resize(790, 630)
    with qtbot.waitSignal(first.models_view.scan_finished, timeout=SCAN_TIMEOUT):
        first.models_view.add_folders([tiny_bert])
    first.show_area("jobs")
    first.close()

    second = MainWindow()
    qtbot.addWidget(second)
    with qtbot.waitSignal(second.models_view.scan_finished, timeout=SCAN_TIMEOUT):
        second.show()
    assert (second.width(), second.height()) == (790, 630)
    assert second.current_area() == "jobs"
    # Folders the user added come back after a restart.
    assert tiny_bert in second.models_view.extra_folders
    qtbot.waitUntil(
        lambda: "tiny-bert" in [i.name for i in second.models_view.model.infos()],
        timeout=SCAN_TIMEOUT,
    )


def test_model_details_say_family_and_weights_in_words(qtbot, tiny_minilm, tmp_path):
    """The details said 'Family: slimpajama' and 'Weights dtype: onnx_int8', the app's
    internal names: they say what the model is and how its weights are stored."""
    from slimpajama_gui.core.model.encoder import EncoderClassifier
    from slimpajama_gui.core.model.inspection import inspect_model
    from slimpajama_gui.core.model.saving import save_pretrained
    from slimpajama_gui.core.storage.variant import VariantRecord
    from slimpajama_gui.core.techniques.onnx_export import save_onnx_variant
    from slimpajama_gui.qt.model_table import COLUMNS

    model = EncoderClassifier.from_pretrained(tiny_minilm, id2label={0: "neg", 1: "pos"})
    result = tmp_path / "01-finetune"
    save_pretrained(model, result, tokenizer_from=tiny_minilm)
    onnx = tmp_path / "02-quantize"
    onnx.mkdir()
    save_onnx_variant(model, tiny_minilm, onnx, quantized=True)
    VariantRecord(job_id=1, weights_format="onnx_int8", parent=str(result)).write(onnx)

    pane = mv.DetailsPane()
    qtbot.addWidget(pane)
    family = next(c for c in COLUMNS if c.title == "Family")
    expected = [
        (tiny_minilm, "BERT", "float32"),
        (result, "SlimPajama result (BERT family)", "float32"),
        (onnx, "SlimPajama result (BERT family)", "int8 (ONNX Runtime)"),
    ]
    for folder, kind, weights in expected:
        info = inspect_model(folder)
        pane.show_info(info)
        assert pane.fields["Family"].text() == kind, folder
        assert pane.fields["Weights"].text() == weights, folder
        assert family.display(info) == kind  # the table says it the same way


def test_a_deleted_result_leaves_the_playground_pickers(window, qtbot, tiny_minilm, tmp_path):
    # A new user deleted the model picked as Playground's B in Models; B still offered it
    # and predicted from memory, with no word that its folder was gone.
    from slimpajama_gui.core.storage.variant import VariantRecord

    result = tmp_path / "job-a" / "01-finetune"
    shutil.copytree(tiny_minilm, result)
    VariantRecord(job_id=3, recipe={"name": "job-a"}).write(result)
    with qtbot.waitSignal(window.models_view.scan_finished, timeout=SCAN_TIMEOUT):
        window.models_view.add_folders([result.parent])
    picker = window.playground.pickers["b"]

    def offered() -> list[str]:
        return [picker.itemData(i) for i in range(picker.count())]

    qtbot.waitUntil(lambda: str(result) in offered(), timeout=SCAN_TIMEOUT)
    [info] = [i for i in window.models_view.model.infos() if Path(i.path) == result]
    with qtbot.waitSignal(window.models_view.result_deleted, timeout=SCAN_TIMEOUT):
        assert window.models_view.delete_result(info, confirm=False)
    assert not result.exists() and str(result) not in offered()
    # Deleted from Compare instead: the Models list and the pickers let it go as well.
    again = tmp_path / "job-a" / "02-quantize"
    shutil.copytree(tiny_minilm, again)
    VariantRecord(job_id=3, recipe={"name": "job-a"}).write(again)
    with qtbot.waitSignal(window.models_view.scan_finished, timeout=SCAN_TIMEOUT):
        window.models_view.rescan()
    qtbot.waitUntil(lambda: str(again) in offered(), timeout=SCAN_TIMEOUT)
    shutil.rmtree(again)
    window.compare_view.result_deleted.emit(again)
    assert str(again) not in offered()
    assert all(Path(i.path) != again for i in window.models_view.model.infos())
