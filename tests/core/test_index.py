"""The results index (Qt-free): variants from the history, the Pareto front, the A/B
pair, and the flips between two variants from their stored evaluate predictions."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from slimpajama_gui.core.jobs import flips as flips_mod
from slimpajama_gui.core.jobs.flips import flip_job
from slimpajama_gui.core.jobs.index import (
    EvalFigures,
    Variant,
    bench_setup,
    comparable_front,
    default_pair,
    eval_set_identity,
    eval_sets,
    load_variants,
    pareto_front,
    playground_pair,
    timed_with,
)
from slimpajama_gui.core.jobs.pipeline import run
from slimpajama_gui.core.model.inspection import inspect_model
from slimpajama_gui.core.plan.recipe import recipe_from_yaml
from slimpajama_gui.core.storage.history import JobStore


def test_pareto_front_rules():
    pts = [(5, 80), (3, 85), (2, 70), (10, 90), (3, 85), (4, 60)]
    # Standard dominance: the two equal points (3, 85) do not dominate each other.
    assert pareto_front(pts) == [2, 1, 4, 3]
    assert pareto_front([]) == []
    # Same latency, lower accuracy; same accuracy, higher latency: both dominated.
    assert pareto_front([(1, 50), (1, 40), (2, 50)]) == [0]


def _measured(tmp_path, name, *, acc, rows, p50, key="file:/data/dev.tsv", setup="pytorch"):
    v = Variant(tmp_path / name, name, p50_ms=p50, accuracy=acc, bench_setup=setup)
    v.eval_set = f"{key}#{rows}"
    v.evals[v.eval_set] = EvalFigures(acc, None, rows, f"dev.tsv ({rows} rows)")
    return v


def test_comparable_front_ranks_only_comparable_points_with_enough_rows(tmp_path):
    a = _measured(tmp_path, "a", acc=0.80, rows=100, p50=5.0)
    b = _measured(tmp_path, "b", acc=0.85, rows=100, p50=3.0)
    tiny = _measured(tmp_path, "tiny", acc=0.99, rows=2, p50=1.0, key="file:/data/two.tsv")
    tiny.evals["file:/data/dev.tsv#100"] = EvalFigures(0.5, None, 2, "x")  # bad rows count
    other_cpu = _measured(tmp_path, "c", acc=0.70, rows=100, p50=9.0, setup="pytorch · other")
    variants = [a, b, tiny, other_cpu]
    ranking = comparable_front(variants, "file:/data/dev.tsv#100")
    assert ranking.plotted == [0, 1, 2, 3]
    # a is dominated by b; the 2-row point is drawn but not ranked (and beats nobody);
    # the point timed on another setup is alone in its group.
    assert ranking.front == [1, 3]
    assert "2 eval rows" in ranking.unranked[2]
    assert set(ranking.groups) == {"pytorch", "pytorch · other"}
    # On the 2-row set only the tiny variant has an accuracy, and it is never ranked.
    small = comparable_front(variants, "file:/data/two.tsv#2")
    assert small.plotted == [2] and small.front == []
    assert eval_sets(variants) == {
        "file:/data/dev.tsv#100": "dev.tsv (100 rows)",
        "file:/data/two.tsv#2": "dev.tsv (2 rows)",
    }


def test_eval_set_identity_names_the_file_and_rows(tmp_path):
    key, label = eval_set_identity({"train": "t.csv", "eval": "e.csv"}, tmp_path, 2)
    assert key == f"file:{(tmp_path / 'e.csv').resolve()}#2" and label == "e.csv (2 rows)"
    demo, label = eval_set_identity({"train": "demo"}, None, 100)
    assert demo == "demo:dev#100" and "demo" in label
    held, label = eval_set_identity({"train": "t.csv", "eval_fraction": 0.2}, tmp_path, None)
    assert held.startswith("held-out:") and label == "20% held out of t.csv (rows not recorded)"
    assert eval_set_identity(None, None, 5)[0] == ""


def test_a_job_that_measured_its_source_has_it_as_a_comparable_baseline(tiny_minilm, tmp_path):
    """Source and variant of one job: same eval set, latency timed the same way."""
    text = f"""
