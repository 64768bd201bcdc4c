"""Every recipe shipped in resources/recipes loads, and the presets run end to end."""

from __future__ import annotations

from dataclasses import replace
from importlib.resources import files
from pathlib import Path

import pytest

from slimpajama_gui.core.jobs.pipeline import run
from slimpajama_gui.core.plan.recipe import load_recipe
from slimpajama_gui.core.storage.history import JobStore

RECIPES = sorted(Path(str(files("slimpajama_gui.resources") / "recipes")).glob("*.yaml"))


def test_recipes_are_shipped():
    names = {p.stem for p in RECIPES}
    assert {"demo", "sst2-finetune", "preset-fast", "preset-balanced", "preset-smallest"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_shipped_recipe_loads(path):
    recipe = load_recipe(path)
    assert recipe.steps
    if recipe.model != "packaged":
        # A recipe that continues from another shipped recipe's result (the full-data
        # SST-2 chain starts from sst2-finetune's teacher): that recipe must be shipped.
        outputs = {load_recipe(p).output for p in RECIPES if p != path}
        assert any(recipe.model.startswith(f"{out}/") for out in outputs), recipe.model


@pytest.mark.parametrize("name", ["preset-fast", "preset-balanced", "preset-smallest"])
def test_preset_chain_runs_on_a_tiny_model(name, tiny_minilm, tmp_path):
    """The preset's own chain, shortened (few steps, small benchmark), on a tiny model."""
    recipe = load_recipe(next(p for p in RECIPES if p.stem == name))
    short = []
    for step in recipe.steps:
        if step.step_type == "finetune":
            step = replace(step, max_steps=20, learning_rate=3e-3)
        elif step.step_type == "distill":
            step = replace(step, student_layers=[1], epochs=0.2, learning_rate=3e-3)
        elif step.step_type == "prune" and step.recovery_epochs:
            step = replace(step, recovery_epochs=0.1)
        elif step.step_type == "quantize":
            step = replace(step, tolerance=100.0)  # a 20-step model has no accuracy to keep
        elif step.step_type == "benchmark":
            step = replace(step, sentences=10, repeats=1)
        short.append(step)
    recipe = replace(recipe, model=str(tiny_minilm), output=str(tmp_path / "out"), steps=short)
    with JobStore(tmp_path / "h.sqlite3") as store:
        result = run(recipe, store=store)
    assert result.status == "done", result.error
    final = result.final
    assert (final / "model.onnx").is_file()
    sizes = [sum(f.stat().st_size for f in v.iterdir()) for v in result.variants]
    assert sizes[-1] < sizes[0] / 2, sizes
