"""Menus and checks a user meets around the wizard: Open recipe…, the review page's
pre-flight, the Models context menu, the job-finished notice, the data encoding.

Kind: a source the chain cannot use and labels the head was not trained for are refused
on the review page with a sentence, before Run; a folder can be removed from the list
for good; a result the app wrote can be deleted, nothing else.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox, QWizard

from slimpajama_gui.core.plan.presets import load_preset
from slimpajama_gui.core.plan.recipe import Recipe, load_recipe, save_recipe
from slimpajama_gui.core.plan.steps import Distill, Evaluate, FineTune
from slimpajama_gui.core.storage.variant import VariantRecord
from slimpajama_gui.qt.main_window import MainWindow
from slimpajama_gui.qt.models_view import ModelsView
from slimpajama_gui.qt.wizard import CompressWizard

from .test_wizard import click_option, error_text, go_next

TIMEOUT = 30_000
JOB_TIMEOUT = 180_000


def write_recipe(path: Path, model: Path, steps, output: Path, **dataset) -> Path:
    recipe = Recipe(
        name="from-file",
        model=str(model),
        dataset={"train": "demo", "labels": ["negative", "positive"], "max_length": 32, **dataset},
        output=str(output),
        steps=list(steps),
    )
    save_recipe(recipe, path)
    return path


def run_button(w: QWizard):
    return w.button(QWizard.WizardButton.FinishButton)


@pytest.fixture
def wizard(qtbot):
    made: list[CompressWizard] = []

    def make() -> CompressWizard:
        w = CompressWizard(models=[])
        qtbot.addWidget(w)
        made.append(w)
        return w

    yield make
    for w in made:
        qtbot.waitUntil(lambda w=w: not w.busy(), timeout=TIMEOUT)


@pytest.fixture(scope="module")
def onnx_int8(tmp_path_factory, tiny_minilm) -> Path:
    """An ONNX int8 model folder made by the engine's export and quantization."""
    from slimpajama_gui.core.model.encoder import EncoderClassifier
    from slimpajama_gui.core.techniques.onnx_export import save_onnx_variant

    folder = tmp_path_factory.mktemp("onnx") / "minilm-int8"
    folder.mkdir()
    model = EncoderClassifier.from_pretrained(tiny_minilm, id2label={0: "negative", 1: "positive"})
    save_onnx_variant(model, tiny_minilm, folder, quantized=True)
    # As a job saves it: the record says what it is and what it was made from.
    VariantRecord(job_id=1, weights_format="onnx_int8", parent=str(tiny_minilm)).write(folder)
    return folder


@pytest.fixture(scope="module")
def bad_good(tmp_path_factory, tiny_minilm) -> Path:
    """tiny_minilm with a head trained (so its config says) for 'bad' and 'good'."""
    folder = tmp_path_factory.mktemp("m") / "bad-good"
    shutil.copytree(tiny_minilm, folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"0": "bad", "1": "good"}
    config["label2id"] = {"bad": 0, "good": 1}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# --------------------------------------------------------------------------- pre-flight


def test_an_onnx_int8_source_of_a_smallest_chain_is_refused_on_the_review_page(
    qtbot, wizard, onnx_int8, tiny_minilm, tmp_path
):
    path = write_recipe(
        tmp_path / "smallest.yaml", onnx_int8, load_preset("smallest"), tmp_path / "out"
    )
    w = wizard()
    w.open_recipe(load_recipe(path), path)
    w.show()
    qtbot.waitExposed(w)
    review = w.review_page
    assert w.currentPage() is review
    qtbot.waitUntil(lambda: "ONNX int8 model" in error_text(review), timeout=TIMEOUT)
    text = error_text(review)
    assert text.startswith("Run is off until this is fixed:")
    assert "minilm-int8 is an ONNX int8 model: it cannot be fine-tuned, distilled, pruned" in text
    assert (
        "keep only evaluate or benchmark steps in the chain, or choose the float model it "
        f"was made from ({tiny_minilm}) as the source" in text
    )
    assert not run_button(w).isEnabled() and review.recipe_to_run() is None
    assert f"Opened from {path}" in review.saved.text()