name: base
model: {tiny_minilm}
dataset: {{train: demo, labels: [negative, positive], max_length: 48}}
output: {tmp_path / "out"}
steps:
  - type: evaluate
  - {{type: benchmark, threads: 1, sentences: 4, warmup: 1, repeats: 1}}
  - {{type: finetune, epochs: 1, batch_size: 16, seed: 1}}
  - type: evaluate
  - {{type: benchmark, threads: 1, sentences: 4, warmup: 1, repeats: 1}}
"""
    with JobStore(tmp_path / "h.sqlite3") as store:
        result = run(recipe_from_yaml(text, "base.yaml", base_dir=tmp_path), store=store)
        assert result.status == "done", result.error
        variants = load_variants(store).variants
    [variant] = [v for v in variants if not v.is_source]
    [source] = [v for v in variants if v.is_source]
    assert source.p50_ms is not None and source.eval_rows == variant.eval_rows == 100
    assert source.eval_set == variant.eval_set and variant.machine
    assert source.bench_setup == variant.bench_setup
    assert "1 thread ·" in source.bench_setup and variant.machine in source.bench_setup
    ranking = comparable_front(variants, variant.eval_set)
    assert len(ranking.groups) == 1 and sorted(ranking.plotted) == [0, 1]
    assert not ranking.unranked and ranking.front


def test_default_pair_is_the_newest_variant_against_its_parent(tmp_path):
    src = Variant(tmp_path / "src", "src", is_source=True)
    old = Variant(tmp_path / "a", "a", created_at="2025-01-01", parent=tmp_path / "src")
    new = Variant(tmp_path / "b", "b", created_at="2025-02-01", parent=tmp_path / "a")
    assert default_pair([src, old, new]) == (1, 2)
    orphan = Variant(tmp_path / "c", "c", created_at="2025-03-01", parent=tmp_path / "gone")
    assert default_pair([src, orphan]) == (0, 1)
    assert default_pair([src]) == (0, None) and default_pair([]) == (None, None)


def test_default_pair_never_picks_a_model_without_a_classifier_head(tmp_path):
    """A job from the packaged encoder: its first variant's parent and source have no
    head, so comparing predictions with them fails; A is another result, or none."""
    enc = Variant(tmp_path / "minilm", "all-MiniLM-L6-v2", is_source=True, has_head=False)

    def result(name, step, created, parent, job=1):
        return Variant(
            tmp_path / name, name, job_id=job, step_index=step, created_at=created,
            parent=parent, source_model=enc.path, has_head=True,
        )  # fmt: skip

    first = result("01", 0, "2025-01-01T10:00", enc.path)
    assert default_pair([first, enc]) == (None, 0)  # nothing it can be compared with
    assert default_pair([enc]) == (None, None)
    second = result("02", 1, "2025-01-01T10:05", first.path)
    assert default_pair([second, first, enc]) == (1, 0)  # its parent
    # Its parent deleted: the job's first variant, never the encoder.
    third = result("03", 2, "2025-01-01T10:10", tmp_path / "gone")
    assert default_pair([enc, third, second, first]) == (3, 1)
    # A new job from the encoder: its variant against an older job's result.
    other = result("x01", 0, "2025-02-01T09:00", enc.path, job=2)
    assert default_pair([enc, first, other]) == (1, 2)
    # A source whose head is not known (its folder is unreadable) is still offered.
    unknown = Variant(tmp_path / "src", "src", is_source=True)
    assert default_pair([unknown, other]) == (0, 1)


def test_an_unreadable_record_is_a_note_and_the_history_row_keeps_its_figures(tmp_path):
    folder = tmp_path / "out" / "01-finetune"
    folder.mkdir(parents=True)
    (folder / "slimpajama.json").write_text(json.dumps({"job_id": 1, "colour": "red"}))
    with JobStore(tmp_path / "h.sqlite3") as store:
        job = store.create_job("j", "name: j\n", str(folder.parent))
        store.add_variant(job, 0, "model", folder, {"eval": {"accuracy": 0.75}})
        data = load_variants(store)
    [variant] = data.variants
    assert variant.accuracy == 0.75 and variant.job_name == "j"
    assert "unknown key 'colour'" in data.notes[0]


def _drain(gen):
    """Run a flip job to its end; returns (yielded items, result)."""
    items = []
    try:
        while True:
            items.append(next(gen))
    except StopIteration as stop:
        return items, stop.value


def test_flips_use_the_stored_predictions_and_match_a_fresh_run(tiny_minilm, tmp_path, monkeypatch):
    """Two variants evaluated by their job: no model is loaded for the flips, and the
    answer is the one running both models again gives."""
    out = tmp_path / "out"
    text = f"""
