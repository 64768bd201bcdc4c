"""Resume, the Jobs table's context menu, Delete result and the honest time left."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import Qt

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs import context
from slimpajama_gui.qt.jobs_table import COL_REMAINING, JobRow, JobTableModel
from slimpajama_gui.qt.jobs_view import JobsView
from tests.qt.test_jobs import FINETUNE, JOB_TIMEOUT, make_recipe

QUANTIZE = "  - {type: quantize, method: dynamic_int8, tolerance: 100}\n"


@pytest.fixture
def jobs(qtbot):
    v = JobsView()
    qtbot.addWidget(v)
    v.resize(1200, 820)
    v.show()
    yield v
    assert v.shutdown(timeout_s=30)


@pytest.fixture
def quantize_fails_once(monkeypatch):
    """Step 2 fails the first time, as a full disk would; the user then frees space."""
    real = context.HANDLERS["quantize"]
    calls = {"n": 0}

    def flaky(ctx, index, step):
        calls["n"] += 1
        if calls["n"] == 1:
            raise UserError("quantize: no space left on the disk of the output folder.")
        return real(ctx, index, step)

    monkeypatch.setitem(context.HANDLERS, "quantize", flaky)
    return calls


def files(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_resume_continues_a_failed_job_from_its_saved_step(
    jobs, qtbot, tiny_minilm, tmp_path, quantize_fails_once
):
    out = tmp_path / "out"
    steps = FINETUNE.format(epochs=1, max_steps=4) + QUANTIZE
    with qtbot.waitSignal(jobs.runner.job_finished, timeout=JOB_TIMEOUT) as first:
        jobs.submit(make_recipe(tiny_minilm, out, steps))
    job_id, status, _ = first.args
    assert status == "failed"
    jobs.select_job(job_id)
    assert jobs.resume_button.isEnabled()
    assert "continues at step 2 of 2 (quantize); step 1 is reused" in jobs.resume_button.toolTip()
    finetuned = files(out / "01-finetune")

    menu = jobs.context_menu(jobs.selected_row())
    actions = {a.text(): a for a in menu.actions() if a.text()}
    assert list(actions) == [
        "Re-run",
        "Re-run from step",
        "Resume",
        "Resume with a fixed recipe…",
        "Cancel",
        "Open result",
        "Reveal in file manager",
        "Delete result…",
    ]
    assert actions["Resume"].isEnabled() and not actions["Cancel"].isEnabled()
    assert actions["Resume"].toolTip() == "Continues at step 2"

    with qtbot.waitSignal(jobs.runner.job_finished, timeout=JOB_TIMEOUT) as second:
        actions["Resume"].trigger()
    assert list(second.args[:2]) == [job_id, "done"]  # the same job, one row
    assert [r.job_id for r in jobs.model.rows()].count(job_id) == 1
    assert files(out / "01-finetune") == finetuned  # step 1 was not run or written again
    assert (out / "02-quantize" / "slimpajama.json").is_file()
    assert quantize_fails_once["n"] == 2
    jobs.select_job(job_id)
    assert not jobs.resume_button.isEnabled()  # done: nothing to resume
    row = jobs.model.row_of_job(job_id)
    tip = jobs.model.index(row, 1).data(Qt.ItemDataRole.ToolTipRole)
    assert tip == "Resumed at step 2; step 1 reused from the earlier attempt (failed)"

    # Re-run from step 2: a new job in a new folder starts from step 1's saved variant.
    menu = jobs.context_menu(jobs.selected_row())
    sub = next(a for a in menu.actions() if a.text() == "Re-run from step").menu()
    [from_two] = sub.actions()
    assert from_two.text() == "Step 2 (quantize)"
    with qtbot.waitSignal(jobs.runner.job_finished, timeout=JOB_TIMEOUT) as third:
        from_two.trigger()
    assert third.args[1] == "done" and third.args[0] != job_id
    assert files(out / "01-finetune") == finetuned
    rerun = tmp_path / "out-run2"
    assert (rerun / "01-finetune" / "model.safetensors").read_bytes() == (
        finetuned["model.safetensors"][0]
    )
    assert (rerun / "02-quantize" / "slimpajama.json").is_file()


def test_delete_result_removes_only_the_folders_the_job_wrote(
    jobs, qtbot, tiny_minilm, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    with qtbot.waitSignal(jobs.runner.job_finished, timeout=JOB_TIMEOUT) as done:
        jobs.submit(make_recipe(tiny_minilm, out, FINETUNE.format(epochs=1, max_steps=2)))
    job_id = done.args[0]
    notes = out / "my-notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    source = files(tiny_minilm)
    asked = []
    monkeypatch.setattr(jobs, "confirm_delete", lambda row, folders: asked.append(folders) or True)
    jobs.select_job(job_id)
    menu = jobs.context_menu(jobs.selected_row())
    delete = next(a for a in menu.actions() if a.text() == "Delete result…")
    assert delete.isEnabled()
    delete.trigger()
    assert [f.name for f in asked[0]] == ["01-finetune"]  # the dialog names what goes
    qtbot.waitUntil(lambda: not (out / "01-finetune").exists(), timeout=JOB_TIMEOUT)
    assert (notes / "todo.txt").read_text() == "keep me"
    assert files(tiny_minilm) == source
    qtbot.waitUntil(lambda: jobs.store.variants(job_id) == [], timeout=5000)


def test_time_left_says_estimating_until_measured_then_labels_estimates():
    model = JobTableModel()
    row = JobRow(7, None, "job", "running", time.time(), started_at=time.time() - 5)
    model.set_rows([row])
    cell = model.index(0, COL_REMAINING)
    assert cell.data() == "estimating…"
    model.set_live_progress(7, 0.2, 120.0, False)
    assert cell.data().startswith("≈ 2 min") and cell.data().endswith("(estimate)")
    model.set_live_progress(7, 0.3, 95.0, True)
    assert cell.data().startswith("~1 min 3")
    row.status = "done"
    assert cell.data() == "–"


PRUNE_BAD = "  - {type: prune, method: layers, keep_layers: [0, 7], recovery_epochs: 0}\n"


def test_resume_with_a_fixed_recipe_runs_the_corrected_step(
    jobs, qtbot, tiny_minilm, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    steps = FINETUNE.format(epochs=1, max_steps=4)
    with qtbot.waitSignal(jobs.runner.job_finished, timeout=JOB_TIMEOUT) as first:
        jobs.submit(make_recipe(tiny_minilm, out, steps + PRUNE_BAD))
    job_id = first.args[0]
    assert first.args[1] == "failed"
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(jobs.store.get_job(job_id).recipe_yaml.replace("[0, 7]", "[1]"))
    assert "keep_layers: [1]" in fixed.read_text()
    monkeypatch.setattr(jobs, "choose_recipe_file", lambda: str(fixed))
    jobs.select_job(job_id)
    with qtbot.waitSignal(jobs.runner.job_finished, timeout=JOB_TIMEOUT) as second:
        jobs.resume_with_recipe()
    assert list(second.args) == [job_id, "done", ""]
    assert (out / "02-prune" / "slimpajama.json").is_file()