def test_labels_the_head_was_not_trained_for_are_reported_before_run(
    qtbot, wizard, bad_good, tmp_path
):
    # A chain without fine-tuning: the head would be new and untrained when distilling.
    path = write_recipe(
        tmp_path / "r.yaml", bad_good, [Distill(student_layers=[0]), Evaluate()], tmp_path / "o"
    )
    w = wizard()
    w.open_recipe(load_recipe(path), path)
    w.show()
    review = w.review_page
    qtbot.waitUntil(lambda: "'bad', 'good'" in error_text(review), timeout=TIMEOUT)
    assert "not for the data's 'negative', 'positive'" in error_text(review)
    assert "tick Fine-tune" in error_text(review)
    assert not run_button(w).isEnabled()


def test_a_preset_on_a_head_for_other_labels_starts_with_fine_tuning_and_says_why(qtbot, bad_good):
    from slimpajama_gui.core.model.inspection import inspect_model

    w = CompressWizard(models=[inspect_model(bad_good)], current_model=bad_good)
    qtbot.addWidget(w)
    w.show()
    go_next(qtbot, w)
    qtbot.waitUntil(w.data_page.isComplete, timeout=TIMEOUT)  # the demo: negative/positive
    go_next(qtbot, w)
    tech = w.techniques_page
    assert isinstance(w.draft.chain[0], FineTune)
    assert (
        "Fine-tuning comes first: the model's classifier was trained for 2 labels ('bad', "
        "'good'), not for the data's 'negative', 'positive'" in tech.description.text()
    )
    assert "right size" not in tech.description.text()
    go_next(qtbot, w)
    go_next(qtbot, w)
    assert run_button(w).isEnabled(), error_text(w.review_page)
    qtbot.waitUntil(lambda: not w.busy(), timeout=TIMEOUT)


# --------------------------------------------------------------------------- Open recipe…


@pytest.fixture
def window(qtbot):
    win = MainWindow()
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.models_view.scan_finished, timeout=TIMEOUT):
        win.show()
    yield win
    win.jobs_view.shutdown(timeout_s=10)


def test_open_recipe_fills_the_wizard_and_starts_on_review(qtbot, window, tiny_minilm, tmp_path):
    path = write_recipe(
        tmp_path / "job.yaml", tiny_minilm, [FineTune(epochs=0.5), Evaluate()], tmp_path / "out"
    )
    w = window.open_recipe(path)
    assert window.current_area() == "compress" and w.currentPage() is w.review_page
    qtbot.waitUntil(lambda: run_button(w).isEnabled(), timeout=TIMEOUT)
    recipe = w.review_page.recipe_to_run()
    assert recipe.name == "from-file" and Path(recipe.model) == tiny_minilm
    assert recipe.output == str(tmp_path / "out")
    assert recipe.dataset["max_length"] == 32  # a key the data page has no field for
    assert [s.step_type for s in recipe.steps] == ["finetune", "evaluate"]
    assert recipe.steps[0].epochs == 0.5
    w.reject()
    qtbot.waitUntil(lambda: not w.busy(), timeout=TIMEOUT)


def test_a_bad_recipe_names_the_file_and_the_field(qtbot, window, monkeypatch, tmp_path):
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text, *a: shown.append(text))
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nmodel: packaged\ndataset: {train: demo}\noutput: out\n"
        "steps:\n  - type: finetune\n    epochs: many\n"
    )
    assert window.open_recipe(bad) is None
    assert len(shown) == 1 and "bad.yaml" in shown[0] and "epochs" in shown[0], shown
    assert window.statusBar().currentMessage() == shown[0]


# --------------------------------------------------------------------------- notification


