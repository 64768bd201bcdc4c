"""The compression wizard as a user drives it: pick, tick, type, review, Run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QLabel,
    QMessageBox,
    QStyle,
    QStyleOptionGroupBox,
    QVBoxLayout,
    QWidget,
    QWizard,
)

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs import pipeline
from slimpajama_gui.core.model.catalog import packaged_minilm_path
from slimpajama_gui.core.model.inspection import ModelInfo, inspect_model
from slimpajama_gui.core.plan.presets import PRESETS
from slimpajama_gui.core.plan.recipe import (
    Benchmark,
    Distill,
    DistillStatic,
    Evaluate,
    FineTune,
    Prune,
    Quantize,
    load_recipe,
    recipe_from_yaml,
)
from slimpajama_gui.core.plan.search_step import Search
from slimpajama_gui.core.plan.steps import Sensitivity
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.qt.wizard import CompressWizard
from slimpajama_gui.qt.wizard.numbers import NumberBox
from slimpajama_gui.qt.wizard.settings_page import cuda_available

from ..conftest import write_tiny_bert, write_tiny_minilm_vocab

TIMEOUT = 30_000


# --------------------------------------------------------------------------- driving helpers


def click(qtbot, widget) -> None:
    qtbot.mouseClick(widget, Qt.MouseButton.LeftButton)


def click_option(qtbot, button) -> None:
    """Click a radio button or check box on its indicator (its label may end early)."""
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton, pos=QPoint(8, button.height() // 2))


def click_group_check(qtbot, box: QGroupBox) -> None:
    """Click the check box in a checkable group box's title, where a user clicks."""
    option = QStyleOptionGroupBox()
    box.initStyleOption(option)
    rect = box.style().subControlRect(
        QStyle.ComplexControl.CC_GroupBox, option, QStyle.SubControl.SC_GroupBoxCheckBox, box
    )
    before = box.isChecked()
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=rect.center())
    assert box.isChecked() != before, f"clicking {box.title()!r} did not toggle it"


def type_into(qtbot, spin: QAbstractSpinBox, text: str) -> None:
    """Select the spin box's text and type a new value, as a user would."""
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, text)
    qtbot.keyClick(spin, Qt.Key.Key_Tab)


def custom_with_distill(qtbot, tech) -> None:
    """Choose the custom preset on the techniques page ``tech`` and tick Distill (the
    preset the chain came from may have left it unticked)."""
    click(qtbot, tech.preset_buttons["custom"])
    if not tech.distill_box.isChecked():
        click_group_check(qtbot, tech.distill_box)


def choose(qtbot, combo: QComboBox, text: str) -> None:
    """Open the combo's list and click the item whose text starts with ``text``."""
    index = next(
        i for i in range(combo.count()) if combo.itemText(i).lower().startswith(text.lower())
    )
    combo.showPopup()
    view = combo.view()
    qtbot.waitUntil(view.isVisible)
    rect = view.visualRect(view.model().index(index, combo.modelColumn()))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: not view.isVisible())
    assert combo.currentIndex() == index, combo.currentText()


def next_button(w: QWizard):
    return w.button(QWizard.WizardButton.NextButton)


def go_next(qtbot, w: CompressWizard) -> None:
    """Click Next as a user who has looked at the page: once the double-click interval
    in which Next ignores presses after a page appears (the wizard's own timer) is over."""
    page = w.currentId()
    assert next_button(w).isEnabled(), error_text(w.currentPage())
    qtbot.waitUntil(lambda: not w.presses_guarded(), timeout=TIMEOUT)
    click(qtbot, next_button(w))
    assert w.currentId() == page + 1


def error_text(page) -> str:
    return page.error.text() if page.error.isVisible() else ""


def click_run(qtbot, w: CompressWizard) -> None:
    """Click Run as a user who has read the review page: once the double-click interval
    in which Run ignores presses (the wizard's own timer) is over."""
    qtbot.waitUntil(lambda: not w.presses_guarded(), timeout=TIMEOUT)
    click(qtbot, w.button(QWizard.WizardButton.FinishButton))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def make_wizard(qtbot):
    made: list[CompressWizard] = []

    def make(models, current=None) -> CompressWizard:
        infos = [m if isinstance(m, ModelInfo) else inspect_model(m) for m in models]
        w = CompressWizard(models=infos, current_model=current)
        qtbot.addWidget(w)
        w.show()
        qtbot.waitExposed(w)
        made.append(w)
        return w

    yield make
    # Nothing may outlive the test: header reads, data loads, vocabulary counts.
    for w in made:
        qtbot.waitUntil(lambda w=w: not w.busy(), timeout=TIMEOUT)


@pytest.fixture
def on_techniques(qtbot, make_wizard, tiny_minilm):
    """The wizard on the techniques page, with tiny_minilm and the demo data chosen."""
    w = make_wizard([tiny_minilm], tiny_minilm)
    go_next(qtbot, w)
    qtbot.waitUntil(w.data_page.isComplete, timeout=TIMEOUT)
    go_next(qtbot, w)
    return w


# --------------------------------------------------------------------------- the whole way


