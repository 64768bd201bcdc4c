"""Static embeddings (distill_static): a job makes them, and they load, evaluate,
benchmark, predict and list in Compare like every other variant."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from slimpajama_gui.core import data as data_mod
from slimpajama_gui.core.jobs.index import load_variants, playground_pair
from slimpajama_gui.core.jobs.pipeline import run
from slimpajama_gui.core.model.catalog import discover_models
from slimpajama_gui.core.model.inspection import inspect_model
from slimpajama_gui.core.plan.preflight import source_problems
from slimpajama_gui.core.plan.recipe import FineTune, RecipeError, recipe_from_yaml
from slimpajama_gui.core.runtime.evaluate import classification_report, predict
from slimpajama_gui.core.runtime.loading import open_model
from slimpajama_gui.core.runtime.predictor import ModelPredictor
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.storage.variant import VariantRecord
from slimpajama_gui.core.techniques.static import StaticClassifier, StaticEmbedding, quantize_rows
from tests.conftest import write_tiny_minilm_vocab
from tests.figures import measured

#: Dimensions of the tiny static models (the tiny teacher has 32 hidden units).
DIMS = 16
#: The share of dev rows on which int8 vectors may predict another label than float32.
INT8_DISAGREE = 0.05


def recipe(model: Path, output: Path, steps: str):
    text = f"""
name: static
model: {model}
dataset:
  train: demo
  labels: [negative, positive]
  max_length: 48
output: {output}
threads: 1
steps:
{steps}
"""
    return recipe_from_yaml(text, source="static.yaml", base_dir=output.parent)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A tiny BERT with the MiniLM vocabulary, fine-tuned on the demo data (trained head)."""
    root = tmp_path_factory.mktemp("static-teacher")
    model = write_tiny_minilm_vocab(root / "tiny")
    steps = "  - {type: finetune, epochs: 3, learning_rate: 3.0e-3, batch_size: 16, seed: 1}"
    with pytest.MonkeyPatch.context() as m:
        m.setenv("SLIMPAJAMA_HOME", str(root / "home"))
        with JobStore(root / "h.sqlite3") as store:
            result = run(recipe(model, root / "out", steps), store=store)
    assert result.status == "done", result.error
    return root / "out" / "01-finetune"


def static_job(teacher: Path, out: Path, storage: str, store: JobStore, extra: str = ""):
    steps = f"""
  - {{type: distill_static, dims: {DIMS}, storage: {storage}, epochs: 3, seed: 2}}
  - type: evaluate
{extra}"""
    return run(recipe(teacher, out, steps), store=store)


def demo_eval() -> data_mod.Split:
    """The eval split every job here evaluates on (the demo set's dev rows)."""
    spec = data_mod.DatasetSpec(train="demo", labels=["negative", "positive"], max_length=48)
    return data_mod.load_dataset(spec).eval


def dev_accuracy(model, tokenizer) -> tuple[float, np.ndarray]:
    """(accuracy, predicted label ids in row order) on the demo eval split."""
    split = demo_eval()
    enc = data_mod.encode_split(split, tokenizer, 48)
    batches = data_mod.batches(enc, split.labels, 64, shuffle=False, seed=0, pad_id=0,
                               sort_by_length=True)  # fmt: skip
    preds = predict(model, batches)
    report = classification_report(preds, ["negative", "positive"])
    return report.accuracy, preds.logits.argmax(1)


def test_a_static_variant_reloads_evaluates_predicts_and_lists_in_compare(
    teacher, tmp_path, monkeypatch
):
    attempts: list[object] = []

    def no_network(self, address):  # nothing in the step may reach out (model2vec, hub)
        attempts.append(address)
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    steps_after = "  - {type: benchmark, sentences: 10, repeats: 1, warmup: 1}"
    with JobStore(tmp_path / "h.sqlite3") as store:
        result = static_job(teacher, tmp_path / "out", "int8", store, steps_after)
        assert result.status == "done", result.error
        variants = [v for v in load_variants(store).variants if v.step_type == "distill_static"]
    assert attempts == []
    folder = tmp_path / "out" / "01-distill_static"
    record = VariantRecord.read(folder)
    assert record.weights_format == "static_int8"
    assert record.distill["student"] == "static" and record.distill["dims"] == DIMS
    in_memory = record.metrics["training"]["eval_accuracy"]
    assert record.metrics["eval"]["accuracy"] == in_memory  # the evaluate step, same model

    # The folder alone: its header says what it is, and the weights reload.
    info = inspect_model(folder)
    vocab = info.vocab
    assert (info.layers, info.dtype, info.num_labels) == (0, "static-int8", 2)
    assert info.parameters == vocab * DIMS + 2 * DIMS + 2  # the int8 scales are not parameters
    handle = open_model(folder)
    model = handle.load_model()
    assert isinstance(model, StaticClassifier) and model.storage == "int8"
    reloaded, labels = dev_accuracy(model, handle.load_tokenizer())
    # The same int8 table and head: the same sums, so the same accuracy to one row of 100.
    assert abs(reloaded - in_memory) <= 0.01
    # The saved predictions of the evaluate step are the labels the reloaded model gives.
    saved = record.read_predictions(folder, "eval")
    dev_texts = demo_eval().texts
    got = [p.label for p in ModelPredictor(folder).predict_texts(dev_texts)]
    want = [["negative", "positive"][i] for i in saved.logits[np.argsort(saved.rows)].argmax(1)]
    assert got == want == [["negative", "positive"][i] for i in labels]

    # Compare lists it with its accuracy, latency and size, like any variant.
    (row,) = variants
    assert row.accuracy == in_memory and measured(row.p50_ms)
    assert row.size_bytes == record.metrics["benchmark"]["size_bytes"] > 0
    assert record.metrics["benchmark"]["backend"] == "pytorch"
    assert row.parameters == info.parameters
    # The Playground's model list has it, with its head, and picks it as the new model.
    infos, skipped = discover_models([tmp_path / "out"], include_packaged=False,
                                     include_hf_cache=False)  # fmt: skip
    assert skipped == [] and [Path(i.path) for i in infos] == [folder]
    assert infos[0].num_labels == 2 and playground_pair(infos)[1] == folder