def test_a_job_that_ends_is_announced_with_its_name_and_result(
    qtbot, window, tiny_minilm, tmp_path
):
    from slimpajama_gui.core.plan.recipe import recipe_from_yaml

    recipe = recipe_from_yaml(
        f"""
name: notify-me
model: {tiny_minilm}
dataset: {{train: demo, labels: [negative, positive], max_length: 32, max_rows: 64}}
output: {tmp_path / "out"}
steps:
  - {{type: finetune, epochs: 1, batch_size: 16}}
  - {{type: quantize, method: dynamic_int8, backend: pytorch, tolerance: 1.0}}
  - {{type: evaluate}}
""",
        "notify.yaml",
        base_dir=tmp_path,
    )
    window.jobs_view.clearFocus()
    with qtbot.waitSignal(window.job_notified, timeout=JOB_TIMEOUT) as notice:
        window.jobs_view.submit(recipe)
    text = notice.args[0]
    store = window.jobs_view.store
    [job] = [j for j in store.list_jobs() if j.name == "notify-me"]
    last = VariantRecord.read(store.variants(job.id)[-1].path)
    assert text.startswith("notify-me finished: ")
    assert f"{100 * last.accuracy:.1f} % eval accuracy" in text
    # The vocabulary the 64 rows use against MiniLM's 30,522 tokens: sizes on disk.
    ratio = float(text.split(", ")[-1].removesuffix("× smaller"))
    assert ratio > 1
    assert window.statusBar().currentMessage() == text

    missing = recipe_from_yaml(
        f"name: broken\nmodel: {tiny_minilm}\ndataset: {{train: {tmp_path / 'nope.csv'}}}\n"
        f"output: {tmp_path / 'out2'}\nsteps:\n  - {{type: evaluate}}\n",
        "broken.yaml",
        base_dir=tmp_path,
    )
    with qtbot.waitSignal(window.job_notified, timeout=JOB_TIMEOUT) as notice:
        window.jobs_view.submit(missing)
    assert notice.args[0].startswith("broken failed")
    assert "nope.csv" in notice.args[0]


# --------------------------------------------------------------------------- Models menu


def test_the_context_menu_offers_what_applies(qtbot, monkeypatch, tiny_minilm, tmp_path):
    from PySide6.QtGui import QDesktopServices

    result = tmp_path / "results" / "job-a" / "01-finetune"
    shutil.copytree(tiny_minilm, result)
    VariantRecord(job_id=7, recipe={"name": "job-a"}).write(result)
    view = ModelsView(scan_on_start=False)
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.scan_finished, timeout=TIMEOUT):
        view.add_folders([tiny_minilm, result.parent])
    infos = {i.name: i for i in view.model.infos()}
    assert set(infos) == {"tiny-minilm", "job-a › 01-finetune"}
    own = [t for t, _ in view.context_actions(infos["tiny-minilm"])]
    assert own == ["Compress this…", "Open in Playground", "Reveal in file manager",
                   "Remove folder from list"]  # fmt: skip
    mine = dict(view.context_actions(infos["job-a › 01-finetune"]))
    assert "Delete result…" in mine
    # An encoder without a classifier head predicts nothing: no Playground entry for it.
    encoder = replace(infos["tiny-minilm"], num_labels=None)
    assert "Open in Playground" not in dict(view.context_actions(encoder))

    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()))
    dict(view.context_actions(infos["tiny-minilm"]))["Reveal in file manager"]()
    assert opened == [str(tiny_minilm)]
    with qtbot.waitSignal(view.compress_requested) as asked:
        dict(view.context_actions(infos["tiny-minilm"]))["Compress this…"]()
    assert asked.args == [tiny_minilm]

    # Deleting asks first, naming the folder; Cancel keeps it.
    questions: list[str] = []
    answer = [QMessageBox.StandardButton.Cancel]
    monkeypatch.setattr(
        QMessageBox, "question", lambda _p, _t, text, *a: (questions.append(text), answer[0])[1]
    )
    mine["Delete result…"]()
    assert str(result) in questions[0] and result.is_dir()
    answer[0] = QMessageBox.StandardButton.Yes
    with qtbot.waitSignal(view.result_deleted, timeout=TIMEOUT):
        mine["Delete result…"]()
    assert not result.exists() and tiny_minilm.is_dir()
    assert [i.name for i in view.model.infos()] == ["tiny-minilm"]
    assert view.delete_result(infos["tiny-minilm"], confirm=False) is False  # never