name: flips
model: {tiny_minilm}
dataset: {{train: demo, labels: [negative, positive], max_length: 48}}
output: {out}
steps:
  - {{type: finetune, epochs: 2, learning_rate: 3.0e-3, batch_size: 16, seed: 1}}
  - type: evaluate
  - {{type: prune, method: magnitude, amount: 0.6, recovery_epochs: 0}}
  - type: evaluate
"""
    with JobStore(tmp_path / "h.sqlite3") as store:
        result = run(recipe_from_yaml(text, "flips.yaml", base_dir=tmp_path), store=store)
        assert result.status == "done", result.error
        variants = {v.step_type: v for v in load_variants(store).variants if not v.is_source}
    a, b = variants["finetune"], variants["prune"]

    def no_model(*_args, **_kw):
        raise AssertionError("a model was loaded although its predictions are stored")

    with monkeypatch.context() as m:
        m.setattr("slimpajama_gui.core.runtime.loading.open_model", no_model)
        items, stored = _drain(flip_job(a, b))
    assert stored.stored == ("A", "B")
    assert not [i for i in items if i[0] == "progress"]

    for folder in (a.path, b.path):  # as a variant saved before predictions were kept
        for npz in Path(folder).glob("predictions-*.npz"):
            npz.unlink()
    items, fresh = _drain(flip_job(a, b))
    assert fresh.stored == () and [i for i in items if i[0] == "progress"]
    assert [f.index for f in stored.diff.flips] == [f.index for f in fresh.diff.flips]
    assert (stored.diff.fixed, stored.diff.broken) == (fresh.diff.fixed, fresh.diff.broken)
    assert stored.report_b.accuracy == pytest.approx(fresh.report_b.accuracy)
    assert stored.rows == fresh.rows <= flips_mod.MAX_FLIP_ROWS


def test_flips_read_relative_data_from_the_recipe_folder(tiny_minilm, tmp_path, monkeypatch):
    """The record keeps the recipe's folder: flips read the same files from anywhere."""
    from slimpajama_gui.core.data.dataset import DatasetSpec, load_dataset

    demo = load_dataset(DatasetSpec())
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    lines = ["sentence,label"] + [
        f'"{t}",{demo.label_names[y]}'
        for t, y in zip(demo.eval.texts, demo.eval.labels, strict=True)
    ]
    (proj / "data" / "dev.csv").write_text("\n".join(lines) + "\n")
    recipe = {"dataset": {"train": "data/dev.csv", "eval": "data/dev.csv", "max_length": 32}}
    a = Variant(tiny_minilm, "a", recipe=recipe, recipe_dir=proj)
    b = Variant(tiny_minilm, "b", recipe=recipe, recipe_dir=proj)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(flips_mod, "MAX_FLIP_ROWS", 8)
    # The tiny encoder has no trained head: the flips stop at the model, after the data.
    gen = flip_job(a, b, max_rows=8)
    assert next(gen) == ("status", "Reading the eval data…")
    assert next(gen) == ("status", "Loading A: a…")


def test_playground_pair_is_original_and_newest_variant(tmp_path, tiny_minilm):
    """The Playground opens on (original, newest variant); read from variant records."""
    a = inspect_model(shutil.copytree(tiny_minilm, tmp_path / "model-a"))
    b = inspect_model(shutil.copytree(tiny_minilm, tmp_path / "model-b"))

    def result(name: str, created: str, parent: Path, job: int, step: int):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "slimpajama.json").write_text(
            json.dumps(
                {
                    "created_at": created,
                    "parent": str(parent),
                    "source_model": str(parent),
                    "job_id": job,
                    "step_index": step,
                }  # fmt: skip
            )
        )
        return replace(b, name=name, path=folder, source="result")

    old = result("old", "2024-01-01T00:00:00+00:00", a.path, 1, 0)
    new = result("new", "2025-01-01T00:00:00+00:00", a.path, 2, 0)
    assert playground_pair([old, a, new]) == (a.path, new.path)
    # The parent is an encoder without head (not listed): the job's first variant instead.
    first = result("ft", "2025-02-01T00:00:00+00:00", tmp_path / "encoder", 3, 0)
    last = result("q", "2025-02-01T00:00:01+00:00", first.path, 3, 1)
    assert playground_pair([first, last]) == (first.path, last.path)
    lone = result("lone", "2025-03-01T00:00:00+00:00", tmp_path / "encoder", 4, 0)
    assert playground_pair([lone, a]) == (a.path, lone.path)
    assert playground_pair([a, b]) == (a.path, b.path)
    assert playground_pair([]) == (None, None)