def test_custom_chain_review_run_and_execute(qtbot, make_wizard, tiny_minilm, tiny_bert, tmp_path):
    w = make_wizard([tiny_bert, tiny_minilm], tiny_minilm)

    # (a) Model: the preselected one, picked again by a click; its summary has the head.
    page = w.model_page
    assert page.selected_info().path == tiny_minilm
    row = next(
        r for r in range(page.list.count())
        if page.list.item(r).data(Qt.ItemDataRole.UserRole).path == tiny_minilm
    )  # fmt: skip
    rect = page.list.visualItemRect(page.list.item(row))
    qtbot.mouseClick(page.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert "yes, 2 classes" in page.summary.text()
    assert "2" in page.summary.text() and "Vocabulary" in page.summary.text()
    assert "<td>BERT</td>" in page.summary.text()  # in words, as the Models area says it
    go_next(qtbot, w)

    # (b) Data: the demo set is the default; preview, mapping and label balance appear.
    data = w.data_page
    assert data.demo_radio.isChecked()
    qtbot.waitUntil(data.isComplete, timeout=TIMEOUT)
    assert data.table.rowCount() == 8
    assert [data.table.horizontalHeaderItem(c).text() for c in range(2)] == ["sentence", "label"]
    assert (data.text_combo.currentText(), data.label_combo.currentText()) == ("sentence", "label")
    assert data.balance.counts == {"negative": 220, "positive": 220}
    go_next(qtbot, w)

    # (c) Techniques: custom = distill + heads pruning + int8 in PyTorch.
    tech = w.techniques_page
    custom_with_distill(qtbot, tech)
    assert tech.preset() == "custom"
    if tech.vocab_box.isChecked():
        click_group_check(qtbot, tech.vocab_box)
    assert tech.student_picker.selected() == [1]  # balanced's 0, 1, 2, 5: the 2-layer default
    click_group_check(qtbot, tech.heads_box)
    type_into(qtbot, tech.heads_amount, "50")
    if not tech.quant_box.isChecked():
        click_group_check(qtbot, tech.quant_box)
    choose(qtbot, tech.quant_method, "dyn")
    choose(qtbot, tech.quant_backend, "Py")
    type_into(qtbot, tech.tolerance, "50")
    click_option(qtbot, tech.benchmark_check)  # keep the test quick: accuracy only
    assert not error_text(tech), error_text(tech)
    chain = tech.chain()
    assert [type(s) for s in chain] == [Distill, Prune, Quantize, Evaluate]
    assert chain[1].method == "heads" and chain[1].amount == pytest.approx(0.5)
    assert (chain[2].method, chain[2].backend) == ("dynamic_int8", "pytorch")
    go_next(qtbot, w)

    # (d) Settings: one row per training step; tiny epochs, no recovery training.
    settings = w.settings_page
    distill_row = settings.row_for("distill")
    prune_row = settings.row_for("prune", "heads")
    assert distill_row is not None and prune_row is not None
    type_into(qtbot, distill_row.epochs, "0.1")
    type_into(qtbot, prune_row.epochs, "0")
    type_into(qtbot, distill_row.batch_size, "32")
    lr = distill_row.learning_rate
    lr.lineEdit().selectAll()
    qtbot.keyClicks(lr.lineEdit(), "2e-4")
    assert settings.device.currentData() == "auto"
    assert settings.output_edit.text().startswith("{data}/results/tiny-minilm-")
    assert not error_text(settings), error_text(settings)
    go_next(qtbot, w)

    # (e) Review: smaller than now, and YAML that parses back to the same recipe.
    review = w.review_page
    est = review.estimate
    assert est is not None
    assert est.parameters_after < est.parameters_before
    assert est.size_after < est.size_before
    assert (est.layers_after, est.heads_after) == (1, [2])
    assert "smaller than" in review.headline.text()
    text = review.yaml.toPlainText()
    parsed = recipe_from_yaml(text)
    assert parsed == w.recipe()
    steps = parsed.steps
    assert steps[0].epochs == pytest.approx(0.1) and steps[0].learning_rate == pytest.approx(2e-4)
    assert steps[0].batch_size == 32 and steps[1].recovery_epochs == 0
    assert parsed.model == str(tiny_minilm) and parsed.dataset["train"] == "demo"
    assert w.button(QWizard.WizardButton.FinishButton).text() == "Run"

    with qtbot.waitSignal(w.recipe_ready, timeout=TIMEOUT) as blocker:
        click_run(qtbot, w)
    recipe = blocker.args[0]
    assert recipe == parsed
    assert not w.isVisible()

    # The emitted recipe runs as it is.
    with JobStore(tmp_path / "jobs.db") as store:
        result = pipeline.run(recipe, store=store)
        assert result.status == "done", result.error
        assert store.get_job(result.job_id).status == "done"
    assert [s["step"] for s in result.summary] == ["distill", "prune", "quantize", "evaluate"]
    assert result.final is not None and result.final.is_dir()


# --------------------------------------------------------------------------- invalid choices


def test_a_click_that_makes_the_chain_custom_does_not_move_the_boxes(qtbot, on_techniques):
    """The preset's description is longer than a custom chain's: the boxes under it stay
    where they were, so the user's next click lands where they aimed."""
    tech = on_techniques.techniques_page
    click(qtbot, tech.preset_buttons["balanced"])
    qtbot.wait(50)
    before = tech.distill_box.mapTo(tech, tech.distill_box.rect().topLeft())
    click_group_check(qtbot, tech.vocab_box)  # an edit: the chain is now custom
    assert tech.preset() == "custom" and not error_text(tech)
    qtbot.wait(50)
    assert tech.distill_box.mapTo(tech, tech.distill_box.rect().topLeft()) == before


def test_an_edit_keeps_the_preset_s_training_settings(qtbot, on_techniques):
    """Making the chain custom changes what was edited and nothing else: the preset's
    epochs, learning rates, batch sizes and warm-up stay (they fell back to defaults)."""
    tech = on_techniques.techniques_page
    click(qtbot, tech.preset_buttons["balanced"])

    def training(chain):
        return {
            (s.step_type, getattr(s, "method", "")): (
                getattr(s, "epochs", None), s.learning_rate, s.batch_size,
                getattr(s, "warmup_ratio", None),
            )
            for s in chain
            if hasattr(s, "learning_rate")
        }  # fmt: skip

    before = training(tech.chain())
    assert before[("distill", "")][:3] == (4, 1e-4, 16)  # the preset's, not the defaults
    assert ("prune", "vocabulary") not in before  # balanced keeps every token
    click_group_check(qtbot, tech.vocab_box)  # an edit: the chain is now custom
    assert tech.preset() == "custom"
    after = training(tech.chain())
    assert {k: v for k, v in after.items() if k != ("prune", "vocabulary")} == before


def test_invalid_techniques_block_next_with_a_sentence(qtbot, on_techniques):
    w = on_techniques
    tech = w.techniques_page
    custom_with_distill(qtbot, tech)
    assert tech.student_picker.selected() == [1]  # balanced's 0, 1, 2, 5: the 2-layer default

    # Every layer kept: the student would be no smaller.
    click(qtbot, tech.student_picker.buttons[0])
    assert tech.student_picker.selected() == [0, 1]
    assert "all 2 layers are selected" in error_text(tech)
    assert not next_button(w).isEnabled()
    w.next()
    assert w.currentPage() is tech

    # No layer kept.
    click(qtbot, tech.student_picker.buttons[0])
    click(qtbot, tech.student_picker.buttons[1])
    assert "select at least one layer" in error_text(tech)
    assert "teacher layers: none selected" in tech.description.text()  # not "every second"
    assert not next_button(w).isEnabled()
    click(qtbot, tech.student_picker.buttons[1])
    assert not error_text(tech)
    assert next_button(w).isEnabled()

    # An amount out of range: the field's sentence, in the per cent the box shows.
    click_group_check(qtbot, tech.heads_box)
    type_refused(qtbot, tech, tech.heads_amount, "100",
                 "Prune attention heads: 100 % is too large; type a number above 0 and below "
                 "100 %.")  # fmt: skip
    assert tech.heads_amount.text() == "100 %"
    type_into(qtbot, tech.heads_amount, "25")
    assert not error_text(tech)

    # A method the backend cannot do.
    if not tech.quant_box.isChecked():
        click_group_check(qtbot, tech.quant_box)
    choose(qtbot, tech.quant_backend, "onnx")
    choose(qtbot, tech.quant_method, "fp16")
    assert "onnxruntime backend quantizes with dynamic_int8 only" in error_text(tech)
    assert not next_button(w).isEnabled()
    choose(qtbot, tech.quant_backend, "Py")
    assert not error_text(tech)

    # Distillation and dropping layers both pick layers: only one at a time.
    click_group_check(qtbot, tech.layers_box)
    assert "either distillation or dropping layers" in error_text(tech)
    click_group_check(qtbot, tech.layers_box)

    # Nothing ticked at all.
    for box in (tech.distill_box, tech.heads_box, tech.quant_box, tech.vocab_box,
                tech.finetune_box):  # fmt: skip
        if box.isChecked():
            click_group_check(qtbot, box)
    assert "at least one technique" in error_text(tech)
    assert not next_button(w).isEnabled()

    # A preset is always valid again.
    click(qtbot, tech.preset_buttons["fast"])
    assert not error_text(tech)
    assert next_button(w).isEnabled()


def test_vocabulary_keep_general_is_a_field_the_chain_carries(qtbot, on_techniques):
    """The vocabulary step's keep_general: the preset's default, then what the user types."""
    from slimpajama_gui.core.plan.steps import KEEP_GENERAL

    tech = on_techniques.techniques_page
    click(qtbot, tech.preset_buttons["smallest"])
    vocab = [s for s in tech.chain() if isinstance(s, Prune) and s.method == "vocabulary"]
    assert [s.keep_general for s in vocab] == [KEEP_GENERAL]
    assert tech.vocab_general.value() == KEEP_GENERAL
    type_into(qtbot, tech.vocab_general, "0")
    assert tech.preset() == "custom"  # an edit makes the chain the user's own
    vocab = [s for s in tech.chain() if isinstance(s, Prune) and s.method == "vocabulary"]
    assert [s.keep_general for s in vocab] == [0]
    assert not error_text(tech)


def test_student_ffn_augment_and_4_bit_embeddings_are_fields_the_chain_carries(
    qtbot, on_techniques
):
    """A preset with a half-FFN student and 4-bit embeddings keeps both when edited, and
    the 4-bit box only applies to the onnxruntime backend."""
    from slimpajama_gui.core.plan.steps import Distill, Quantize

    tech = on_techniques.techniques_page
    click(qtbot, tech.preset_buttons["balanced"])
    if not tech.distill_box.isChecked():
        click_group_check(qtbot, tech.distill_box)
    type_into(qtbot, tech.student_ffn, "50")
    type_into(qtbot, tech.augment, "2")
    assert tech.preset() == "custom"
    (distill,) = [s for s in tech.chain() if isinstance(s, Distill)]
    assert distill.ffn_fraction == 0.5 and distill.augment == 2
    if not tech.quant_box.isChecked():
        click_group_check(qtbot, tech.quant_box)
    choose(qtbot, tech.quant_backend, "onnx")
    assert tech.quant_embeddings4.isEnabled()
    assert tech.quant_embeddings4.isChecked()  # the balanced preset stores them in 4 bits
    click(qtbot, tech.quant_embeddings4)
    (quant,) = [s for s in tech.chain() if isinstance(s, Quantize)]
    assert quant.embedding_bits == 8
    click(qtbot, tech.quant_embeddings4)
    (quant,) = [s for s in tech.chain() if isinstance(s, Quantize)]
    assert quant.embedding_bits == 4 and quant.backend == "onnxruntime"
    assert not error_text(tech)
    # The PyTorch backend has no 4-bit embeddings: the box is greyed out and cleared.
    choose(qtbot, tech.quant_backend, "Py")
    assert not tech.quant_embeddings4.isEnabled() and not tech.quant_embeddings4.isChecked()
    (quant,) = [s for s in tech.chain() if isinstance(s, Quantize)]
    assert quant.embedding_bits == 8 and not error_text(tech)
    # Nor are there 4-bit embeddings when the embeddings are not quantized at all.
    choose(qtbot, tech.quant_backend, "onnx")
    click(qtbot, tech.quant_embeddings4)
    click(qtbot, tech.quant_embeddings)
    assert not tech.quant_embeddings4.isEnabled() and not tech.quant_embeddings4.isChecked()
    assert [s.embedding_bits for s in tech.chain() if isinstance(s, Quantize)] == [8]
    click(qtbot, tech.quant_embeddings)
    click(qtbot, tech.quant_embeddings4)
    # Both survive the chain being shown again (a preset picked, File -> Open recipe).
    steps = tech.chain()
    tech._show_chain(steps)
    assert tech.student_ffn.value() == 50 and tech.quant_embeddings4.isChecked()
    assert tech.augment.value() == 2


def test_settings_errors_block_next(qtbot, on_techniques):
    w = on_techniques
    tech = w.techniques_page
    click(qtbot, tech.preset_buttons["custom"])
    click_group_check(qtbot, tech.magnitude_box)
    choose(qtbot, tech.magnitude_schedule, "grad")
    go_next(qtbot, w)
    settings = w.settings_page
    row = settings.row_for("prune", "magnitude")
    type_into(qtbot, row.epochs, "0")
    # The recipe's check, in the page's terms: the field as labelled, no recipe key.
    assert error_text(settings) == (
        "Prune weights — recovery — epochs: must be above 0 when schedule is 'gradual' "
        "(pruning happens while it trains)."
    )
    assert not next_button(w).isEnabled()
    type_into(qtbot, row.epochs, "1")
    row.learning_rate.lineEdit().selectAll()
    qtbot.keyClicks(row.learning_rate.lineEdit(), "fast")
    assert "'fast' is not a number" in error_text(settings)
    assert not next_button(w).isEnabled()
    row.learning_rate.lineEdit().selectAll()
    qtbot.keyClicks(row.learning_rate.lineEdit(), "3e-5")
    settings.output_edit.selectAll()
    qtbot.keyClick(settings.output_edit, Qt.Key.Key_Delete)
    assert "Output folder" in error_text(settings)
    # The recipe refuses to write into the source model (RELIABILITY F8).
    qtbot.keyClicks(settings.output_edit, str(Path(w.model_info().path) / "out"))
    assert "source model folder" in error_text(settings)
    assert not next_button(w).isEnabled()
    settings.output_edit.selectAll()
    qtbot.keyClicks(settings.output_edit, "{data}/results/elsewhere")
    assert not error_text(settings)
    go_next(qtbot, w)
    assert w.recipe().output == "{data}/results/elsewhere"


def type_learning_rate(qtbot, row, text: str) -> None:
    """Replace a settings row's learning rate with ``text``, as a user types it."""
    row.learning_rate.lineEdit().selectAll()
    qtbot.keyClicks(row.learning_rate.lineEdit(), text)


def test_every_problem_of_the_settings_page_is_listed_at_once(qtbot, on_techniques):
    """Epochs out of range, a learning rate 'abc', batch size 0 and threads 'zz': one
    sentence each, in page order, not one a fix (the learning rate's showed only once
    every number was fixed, a second row's only once the first row's was)."""
    w = on_techniques
    tech = w.techniques_page
    click(qtbot, tech.preset_buttons["custom"])
    if not tech.finetune_box.isChecked():
        click_group_check(qtbot, tech.finetune_box)
    click_group_check(qtbot, tech.magnitude_box)
    choose(qtbot, tech.magnitude_schedule, "grad")
    go_next(qtbot, w)
    settings = w.settings_page
    finetune, prune = settings.row_for("finetune"), settings.row_for("prune", "magnitude")
    type_into(qtbot, finetune.epochs, "1001")
    type_learning_rate(qtbot, finetune, "abc")
    type_into(qtbot, finetune.batch_size, "0")
    # A check between fields, beside a number out of range in the same step.
    type_into(qtbot, prune.epochs, "0")
    type_learning_rate(qtbot, prune, "fast")
    type_into(qtbot, prune.batch_size, "0")
    type_into(qtbot, settings.threads, "zz")
    settings.output_edit.clear()
    assert error_text(settings).split("\n") == [
        "Fine-tune — epochs: 1001 is too large; type a number above 0 and at most 1,000.",
        "Fine-tune — learning rate: 'abc' is not a number; type a number above 0 and at most 10, like 5e-5.",
        "Fine-tune — batch size: 0 is too small; type a whole number from 1 to 8,192.",
        "Prune weights — recovery — epochs: must be above 0 when schedule is 'gradual' "
        "(pruning happens while it trains).",
        "Prune weights — recovery — learning rate: 'fast' is not a number; type a number above 0 and at most 10, like 5e-5.",
        "Prune weights — recovery — batch size: 0 is too small; type a whole number from 1 "
        "to 8,192.",
        "Threads: 'zz' is not a number; type a whole number from 0 (auto) to 1,024.",
        "Output folder: choose where the results go.",
    ]
    assert not next_button(w).isEnabled()
    # Each fix takes away its own sentence and shows no new one.
    for fix in (
        lambda: type_into(qtbot, finetune.epochs, "2"),
        lambda: type_learning_rate(qtbot, finetune, "5e-5"),
        lambda: type_into(qtbot, finetune.batch_size, "16"),
        lambda: type_into(qtbot, prune.epochs, "1"),
        lambda: type_learning_rate(qtbot, prune, "5e-5"),
        lambda: type_into(qtbot, prune.batch_size, "16"),
        lambda: type_into(qtbot, settings.threads, "auto"),
    ):
        before = error_text(settings).split("\n")
        fix()
        assert error_text(settings).split("\n") == before[1:]
    assert not settings.output_resolved.text()  # no "= ." for an empty field
    # A relative folder would land wherever the app was started: said, not taken.
    qtbot.keyClicks(settings.output_edit, "relative dir")
    assert error_text(settings).startswith("Output folder: “relative dir” is not a full path")
    assert not next_button(w).isEnabled()
    settings.output_edit.clear()
    qtbot.keyClicks(settings.output_edit, "{data}/results/all-at-once")
    assert not error_text(settings) and next_button(w).isEnabled()


def test_every_problem_of_the_techniques_page_is_listed_at_once(qtbot, on_techniques):
    """Numbers out of range and the recipe's checks between fields, together, in page
    order (column by column, top to bottom)."""
    w = on_techniques
    tech = w.techniques_page
    custom_with_distill(qtbot, tech)
    for box in (tech.heads_box, tech.quant_box):
        if not box.isChecked():
            click_group_check(qtbot, box)
    type_into(qtbot, tech.temperature, "0")
    type_into(qtbot, tech.alpha_kd, "0")
    type_into(qtbot, tech.hidden_mse, "2e6")
    type_into(qtbot, tech.augment, "2")
    type_into(qtbot, tech.heads_amount, "100")
    choose(qtbot, tech.quant_backend, "onnx")
    choose(qtbot, tech.quant_method, "fp16")
    assert error_text(tech).split("\n") == [
        "Temperature: 0 is too small; type a number above 0 and at most 1,000.",
        "Hidden MSE: 2e6 is too large; type a number from 0 to 1,000,000.",
        "Distill — Augmented copies: the augmented copies learn from the teacher's logits, "
        "which a KD weight (alpha_kd) of 0 turns off; set KD weight above 0 or Augmented "
        "copies to 0.",
        "Prune attention heads: 100 % is too large; type a number above 0 and below 100 %.",
        "Quantize — Method: the onnxruntime backend quantizes with dynamic_int8 only, not 'fp16'.",
    ]
    assert not next_button(w).isEnabled()


def test_a_recipe_check_on_the_techniques_page_names_the_fields_as_labelled(
    qtbot, on_techniques, tiny_minilm, tmp_path
):
    """Augmented copies with a KD weight of 0: the page says 'Augmented copies' and 'KD
    weight', as its fields are labelled; a recipe file still hears its keys."""
    w = on_techniques
    tech = w.techniques_page
    custom_with_distill(qtbot, tech)
    type_into(qtbot, tech.augment, "2")
    type_into(qtbot, tech.alpha_kd, "0")
    assert error_text(tech) == (
        "Distill — Augmented copies: the augmented copies learn from the teacher's logits, "
        "which a KD weight (alpha_kd) of 0 turns off; set KD weight above 0 or Augmented "
        "copies to 0."
    )
    assert not next_button(w).isEnabled()
    yaml = BIG_NUMBERS.format(model=tiny_minilm, output=tmp_path / "out")
    said = (
        "augment: the augmented copies learn from the teacher's logits, which a KD weight "
        "(alpha_kd) of 0 turns off; set alpha_kd above 0 or augment to 0 ("
    )
    with pytest.raises(UserError, match=re.escape(said)):
        recipe_from_yaml(
            yaml.replace("hidden_mse: 500", "hidden_mse: 500\n    alpha_kd: 0\n    augment: 2")
        )
    type_into(qtbot, tech.alpha_kd, "0.5")
    assert not error_text(tech) and next_button(w).isEnabled()


# --------------------------------------------------------------------------- typed numbers


def clear_and_leave(qtbot, spin: QAbstractSpinBox) -> None:
    """Delete the box's text and leave it, as a user would."""
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClick(spin, Qt.Key.Key_Backspace)
    qtbot.keyClick(spin, Qt.Key.Key_Tab)


def type_refused(qtbot, page, box: NumberBox, typed: str, sentence: str) -> None:
    """Type ``typed`` into ``box`` on ``page``: it stays as typed (its suffix after it),
    the page says ``sentence`` and nothing else, and Next is off."""
    type_into(qtbot, box, typed)
    assert box.text() == typed + box.suffix()
    assert error_text(page) == sentence
    assert not next_button(page.wizard()).isEnabled()


def refused_then_fixed(qtbot, page, box: NumberBox, typed: str, fixed: str, sentence: str) -> None:
    """:func:`type_refused` with ``typed``, then type ``fixed`` into the same box."""
    type_refused(qtbot, page, box, typed, sentence)
    type_into(qtbot, box, fixed)


def test_a_number_out_of_range_stays_as_typed_and_blocks_next_with_a_sentence(qtbot, on_techniques):
    """Hidden MSE 1000 was clamped to 100 and Temperature 0 put back to 2.0, silently."""
    w = on_techniques
    tech = w.techniques_page
    custom_with_distill(qtbot, tech)
    assert not error_text(tech)

    type_refused(qtbot, tech, tech.hidden_mse, "2000000",
                 "Hidden MSE: 2000000 is too large; type a number from 0 to 1,000,000.")  # fmt: skip
    assert tech.hidden_mse.value() == 2e6
    w.next()
    assert w.currentPage() is tech
    # The chain holds what was typed, not a clamped 1,000,000; the summary above says
    # nothing of a value that would not run.
    (distill,) = [s for s in tech.chain() if isinstance(s, Distill)]
    assert distill.hidden_mse == 2e6 and "hidden MSE not set" in tech.description.text()
    # The arrows step back into the range.
    tech.hidden_mse.setFocus()
    qtbot.keyClick(tech.hidden_mse, Qt.Key.Key_Down)
    assert tech.hidden_mse.value() == 1e6
    assert not error_text(tech) and next_button(w).isEnabled()
    type_into(qtbot, tech.hidden_mse, "1")

    # One sentence, the field's: not the recipe's "temperature: must be above 0" too.
    type_refused(qtbot, tech, tech.temperature, "0",
                 "Temperature: 0 is too small; type a number above 0 and at most 1,000.")  # fmt: skip
    clear_and_leave(qtbot, tech.temperature)
    assert tech.temperature.text() == ""
    assert error_text(tech) == "Temperature is empty; type a number above 0 and at most 1,000."
    refused_then_fixed(qtbot, tech, tech.temperature, "warm", "3",
                       "Temperature: 'warm' is not a number; type a number above 0 and at most "
                       "1,000.")  # fmt: skip
    assert not error_text(tech) and next_button(w).isEnabled()
    assert [s.temperature for s in tech.chain() if isinstance(s, Distill)] == [3.0]

    # A whole number where the recipe takes one; a share in the per cent the box shows.
    refused_then_fixed(qtbot, tech, tech.augment, "1.5", "0",
                       "Augmented copies: 1.5 is not a whole number; type a whole number from 0 to "
                       "10.")  # fmt: skip
    refused_then_fixed(qtbot, tech, tech.student_ffn, "100", "0",
                       "FFN removed: 100 % is too large; type a number from 0 to below 100 %.")  # fmt: skip
    assert not error_text(tech)

    # A number in a technique that is not ticked does not count; it is kept as typed.
    type_into(qtbot, tech.hidden_mse, "2e6")
    assert not next_button(w).isEnabled()
    click_group_check(qtbot, tech.distill_box)
    assert "Hidden MSE" not in error_text(tech) and tech.hidden_mse.text() == "2e6"
    click_group_check(qtbot, tech.distill_box)
    assert "Hidden MSE: 2e6 is too large" in error_text(tech)
    # A preset puts its own values in every box, so nothing stale is left to refuse.
    click(qtbot, tech.preset_buttons["balanced"])
    assert tech.hidden_mse.value() == 1 and not error_text(tech)
    assert next_button(w).isEnabled()


def test_a_distillation_with_no_weight_on_the_teacher_is_warned_about(qtbot, on_techniques):
    """KD weight, hidden MSE and attention MSE all 0: allowed, almost surely a slip."""
    w = on_techniques
    tech = w.techniques_page
    custom_with_distill(qtbot, tech)
    type_into(qtbot, tech.augment, "0")  # augmented copies need the KD weight: refused
    for box in (tech.alpha_kd, tech.hidden_mse, tech.attention_mse):
        type_into(qtbot, box, "0")
    assert tech.warning.isVisible()
    assert tech.warning.text() == (
        "Distill — the KD weight (alpha_kd), hidden MSE (hidden_mse) and attention MSE "
        "(attention_mse) are all 0, so the student learns only from the labels, not from the "
        "teacher; raise the KD weight or a hidden or attention MSE weight above 0."
    )
    # A warning, not a refusal: Next stays on.
    assert not error_text(tech) and next_button(w).isEnabled()
    type_into(qtbot, tech.attention_mse, "10")
    assert not tech.warning.isVisible()


def test_whole_epochs_read_as_whole_numbers(qtbot, on_techniques):
    """Epochs read '4.00' for Balanced's 4: whole numbers have no decimals, and a fraction
    is still allowed and shown as one."""
    w = on_techniques
    click(qtbot, w.techniques_page.preset_buttons["balanced"])
    go_next(qtbot, w)
    epochs = w.settings_page.row_for("distill").epochs
    assert epochs.text() == "4"
    epochs.setFocus()
    qtbot.keyClick(epochs, Qt.Key.Key_Up)
    assert epochs.text() == "4.5"
    qtbot.keyClick(epochs, Qt.Key.Key_Up)
    assert epochs.text() == "5"
    type_into(qtbot, epochs, "0.25")
    qtbot.keyClick(epochs, Qt.Key.Key_Up)
    assert (epochs.text(), epochs.value()) == ("0.75", 0.75)
    assert not error_text(w.settings_page)
    (distill,) = [s for s in w.steps() if isinstance(s, Distill)]
    assert distill.epochs == 0.75


def test_the_default_output_folder_is_named_after_the_job(qtbot, on_techniques):
    """The job was 'tiny-minilm-fast' and its folder 'tiny-minilm-<time>', which said
    nothing of the preset; the default folder takes the job's name, and follows it while
    the user has not chosen a folder."""
    w = on_techniques
    click(qtbot, w.techniques_page.preset_buttons["fast"])
    go_next(qtbot, w)
    settings = w.settings_page
    assert settings.name_edit.text() == "tiny-minilm-fast"
    folder = settings.output_edit.text()
    assert re.fullmatch(r"\{data\}/results/tiny-minilm-fast-\d{8}-\d{4}", folder), folder
    settings.name_edit.selectAll()
    qtbot.keyClicks(settings.name_edit, "my first job")
    assert settings.output_edit.text() == folder.replace("tiny-minilm-fast", "my-first-job")
    assert w.draft.output == settings.output_edit.text()
    settings.output_edit.selectAll()
    qtbot.keyClicks(settings.output_edit, "/tmp/mine")
    qtbot.keyClicks(settings.name_edit, " again")  # the folder chosen stays
    assert settings.output_edit.text() == "/tmp/mine" and w.draft.output == "/tmp/mine"


def test_settings_numbers_out_of_range_stay_as_typed_and_block_next(qtbot, on_techniques):
    w = on_techniques  # the balanced preset: fine-tune, distill, ...
    go_next(qtbot, w)
    settings = w.settings_page
    row = settings.row_for("distill")
    refused_then_fixed(qtbot, settings, row.epochs, "1001", "2",
                       "Distill — epochs: 1001 is too large; type a number above 0 and at most "
                       "1,000.")  # fmt: skip
    refused_then_fixed(qtbot, settings, row.batch_size, "0", "16",
                       "Distill — batch size: 0 is too small; type a whole number from 1 to "
                       "8,192.")  # fmt: skip
    refused_then_fixed(qtbot, settings, settings.threads, "100000", "auto",
                       "Threads: 100000 is too large; type a whole number from 0 (auto) to 1,024.")  # fmt: skip
    assert not error_text(settings)
    go_next(qtbot, w)
    recipe = w.recipe()
    (distill,) = [s for s in recipe.steps if isinstance(s, Distill)]
    assert (recipe.threads, distill.epochs, distill.batch_size) == (None, 2.0, 16)


def test_threads_read_auto_whenever_they_are_0(qtbot, on_techniques):
    """Typed into, Threads showed '0' where it had said 'auto'; 'auto' typed is taken."""
    w = on_techniques
    go_next(qtbot, w)
    settings = w.settings_page
    threads = settings.threads
    assert threads.text() == "auto"
    type_into(qtbot, threads, "4")
    assert threads.text() == "4" and w.draft.threads == 4
    threads.setFocus()
    threads.selectAll()
    qtbot.keyClicks(threads, "0")
    assert threads.text() == "0"  # as typed while the user is in the box
    qtbot.keyClick(threads, Qt.Key.Key_Tab)
    assert threads.text() == "auto" and threads.value() == 0 and w.draft.threads is None
    for typed in ("2", "auto", "3", "AUTO", "5", "0.0"):
        type_into(qtbot, threads, typed)
        assert threads.text() == ("auto" if typed in ("auto", "AUTO", "0.0") else typed)
        assert not error_text(settings)
    threads.setFocus()
    qtbot.keyClick(threads, Qt.Key.Key_Up)
    assert threads.text() == "1"
    qtbot.keyClick(threads, Qt.Key.Key_Down)  # the arrows reach it too
    assert threads.text() == "auto"
    go_next(qtbot, w)
    assert w.recipe().threads is None


# --------------------------------------------------------------------------- the recipe's ranges


def test_every_number_field_allows_exactly_its_recipe_key_s_range(qtbot, on_techniques):
    """The fields take their ranges from the step classes, never narrower: Hidden MSE
    stopped at 100 and Temperature started at 0.5 where a recipe takes 1e6 and above 0."""
    w = on_techniques
    tech = w.techniques_page
    expected = [
        (tech.search_budget, Search.bounds["budget_points"]),
        (tech.search_minutes, Search.bounds["time_budget_s"].per(60)),
        (tech.sensitivity_rows, Sensitivity.bounds["rows"]),
        (tech.static_dims, DistillStatic.bounds["dims"]),
        (tech.temperature, Distill.bounds["temperature"]),
        (tech.alpha_kd, Distill.bounds["alpha_kd"]),
        (tech.hidden_mse, Distill.bounds["hidden_mse"]),
        (tech.attention_mse, Distill.bounds["attention_mse"]),
        (tech.student_ffn, Distill.bounds["ffn_fraction"].per(0.01)),
        (tech.augment, Distill.bounds["augment"]),
        (tech.heads_amount, Prune.bounds["amount"].per(0.01)),
        (tech.ffn_amount, Prune.bounds["amount"].per(0.01)),
        (tech.magnitude_amount, Prune.bounds["amount"].per(0.01)),
        (tech.vocab_general, Prune.bounds["keep_general"]),
        (tech.tolerance, Quantize.bounds["tolerance"]),
    ]
    # Every number field of the page is listed, and allows its key's range.
    assert sorted(map(id, tech.findChildren(NumberBox))) == sorted(id(b) for b, _ in expected)
    for box, bounds in expected:
        assert box.bounds == bounds, box.label
    # One box sets both students' temperature and KD weight: the two agree.
    for key in ("temperature", "alpha_kd"):
        assert DistillStatic.bounds[key] == Distill.bounds[key]

    go_next(qtbot, w)  # balanced: fine-tune, distill, pruning with recovery training
    settings = w.settings_page
    assert settings.rows
    for row in settings.rows:
        step = w.draft.chain[row.index]
        key = "recovery_epochs" if isinstance(step, Prune) else "epochs"
        assert row.epochs.bounds == type(step).bounds[key], row.epochs.label
        assert row.batch_size.bounds == type(step).bounds["batch_size"]
    # Threads: the recipe's 1 to 1,024, and 0 for auto (no threads: in the recipe).
    assert (settings.threads.low, settings.threads.high) == (0, 1024)


BIG_NUMBERS = """
name: big-numbers
model: {model}
dataset: {{train: demo}}
output: {output}
threads: 64
steps:
  - type: finetune
    epochs: 200
    batch_size: 8000
  - type: distill
    student_layers: [1]
    temperature: 50
    hidden_mse: 500
    epochs: 200
    batch_size: 8000
  - type: evaluate
"""


def test_a_recipe_with_numbers_beyond_the_old_field_ranges_is_not_refused(
    qtbot, make_wizard, on_techniques, tiny_minilm, tmp_path
):
    """Epochs 200, batch size 8000, hidden MSE 500, temperature 50: a recipe
    `slimpajama run` takes, which the wizard's narrower fields refused."""
    recipe = recipe_from_yaml(BIG_NUMBERS.format(model=tiny_minilm, output=tmp_path / "out"))

    # File -> Open recipe: the review page, Run on.
    opened = make_wizard([tiny_minilm])
    opened.open_recipe(recipe, tmp_path / "big.yaml")
    review = opened.review_page
    assert opened.currentPage() is review
    finish = opened.button(QWizard.WizardButton.FinishButton)
    qtbot.waitUntil(finish.isEnabled, timeout=TIMEOUT)
    assert review.recipe_to_run().steps == recipe.steps

    # The same chain in the techniques and settings pages' fields (an opened recipe has
    # no Back from the review page; the chain reaches the boxes as a preset's does).
    w = on_techniques
    tech = w.techniques_page
    click(qtbot, tech.preset_buttons["custom"])
    w.draft.set_chain("custom", recipe.steps)
    tech._show_chain(recipe.steps)
    assert (tech.temperature.value(), tech.hidden_mse.value()) == (50, 500)
    assert not error_text(tech) and next_button(w).isEnabled()
    go_next(qtbot, w)
    settings = w.settings_page
    for kind in ("finetune", "distill"):
        row = settings.row_for(kind)
        assert (row.epochs.value(), row.batch_size.value()) == (200, 8000)
    type_into(qtbot, settings.threads, "64")  # more than this machine's cores: allowed
    assert not error_text(settings) and next_button(w).isEnabled()
    go_next(qtbot, w)
    built = w.recipe()
    assert built.threads == 64
    assert built.steps[:2] == recipe.steps[:2]


OPENED = """
name: opened
model: {model}
dataset: {{train: demo}}
output: {output}
device: cpu
threads: 3
steps:
  - type: finetune
    epochs: 0.1
  - type: benchmark
    threads: 2
"""


def test_an_opened_recipe_keeps_its_threads(qtbot, make_wizard, tiny_minilm, tmp_path):
    """File > Open recipe: the recipe's threads reach Run and the Settings page's Threads
    box (it said auto, and an edit on that page would have sent auto over 3)."""
    recipe = recipe_from_yaml(OPENED.format(model=tiny_minilm, output=tmp_path / "out"))
    w = make_wizard([tiny_minilm])
    w.open_recipe(recipe, tmp_path / "opened.yaml")
    assert w.currentPage() is w.review_page
    # The review page is the only page shown: no Back to the settings.
    assert not w.button(QWizard.WizardButton.BackButton).isVisible()
    finish = w.button(QWizard.WizardButton.FinishButton)
    qtbot.waitUntil(finish.isEnabled, timeout=TIMEOUT)
    assert "threads: 3" in w.review_page.yaml.toPlainText()
    settings = w.settings_page
    assert (settings.threads.text(), settings.threads_value()) == ("3", 3)
    assert (settings.name_edit.text(), settings.device_value()) == ("opened", "cpu")
    assert settings.output_edit.text() == str(tmp_path / "out")
    settings.initializePage()  # were the page shown, it would keep them
    assert settings.threads.text() == "3" and settings.name_edit.text() == "opened"
    assert (w.draft.threads, w.draft.name, w.draft.device) == (3, "opened", "cpu")
    with qtbot.waitSignal(w.recipe_ready, timeout=TIMEOUT) as blocker:
        click_run(qtbot, w)
    sent = blocker.args[0]
    assert (sent.threads, sent.device, sent.name) == (3, "cpu", "opened")
    # Its steps as the file has them: the benchmark keeps its own 2 threads, as
    # `slimpajama run` does (the draft gave it the job's 3).
    assert sent.steps == recipe.steps and sent.steps[-1].threads == 2


def test_numbers_just_beyond_the_recipe_s_ranges_are_refused_as_the_recipe_refuses_them(
    qtbot, on_techniques, tiny_minilm, tmp_path
):
    w = on_techniques
    tech = w.techniques_page
    custom_with_distill(qtbot, tech)
    yaml = BIG_NUMBERS.format(model=tiny_minilm, output=tmp_path / "out")

    for box, typed, ok, key, yaml_value, sentence, recipe_says in (
        (tech.temperature, "0", "1000", "temperature: 50", "temperature: 0",
         "Temperature: 0 is too small; type a number above 0 and at most 1,000.",
         "temperature: must be above 0, got 0.0"),
        (tech.hidden_mse, "2e6", "1e6", "hidden_mse: 500", "hidden_mse: 2e6",
         "Hidden MSE: 2e6 is too large; type a number from 0 to 1,000,000.",
         "hidden_mse: must be at most 1e+06, got 2000000.0"),
    ):  # fmt: skip
        type_refused(qtbot, tech, box, typed, sentence)
        with pytest.raises(UserError, match=re.escape(recipe_says)):
            recipe_from_yaml(yaml.replace(key, yaml_value))
        type_into(qtbot, box, ok)  # the bound itself, where it is in the range
        assert not error_text(tech) and next_button(w).isEnabled()
        recipe_from_yaml(yaml.replace(key, f"{key.split(':')[0]}: {ok}"))

    go_next(qtbot, w)
    row = w.settings_page.row_for("distill")
    type_refused(qtbot, w.settings_page, row.epochs, "1001",
                 "Distill — epochs: 1001 is too large; type a number above 0 and at most "
                 "1,000.")  # fmt: skip
    with pytest.raises(UserError, match=re.escape("epochs: must be at most 1000, got 1001.0")):
        recipe_from_yaml(
            yaml.replace(
                "epochs: 200\n    batch_size: 8000\n  - type: evaluate",
                "epochs: 1001\n    batch_size: 8000\n  - type: evaluate",
            )
        )
    type_into(qtbot, row.epochs, "1000")
    assert not error_text(w.settings_page) and next_button(w).isEnabled()


def test_data_errors_are_shown_and_block_next(qtbot, make_wizard, tiny_minilm, tmp_path):
    w = make_wizard([tiny_minilm], tiny_minilm)
    go_next(qtbot, w)
    data = w.data_page
    qtbot.waitUntil(data.isComplete, timeout=TIMEOUT)

    empty = tmp_path / "empty.csv"
    empty.write_text("review,stars\n", encoding="utf-8")
    click_option(qtbot, data.file_radio)
    qtbot.keyClicks(data.train_edit, str(empty))
    qtbot.waitUntil(lambda: bool(error_text(data)), timeout=TIMEOUT)
    assert "has a header" in error_text(data) and "no rows" in error_text(data)
    assert not next_button(w).isEnabled()

    # Unusual column names: the mapping is guessed, then the user corrects it.
    good = tmp_path / "reviews.csv"
    rows = ["id,review,stars"] + [
        f"{i},{'great fun film' if i % 2 else 'awful boring plot'} number {i},{i % 2}"
        for i in range(40)
    ]
    good.write_text("\n".join(rows) + "\n", encoding="utf-8")
    data.train_edit.selectAll()
    qtbot.keyClicks(data.train_edit, str(good))
    qtbot.waitUntil(lambda: data.table.rowCount() > 0 and not data.is_loading(), timeout=TIMEOUT)
    assert [data.text_combo.itemText(i) for i in range(3)] == ["id", "review", "stars"]
    assert data.text_combo.currentText() == "review"  # guessed by name
    choose(qtbot, data.label_combo, "stars")
    qtbot.waitUntil(data.isComplete, timeout=TIMEOUT)
    assert data.balance.counts == {"0": 18, "1": 18}  # 10 % held out for eval
    assert data.spec() == {"train": str(good), "text_column": "review", "label_column": "stars"}
    assert not error_text(data)
    go_next(qtbot, w)
    assert w.techniques_page.isComplete()


# --------------------------------------------------------------------------- pieces


def test_packaged_model_needs_finetune_and_presets_start_with_it(qtbot, make_wizard):
    packaged = packaged_minilm_path()
    w = make_wizard([inspect_model(packaged, "packaged")], packaged)
    assert "none" in w.model_page.summary.text()
    go_next(qtbot, w)
    qtbot.waitUntil(w.data_page.isComplete, timeout=TIMEOUT)
    go_next(qtbot, w)
    tech = w.techniques_page
    for name in ("fast", "balanced", "smallest"):
        click(qtbot, tech.preset_buttons[name])
        chain = tech.chain()
        assert isinstance(chain[0], FineTune), name
        assert isinstance(chain[-1], Benchmark) and isinstance(chain[-2], Evaluate)
        assert any(isinstance(s, Quantize) and s.backend == "onnxruntime" for s in chain)
    assert [type(s) for s in tech.chain()] == [
        FineTune, Distill, Prune, Quantize, Evaluate, Benchmark
    ]  # fmt: skip
    assert tech.chain()[1].student_layers == [0, 1, 2, 5] and tech.chain()[1].augment == 2
    # Fine-tuning cannot be unticked while the model has no head.
    click(qtbot, tech.preset_buttons["custom"])
    assert tech.finetune_box.isChecked()
    option = QStyleOptionGroupBox()
    tech.finetune_box.initStyleOption(option)
    rect = tech.finetune_box.style().subControlRect(
        QStyle.ComplexControl.CC_GroupBox, option, QStyle.SubControl.SC_GroupBoxCheckBox,
        tech.finetune_box,
    )  # fmt: skip
    qtbot.mouseClick(tech.finetune_box, Qt.MouseButton.LeftButton, pos=rect.center())
    assert tech.finetune_box.isChecked()
    assert isinstance(tech.chain()[0], FineTune)

    # Settings start from the preset's own values.
    click(qtbot, tech.preset_buttons["balanced"])
    go_next(qtbot, w)
    settings = w.settings_page
    assert settings.row_for("finetune").epochs.value() == 3
    assert settings.row_for("distill").epochs.value() == 4
    assert settings.name_edit.text() == "all-MiniLM-L6-v2-balanced"
    cuda = settings.device.model().item(2)
    if not cuda_available():
        assert not cuda.isEnabled() and "torch.cuda.is_available() is False" in cuda.toolTip()
    go_next(qtbot, w)
    recipe = w.recipe()
    assert recipe.model == "packaged"
    assert w.review_page.estimate.layers_after == 4  # balanced: teacher layers 0, 1, 2, 5


def test_review_copy_and_save(qtbot, on_techniques, tmp_path, monkeypatch):
    w = on_techniques
    go_next(qtbot, w)
    go_next(qtbot, w)
    review = w.review_page
    click(qtbot, review.copy_button)
    assert QGuiApplication.clipboard().text() == review.yaml.toPlainText()
    target = tmp_path / "saved" / "my-recipe.yaml"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), ""))
    )
    click(qtbot, review.save_button)
    assert target.is_file()
    assert load_recipe(target) == w.recipe()
    assert str(target) in review.saved.text()