def test_a_refused_folder_can_be_removed_for_good(qtbot, tmp_path):
    refused = tmp_path / "pickled"
    refused.mkdir()
    (refused / "pytorch_model.bin").write_bytes(b"not opened")
    view = ModelsView(scan_on_start=False)
    qtbot.addWidget(view)
    view.show()
    with qtbot.waitSignal(view.scan_finished, timeout=TIMEOUT):
        view.add_folders([refused])
    assert "pickle" in view.banner.label.text()
    assert view.banner.remove_button.isVisible()
    [action] = view.banner.remove_menu.actions()
    assert action.text() == str(refused)
    with qtbot.waitSignal(view.scan_finished, timeout=TIMEOUT):
        action.trigger()
    assert refused not in view.extra_folders and refused.is_dir()  # the folder stays
    # The next start does not bring it back.
    again = ModelsView(scan_on_start=False)
    qtbot.addWidget(again)
    again.restore_state(QSettings())
    assert refused not in again.extra_folders
    qtbot.waitUntil(lambda: not view.busy() and not again.busy(), timeout=TIMEOUT)


# --------------------------------------------------------------------------- data page


def test_a_latin1_file_is_read_once_its_encoding_is_chosen(qtbot, tiny_minilm, tmp_path):
    from slimpajama_gui.core.model.inspection import inspect_model
    from slimpajama_gui.qt.wizard.data_page import ENCODINGS

    path = tmp_path / "avis.csv"
    rows = ["texte,note"] + [f"{'très bon film' if i % 2 else 'ennuyeux à éviter'} {i},{i % 2}"
                             for i in range(40)]  # fmt: skip
    path.write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    w = CompressWizard(models=[inspect_model(tiny_minilm)], current_model=tiny_minilm)
    qtbot.addWidget(w)
    w.show()
    go_next(qtbot, w)
    data = w.data_page
    click_option(qtbot, data.file_radio)
    qtbot.keyClicks(data.train_edit, str(path))
    qtbot.waitUntil(lambda: bool(error_text(data)), timeout=TIMEOUT)
    message = error_text(data)
    assert "avis.csv is not valid utf-8: line 2" in message
    assert "choose the one it was written in under Encoding" in message
    assert "encoding=" not in message and "dataset" not in message
    assert "cp1252" in ENCODINGS
    data.encoding_combo.setCurrentText("cp1252")
    qtbot.waitUntil(data.isComplete, timeout=TIMEOUT)
    assert w.draft.data_spec["encoding"] == "cp1252"
    assert data.spec()["encoding"] == "cp1252" and not error_text(data)
    qtbot.waitUntil(lambda: not w.busy(), timeout=TIMEOUT)


def test_a_result_of_a_running_job_is_not_deleted(qtbot, monkeypatch, tiny_minilm, tmp_path):
    from slimpajama_gui.core.storage.locks import OutputLock

    result = tmp_path / "job-b" / "01-finetune"
    shutil.copytree(tiny_minilm, result)
    VariantRecord(job_id=8, recipe={"name": "job-b"}).write(result)
    view = ModelsView(scan_on_start=False)
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.scan_finished, timeout=TIMEOUT):
        view.add_folders([result.parent])
    [info] = view.model.infos()
    warned: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text, *a: warned.append(text))
    with OutputLock(result.parent, job_id=9):  # a job still writing that output
        assert view.delete_result(info, confirm=False)
        qtbot.waitUntil(lambda: bool(warned), timeout=TIMEOUT)
    assert warned[0].startswith(f"{result.parent} is being written by a job that is still")
    assert result.is_dir() and view.model.rowCount() == 1