def test_a_steps_eval_without_a_row_count_shares_its_jobs_eval_set():
    # A training step's accuracy without "n" is on the same split as the job's evaluate
    # step: Compare offers one "Accuracy on:" entry for both, not "rows not recorded".
    from slimpajama_gui.core.jobs.index import EvalFigures, Variant, _join_unrecorded_rows

    dataset = {"train": "demo"}
    known_key, known_label = eval_set_identity(dataset, None, 100)
    loose_key, _ = eval_set_identity(dataset, None, None)
    tuned = Variant(Path("/r/01-finetune"), "01-finetune", job_id=1, eval_set=loose_key)
    tuned.evals[loose_key] = EvalFigures(0.9, None, None, "rows not recorded")
    final = Variant(Path("/r/04-quantize"), "04-quantize", job_id=1, eval_set=known_key)
    final.evals[known_key] = EvalFigures(0.88, 0.87, 100, known_label)
    other = Variant(Path("/s/01-finetune"), "01-finetune", job_id=2, eval_set=loose_key)
    other.evals[loose_key] = EvalFigures(0.7, None, None, "rows not recorded")
    _join_unrecorded_rows([tuned, final, other])
    assert tuned.eval_set == known_key and tuned.accuracy_on(known_key).accuracy == 0.9
    assert (
        tuned.accuracy_on(known_key).label == known_label == "the demo set's dev split (100 rows)"
    )
    assert other.eval_set == loose_key  # another job: its rows are not assumed


def test_latencies_of_different_backends_on_one_setup_are_ranked_together(tmp_path):
    timed = {"latency_p50_ms": 2.0, "threads": 2, "machine": "Xeon, 2 cores"}
    torch_setup = bench_setup({**timed, "backend": "pytorch"})
    ort_setup = bench_setup({**timed, "backend": "onnxruntime"})
    assert torch_setup == ort_setup == "2 threads · batch 1 · Xeon, 2 cores"
    assert bench_setup({**timed, "threads": 1}) != torch_setup  # threads still count
    fp32 = _measured(tmp_path, "fp32", acc=0.90, rows=100, p50=9.8, setup=torch_setup)
    int8 = _measured(tmp_path, "int8", acc=0.94, rows=100, p50=0.8, setup=ort_setup)
    fp32.backend, int8.backend = "pytorch", "onnxruntime"
    ranking = comparable_front([fp32, int8], fp32.eval_set)
    # The int8 variant is faster and more accurate: the fp32 one is not Pareto-optimal.
    assert ranking.front == [1] and len(ranking.groups) == 1
    assert timed_with(int8) == "onnxruntime · 2 threads · batch 1 · Xeon, 2 cores"


def test_a_steps_accuracy_keeps_its_eval_set_when_the_evaluated_variant_is_deleted(
    tiny_minilm, tmp_path
):
    # Compare -> Delete result on the job's last variant (the one its evaluate step
    # measured) must not leave the fine-tune's accuracy on "rows not recorded".
    text = f"""
name: two
model: {tiny_minilm}
dataset: {{train: demo, labels: [negative, positive], max_length: 48}}
output: {tmp_path / "out"}
steps:
  - {{type: finetune, epochs: 1, batch_size: 16, seed: 1}}
  - {{type: prune, method: magnitude, amount: 0.2}}
  - type: evaluate
"""
    with JobStore(tmp_path / "h.sqlite3") as store:
        result = run(recipe_from_yaml(text, "two.yaml", base_dir=tmp_path), store=store)
        assert result.status == "done", result.error
        shutil.rmtree(tmp_path / "out" / "02-prune")
        variants = load_variants(store).variants
    [tuned] = [v for v in variants if v.path.name == "01-finetune"]
    key, label = eval_set_identity({"train": "demo"}, None, 100)
    assert tuned.eval_set == key and tuned.accuracy_on(key).rows == 100
    assert tuned.accuracy_on(key).label == label == "the demo set's dev split (100 rows)"
