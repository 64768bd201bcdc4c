"""Pre-flight before Run: what a source model's weights and classifier head allow.

Kind: a model whose head was trained for other named classes than the data's, an
ONNX source, a pickle-only folder. Each is a sentence before step 1, in the wizard's
draft and in ``slimpajama run``; nothing is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from slimpajama_gui.core.jobs.pipeline import run
from slimpajama_gui.core.model.catalog import describe_folder, discover_models
from slimpajama_gui.core.model.inspection import inspect_model
from slimpajama_gui.core.plan import presets
from slimpajama_gui.core.plan.draft import Draft
from slimpajama_gui.core.plan.preflight import source_problems, weights_kind
from slimpajama_gui.core.plan.recipe import recipe_from_yaml
from slimpajama_gui.core.plan.steps import Distill, Evaluate, FineTune
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.storage.variant import VariantRecord

from ..conftest import write_tiny_bert


def name_labels(folder: Path, names: list[str]) -> Path:
    """Give the saved head these class names (config.json's id2label/label2id)."""
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): n for i, n in enumerate(names)}
    config["label2id"] = {n: i for i, n in enumerate(names)}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def bad_good(tmp_path_factory) -> Path:
    folder = write_tiny_bert(tmp_path_factory.mktemp("m") / "bad-good")
    return name_labels(folder, ["bad", "good"])


def test_the_head_names_are_read_from_the_config(bad_good, tiny_bert):
    assert inspect_model(bad_good).label_names == ("bad", "good")
    # transformers' placeholders say nothing about the classes
    assert inspect_model(tiny_bert).label_names is None


def test_same_size_other_names_needs_finetune_and_the_note_says_why(bad_good):
    info = inspect_model(bad_good)
    assert presets.needs_finetune(info, ["negative", "positive"])
    assert not presets.needs_finetune(info, ["Good", "bad"])  # same classes, other order
    assert not presets.needs_finetune(info, 2)  # only a count: nothing to compare
    steps, notes = presets.adapt_chain(
        presets.load_preset("balanced"), info, ["negative", "positive"]
    )
    assert isinstance(steps[0], FineTune)
    assert notes[0] == (
        "Fine-tuning comes first: the model's classifier was trained for 2 labels ('bad', "
        "'good'), not for the data's 'negative', 'positive', so it gets a new head for these "
        "labels."
    )
    steps, notes = presets.adapt_chain(presets.load_preset("balanced"), info, ["good", "bad"])
    assert not any(isinstance(s, FineTune) for s in steps)
    assert "a classifier head for these labels ('bad', 'good')" in notes[0]


def test_the_draft_reports_other_names_before_run(bad_good):
    draft = Draft()
    draft.set_model(inspect_model(bad_good))
    draft.set_data({"train": "demo"}, ["negative", "positive"])
    assert draft.needs_finetune
    draft.set_chain("custom", [Distill(student_layers=[0]), Evaluate()])
    problem = next(p for p in draft.problems() if p.startswith("Fine-tune:"))
    assert "'bad', 'good'" in problem and "'negative', 'positive'" in problem
    draft.use_preset("fast")
    assert isinstance(draft.chain[0], FineTune)
    assert not [p for p in draft.problems("techniques") if "classifier" in p]


def test_source_problems_name_the_step_that_would_use_an_untrained_head(bad_good):
    info = inspect_model(bad_good)
    labels = ["negative", "positive"]
    [sentence] = source_problems(info, [Distill(student_layers=[0]), Evaluate()], labels)
    assert sentence.startswith("bad-good's classifier was trained for 2 labels ('bad', 'good')")
    assert "step 1 'distill' would use before any training. Put a finetune step first." in sentence
    assert source_problems(info, [FineTune(), Evaluate()], labels) == []
    assert source_problems(info, [Evaluate()], ["bad", "good"]) == []


def test_slimpajama_run_refuses_other_labels_before_step_1(bad_good, tmp_path):
    output = tmp_path / "out"
    recipe = recipe_from_yaml(
        f"""
name: mismatch
model: {bad_good}
dataset: {{train: demo, labels: [negative, positive], max_length: 32}}
output: {output}
steps:
  - type: evaluate
""",
        "mismatch.yaml",
        base_dir=tmp_path,
    )
    with JobStore(tmp_path / "history.sqlite3") as store:
        result = run(recipe, store=store)
    assert result.status == "failed"
    assert "'bad', 'good'" in result.error and "step 1 'evaluate'" in result.error
    assert result.variants == [] and not any(output.glob("*/config.json"))


def test_an_onnx_folder_without_its_record_is_not_taken_for_float(tiny_bert, tmp_path):
    from slimpajama_gui.core.model.encoder import EncoderClassifier
    from slimpajama_gui.core.techniques.onnx_export import save_onnx_variant

    folder = tmp_path / "onnx"
    folder.mkdir()
    model = EncoderClassifier.from_pretrained(tiny_bert, id2label={0: "neg", 1: "pos"})
    save_onnx_variant(model, tiny_bert, folder, quantized=True)
    info = inspect_model(folder)
    assert weights_kind(info) == "onnx" and info.label_names == ("neg", "pos")
    [sentence] = source_problems(info, presets.load_preset("smallest"))
    assert sentence.startswith("onnx is an ONNX model: it cannot be fine-tuned, distilled,")
    assert "keep only evaluate or benchmark steps" in sentence


def test_a_pickle_only_folder_is_refused_for_the_pickle_first(tiny_bert, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_bert, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    (folder / "vocab.txt").unlink()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(Exception, match="pickle") as err:
        inspect_model(folder)
    assert "tokenizer" not in str(err.value)


def test_results_are_named_with_their_job(tiny_bert, tmp_path):
    runs = []
    for run_folder in ("balanced-0530", "balanced-0610"):
        step = tmp_path / "results" / run_folder / "01-finetune"
        shutil.copytree(tiny_bert, step)
        VariantRecord(recipe={"name": "preset-balanced"}).write(step)
        runs.append(step)
    infos, _ = discover_models(
        [tmp_path / "results" / f for f in ("balanced-0530", "balanced-0610")],
        include_packaged=False,
        include_hf_cache=False,
    )
    assert sorted(i.name for i in infos) == [
        "preset-balanced (balanced-0530) › 01-finetune",
        "preset-balanced (balanced-0610) › 01-finetune",
    ]
    assert describe_folder(runs[0]).name == "preset-balanced › 01-finetune"