def test_a_long_review_cell_wraps_and_says_itself_whole_as_a_tooltip(qtbot, on_techniques):
    """The Weights cell of the fast preset was cut to 'int8 (onnxruntime), word ...',
    with no tooltip."""
    w = on_techniques
    click(qtbot, w.techniques_page.preset_buttons["fast"])
    go_next(qtbot, w)
    go_next(qtbot, w)
    qtbot.waitUntil(lambda: not w.busy(), timeout=TIMEOUT)  # the vocabulary count redraws
    table = w.review_page.table
    rows = {table.verticalHeaderItem(r).text(): r for r in range(table.rowCount())}
    whole = "int8 (onnxruntime), word embeddings 4-bit"
    assert table.item(rows["Weights"], 1).text() == whole

    def shown_whole(row: str) -> bool:
        """The cell's rectangle holds its text, wrapped at word breaks."""
        item = table.item(rows[row], 1)
        rect = table.visualItemRect(item)
        flags = Qt.TextFlag.TextWordWrap | Qt.AlignmentFlag.AlignRight
        needed = table.fontMetrics().boundingRect(0, 0, rect.width() - 6, 10_000, flags,
                                                  item.text())  # fmt: skip
        return needed.width() <= rect.width() - 6 and needed.height() <= rect.height()

    def tooltip(row: str) -> str:
        return table.item(rows[row], 1).toolTip()

    for size in ((960, 640), (1040, 740)):  # the smallest and the first size
        w.resize(*size)
        qtbot.wait(50)
        assert table.fontMetrics().horizontalAdvance(whole) > table.columnWidth(1) - 6
        assert tooltip("Weights") == whole and shown_whole("Weights")
        assert tooltip("Layers") == "" and shown_whole("Layers")  # a short cell: none
        # Every row shows whole: the table is as tall as its rows.
        height = sum(table.rowHeight(r) for r in range(table.rowCount()))
        assert table.viewport().height() >= height
    w.resize(2400, 740)  # room for it on one line: no tooltip, one line high
    qtbot.waitUntil(lambda: tooltip("Weights") == "")
    assert table.rowHeight(rows["Weights"]) == table.rowHeight(rows["Layers"])


