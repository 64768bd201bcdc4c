"""The job draft the wizard edits: problems, recipe and estimate, with no Qt and no torch."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.catalog import packaged_minilm_path
from slimpajama_gui.core.model.inspection import inspect_model
from slimpajama_gui.core.plan.draft import Draft, Training
from slimpajama_gui.core.plan.presets import DEMO_SPEC
from slimpajama_gui.core.plan.steps import Benchmark, Distill, FineTune, Prune


@pytest.fixture(scope="module")
def encoder():
    return inspect_model(packaged_minilm_path(), "packaged")


@pytest.fixture
def draft(encoder):
    """A valid draft: the packaged model, the demo data, the balanced preset."""
    d = Draft()
    d.set_model(encoder)
    d.set_data(DEMO_SPEC, DEMO_SPEC["labels"], ["a good film", "a bad film"])
    d.use_preset("balanced")
    d.set_job(name="job", output="{data}/results/job")
    return d


def test_importing_the_plan_imports_neither_torch_nor_qt():
    code = (
        "import sys; import slimpajama_gui.core.plan.draft, slimpajama_gui.core.plan.presets, "
        "slimpajama_gui.core.plan.estimate, slimpajama_gui.core.plan.recipe; "
        "bad = [m for m in ('torch', 'PySide6', 'pyqtgraph', 'superqt', 'transformers') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_listeners_hear_each_change_and_can_leave():
    d = Draft()
    heard: list[set[str]] = []
    leave = d.subscribe(heard.append)
    d.set_job(name="x")
    d.set_chain("custom", [FineTune()])
    d.set_data(None)
    leave()
    d.set_job(name="y")
    assert heard == [{"settings"}, {"chain"}, {"data"}]
    with pytest.raises(TypeError, match="unknown job settings: colour"):
        d.set_job(colour="red")


def test_a_valid_draft_gives_a_recipe(draft, encoder):
    assert draft.problems() == []
    recipe = draft.recipe()
    assert recipe.model == "packaged" and recipe.name == "job"
    assert recipe.dataset["train"] == "demo"
    assert isinstance(recipe.steps[0], FineTune)  # the packaged model has no head
    assert draft.recipe() == recipe and draft.recipe() is not recipe
    est = draft.estimate()
    assert est is not None and est.layers_after == 4  # balanced: teacher layers 0, 1, 2, 5


def test_validation_runs_once_per_change(draft, monkeypatch):
    calls = []
    evaluate = Draft._evaluate
    monkeypatch.setattr(Draft, "_evaluate", lambda self: calls.append(1) or evaluate(self))
    for _ in range(3):
        draft.problems("techniques")
        draft.problems("settings")
        draft.recipe()
    assert len(calls) == 1
    draft.set_job(name="other")
    draft.problems("settings")
    assert len(calls) == 2


def test_chain_problems_are_sentences(draft):
    draft.set_chain("custom", [Benchmark()])
    problems = draft.problems("techniques")
    assert "Choose at least one technique, or pick a preset." in problems
    assert "Fine-tune: the model has no classifier head; tick Fine-tune to train it." in problems
    draft.set_chain("custom", [FineTune(), Distill(student_layers=[])])
    assert any("Distill: select at least one layer" in p for p in draft.problems("techniques"))
    draft.set_chain("custom", [FineTune(), Distill(student_layers=list(range(6)))])
    assert any("all 6 layers are selected" in p for p in draft.problems("techniques"))
    draft.set_chain(
        "custom", [FineTune(), Distill(student_layers=[1]), Prune("layers", keep_layers=[0])]
    )
    assert any("either distillation or dropping layers" in p for p in draft.problems())
    draft.set_chain("custom", [FineTune(), Prune("heads", amount=1.0)])
    assert any(p.startswith("Prune attention heads — amount") for p in draft.problems())


def test_settings_problems_and_training(draft):
    draft.set_job(name=" ", output="")
    assert draft.problems("settings")[:2] == [
        "Name: give the job a name.",
        "Output folder: choose where the results go.",
    ]
    # Typed relative, it would start wherever the app was launched: refused, saying where.
    draft.set_job(name="job", output="relative dir")
    [problem] = [p for p in draft.problems("settings") if p.startswith("Output folder")]
    assert "“relative dir” is not a full path" in problem and str(Path.cwd()) in problem
    for full in ("~/results/job", "{data}/results/job", str(Path.cwd().absolute() / "out")):
        draft.set_job(output=full)
        assert not [p for p in draft.problems("settings") if p.startswith("Output folder")]
    draft.set_job(name="job", output="out")
    draft.set_training({0: Training(epochs=0.5, learning_rate="fast", batch_size=8)})
    assert any("'fast' is not a number" in p for p in draft.problems("settings"))
    with pytest.raises(UserError, match="not a number"):
        draft.recipe()
    draft.set_training({0: Training(epochs=0.5, learning_rate="2e-4", batch_size=8)})
    draft.set_job(threads=3)
    first = draft.recipe().steps[0]
    assert (first.epochs, first.learning_rate, first.batch_size) == (0.5, 2e-4, 8)
    assert next(s for s in draft.recipe().steps if isinstance(s, Benchmark)).threads == 3
    # Into the source model: the recipe's own check, shown with the settings.
    draft.set_model(replace(draft.model, source="folder"))
    draft.set_job(output=str(packaged_minilm_path() / "out"))
    assert any("source model folder" in p for p in draft.problems("settings"))


def test_every_settings_problem_is_listed_at_once_with_what_it_is_about(draft):
    """Two learning rates that are no numbers and a check between fields: all of them,
    not the first learning rate's alone."""
    draft.set_chain("custom", [FineTune(), Prune("magnitude", schedule="gradual")])
    draft.set_training({
        0: Training(epochs=1, learning_rate="abc", batch_size=0),
        1: Training(epochs=0, learning_rate="fast", batch_size=8),
    })  # fmt: skip
    issues = draft.issues("settings")
    assert [(p.step, p.field) for p in issues] == [
        (0, "learning_rate"), (1, "learning_rate"), (0, "batch_size"), (1, "recovery_epochs"),
    ]  # fmt: skip
    assert [p.text for p in issues] == draft.problems("settings")
    assert (
        issues[0].text
        == "Fine-tune — learning rate: 'abc' is not a number; type a number above 0 and at most 10, like 5e-5."
    )
    # A page names the field as it labels it.
    assert issues[1].worded("Prune weights — recovery — learning rate", {}) == (
        "Prune weights — recovery — learning rate: 'fast' is not a number; type a number above 0 and at most 10, like 5e-5."
    )
    assert issues[3].worded("Prune weights — recovery — epochs", {}) == (
        "Prune weights — recovery — epochs: must be above 0 when schedule is 'gradual' "
        "(pruning happens while it trains)."
    )
    with pytest.raises(UserError, match="'abc' is not a number"):
        draft.recipe()