def test_after_a_delete_the_details_pane_describes_a_model_that_exists(
    qtbot, tiny_minilm, tmp_path
):
    # A new user deleted the selected result; the details pane went on showing its folder.
    results = [tmp_path / "job-a" / name for name in ("01-finetune", "02-quantize")]
    for folder in results:
        shutil.copytree(tiny_minilm, folder)
        VariantRecord(job_id=4, recipe={"name": "job-a"}).write(folder)
    view = ModelsView(scan_on_start=False)
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.scan_finished, timeout=TIMEOUT):
        view.add_folders([tmp_path / "job-a"])
    view.select_path(results[0])
    assert view.details.fields["Folder"].text() == str(results[0])
    with qtbot.waitSignal(view.result_deleted, timeout=TIMEOUT):
        assert view.delete_result(view.selected_info(), confirm=False)
    assert not results[0].exists()
    # The neighbour is selected and described, not the folder that is gone.
    assert Path(view.selected_info().path) == results[1]
    assert view.details.fields["Folder"].text() == str(results[1])
    with qtbot.waitSignal(view.result_deleted, timeout=TIMEOUT):
        assert view.delete_result(view.selected_info(), confirm=False)
    assert view.selected_info() is None and view.model.rowCount() == 0
    assert view.details.fields["Folder"].text() == "–"
    assert "Select a model" in view.details.title.text() and view.empty_hint.isVisibleTo(view)


def test_an_onnx_int8_source_chosen_on_the_model_page_is_stopped_before_the_review(
    qtbot, onnx_int8, tiny_minilm
):
    from slimpajama_gui.core.model.catalog import describe_folder

    w = CompressWizard(models=[describe_folder(onnx_int8)], current_model=onnx_int8)
    qtbot.addWidget(w)
    w.show()
    # named with its job (its output folder: the record holds no recipe here)
    assert w.model_page.selected_info().name == f"{onnx_int8.parent.name} › minilm-int8"
    go_next(qtbot, w)
    qtbot.waitUntil(w.data_page.isComplete, timeout=TIMEOUT)
    go_next(qtbot, w)
    tech = w.techniques_page
    tech.choose("balanced")
    qtbot.waitUntil(lambda: "ONNX int8 model" in error_text(tech), timeout=TIMEOUT)
    assert f"choose the float model it was made from ({tiny_minilm})" in error_text(tech)
    assert not w.button(QWizard.WizardButton.NextButton).isEnabled()
    qtbot.waitUntil(lambda: not w.busy(), timeout=TIMEOUT)


def test_help_lists_every_shortcut_and_about_names_versions_and_folders(
    qtbot, tmp_path, monkeypatch
):
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QDesktopServices, QKeySequence

    from slimpajama_gui.qt import help_menu

    monkeypatch.setenv("SLIMPAJAMA_HOME", str(tmp_path / "home"))
    window = MainWindow()
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.models_view.scan_finished, timeout=TIMEOUT):
        window.show()
    menus = {a.text(): a.menu() for a in window.menuBar().actions()}
    help_actions = {a.text(): a for a in menus["&Help"].actions()}
    assert list(help_actions) == ["&Keyboard shortcuts", "&About SlimPajama Studio"]

    help_actions["&Keyboard shortcuts"].trigger()
    (box,) = [
        b for b in window.findChildren(QMessageBox) if b.windowTitle() == "Keyboard shortcuts"
    ]
    assert box.isVisible()
    text = box.text()
    # Read from the window: every menu action with keys and the Playground's own shortcut.
    for keys, what in [
        ("Ctrl+,", "Edit › Settings"),
        ("Ctrl+1", "View › Models"),
        ("Ctrl+Return", "Playground › Predict all"),
    ]:
        assert keys in text and what in text, (keys, what, text)
    # Standard keys (Quit, Open) differ by platform: whatever this one binds is listed.
    for menu in menus.values():
        for action in menu.actions():
            if not action.shortcut().isEmpty():
                assert action.shortcut().toString(QKeySequence.SequenceFormat.NativeText) in text
    box.close()

    about = help_menu.about_text()
    assert str(tmp_path / "home") in about and "slimpajama.log" in about
    for name in ("torch", "transformers", "onnxruntime", "PySide6"):
        assert f"{name} " in about

    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    (open_data,) = [a for a in menus["&File"].actions() if a.text() == "Open &data folder"]
    open_data.trigger()
    assert [u.toLocalFile() for u in opened] == [str(tmp_path / "home")]