def test_add_folder_reads_headers_off_the_gui_thread(qtbot, make_wizard, tiny_minilm, tmp_path,
                                                     monkeypatch):  # fmt: skip
    w = make_wizard([tiny_minilm])
    page = w.model_page
    extra = write_tiny_bert(tmp_path / "another-bert")
    monkeypatch.setattr(
        QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(extra))
    )
    click(qtbot, page.add_button)
    qtbot.waitUntil(lambda: page.list.count() == 2 and page.add_button.isEnabled(), timeout=TIMEOUT)
    assert page.selected_info().path == extra
    assert "another-bert" in page.summary.text()

    not_a_model = tmp_path / "just-a-folder"
    not_a_model.mkdir()
    monkeypatch.setattr(
        QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(not_a_model))
    )
    click(qtbot, page.add_button)
    qtbot.waitUntil(lambda: bool(error_text(page)), timeout=TIMEOUT)
    assert "not a model folder" in error_text(page)
    assert page.list.count() == 2 and next_button(w).isEnabled()


def test_current_model_is_selected_when_the_list_arrives(qtbot, tiny_minilm, tiny_bert):
    w = CompressWizard()
    qtbot.addWidget(w)
    w.set_current_model(tiny_bert)
    w.set_models([inspect_model(tiny_minilm), inspect_model(tiny_bert)])
    assert w.model_info().path == tiny_bert
    qtbot.waitUntil(lambda: not w.busy(), timeout=TIMEOUT)


