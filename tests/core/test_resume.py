"""Resuming a failed job: the finished steps are reused as saved, the rest runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.pipeline import recipe_for_rerun, run
from slimpajama_gui.core.jobs.resume import find_job, plan_resume, rerun_steps
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.storage.variant import VariantRecord
from tests.core.test_pipeline import Recorder, make_recipe

FINETUNE = (
    "  - {type: finetune, epochs: 2, learning_rate: 3.0e-3, batch_size: 16, "
    "log_every_steps: 5, seed: 1}\n"
)
EVALUATE = "  - {type: evaluate}\n"
# A recipe written for a 12-layer model, run on a 2-layer one: step 3 fails when it runs.
PRUNE_BAD = "  - {type: prune, method: layers, keep_layers: [0, 7], recovery_epochs: 0}\n"
PRUNE_FIXED = (
    "  - {type: prune, method: layers, keep_layers: [1], recovery_epochs: 0.5, "
    "learning_rate: 1.0e-3, batch_size: 16}\n"
)
QUANTIZE = "  - {type: quantize, method: dynamic_int8, tolerance: 100}\n"


@pytest.fixture
def store(tmp_path):
    with JobStore(tmp_path / "history.sqlite3") as s:
        yield s


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time (ns)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_resume_after_a_failed_step_skips_the_finished_steps(tiny_minilm, tmp_path, store):
    out = tmp_path / "out"
    first = run(
        make_recipe(tiny_minilm, out, FINETUNE + EVALUATE + PRUNE_BAD + QUANTIZE), store=store
    )
    assert first.status == "failed" and "keep_layers" in first.error
    assert "step 3" in first.failed_step
    finetuned = out / "01-finetune"
    before = snapshot(finetuned)
    assert "slimpajama.json" in before and "model.safetensors" in before

    # Resuming with the mistake still there fails at step 3 again, without training again.
    again = Recorder()
    plan = plan_resume(store, first.job_id)
    assert plan.first_step == 2 and plan.reused == [0, 1]
    assert "continues at step 3 of 4 (prune)" in plan.describe()
    assert run(plan.recipe, again, store=store, resume=plan).status == "failed"
    assert {e[1] for e in again.events if e[0] in ("start", "log", "eval")} == {2}

    # A finished step's settings cannot change: its folder is the result of them.
    changed = make_recipe(
        tiny_minilm,
        out,
        FINETUNE.replace("epochs: 2", "epochs: 3") + EVALUATE + PRUNE_FIXED + QUANTIZE,
    )
    with pytest.raises(UserError, match=r"step 1 \(finetune\).*has finished"):
        plan_resume(store, first.job_id, changed)

    # The user fixes step 3 and resumes the job by its output folder.
    fixed = make_recipe(tiny_minilm, out, FINETUNE + EVALUATE + PRUNE_FIXED + QUANTIZE)
    job = find_job(store, str(out))
    assert job.id == first.job_id
    plan = plan_resume(store, job.id, fixed)
    rec = Recorder()
    overall: list[float] = []
    rec.on_overall = lambda fraction, left, measured: overall.append(fraction)
    result = run(plan.recipe, rec, store=store, resume=plan)

    assert result.status == "done", result.error
    assert result.job_id == first.job_id  # the same job continues
    # Steps 1 and 2 did not run again: no event of theirs, their folder byte-for-byte as it was.
    started = [e[1] for e in rec.events if e[0] == "start"]
    assert started == [2, 3]
    assert not [e for e in rec.events if e[0] in ("log", "eval", "variant") and e[1] < 2]
    assert snapshot(finetuned) == before
    # The bar starts where the reused steps leave it (the fine-tune is most of the work).
    assert overall[0] > 0.5 and overall[-1] == pytest.approx(1.0)
    # Step 3 started from step 1's saved variant; step 4 from step 3's.
    pruned, quantized = out / "03-prune", out / "04-quantize"
    assert VariantRecord.read(pruned).parent == str(finetuned)
    assert VariantRecord.read(quantized).parent == str(pruned)
    assert VariantRecord.read(quantized).weights_format == "dynamic_int8"
    assert result.variants == [finetuned, pruned, quantized]

    job = store.get_job(first.job_id)
    assert job.status == "done" and job.error is None
    assert [s.step_index for s in store.finished_steps(job.id)] == [0, 1, 2, 3]
    log = job.resume_log
    assert [r["from_step"] for r in log] == [2, 2]
    assert log[-1]["reused"] == [0, 1] and log[-1]["previous_status"] == "failed"
    assert sorted(Path(v.path).name for v in store.variants(job.id)) == [
        "01-finetune",
        "03-prune",
        "04-quantize",
    ]
    # The history keeps the recipe the job finished with.
    assert "keep_layers: [1]" in job.recipe_yaml

    with pytest.raises(UserError, match="only a failed, cancelled or interrupted job"):
        plan_resume(store, job.id)


def test_a_resume_refuses_a_finished_steps_folder_that_changed(tiny_minilm, tmp_path, store):
    out = tmp_path / "out"
    first = run(make_recipe(tiny_minilm, out, FINETUNE + EVALUATE + PRUNE_BAD), store=store)
    assert first.status == "failed"
    assert plan_resume(store, first.job_id).first_step == 2
    # A job recorded before the history kept finished steps: its saved variants tell.
    # The evaluate step after the last variant cannot be told finished, so it runs again.
    store._conn.execute("DELETE FROM job_steps WHERE job_id = ?", (first.job_id,))
    legacy = plan_resume(store, first.job_id)
    assert legacy.first_step == 1 and [v.index for v in legacy.variants] == [0]
    (out / "01-finetune" / "slimpajama.json").unlink()
    with pytest.raises(UserError, match=r"01-finetune.*no\s+longer there"):
        plan_resume(store, first.job_id)


def test_rerun_from_a_step_reuses_earlier_variants_in_a_new_folder(tiny_minilm, tmp_path, store):
    out = tmp_path / "out"
    first = run(make_recipe(tiny_minilm, out, FINETUNE + EVALUATE + QUANTIZE), store=store)
    assert first.status == "done", first.error
    assert rerun_steps(store, first.job_id) == [1, 2]
    before = snapshot(out)

    recipe = recipe_for_rerun(store.get_job(first.job_id))
    rec = Recorder()
    result = run(recipe, rec, store=store, rerun_from=(first.job_id, 2))

    assert result.status == "done", result.error
    assert result.job_id != first.job_id
    assert snapshot(out) == before  # the earlier run's folder, byte for byte
    assert [e[1] for e in rec.events if e[0] == "start"] == [2]
    new = tmp_path / "out-run2"
    copy = VariantRecord.read(new / "01-finetune")
    assert copy.job_id == result.job_id
    assert copy.metrics["eval"] == VariantRecord.read(out / "01-finetune").metrics["eval"]
    assert VariantRecord.read(new / "03-quantize").parent == str(new / "01-finetune")
    assert (new / "01-finetune" / "model.safetensors").read_bytes() == before[
        "01-finetune/model.safetensors"
    ][0]
    job = store.get_job(result.job_id)
    assert job.resume_log[-1]["from_job"] == first.job_id
    assert [s.step_index for s in store.finished_steps(job.id)] == [0, 1, 2]
    with pytest.raises(UserError, match="not at step 4"):
        run(recipe_for_rerun(job), store=store, rerun_from=(job.id, 3))
