"""The presets fitted to a model, and how steps are named (core.plan.presets, no Qt)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.catalog import packaged_minilm_path
from slimpajama_gui.core.model.inspection import inspect_model
from slimpajama_gui.core.model.shape import default_student_layers
from slimpajama_gui.core.plan import presets
from slimpajama_gui.core.plan.steps import Distill, FineTune, Prune, Quantize


@pytest.fixture(scope="module")
def encoder():
    """The packaged MiniLM: 6 layers, no classifier head (headers only)."""
    return inspect_model(packaged_minilm_path(), "packaged")


def test_presets_are_read_from_the_yaml_files():
    for name in presets.PRESETS:
        steps = presets.load_preset(name)
        assert [type(s) for s in steps] == [type(s) for s in presets.code_preset(name)], name


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown preset"):
        presets.load_preset("tiny")


def test_adapt_chain_adds_finetune_for_a_model_without_a_head(encoder):
    steps, notes = presets.adapt_chain(presets.load_preset("fast"), encoder, 2)
    assert isinstance(steps[0], FineTune)
    assert notes[0].startswith("Fine-tuning comes first: the model has no classifier head")


def test_adapt_chain_drops_finetune_when_the_head_fits(encoder):
    headed = replace(encoder, num_labels=2)
    steps, notes = presets.adapt_chain(presets.load_preset("balanced"), headed, 2)
    assert not any(isinstance(s, FineTune) for s in steps)
    assert any("Fine-tuning is left out" in n for n in notes)
    other = presets.adapt_chain(presets.load_preset("balanced"), headed, 3)[1]
    assert "has a 2-class head and the data has 3 labels" in other[0]


def test_adapt_chain_fits_the_student_to_the_layers(encoder):
    small = replace(encoder, layers=2, num_labels=2)
    steps, notes = presets.adapt_chain(presets.load_preset("smallest"), small, 2)
    distill = next(s for s in steps if isinstance(s, Distill))
    assert distill.student_layers == [1]
    assert "teacher layers 1 of this model's 2" in " ".join(notes)
    single = replace(encoder, layers=1, num_labels=2)
    steps, notes = presets.adapt_chain(presets.load_preset("balanced"), single, 2)
    assert not any(isinstance(s, Distill) for s in steps)
    assert "single layer" in " ".join(notes)


def test_adapt_chain_copies_the_steps(encoder):
    original = presets.load_preset("balanced")
    steps, _ = presets.adapt_chain(original, replace(encoder, layers=4), 2)
    assert all(a is not b for a in steps for b in original)


def test_default_student_layers_has_one_home():
    from slimpajama_gui.core.techniques import distill

    assert distill.default_student_layers is default_student_layers
    assert default_student_layers(0) == []


def test_names_and_numbers_as_people_write_them():
    assert presets.slug("all-MiniLM-L6-v2 (packaged)") == "all-MiniLM-L6-v2"
    assert presets.slug("???") == "model"
    assert presets.format_lr(2.5e-05) == "2.5e-5" and presets.format_lr(1e-4) == "1e-4"
    assert presets.parse_lr(" 5e-5 ", "Distill") == pytest.approx(5e-5)
    with pytest.raises(UserError, match="Distill — learning rate: 'fast' is not a number"):
        presets.parse_lr("fast", "Distill")
    # Worded as the wizard's number fields: what is wrong, then the range and an example.
    rule = "type a number above 0 and at most 10, like 5e-5."
    for typed, says in [("0", "0 is too small"), ("-1e-4", "-1e-4 is too small"),
                        ("20", "20 is too large"), ("", "it is empty")]:  # fmt: skip
        with pytest.raises(UserError) as err:
            presets.parse_lr(typed, "Distill")
        assert str(err.value) == f"Distill — learning rate: {says}; {rule}"
    assert presets.step_title(Prune(method="heads", amount=0.3)) == "Prune attention heads"
    assert presets.step_summary(Prune(method="heads", amount=0.3)) == "Prune attention heads (30 %)"
    quant = Quantize(method="dynamic_int8", backend="onnxruntime")
    assert presets.step_summary(quant) == "Quantize dynamic_int8 (onnxruntime)"
    quant4 = Quantize(method="dynamic_int8", backend="onnxruntime", embedding_bits=4)
    assert presets.step_summary(quant4) == "Quantize dynamic_int8 (onnxruntime, 4-bit embeddings)"
    # Every loss term that is on is said: a summary that hid one described another chain.
    distill = Distill(student_layers=[0, 5], hidden_mse=1.0, attention_mse=50.0)
    assert presets.step_summary(distill) == (
        "Distill into teacher layers 0, 5, hidden MSE 1, attention MSE 50"
    )
    assert "attention MSE not set" in presets.step_summary(distill, unset={"attention_mse"})
    averaged = Distill(student_layers=[0, 5], ema_decay=0.999)
    assert presets.step_summary(averaged) == (
        "Distill into teacher layers 0, 5, EMA of the weights (decay 0.999)"
    )
    assert presets.trains(Prune(method="ffn", amount=0.5))
    assert not presets.trains(Prune(method="vocabulary"))
    assert presets.needs_finetune(None, 2) is False


def test_the_blurb_says_what_the_chain_shown_trains(encoder):
    """A chain that fine-tunes first is never described as one without training."""
    for name in presets.PRESETS:
        steps, _ = presets.adapt_chain(presets.load_preset(name), encoder, 2)
        blurb = presets.preset_blurb(name, steps)
        assert "No training" not in blurb, blurb
        assert f"Fine-tune ({steps[0].epochs:g} epochs)" in blurb, blurb
        assert "minutes" not in blurb and "laptop" not in blurb  # no unmeasured time figure
    headed = replace(encoder, num_labels=2)
    fast, _ = presets.adapt_chain(presets.load_preset("fast"), headed, 2)
    assert presets.preset_blurb("fast", fast).endswith("No training.")
    balanced, _ = presets.adapt_chain(presets.load_preset("balanced"), headed, 2)
    assert "Trains: Distill (4 epochs)." in presets.preset_blurb("balanced", balanced)


def test_a_rebuilt_chain_keeps_the_training_settings_of_the_steps_that_stay():
    previous = [
        FineTune(epochs=3, learning_rate=1e-4, batch_size=16, warmup_ratio=0.1),
        Distill(student_layers=[0, 2], epochs=4, learning_rate=2e-4, batch_size=8),
        Prune(method="heads", amount=0.3, recovery_epochs=2.0),
    ]
    rebuilt = [
        FineTune(),
        Distill(student_layers=[1]),  # the edit: other layers
        Prune(method="ffn", amount=0.5),  # another method: its own defaults
        Quantize(),
    ]
    kept = presets.keep_training_settings(rebuilt, previous)
    assert (kept[0].epochs, kept[0].learning_rate, kept[0].batch_size, kept[0].warmup_ratio) == (
        3, 1e-4, 16, 0.1,
    )  # fmt: skip
    assert kept[1].student_layers == [1] and (kept[1].epochs, kept[1].batch_size) == (4, 8)
    assert kept[2] == rebuilt[2] and kept[3] == rebuilt[3]