def test_embedded_wizard_starts_over_after_run(qtbot, tiny_minilm):
    host = QWidget()
    w = CompressWizard(host, models=[inspect_model(tiny_minilm)])
    w.setWindowFlags(Qt.WindowType.Widget)
    QVBoxLayout(host).addWidget(w)
    qtbot.addWidget(host)
    host.show()
    qtbot.waitExposed(host)
    w.next()
    qtbot.waitUntil(w.data_page.isComplete, timeout=TIMEOUT)
    for _ in range(3):
        w.next()
    assert w.currentPage() is w.review_page
    with qtbot.waitSignal(w.recipe_ready, timeout=TIMEOUT):
        click_run(qtbot, w)
    assert w.isVisible() and w.currentId() == w.PAGE_MODEL
    qtbot.waitUntil(lambda: not w.busy(), timeout=TIMEOUT)


def test_the_wizard_offers_sensitivity_analysis_as_a_step(qtbot, on_techniques):
    w = on_techniques
    tech = w.techniques_page
    click(qtbot, tech.preset_buttons["custom"])
    click_group_check(qtbot, tech.sensitivity_box)
    type_into(qtbot, tech.sensitivity_rows, "128")
    steps = tech.chain()
    sensitivity = [s for s in steps if s.step_type == "sensitivity"]
    assert len(sensitivity) == 1 and sensitivity[0].rows == 128
    # It runs before any compression: on the model the compression starts from.
    first_change = next(
        i for i, s in enumerate(steps) if s.step_type not in ("finetune", "sensitivity")
    )
    assert steps.index(sensitivity[0]) < first_change
    assert "Sensitivity analysis" in tech.description.text()
    assert next_button(w).isEnabled()
    go_next(qtbot, w)
    go_next(qtbot, w)
    assert "type: sensitivity" in w.review_page.yaml.toPlainText()


