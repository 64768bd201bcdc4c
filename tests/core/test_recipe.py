"""recipe: versioned step configs <-> YAML, with file/line/field in every complaint."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.plan.recipe import (
    STEP_TYPES,
    Benchmark,
    Distill,
    Evaluate,
    FineTune,
    Prune,
    Quantize,
    Recipe,
    RecipeError,
    dump_recipe,
    load_recipe,
    recipe_from_yaml,
    save_recipe,
)

HEAD = """\
name: sst2-small
model: packaged
dataset:
  train: data/sst2.tsv
  text_column: sentence
output: out/sst2-small
steps:
"""  # the first step starts on line 8


def parse(steps: str, head: str = HEAD, source: str = "recipe.yaml") -> Recipe:
    return recipe_from_yaml(head + steps, source)


def full_recipe(**overrides) -> Recipe:
    values = dict(
        name="every step",
        model="models/teacher",
        dataset={
            "train": "data/sst2/train.tsv",
            "text_column": "sentence",
            "label_column": "label",
        },
        output="results/every-step",
        device="cpu",
        threads=2,
        seed=7,
        save_each_step=False,
        steps=[
            FineTune(epochs=2.0, learning_rate=3e-5, max_steps=100, keep_best=False),
            Evaluate(split="test", batch_size=128),
            Prune(method="heads", amount=0.25, scope="layer", learning_rate=3e-5, batch_size=16),
            Prune(method="layers", keep_layers=[0, 2, 4]),
            Distill(student_layers=[1, 3, 5], temperature=4.0, hidden_mse=1.0),
            Quantize(method="weight_int4", per_channel=False, embeddings=False, tolerance=1.0),
            Benchmark(threads=1, sentences=50, repeats=3),
            Benchmark(),
        ],
    )
    values.update(overrides)
    return Recipe(**values)


def test_every_step_type_is_registered() -> None:
    assert set(STEP_TYPES) == {
        "finetune",
        "evaluate",
        "benchmark",
        "prune",
        "distill",
        "quantize",
        "export",
        "distill_static",
        "search",
        "sensitivity",
    }
    assert all(isinstance(cls.version, int) for cls in STEP_TYPES.values())


def test_round_trip_through_yaml_and_file(tmp_path: Path) -> None:
    recipe = full_recipe()
    recipe.validate()
    text = dump_recipe(recipe)
    assert recipe_from_yaml(text) == recipe
    assert "type: finetune" in text and "version: 1" in text
    assert "base_dir" not in text

    path = tmp_path / "recipes" / "every-step.yaml"
    save_recipe(recipe, path)
    loaded = load_recipe(path)
    assert loaded == recipe
    assert dump_recipe(loaded) == text
    # Relative paths are taken from the recipe's folder, not the working folder.
    assert loaded.base_dir == path.parent
    assert loaded.resolve_path(loaded.output) == path.parent / "results" / "every-step"
    assert loaded.resolve_path("/abs/elsewhere") == Path("/abs/elsewhere")
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left nothing behind


def test_defaults_are_written_out_and_read_back() -> None:
    recipe = parse("  - type: finetune\n")
    assert recipe.steps == [FineTune()]
    assert recipe.version == 1 and recipe.device == "auto" and recipe.threads is None
    assert recipe.dataset == {"train": "data/sst2.tsv", "text_column": "sentence"}
    assert recipe_from_yaml(dump_recipe(recipe)) == recipe


def test_numeric_strings_are_accepted() -> None:
    # YAML 1.1 reads 5e-5 (no dot) as a string; a number field takes it anyway.
    recipe = parse(
        "  - type: finetune\n"
        "    epochs: 1\n"
        "    learning_rate: 5e-5\n"
        "    batch_size: '16'\n"
        "  - type: distill\n"
        "    learning_rate: 1E-4\n"
    )
    finetune, distill = recipe.steps
    assert finetune.learning_rate == pytest.approx(5e-5)
    assert isinstance(finetune.epochs, float) and finetune.epochs == 1.0
    assert finetune.batch_size == 16
    assert distill.learning_rate == pytest.approx(1e-4)


def test_unknown_top_level_key_names_key_line_and_allowed_keys() -> None:
    text = HEAD.replace("output:", "epochz: 3\noutput:") + "  - type: finetune\n"
    with pytest.raises(UserError) as info:
        recipe_from_yaml(text, "recipe.yaml")
    message = str(info.value)
    assert "'epochz'" in message
    assert "recipe.yaml line 6" in message
    assert "save_each_step" in message and "steps" in message  # the allowed keys


def test_unknown_key_inside_a_step_names_key_and_line() -> None:
    with pytest.raises(UserError) as info:
        parse("  - type: finetune\n    epochs: 1\n    learning_rat: 5e-5\n")
    message = str(info.value)
    assert "'learning_rat'" in message
    assert "recipe.yaml line 10" in message
    assert "step 1 'finetune'" in message
    assert "Did you mean 'learning_rate'?" in message


def test_unknown_step_type_is_named_with_the_allowed_ones() -> None:
    with pytest.raises(UserError) as info:
        parse("  - type: finetune\n  - type: sparsify\n    amount: 0.5\n")
    message = str(info.value)
    assert "'sparsify'" in message and "step 2" in message and "line 9" in message
    for name in STEP_TYPES:
        assert name in message
    with pytest.raises(UserError, match=r"step 1 has no 'type'.*line 8"):
        parse("  - epochs: 3\n")


def test_wrong_value_type_names_field_and_line() -> None:
    with pytest.raises(RecipeError) as info:
        parse("  - type: evaluate\n  - type: finetune\n    batch_size: 8\n    epochs: three\n")
    assert str(info.value).startswith(
        "epochs: expected a number, got 'three' (recipe.yaml line 11, step 2 'finetune')"
    )
    with pytest.raises(RecipeError, match=r"keep_best: expected true or false, got 'maybe'"):
        parse("  - type: finetune\n    keep_best: maybe\n")
    with pytest.raises(RecipeError, match=r"threads: expected a whole number.*line 7"):
        recipe_from_yaml(HEAD.replace("steps:", "threads: 2.5\nsteps:") + "  - type: evaluate\n")
    with pytest.raises(RecipeError, match=r"student_layers\[1\]: expected a whole number"):
        parse("  - type: distill\n    student_layers: [1, x]\n")


def test_values_out_of_range_name_field_allowed_values_and_line() -> None:
    with pytest.raises(RecipeError) as info:
        parse("  - type: prune\n    method: random\n")
    message = str(info.value)
    assert message.startswith("method: expected one of 'magnitude', 'heads', 'ffn'")
    assert "'random'" in message and "line 9" in message
    with pytest.raises(RecipeError, match=r"amount: must be above 0 and below 1, got 1.5.*line 10"):
        parse("  - type: prune\n    method: magnitude\n    amount: 1.5\n")
    with pytest.raises(RecipeError, match=r"keep_layers: list the encoder layers"):
        parse("  - type: prune\n    method: layers\n")
    with pytest.raises(RecipeError, match=r"device: expected one of 'auto', 'cpu', 'cuda'"):
        recipe_from_yaml(HEAD.replace("steps:", "device: tpu\nsteps:") + "  - type: evaluate\n")


def test_validate_on_configs_built_in_code() -> None:
    with pytest.raises(RecipeError) as info:
        Quantize(method="int3").validate()  # type: ignore[arg-type]
    assert "method: expected one of 'dynamic_int8', 'fp16', 'bf16', 'weight_int8'" in str(
        info.value
    )
    assert "'quantize' step" in str(info.value)
    with pytest.raises(RecipeError, match="alpha_kd: must be 0 or more and at most 1"):
        Distill(alpha_kd=1.5).validate()
    with pytest.raises(RecipeError, match="split: expected one of 'eval', 'test'"):
        Evaluate(split="train").validate()  # type: ignore[arg-type]
    with pytest.raises(RecipeError, match="repeats: expected a whole number or one of 'auto'"):
        Benchmark(repeats="many").validate()  # type: ignore[arg-type]
    step = FineTune(epochs=2)  # an int from a spin box becomes the canonical float
    step.validate()
    assert isinstance(step.epochs, float)
    with pytest.raises(
        RecipeError, match=r"^amount: must be above 0 and below 1, got 0.0 \(step 2 'prune'\)\.$"
    ):
        full_recipe(steps=[FineTune(), Prune(amount=0.0)]).validate()


def test_a_step_lists_every_problem_and_validate_raises_the_first() -> None:
    """A form lists them all at once; a recipe file hears the first, as before."""
    step = Distill(temperature=0.0, hidden_mse=2e6, alpha_kd=0.0, augment=2)
    problems = step.problems()
    assert [p.field for p in problems] == ["temperature", "hidden_mse", "augment"]
    # The check between fields runs although a range is off.
    assert "set alpha_kd above 0 or augment to 0" in str(problems[2])
    with pytest.raises(RecipeError) as info:
        step.validate()
    assert str(info.value) == str(problems[0])
    # A value of the wrong type: its range and the checks between fields wait for it.
    mistyped = Distill(temperature="warm", alpha_kd=0.0, augment=2)  # type: ignore[arg-type]
    assert [p.field for p in mistyped.problems()] == ["temperature"]
    assert Distill().problems() == []


def test_a_check_s_sentence_in_a_form_s_terms_keeps_the_recipe_s_as_it_is() -> None:
    (error,) = Distill(alpha_kd=0.0, augment=2).problems()
    assert str(error) == (
        "augment: the augmented copies learn from the teacher's logits, which a KD weight "
        "(alpha_kd) of 0 turns off; set alpha_kd above 0 or augment to 0 ('distill' step)."
    )
    names = {"alpha_kd": "KD weight", "augment": "Augmented copies"}
    # "augmented" is not the key augment; "(alpha_kd)" after its description stays.
    assert error.worded("Distill — Augmented copies", names) == (
        "Distill — Augmented copies: the augmented copies learn from the teacher's logits, "
        "which a KD weight (alpha_kd) of 0 turns off; set KD weight above 0 or Augmented "
        "copies to 0."
    )
    # Located in a file, it still words the same.
    assert (
        error.located(step=1, source="r.yaml", line=9)
        .worded("X", names)
        .endswith("set KD weight above 0 or Augmented copies to 0.")
    )


def test_each_number_is_checked_against_its_key_s_bounds_ends_included_or_not() -> None:
    """The ranges the wizard's fields allow: a step's ``bounds``, one per key."""
    from slimpajama_gui.core.plan.steps import EPOCHS, TEMPERATURE, WEIGHT

    assert Distill.bounds["temperature"] is TEMPERATURE
    assert FineTune.bounds["epochs"] is Distill.bounds["epochs"] is EPOCHS
    assert Distill.bounds["hidden_mse"] is WEIGHT
    assert (TEMPERATURE.low, TEMPERATURE.high, TEMPERATURE.low_open) == (0, 1000, True)
    assert (EPOCHS.high, WEIGHT.high, FineTune.bounds["batch_size"].high) == (1000, 1e6, 8192)
    # Beyond the old wizard's ranges (100 epochs, batch 4096, MSE 100, temperature 20),
    # within the recipe's: taken, as are the bounds themselves where they are closed.
    for steps in (
        "  - type: finetune\n    epochs: 200\n    batch_size: 8000\n",
        "  - type: distill\n    temperature: 50\n    hidden_mse: 500\n",
        "  - type: finetune\n    epochs: 1000\n    batch_size: 8192\n",
        "  - type: distill\n    temperature: 1000\n    hidden_mse: 1e6\n",
        "  - type: distill\n    temperature: 0.001\n    attention_mse: 0\n",
        "  - type: distill\n    ema_decay: 0.999\n",
    ):
        parse(steps)
    # Just beyond: refused, with the bound the wizard's sentence names.
    for steps, expected in (
        ("  - type: finetune\n    epochs: 1001\n", "epochs: must be at most 1000, got 1001.0"),
        ("  - type: distill\n    temperature: 0\n", "temperature: must be above 0, got 0.0"),
        ("  - type: distill\n    hidden_mse: 2e6\n",
         "hidden_mse: must be at most 1e+06, got 2000000.0"),
        ("  - type: finetune\n    batch_size: 8193\n", "batch_size: must be at most 8,192, got 8193"),
        ("  - type: distill\n    ffn_fraction: 1\n",
         "ffn_fraction: must be 0 or more and below 1, got 1.0"),
        ("  - type: distill\n    ema_decay: 1\n",
         "ema_decay: must be 0 or more and below 1, got 1.0"),
        ("  - type: finetune\n    ema_decay: -0.1\n",
         "ema_decay: must be 0 or more and below 1, got -0.1"),
    ):  # fmt: skip
        with pytest.raises(RecipeError, match=re.escape(expected) + r" \(recipe\.yaml line 9"):
            parse(steps)
    assert EPOCHS.admits(1000) and not EPOCHS.admits(1001) and not TEMPERATURE.admits(0)
    # A prune amount dropping layers is unused: only its upper bound is checked.
    Prune(method="layers", keep_layers=[0], amount=0.0).validate()
    with pytest.raises(RecipeError, match="amount: must be at most 1"):
        Prune(method="layers", keep_layers=[0], amount=2.0).validate()


def test_output_inside_the_source_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "teacher").mkdir()
    base = "name: x\nmodel: teacher\ndataset: {train: d.csv}\nsteps:\n  - type: finetune\n"
    for output in ("teacher", "teacher/compressed", "./teacher/../teacher"):
        path = tmp_path / "recipe.yaml"
        path.write_text(base + f"output: {output}\n")
        with pytest.raises(RecipeError) as info:
            load_recipe(path)
        message = str(info.value)
        assert message.startswith("output: the output folder")
        assert str(tmp_path / "teacher") in message and "line 6" in message
    path.write_text(base + "output: teacher-small\n")
    assert load_recipe(path).output == "teacher-small"
    # Absolute output inside a relative model: resolved against the recipe's folder.
    path.write_text(base + f"output: {tmp_path / 'teacher' / 'x'}\n")
    with pytest.raises(RecipeError, match="inside the source model folder"):
        load_recipe(path)


def test_an_output_folder_the_job_cannot_make_is_refused_before_it_runs(tmp_path: Path) -> None:
    """Kind: an output the job could only fail on when it saves its first variant (a
    file, a path through a file, a folder without write permission)."""
    (tmp_path / "teacher").mkdir()
    (tmp_path / "notes.csv").write_text("keep me\n")
    base = "name: x\nmodel: teacher\ndataset: {train: d.csv}\nsteps:\n  - type: finetune\n"
    path = tmp_path / "recipe.yaml"
    for output, words in (
        ("notes.csv", "notes.csv is a file; choose a folder"),
        ("notes.csv/run1", f"is inside {tmp_path / 'notes.csv'}, which is a file"),
    ):
        path.write_text(base + f"output: {output}\n")
        with pytest.raises(RecipeError, match="^output: the output folder") as info:
            load_recipe(path)
        assert words in str(info.value) and "line 6" in str(info.value)
    assert (tmp_path / "notes.csv").read_text() == "keep me\n"
    path.write_text(base + "output: new/deeper/run1\n")  # folders still to be made: fine
    assert load_recipe(path).output == "new/deeper/run1"
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root may write anywhere: nothing to refuse
            pytest.skip("this user can write to a read-only folder (root)")
        path.write_text(base + "output: locked/run1\n")
        with pytest.raises(RecipeError, match="is not writable for you"):
            load_recipe(path)
    finally:
        locked.chmod(0o700)


def test_empty_steps_are_refused() -> None:
    for steps in ("  []\n", "", "  null\n"):
        text = HEAD.replace("steps:\n", "steps:") + steps
        with pytest.raises(RecipeError, match=r"steps: the recipe has no steps.*recipe\.yaml line"):
            recipe_from_yaml(text, "recipe.yaml")
    with pytest.raises(UserError, match=r"recipe\.yaml has no 'steps'"):
        recipe_from_yaml(HEAD.replace("steps:\n", ""), "recipe.yaml")


def test_newer_versions_are_refused_with_a_sentence() -> None:
    with pytest.raises(RecipeError) as info:
        parse("  - type: quantize\n    version: 2\n    backend: onnx\n")
    message = str(info.value)
    assert "version 2" in message and "reads up to version 1" in message and "line 9" in message
    with pytest.raises(UserError, match="version 3 recipe.*newer SlimPajama Studio"):
        recipe_from_yaml("version: 3\nnew_key: 1\n" + HEAD + "  - type: finetune\n")


def test_yaml_never_constructs_python_objects(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    attacks = [
        f"name: !!python/object/apply:os.system ['touch {canary}']\n",
        f"!!python/object/apply:os.system ['touch {canary}']\n",
        f"steps:\n  - type: finetune\n    epochs: !!python/object/apply:os.system ['touch {canary}']\n",
        f"dataset: !!python/object/new:subprocess.Popen [['touch', '{canary}']]\n",
        "name: !!python/name:os.system\n",
        "name: !custom 3\n",
    ]
    for attack in attacks:
        path = tmp_path / "evil.yaml"
        path.write_text(attack)
        with pytest.raises(UserError, match=r"YAML tag .* a recipe may not use.*evil\.yaml line"):
            load_recipe(path)
    assert not canary.exists()


def test_yaml_syntax_errors_and_duplicates_name_the_line() -> None:
    with pytest.raises(UserError, match=r"not valid YAML.*recipe\.yaml line 10.*starts on line 9"):
        parse("  - type: finetune\n    epochs: [1\n")
    with pytest.raises(UserError, match=r"key 'name' appears twice.*line 2"):
        recipe_from_yaml("name: a\nname: b\n", "recipe.yaml")
    with pytest.raises(UserError, match=r"empty"):
        recipe_from_yaml("", "recipe.yaml")
    with pytest.raises(UserError, match=r"must be a mapping"):
        recipe_from_yaml("- just\n- a list\n", "recipe.yaml")
    with pytest.raises(UserError, match=r"recipe file not found: .*nope\.yaml"):
        load_recipe(Path("/nonexistent/nope.yaml"))


def test_anchors_and_merge_keys_work_like_plain_yaml() -> None:
    text = HEAD + ("  - &ft {type: finetune, epochs: 1, seed: 1}\n  - <<: *ft\n    seed: 2\n")
    recipe = recipe_from_yaml(text)
    assert [s.seed for s in recipe.steps] == [1, 2]
    assert all(s.epochs == 1.0 for s in recipe.steps)


def test_messages_are_single_sentences_without_reprs_of_classes() -> None:
    with pytest.raises(UserError) as info:
        parse("  - type: finetune\n    epochs: -1\n")
    message = str(info.value)
    assert re.fullmatch(
        r"epochs: must be above 0, got -1\.0 \(recipe\.yaml line 9, step 1 'finetune'\)\.", message
    )


def test_plain_dicts_round_trip_with_the_same_allow_list() -> None:
    # slimpajama.json keeps the recipe as JSON; the same checks apply without YAML.
    recipe = full_recipe()
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    data = recipe.to_dict()
    data["steps"][0]["epoch"] = 1
    with pytest.raises(RecipeError, match=r"^epoch: unknown key.*Did you mean 'epochs'\?"):
        Recipe.from_dict(data)
    data = recipe.to_dict()
    data["steps"][1]["type"] = "os.system"
    with pytest.raises(RecipeError, match=r"unknown step type 'os.system'.*\(step 2\)"):
        Recipe.from_dict(data)


def test_a_version_1_vocabulary_step_keeps_only_the_data_ids_as_it_did() -> None:
    """Prune version 2 added keep_general; a saved version-1 recipe re-runs unchanged."""
    from slimpajama_gui.core.plan.steps import KEEP_GENERAL

    recipe = parse("  - {type: prune, version: 1, method: vocabulary}\n")
    old = recipe.steps[0]
    new = parse("  - {type: prune, method: vocabulary}\n").steps[0]
    assert old.keep_general == 0 and new.keep_general == KEEP_GENERAL > 0
    text = dump_recipe(recipe)
    assert "version: 2" in text  # written back as version 2, with its 0
    assert recipe_from_yaml(text, "again.yaml").steps[0].keep_general == 0
    with pytest.raises(UserError, match="keep_general"):
        parse("  - {type: prune, method: vocabulary, keep_general: -5}\n")


def test_4_bit_embeddings_are_for_the_onnxruntime_backend_only() -> None:
    step = parse("  - {type: quantize, backend: onnxruntime, embedding_bits: 4}\n").steps[0]
    assert step.embedding_bits == 4 and step.backend == "onnxruntime"
    with pytest.raises(RecipeError, match=r"embedding_bits: 4-bit embeddings need 'backend: onn"):
        parse("  - {type: quantize, embedding_bits: 4}\n")
    with pytest.raises(RecipeError, match=r"embedding_bits: 4-bit embeddings quantize the word"):
        parse("  - {type: quantize, backend: onnxruntime, embeddings: false, embedding_bits: 4}\n")
    with pytest.raises(
        RecipeError,
        match=r"embedding_bits: expected one of 8, 4, got 6; write one of these.*line 8",
    ):
        parse("  - {type: quantize, backend: onnxruntime, embedding_bits: 6}\n")


def test_a_distillation_with_no_weight_on_the_teacher_is_valid_but_warned_about() -> None:
    """Legal (the student learns from the labels alone), almost surely a slip: the recipe
    loads, and its warnings (which a job says as it starts) name the weights to raise."""
    recipe = parse(
        "  - {type: finetune}\n"
        "  - {type: distill, alpha_kd: 0, hidden_mse: 0, attention_mse: 0}\n"
        "  - {type: distill, alpha_kd: 0, attention_mse: 10}\n"
        "  - {type: distill_static, alpha_kd: 0}\n"  # labels alone train its own head
    )
    assert recipe.warnings() == [
        "Step 2 'distill': the KD weight (alpha_kd), hidden MSE (hidden_mse) and attention MSE "
        "(attention_mse) are all 0, so the student learns only from the labels, not from the "
        "teacher; raise the KD weight or a hidden or attention MSE weight above 0."
    ]
    assert recipe.warnings(first_step=2) == []  # a resumed job starting after it
    assert Distill().warnings() == [] and Distill(alpha_kd=0, hidden_mse=1.0).warnings() == []
    assert full_recipe().warnings() == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_folder_that_refuses_new_folders_even_to_root_is_refused(tmp_path: Path) -> None:
    # /proc passes a permission-bit check for root, yet mkdir there fails: the job used
    # to stop at its first save with an internal error ("please report it").
    (tmp_path / "teacher").mkdir()
    path = tmp_path / "recipe.yaml"
    path.write_text(
        "name: x\nmodel: teacher\ndataset: {train: d.csv}\noutput: /proc/nope/out\n"
        "steps:\n  - type: finetune\n"
    )
    with pytest.raises(RecipeError, match="^output: the output folder /proc/nope/out cannot"):
        load_recipe(path)
    # The check leaves nothing behind where it could write.
    path.write_text(path.read_text().replace("/proc/nope/out", "fresh/run1"))
    assert load_recipe(path).output == "fresh/run1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml", "teacher"]
