"""The teacher-logit cache on disk: a second distillation of the same teacher on the same
rows reads the logits instead of running the teacher; any change to the inputs misses."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from slimpajama_gui.core.data.dataset import DatasetSpec, load_dataset
from slimpajama_gui.core.jobs.pipeline import PipelineCallbacks, run
from slimpajama_gui.core.model.encoder import EncoderClassifier
from slimpajama_gui.core.paths import data_dir
from slimpajama_gui.core.plan.recipe import recipe_from_yaml
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.storage.variant import VariantRecord
from slimpajama_gui.core.techniques.distill import cache as distill_cache

DISTILL = "  - {type: distill, student_layers: [1], epochs: 1, learning_rate: 1.0e-3, batch_size: 16, temperature: 2.0, alpha_kd: 0.7}\n"


class Losses(PipelineCallbacks):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_log(self, index, metrics):
        if "loss" in metrics:
            self.losses.append(metrics["loss"])


def write_demo(folder: Path, *, drop_first: bool = False) -> Path:
    """The demo set as train.csv / eval.csv in ``folder`` (optionally one train row less)."""
    demo = load_dataset(DatasetSpec())
    folder.mkdir(parents=True, exist_ok=True)
    for name, split in (("train", demo.train), ("eval", demo.eval)):
        rows = list(zip(split.texts, split.labels, strict=True))
        if name == "train" and drop_first:
            rows = rows[1:]
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["sentence", "label"])
            writer.writerows((text, demo.label_names[label]) for text, label in rows)
    return folder


def distill_job(model: Path, data: Path, output: Path, steps: str = DISTILL):
    text = f"""
name: cache-test
model: {model}
dataset:
  train: {data / "train.csv"}
  eval: {data / "eval.csv"}
  labels: [negative, positive]
  max_length: 48
output: {output}
steps:
{steps}
"""
    losses = Losses()
    with JobStore(output.parent / f"{output.name}.sqlite3") as store:
        result = run(
            recipe_from_yaml(text, source="t.yaml", base_dir=output.parent), losses, store=store
        )
    assert result.status == "done", result.error
    return VariantRecord.read(result.variants[-1]), losses.losses


@pytest.fixture
def teacher_forwards(tiny_minilm, monkeypatch):
    """Counts forward passes of the 2-layer teacher (the 1-layer student is not counted)."""
    calls = {"n": 0}
    original = EncoderClassifier.forward

    def counting(self, *args, **kwargs):
        if len(self.config.layer_heads) == 2:
            calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(EncoderClassifier, "forward", counting)
    return calls


def cache_files() -> list[Path]:
    return sorted((data_dir() / "cache" / "teacher-logits").glob("*.npz"))


def test_second_distillation_reads_the_teachers_logits_and_trains_the_same(
    tiny_minilm, tmp_path, teacher_forwards
):
    data = write_demo(tmp_path / "data")
    first, first_losses = distill_job(tiny_minilm, data, tmp_path / "a")
    assert first.distill["teacher_logits"] == "computed"
    assert teacher_forwards["n"] > 0 and len(cache_files()) == 1
    teacher_forwards["n"] = 0

    second, second_losses = distill_job(tiny_minilm, data, tmp_path / "b")
    assert second.distill["teacher_logits"] == "read from disk"
    assert teacher_forwards["n"] == 0  # the teacher never ran
    assert second_losses and second_losses == pytest.approx(first_losses, rel=1e-6)
    assert second.metrics["training"]["eval_accuracy"] == first.metrics["training"]["eval_accuracy"]

    # One train row less in the file: another key, the teacher runs again.
    changed = write_demo(tmp_path / "data2", drop_first=True)
    third, _ = distill_job(tiny_minilm, changed, tmp_path / "c")
    assert third.distill["teacher_logits"] == "computed"
    assert teacher_forwards["n"] > 0 and len(cache_files()) == 2


def test_a_loss_with_hidden_states_runs_the_teacher_and_keeps_no_cache(
    tiny_minilm, tmp_path, teacher_forwards
):
    data = write_demo(tmp_path / "data")
    steps = DISTILL.replace("alpha_kd: 0.7}", "alpha_kd: 0.7, hidden_mse: 1.0}")
    record, _ = distill_job(tiny_minilm, data, tmp_path / "a", steps)
    assert record.distill["teacher_logits"] == "teacher on every batch"
    assert teacher_forwards["n"] > 0 and cache_files() == []


def test_key_follows_weights_ids_and_extras_and_a_bad_file_is_ignored(tmp_path):
    from slimpajama_gui.core.model.config import EncoderConfig

    torch.manual_seed(0)
    model = EncoderClassifier(
        EncoderConfig(vocab_size=20, hidden_size=8, layer_heads=[2], head_dim=4, layer_ffn=[8],
                      max_position_embeddings=16)
    )  # fmt: skip
    ids = [[1, 5, 2], [1, 6, 7, 2]]
    key = distill_cache.logits_key(model, ids, extra={"data": "abc"})
    assert key == distill_cache.logits_key(model, ids, extra={"data": "abc"})
    assert key != distill_cache.logits_key(model, [[1, 5, 2], [1, 6, 8, 2]], extra={"data": "abc"})
    assert key != distill_cache.logits_key(model, ids, extra={"data": "abd"})
    with torch.no_grad():
        model.classifier.weight[0, 0] += 1e-3
    assert key != distill_cache.logits_key(model, ids, extra={"data": "abc"})

    path = distill_cache.logits_path(key, tmp_path)
    logits = torch.randn(2, 2)
    distill_cache.save_logits(path, logits)
    assert torch.equal(distill_cache.load_logits(path, 2, 2), logits)
    assert distill_cache.load_logits(path, 3, 2) is None  # another row count: unused
    path.write_bytes(b"not an npz")
    assert distill_cache.load_logits(path, 2, 2) is None


def test_a_student_with_half_its_ffn_trains_saves_and_reloads_narrow(tiny_minilm, tmp_path):
    from slimpajama_gui.core.runtime.loading import open_model

    data = write_demo(tmp_path / "data")
    steps = DISTILL.replace("alpha_kd: 0.7}", "alpha_kd: 0.7, ffn_fraction: 0.5}")
    record, _ = distill_job(tiny_minilm, data, tmp_path / "a", steps)
    folder = tmp_path / "a" / "01-distill"
    model = open_model(folder).load_model()
    assert model.config.layer_ffn == [32]  # tiny teacher: 64 FFN neurons a layer
    assert record.distill["teacher_layers"] == [1]
    assert record.metrics["training"]["eval_accuracy"] is not None