def test_static_embeddings_are_offered_as_a_distillation_student(qtbot, on_techniques):
    w = on_techniques
    tech = w.techniques_page
    custom_with_distill(qtbot, tech)
    for box in (tech.heads_box, tech.ffn_box, tech.magnitude_box, tech.quant_box,
                tech.layers_box, tech.vocab_box):  # fmt: skip
        if box.isChecked():
            click_group_check(qtbot, box)
    assert not tech.static_note.isVisible() and tech.student_picker.isVisible()

    choose(qtbot, tech.student_kind, "Static")
    # Its one-line trade-off is shown; the layer picker, which it does not use, is not.
    assert tech.static_note.isVisible() and "Very fast" in tech.static_note.text()
    assert "less accurate" in tech.static_note.text()
    assert not tech.student_picker.isVisible() and not tech.hidden_mse.isVisible()
    type_into(qtbot, tech.static_dims, "128")
    choose(qtbot, tech.static_storage, "float16")
    (static,) = [s for s in tech.chain() if s.step_type == "distill_static"]
    assert (static.dims, static.storage) == (128, "float16")
    assert not [s for s in tech.chain() if s.step_type == "distill"]
    assert not error_text(tech) and next_button(w).isEnabled()

    # Vocabulary pruning goes before it (a smaller table); quantizing after it cannot run.
    click_group_check(qtbot, tech.vocab_box)
    kinds = [s.step_type for s in tech.chain()]
    assert kinds.index("prune") < kinds.index("distill_static")
    assert not error_text(tech)
    click_group_check(qtbot, tech.quant_box)
    # The recipe's check, in the page's terms (it said "cannot follow step 2
    # 'distill_static' ... put the other steps before it", which the page cannot do).
    assert error_text(tech) == (
        "Static embeddings — Quantize cannot follow them: the static model has no "
        "transformer layers left, and only accuracy, size and latency can be measured on "
        "it. Untick Quantize, or choose Teacher layers as the student."
    )
    assert not next_button(w).isEnabled()
    click_group_check(qtbot, tech.quant_box)
    assert not error_text(tech)
    # The estimate says what is left: no layers, the vectors as stored.
    estimate = w.draft.estimate()
    assert estimate.layers_after == 0 and estimate.weights_after == "static float16"


ZERO_SIGNAL = """
name: zero
model: {model}
dataset: {{train: demo}}
output: {output}
steps:
  - type: finetune
    epochs: 1
  - {{type: distill, student_layers: [0], alpha_kd: 0.0, hidden_mse: 0.0, attention_mse: 0.0}}
"""


def test_the_review_page_repeats_a_warning_an_opened_recipe_never_showed(
    qtbot, make_wizard, tiny_minilm, tmp_path
):
    """An opened recipe starts on Review (no Back): its all-zero distillation was never
    said anywhere in the window. Review says it, Run stays on; '1 epoch', not '1 epochs'."""
    recipe = recipe_from_yaml(ZERO_SIGNAL.format(model=tiny_minilm, output=tmp_path / "out"))
    w = make_wizard([tiny_minilm])
    w.open_recipe(recipe, tmp_path / "zero.yaml")
    review = w.review_page
    finish = w.button(QWizard.WizardButton.FinishButton)
    qtbot.waitUntil(finish.isEnabled, timeout=TIMEOUT)
    assert review.warning.isVisible()
    assert review.warning.text().startswith("Distill — the KD weight (alpha_kd), hidden MSE")
    assert "learns only from the labels" in review.warning.text()
    assert "Fine-tune (1 epoch)" in review.chain_label.text()


# --------------------------------------------------------------------------- what the pages say


def test_an_error_line_never_moves_the_search_form(qtbot, on_techniques):
    """'Find the best…': 'lots' typed into the accuracy budget made the red sentence
    appear and the whole form moved up ~100 px, so the next click landed elsewhere."""
    tech = on_techniques.techniques_page
    click(qtbot, tech.preset_buttons["search"])
    qtbot.wait(50)
    fields = (tech.description, tech.search_budget, tech.search_minutes, tech.search_objective)

    def places() -> list[QPoint]:
        return [f.mapTo(tech, f.rect().topLeft()) for f in fields]

    before = places()
    type_into(qtbot, tech.search_budget, "lots")
    assert error_text(tech).startswith("Accuracy budget: 'lots' is not a number")
    qtbot.wait(50)
    assert places() == before
    type_into(qtbot, tech.search_budget, "2")
    assert not error_text(tech)
    qtbot.wait(50)
    assert places() == before


def test_the_accuracy_budget_says_1_point(qtbot, on_techniques):
    """'1 points' read wrong: a 1 takes the singular, every other number the plural."""
    tech = on_techniques.techniques_page
    click(qtbot, tech.preset_buttons["search"])
    budget = tech.search_budget
    assert budget.text() == "1.0 points"
    for typed, shown, value in (("1", "1 point", 1), ("15", "15 points", 15),
                                ("0.5", "0.5 points", 0.5), ("1", "1 point", 1)):  # fmt: skip
        budget.setFocus()
        budget.selectAll()
        qtbot.keyClicks(budget, typed)  # each keystroke: "1 point", then "15 points"
        assert (budget.text(), budget.value()) == (shown, value)
        qtbot.keyClick(budget, Qt.Key.Key_Tab)
        assert budget.text() == shown
        (search,) = [s for s in tech.chain() if isinstance(s, Search)]
        assert search.budget_points == value
    type_into(qtbot, budget, "200")
    assert error_text(tech) == (
        "Accuracy budget: 200 points is too large; type a number from 0 to 100 points."
    )


def lightness(widget: QWidget, darkest: bool = False) -> float:
    """How light ``widget`` is drawn: its mean colour, or its darkest pixel (its text)."""
    image = widget.grab().toImage()
    colors = [
        QColor(image.pixel(x, y)) for x in range(image.width()) for y in range(image.height())
    ]
    if darkest:
        return min(c.lightnessF() for c in colors)
    return QColor(*(sum(getattr(c, part)() for c in colors) // len(colors)
                    for part in ("red", "green", "blue"))).lightnessF()  # fmt: skip


def test_an_unticked_distillation_s_layers_look_off(qtbot, on_techniques):
    """With Distill unticked, its layer buttons and 'Kept in the student: …' looked as
    active as when ticked; they are greyed with the rest of the group."""
    tech = on_techniques.techniques_page
    click(qtbot, tech.preset_buttons["fast"])  # no distillation
    picker = tech.student_picker
    pressed = next(b for b in picker.buttons if b.isChecked())
    texts = [tech.picker_label, *picker.findChildren(QLabel)]  # the caption, emb →, → head
    assert not tech.distill_box.isChecked() and not pressed.isEnabled()
    off = [lightness(label, darkest=True) for label in texts]
    pressed_off = lightness(pressed)
    click_group_check(qtbot, tech.distill_box)
    assert pressed.isEnabled()
    on = [lightness(label, darkest=True) for label in texts]
    # Each text far lighter when off, as the group's plain label (the first) is.
    for text_off, text_on in zip(off, on, strict=True):
        assert text_off > text_on + 0.2, (off, on)
    assert pressed_off > 0.8 > lightness(pressed)  # a pale button when off