def test_int8_vectors_are_smaller_and_predict_like_float32(teacher, tmp_path):
    folders = {}
    with JobStore(tmp_path / "h.sqlite3") as store:
        for storage in ("float32", "int8"):
            result = static_job(teacher, tmp_path / storage, storage, store)
            assert result.status == "done", result.error
            folders[storage] = tmp_path / storage / "01-distill_static"
    sizes = {k: (f / "model.safetensors").stat().st_size for k, f in folders.items()}
    assert sizes["int8"] < sizes["float32"] / 3  # 1 byte + a scale per row vs 4 bytes
    labels = {}
    for storage, folder in folders.items():
        handle = open_model(folder)
        _, labels[storage] = dev_accuracy(handle.load_model(), handle.load_tokenizer())
    disagree = float(np.mean(labels["int8"] != labels["float32"]))
    assert disagree <= INT8_DISAGREE


def test_rows_quantize_within_half_a_step_and_look_up_as_stored():
    torch.manual_seed(0)
    table = torch.randn(50, 8) * torch.linspace(0.01, 5, 50)[:, None]
    table[3] = 0.0
    q, scale = quantize_rows(table)
    assert q.dtype == torch.int8 and scale.shape == (50,)
    assert torch.all((q.float() * scale[:, None] - table).abs() <= scale[:, None] / 2 + 1e-6)
    emb = StaticEmbedding(table)
    emb.store_as("int8")
    ids = torch.tensor([[3, 7, 49], [0, 0, 1]])
    assert emb.weight.dtype == torch.int8 and not list(emb.parameters())
    expected = (q.float() * scale[:, None])[ids]
    assert torch.equal(emb(ids), expected)


def test_steps_after_distill_static_are_refused_with_what_may_follow(tmp_path):
    for after in ("{type: quantize}", "{type: benchmark, backend: onnxruntime}",
                  "{type: distill_static}"):  # fmt: skip
        steps = f"  - {{type: distill_static}}\n  - {after}"
        with pytest.raises(RecipeError) as err:
            recipe(tmp_path / "m", tmp_path / "out", steps)
        assert "cannot follow step 1 'distill_static'" in str(err.value)
        assert "Only evaluate and benchmark steps can follow it" in str(err.value)
    ok = "  - {type: distill_static, storage: float16}\n  - {type: evaluate}\n  - {type: benchmark}"
    assert recipe(tmp_path / "m", tmp_path / "out", ok).steps[0].storage == "float16"
    with pytest.raises(RecipeError, match="storage"):
        recipe(tmp_path / "m", tmp_path / "out", "  - {type: distill_static, storage: int4}")


def test_a_static_model_as_source_cannot_be_trained(teacher, tmp_path):
    with JobStore(tmp_path / "h.sqlite3") as store:
        assert static_job(teacher, tmp_path / "out", "float16", store).status == "done"
    info = inspect_model(tmp_path / "out" / "01-distill_static")
    assert info.dtype == "static-float16"
    (problem,) = source_problems(info, [FineTune()])
    assert "static-embedding model (float16 vectors)" in problem
    assert "cannot be fine-tuned" in problem and str(teacher) in problem


def test_the_tiny_teacher_helper_has_the_minilm_vocabulary(tmp_path):
    # The static tests rely on real word ids (a vocabulary of 30,522) for learnable vectors.
    info = inspect_model(write_tiny_minilm_vocab(tmp_path / "t"))
    assert info.vocab == 30522