def test_an_output_that_is_a_file_is_a_settings_problem(draft, tmp_path):
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n")
    draft.set_job(name="job", output=str(data))
    assert any("reviews.csv is a file; choose a folder" in p for p in draft.problems("settings"))
    draft.set_job(output=str(tmp_path / "results"))
    assert draft.problems("settings") == []


def test_new_step_kinds_start_from_their_own_settings(draft):
    draft.set_training({0: Training(epochs=9, learning_rate="1e-4", batch_size=4)})
    draft.use_preset("balanced")  # same kinds: the rows stay
    assert draft.training
    draft.use_preset("fast")
    assert draft.training == {}


def test_recipe_needs_a_model():
    d = Draft()
    d.set_job(name="job", output="out")
    with pytest.raises(UserError, match="Choose a model on the first page."):
        d.recipe()
    assert d.estimate() is None


def test_vocabulary_count_belongs_to_model_and_data(draft, encoder):
    draft.use_preset("smallest")  # the preset that prunes the vocabulary
    key = draft.vocabulary_key()
    assert key is not None and draft.vocabulary_count() is None
    draft.set_vocabulary_count(key, 1234)
    assert draft.vocabulary_count() == 1234 and draft.estimate().vocab_after == 1234
    draft.set_model(replace(encoder, path=encoder.path / "elsewhere"))
    assert draft.vocabulary_count() is None
    draft.set_data(None)
    assert draft.vocabulary_key() is None


def test_a_source_its_chain_cannot_use_is_refused_before_run(draft, encoder):
    """Kind: a chain that asks of an ONNX or already quantized source what its weights
    cannot do (train, prune, quantize again) is a techniques problem, before Run."""
    for dtype, what in (
        ("dynamic_int8", "an already quantized model (dynamic_int8)"),
        ("onnx_int8", "an ONNX int8 model"),
    ):
        draft.set_model(replace(encoder, dtype=dtype, name="03-quantize"))
        draft.use_preset("smallest")  # distils, prunes and quantizes
        problems = [p for p in draft.problems("techniques") if "03-quantize is" in p]
        assert len(problems) == 1 and problems[0].startswith(
            f"03-quantize is {what}: it cannot be fine-tuned, distilled, pruned or quantized; "
        )
        assert "choose the float model it was made from" in problems[0]
        assert problems[0] in draft.problems()  # what the wizard checks before Run
    draft.set_chain("custom", [Benchmark()])  # measuring it is fine
    assert not [p for p in draft.problems("techniques") if "03-quantize is" in p]
    draft.set_model(encoder)
    draft.use_preset("balanced")
    assert draft.problems() == []


def test_the_vocabulary_count_follows_the_chains_keep_general(draft):
    """The estimate counts what the chain's vocabulary step keeps, so a new keep_general
    needs a new count (the wizard starts one on a worker)."""
    from slimpajama_gui.core.plan.steps import KEEP_GENERAL, Prune

    draft.set_chain("custom", [Prune(method="vocabulary", keep_general=0)])
    narrow = draft.vocabulary_key()
    draft.set_vocabulary_count(narrow, 1234)
    assert narrow[-1] == 0 and draft.estimate().vocab_after == 1234
    draft.set_chain("custom", [Prune(method="vocabulary")])
    wide = draft.vocabulary_key()
    assert wide[-1] == KEEP_GENERAL and draft.vocabulary_count() is None
    assert draft.estimate().vocab_counted is False  # a guess until counted again


def test_a_distillation_with_no_weight_on_the_teacher_is_a_warning_not_a_problem(draft):
    draft.set_chain(
        "custom", [FineTune(), Distill(student_layers=[1], alpha_kd=0.0, augment=0), Benchmark()]
    )
    (warning,) = draft.warnings("techniques")
    assert warning.startswith("Distill — the KD weight (alpha_kd), hidden MSE (hidden_mse) and ")
    assert warning.endswith("raise the KD weight or a hidden or attention MSE weight above 0.")
    assert draft.warnings() == [warning] and draft.warnings("settings") == []
    assert not draft.problems() and draft.recipe().warnings()
    draft.set_chain("custom", [FineTune(), Distill(student_layers=[1], alpha_kd=0.0, hidden_mse=1)])
    assert draft.warnings() == []