def settle_layout() -> None:
    """Let posted layout requests run (a box ticked or shown asks for room later)."""
    for _ in range(3):
        QApplication.processEvents()


@pytest.mark.parametrize("layers", [2, 12])
def test_the_techniques_page_never_scrolls_sideways_at_960_px(
    qtbot, make_wizard, tiny_minilm, tmp_path, layers
):
    """At the wizard's smallest width the techniques page scrolled sideways: the
    distillation knobs, the vocabulary box's label and a 12-layer model's row of layer
    buttons each asked for more than their column's share of 960 px."""
    model = tiny_minilm
    if layers != 2:
        model = write_tiny_minilm_vocab(tmp_path / f"minilm-{layers}", layers=layers)
    w = make_wizard([model], model)
    w.resize(960, 740)
    go_next(qtbot, w)
    qtbot.waitUntil(w.data_page.isComplete, timeout=TIMEOUT)
    go_next(qtbot, w)
    tech = w.techniques_page
    bar = tech.scroll.horizontalScrollBar()

    def assert_fits(what: str) -> None:
        settle_layout()
        assert w.width() == 960, what
        assert bar.maximum() == 0, f"{what}: scrolls sideways by {bar.maximum()} px"

    assert set(tech.preset_buttons) == {*PRESETS, "search", "custom"}
    for name in tech.preset_buttons:  # the presets, "Find the best…" and custom
        click(qtbot, tech.preset_buttons[name])
        assert_fits(name)
    for box in (tech.finetune_box, tech.sensitivity_box, tech.distill_box, tech.layers_box,
                tech.heads_box, tech.ffn_box, tech.magnitude_box, tech.vocab_box,
                tech.quant_box):  # fmt: skip
        if not box.isChecked():
            click_group_check(qtbot, box)
    for check in (tech.quant_embeddings4, tech.evaluate_check, tech.benchmark_check):
        if check.isEnabled() and not check.isChecked():
            click_option(qtbot, check)
    assert tech.preset() == "custom"
    assert_fits("custom, everything ticked, a layer student")
    choose(qtbot, tech.student_kind, "Static")
    assert_fits("custom, everything ticked, static embeddings")


def test_the_custom_summary_never_repeats_a_refused_value(qtbot, on_techniques):
    """The line above the boxes describes what would run: a field holding a refused value
    is not set there (it said 'hidden MSE 2e+06' for a refused 2000000)."""
    w = on_techniques
    tech = w.techniques_page
    custom_with_distill(qtbot, tech)
    type_into(qtbot, tech.hidden_mse, "3")
    assert "hidden MSE 3" in tech.description.text()
    type_refused(qtbot, tech, tech.hidden_mse, "2000000",
                 "Hidden MSE: 2000000 is too large; type a number from 0 to 1,000,000.")  # fmt: skip
    summary = tech.description.text()
    assert "2e+06" not in summary and "2000000" not in summary and "hidden MSE 3" not in summary
    assert "hidden MSE not set until its field is fixed" in summary
    # Text that is no number: not the number the box held before it either.
    type_into(qtbot, tech.hidden_mse, "lots")
    assert "hidden MSE not set until its field is fixed" in tech.description.text()
    type_into(qtbot, tech.hidden_mse, "0")
    assert "hidden MSE" not in tech.description.text()
    click_group_check(qtbot, tech.heads_box)
    type_into(qtbot, tech.heads_amount, "100")
    summary = tech.description.text()
    assert "Prune attention heads (amount not set until its field is fixed)" in summary
    assert "100 %" not in summary
    type_into(qtbot, tech.heads_amount, "25")
    assert "Prune attention heads (25 %)" in tech.description.text()


def test_review_says_the_chain_s_warnings_as_the_techniques_page_does(qtbot, on_techniques):
    """One wording of a warning (the draft's) on both pages, so the two cannot drift."""
    w = on_techniques
    tech = w.techniques_page
    custom_with_distill(qtbot, tech)
    type_into(qtbot, tech.augment, "0")
    for box in (tech.alpha_kd, tech.hidden_mse, tech.attention_mse):
        type_into(qtbot, box, "0")
    said = tech.warning.text()
    assert said == "\n".join(w.draft.warnings()) and "learns only from the labels" in said
    go_next(qtbot, w)
    go_next(qtbot, w)
    assert w.review_page.warning.isVisible() and w.review_page.warning.text() == said


# --------------------------------------------------------------------------- Run is a click


def test_enter_on_the_review_page_never_starts_the_job(qtbot, on_techniques):
    """A job can take an hour: Enter goes on from page to page, but on Review only a click
    on Run starts it, wherever the focus is."""
    w = on_techniques
    ran: list[object] = []
    w.recipe_ready.connect(ran.append)
    tech = w.techniques_page
    click(qtbot, tech.preset_buttons["fast"])
    tech.tolerance.setFocus()
    qtbot.keyClick(tech.tolerance, Qt.Key.Key_Return)  # Enter in a field: the next page
    assert w.currentPage() is w.settings_page
    w.settings_page.name_edit.setFocus()
    qtbot.keyClick(w.settings_page.name_edit, Qt.Key.Key_Enter, Qt.KeyboardModifier.KeypadModifier)
    review = w.review_page
    assert w.currentPage() is review
    run = w.button(QWizard.WizardButton.FinishButton)
    qtbot.waitUntil(run.isEnabled, timeout=TIMEOUT)
    for target in (w, review, review.yaml, review.copy_button, run):
        target.setFocus()
        qtbot.keyClick(target, Qt.Key.Key_Return)
        qtbot.keyClick(target, Qt.Key.Key_Enter, Qt.KeyboardModifier.KeypadModifier)
        assert ran == [] and w.isVisible() and w.currentPage() is review, target
    assert not run.isDefault()  # nor drawn as the button Enter presses
    with qtbot.waitSignal(w.recipe_ready, timeout=TIMEOUT):
        click_run(qtbot, w)
    assert len(ran) == 1 and not w.isVisible()


@pytest.fixture
def slow_double_click():
    """A double-click interval no test machine is slow enough to outlast: whether a
    click falls inside it never depends on the machine's speed."""
    hints = QGuiApplication.styleHints()
    before = hints.mouseDoubleClickInterval()
    hints.setMouseDoubleClickInterval(600_000)
    yield
    hints.setMouseDoubleClickInterval(before)


def test_a_double_click_on_next_never_starts_the_job(qtbot, on_techniques, slow_double_click):
    """Run sits where Next was: the first click of a double-click on the settings page's
    Next opens Review, and the second, which lands on Run, must not start a job."""
    w = on_techniques
    ran: list[object] = []
    w.recipe_ready.connect(ran.append)
    click(qtbot, w.techniques_page.preset_buttons["fast"])
    go_next(qtbot, w)
    assert w.currentPage() is w.settings_page
    nxt, run = next_button(w), w.button(QWizard.WizardButton.FinishButton)
    spot = nxt.mapTo(w, nxt.rect().center())
    # The first click, once the user has read the settings page: press and release.
    w.press_guard.start(0)
    qtbot.waitUntil(lambda: not w.presses_guarded(), timeout=TIMEOUT)
    click(qtbot, nxt)
    assert w.currentPage() is w.review_page
    assert run.isVisible() and run.isEnabled() and run.geometry().contains(spot)
    # The second, as the platform sends it: a press, the double-click, a release.
    at = run.mapFrom(w, spot)
    qtbot.mousePress(run, Qt.MouseButton.LeftButton, pos=at)
    qtbot.mouseDClick(run, Qt.MouseButton.LeftButton, pos=at)
    qtbot.mouseRelease(run, Qt.MouseButton.LeftButton, pos=at)
    assert ran == [] and w.isVisible() and w.currentPage() is w.review_page
    assert not run.isDown()

    # Once the interval is over (the wizard's timer runs out), a click on Run runs.
    w.press_guard.start(0)
    with qtbot.waitSignal(w.recipe_ready, timeout=TIMEOUT):
        click_run(qtbot, w)
    assert len(ran) == 1 and not w.isVisible()


def test_a_double_click_on_next_never_skips_a_page(qtbot, on_techniques, slow_double_click):
    """The second click of a double-click on the techniques page's Next lands on the
    settings page's Next: it must leave the settings page shown, not skip it unread."""
    w = on_techniques
    click(qtbot, w.techniques_page.preset_buttons["fast"])
    nxt = next_button(w)
    w.press_guard.start(0)
    qtbot.waitUntil(lambda: not w.presses_guarded(), timeout=TIMEOUT)
    click(qtbot, nxt)  # the first click
    assert w.currentPage() is w.settings_page and nxt.isVisible() and nxt.isEnabled()
    # The second, as the platform sends it: a press, the double-click, a release.
    qtbot.mousePress(nxt, Qt.MouseButton.LeftButton)
    qtbot.mouseDClick(nxt, Qt.MouseButton.LeftButton)
    qtbot.mouseRelease(nxt, Qt.MouseButton.LeftButton)
    assert w.currentPage() is w.settings_page
    assert not nxt.isDown()
    # Once the interval is over, a click on Next goes on as always.
    w.press_guard.start(0)
    go_next(qtbot, w)
    assert w.currentPage() is w.review_page


# --------------------------------------------------------------------------- nothing a user made is lost


@pytest.fixture
def questions(monkeypatch) -> list[QMessageBox]:
    """Every message box the code shows, in order (shown as usual, so a test can answer)."""
    shown: list[QMessageBox] = []
    for name in ("open", "exec"):
        original = getattr(QMessageBox, name)

        def record(box, *args, _original=original, **kwargs):
            shown.append(box)
            return _original(box, *args, **kwargs)

        monkeypatch.setattr(QMessageBox, name, record)
    for name in ("question", "warning", "information", "critical"):
        monkeypatch.setattr(QMessageBox, name, staticmethod(lambda *a, **k: shown.append(a)))
    return shown


def custom_controls(tech) -> dict[str, object]:
    """What the techniques page's own controls show: every number as typed, every tick,
    every choice and the layers pressed."""
    inner = tech.scroll.widget()
    return {
        "numbers": [box.text() for box in inner.findChildren(NumberBox)],
        "boxes": [box.isChecked() for box in inner.findChildren(QGroupBox) if box.isCheckable()],
        "checks": [check.isChecked() for check in inner.findChildren(QCheckBox)],
        "choices": [combo.currentText() for combo in inner.findChildren(QComboBox)],
        "student": tech.student_picker.selected(),
        "kept": tech.keep_picker.selected(),
    }


def back_button(w: QWizard):
    return w.button(QWizard.WizardButton.BackButton)


def test_a_preset_click_keeps_the_custom_settings_for_custom_again(qtbot, on_techniques, questions):
    """Custom edits, then Fast: Custom again brings back exactly what was typed (a refused
    number included), and the training settings typed for the custom chain, no question."""
    w = on_techniques
    tech = w.techniques_page
    custom_with_distill(qtbot, tech)
    type_into(qtbot, tech.temperature, "3.5")
    click_group_check(qtbot, tech.heads_box)
    type_into(qtbot, tech.heads_amount, "40")
    choose(qtbot, tech.heads_scope, "in every")
    if not tech.quant_box.isChecked():
        click_group_check(qtbot, tech.quant_box)
    choose(qtbot, tech.quant_backend, "Py")
    click_option(qtbot, tech.benchmark_check)
    refused = "Hidden MSE: 2000000 is too large; type a number from 0 to 1,000,000."
    type_refused(qtbot, tech, tech.hidden_mse, "2000000", refused)
    typed = custom_controls(tech)

    click(qtbot, tech.preset_buttons["fast"])
    assert tech.preset() == "fast" and not error_text(tech)
    assert custom_controls(tech) != typed  # the boxes show what Fast does
    click(qtbot, tech.preset_buttons["custom"])
    assert custom_controls(tech) == typed
    assert tech.hidden_mse.text() == "2000000"
    assert error_text(tech) == refused
    type_into(qtbot, tech.hidden_mse, "1")
    (distill,) = [s for s in tech.chain() if isinstance(s, Distill)]
    assert (distill.temperature, distill.hidden_mse) == (3.5, 1.0)
    (heads,) = [s for s in tech.chain() if isinstance(s, Prune) and s.method == "heads"]
    assert (heads.amount, heads.scope) == (pytest.approx(0.4), "layer")

    # The custom chain's training settings, typed on the next page, come back too.
    go_next(qtbot, w)
    row = w.settings_page.row_for("distill")
    type_into(qtbot, row.epochs, "7")
    type_into(qtbot, row.batch_size, "8")
    click(qtbot, back_button(w))
    click(qtbot, tech.preset_buttons["fast"])
    # Enter in one of Fast's fields goes on; it re-sends the value, which is no edit
    # that would make a new custom chain of Fast's in place of the one kept.
    tech.tolerance.setFocus()
    qtbot.keyClick(tech.tolerance, Qt.Key.Key_Return)
    assert w.currentPage() is w.settings_page and tech.preset() == "fast"
    assert w.settings_page.row_for("distill") is None  # the settings page shows Fast's rows
    click(qtbot, back_button(w))
    click(qtbot, tech.preset_buttons["custom"])
    go_next(qtbot, w)
    row = w.settings_page.row_for("distill")
    assert (row.epochs.value(), row.batch_size.value()) == (7, 8)
    (distill,) = [s for s in w.steps() if isinstance(s, Distill)]
    assert (distill.epochs, distill.batch_size, distill.temperature) == (7, 8, 3.5)
    assert questions == []


def test_an_edit_under_a_preset_keeps_the_earlier_custom_settings_restorable(
    qtbot, on_techniques, questions
):
    """Custom edits, then Balanced, then an edit of one of Balanced's fields: the chain is
    custom again, from Balanced, and the earlier custom settings are not gone: a button
    beside the presets brings them back, and then the ones it replaced. No question."""
    w = on_techniques
    tech = w.techniques_page
    restore = tech.restore_button
    custom_with_distill(qtbot, tech)
    type_into(qtbot, tech.temperature, "3.5")
    click_group_check(qtbot, tech.heads_box)
    type_into(qtbot, tech.heads_amount, "40")
    earlier, earlier_chain = custom_controls(tech), tech.chain()
    assert not restore.isVisible()

    click(qtbot, tech.preset_buttons["balanced"])
    assert not restore.isVisible()  # Custom brings them back: nothing replaced yet
    boxes_at = tech.scroll.mapTo(tech, tech.scroll.rect().topLeft())
    type_into(qtbot, tech.tolerance, "2")  # an edit: a new custom chain, from Balanced
    assert tech.preset() == "custom" and tech.temperature.text() == "2.0"
    (quant,) = [s for s in tech.chain() if isinstance(s, Quantize)]
    assert quant.tolerance == 2 and not any(isinstance(s, Prune) for s in tech.chain())
    qtbot.waitUntil(restore.isVisible)
    assert restore.text() == "Restore my earlier custom settings"
    assert "Prune attention heads" in restore.toolTip()
    qtbot.wait(50)
    assert tech.scroll.mapTo(tech, tech.scroll.rect().topLeft()) == boxes_at
    replaced, replaced_chain = custom_controls(tech), tech.chain()

    click(qtbot, restore)
    assert tech.preset() == "custom"
    assert custom_controls(tech) == earlier and tech.chain() == earlier_chain
    assert restore.isVisible()  # the ones from Balanced are kept in turn
    click(qtbot, restore)
    assert custom_controls(tech) == replaced and tech.chain() == replaced_chain

    # Kept while a preset is shown too: from Fast, the button brings the earlier ones.
    click(qtbot, tech.preset_buttons["fast"])
    click(qtbot, restore)
    assert tech.preset() == "custom" and custom_controls(tech) == earlier
    click(qtbot, restore)
    assert custom_controls(tech) == replaced
    assert questions == []


def test_a_technique_a_preset_leaves_out_shows_its_defaults(qtbot, on_techniques):
    """Under a preset, an unticked technique's greyed-out fields showed what was typed
    for Custom (heads 40 % under Balanced, which prunes no heads), and ticking it started
    from there; they show the technique's defaults, and Custom still brings back its own."""
    w = on_techniques
    tech = w.techniques_page
    defaults = {box: box.text() for box in (tech.heads_amount, tech.temperature)}
    scope = tech.heads_scope.currentText()
    custom_with_distill(qtbot, tech)
    type_into(qtbot, tech.temperature, "3.5")
    click_group_check(qtbot, tech.heads_box)
    type_into(qtbot, tech.heads_amount, "40")
    choose(qtbot, tech.heads_scope, "in every")
    typed = custom_controls(tech)

    click(qtbot, tech.preset_buttons["fast"])  # no distillation, no heads pruned
    assert not tech.heads_box.isChecked() and not tech.distill_box.isChecked()
    assert (tech.heads_amount.text(), tech.heads_scope.currentText()) == (
        defaults[tech.heads_amount],
        scope,
    )
    assert tech.temperature.text() == defaults[tech.temperature]
    click_group_check(qtbot, tech.heads_box)  # an edit: a custom chain from Fast
    (heads,) = [s for s in tech.chain() if isinstance(s, Prune) and s.method == "heads"]
    assert (heads.amount, heads.scope) == (pytest.approx(0.3), "global")

    click(qtbot, tech.preset_buttons["balanced"])
    assert not tech.heads_box.isChecked() and tech.heads_amount.text() == "30 %"
    click(qtbot, tech.restore_button)  # Fast + heads took Custom's place; the first is kept
    assert custom_controls(tech) == typed


def test_ticking_a_technique_keeps_the_training_settings_typed(qtbot, on_techniques):
    """One more technique ticked rebuilt the chain from its boxes, and the epochs typed
    for the distillation on the settings page fell back to the chain's own."""
    w = on_techniques
    tech = w.techniques_page
    custom_with_distill(qtbot, tech)
    go_next(qtbot, w)
    type_into(qtbot, w.settings_page.row_for("distill").epochs, "7")
    click(qtbot, back_button(w))
    click_group_check(qtbot, tech.heads_box)  # one more step: the rows are made anew
    go_next(qtbot, w)
    assert w.settings_page.row_for("distill").epochs.value() == 7
    assert w.settings_page.row_for("prune", "heads") is not None


def the_question(qtbot, questions) -> QMessageBox:
    """The one message box shown, once it is on screen."""
    assert len(questions) == 1, questions
    box = questions.pop()
    qtbot.waitUntil(box.isVisible)
    return box


def answer(qtbot, box: QMessageBox, text: str) -> None:
    (button,) = [b for b in box.buttons() if b.text() == text]
    click(qtbot, button)
    qtbot.waitUntil(lambda: not box.isVisible())


def test_closing_the_wizard_asks_before_it_throws_changes_away(
    qtbot, make_wizard, tiny_minilm, questions
):
    """Cancel, Esc and the window's close button: with nothing changed the wizard just
    closes; with a change it asks first, and Keep editing is the default."""
    w = make_wizard([tiny_minilm], tiny_minilm)
    go_next(qtbot, w)
    qtbot.waitUntil(w.data_page.isComplete, timeout=TIMEOUT)
    for _ in range(3):  # going from page to page changes nothing, nor what pages fill in
        go_next(qtbot, w)
    assert w.currentPage() is w.review_page
    click(qtbot, w.button(QWizard.WizardButton.CancelButton))
    assert not w.isVisible() and questions == []

    w = make_wizard([tiny_minilm], tiny_minilm)
    ran: list[object] = []
    w.recipe_ready.connect(ran.append)
    go_next(qtbot, w)
    qtbot.waitUntil(w.data_page.isComplete, timeout=TIMEOUT)
    go_next(qtbot, w)
    tech = w.techniques_page
    click(qtbot, tech.preset_buttons["fast"])
    for close in (
        lambda: click(qtbot, w.button(QWizard.WizardButton.CancelButton)),
        lambda: qtbot.keyClick(w, Qt.Key.Key_Escape),
        w.close,
    ):
        close()
        box = the_question(qtbot, questions)
        assert box.text() == "Discard this compression setup?"
        assert sorted(b.text() for b in box.buttons()) == ["Discard", "Keep editing"]
        assert box.defaultButton().text() == "Keep editing"
        answer(qtbot, box, "Keep editing")
        assert w.isVisible() and w.currentPage() is tech and tech.preset() == "fast"
    # Esc in the question keeps editing too.
    w.close()
    box = the_question(qtbot, questions)
    qtbot.keyClick(box, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not box.isVisible())
    assert w.isVisible()
    click(qtbot, w.button(QWizard.WizardButton.CancelButton))
    answer(qtbot, the_question(qtbot, questions), "Discard")
    assert not w.isVisible() and ran == []
