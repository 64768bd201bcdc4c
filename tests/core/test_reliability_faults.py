"""Faults during a job (docs/reliability.md F1, F3, F6, F10, H1) and the path from an
exception to the sentence a person reads (issue 14 kind 10), on a tiny model.

The GUI rows (F5, F9, F10 in the window) are in ``tests/qt/test_reliability_faults_gui.py``.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from slimpajama_gui import cli
from slimpajama_gui.core.errors import UserError, error_sentence
from slimpajama_gui.core.jobs import context
from slimpajama_gui.core.jobs.pipeline import PipelineCallbacks, run
from slimpajama_gui.core.paths import configure_file_log, data_dir, log_file
from slimpajama_gui.core.plan.recipe import recipe_from_yaml
from slimpajama_gui.core.runtime.loading import open_model
from slimpajama_gui.core.storage.history import (
    JobStore,
    StoreCorrupt,
    StoreLocked,
    StoreUnavailable,
)
from slimpajama_gui.core.techniques.hooks import Control

REPO = Path(__file__).resolve().parents[2]


def recipe_text(model: Path, output: Path, steps: str) -> str:
    return (
        f"name: faults\nmodel: {model}\ndataset:\n  train: demo\n"
        f"  labels: [negative, positive]\n  max_length: 48\noutput: {output}\nsteps:\n{steps}"
    )


def make_recipe(model: Path, output: Path, steps: str):
    return recipe_from_yaml(
        recipe_text(model, output, steps), source="faults.yaml", base_dir=output.parent
    )


def finetune(epochs: int = 1, max_steps: int = 12, log_every: int = 2) -> str:
    return (
        f"  - type: finetune\n    epochs: {epochs}\n    max_steps: {max_steps}\n"
        f"    learning_rate: 3.0e-3\n    batch_size: 16\n    log_every_steps: {log_every}\n"
        "    seed: 1\n"
    )


class Recorder(PipelineCallbacks):
    def __init__(self) -> None:
        self.logs: list[tuple[int, dict]] = []
        self.evals: list[tuple[int, dict]] = []
        self.messages: list[str] = []

    def on_message(self, text):
        self.messages.append(text)

    def on_log(self, index, metrics):
        self.logs.append((index, dict(metrics)))

    def on_eval(self, index, metrics):
        self.evals.append((index, dict(metrics)))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "history.sqlite3"


@pytest.fixture
def store(db: Path):
    with JobStore(db) as s:
        yield s


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- F1


def test_F1_a_nan_loss_fails_the_job_with_its_step_and_keeps_the_last_good_variant(
    tiny_minilm, tmp_path, store, monkeypatch
):
    """Step 2's loss turns NaN: the job fails naming step 2 and the optimizer step, and
    step 1's saved variant (the last good checkpoint) is kept whole and still loads."""
    real_train = context.train
    fits: list[int] = []

    def nan_in_the_second_fit(model, batches, steps, config, **kw):
        fits.append(1)
        if len(fits) < 2:
            return real_train(model, batches, steps, config, **kw)
        calls = {"n": 0}

        def loss_fn(m, batch):
            calls["n"] += 1
            logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = torch.nn.functional.cross_entropy(logits, batch["labels"])
            return (loss * float("nan") if calls["n"] >= 3 else loss), {
                "loss": float(loss.detach())
            }

        return real_train(model, batches, steps, config, **dict(kw, loss_fn=loss_fn))

    monkeypatch.setattr(context, "train", nan_in_the_second_fit)
    out = tmp_path / "out"
    result = run(make_recipe(tiny_minilm, out, finetune() + finetune()), store=store)
    assert result.status == "failed", result.error
    assert result.failed_step == "step 2 (finetune)"
    assert "step 3" in result.error and "not a finite" in result.error
    job = store.get_job(result.job_id)
    assert job.status == "failed" and job.failed_step == "step 2 (finetune)"
    kept = out / "01-finetune"
    assert sorted(p.name for p in out.iterdir()) == ["01-finetune"]
    assert [v.path for v in store.variants(result.job_id)] == [str(kept)]
    assert open_model(kept).load_model() is not None
    weights = open_model(kept).load_model().state_dict()
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())


# --------------------------------------------------------------------------- F3


def test_F3_cancel_during_training_stops_at_the_next_step_and_writes_nothing(
    tiny_minilm, tmp_path, store
):
    out = tmp_path / "out"
    control = Control()
    before: list[int] = []
    after: list[int] = []

    class CancelAtStepTwo(PipelineCallbacks):
        def on_progress(self, index, n, total):
            (after if control.should_stop else before).append(n)
            if n == 2 and not control.should_stop:
                stopper = threading.Thread(target=control.request_stop)  # as Cancel does
                stopper.start()
                stopper.join()

    result = run(
        make_recipe(tiny_minilm, out, finetune(epochs=50, max_steps=10_000)),
        CancelAtStepTwo(),
        control,
        store=store,
    )
    assert result.status == "cancelled" and result.error == "cancelled during step 1 (finetune)"
    assert before == [1, 2] and after == []  # not one optimizer step after the request
    assert not out.exists() or not any(out.iterdir())  # nothing half-written
    assert not list(tmp_path.glob(".*scratch*")) and not list(tmp_path.glob(".slimpajama-job-*"))
    assert store.get_job(result.job_id).status == "cancelled"


# --------------------------------------------------------------------------- F6

KILLED_JOB = """
import sys
import threading
from pathlib import Path

from slimpajama_gui.core.jobs.pipeline import PipelineCallbacks, run
from slimpajama_gui.core.plan.recipe import recipe_from_yaml


class HoldMidTraining(PipelineCallbacks):
    def on_log(self, index, metrics):
        print("TRAINING", flush=True)
        threading.Event().wait()  # held inside the training loop until killed


recipe = recipe_from_yaml(sys.argv[1], source="killed.yaml", base_dir=Path(sys.argv[2]))
run(recipe, HoldMidTraining())
"""


def test_F6_a_job_killed_mid_training_shows_as_interrupted_at_the_next_start(tiny_minilm, tmp_path):
    out = tmp_path / "out"
    script = tmp_path / "killed.py"
    script.write_text(KILLED_JOB)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, str(script), recipe_text(tiny_minilm, out, finetune()), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "TRAINING"
        with JobStore() as store:
            (job,) = store.list_jobs()
            assert job.status == "running"  # alive: left alone
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with JobStore() as store:  # the next start
        assert store.interrupted_ids == [job.id]
        record = store.get_job(job.id)
    assert record.status == "interrupted" and record.finished_at is not None
    assert "Re-run" in (record.error or "")


# --------------------------------------------------------------------------- F10


def test_F10_a_damaged_history_is_found_at_start_kept_aside_and_a_fresh_one_opens(db: Path):
    with JobStore(db) as s:
        for i in range(200):
            s.create_job(f"job {i}", "x" * 400, f"/out/{i}")
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(db.read_bytes())
    data[3 * page : 4 * page] = b"\x5a" * page  # a damaged page; the header still reads
    db.write_bytes(bytes(data))
    damaged = bytes(data)

    store, notice = JobStore.open(db)  # the integrity check runs at open
    with store:
        assert isinstance(notice, StoreCorrupt)
        text = str(notice)
        assert str(db) in text and notice.moved_to.name in text and "fresh history" in text
        assert notice.moved_to.read_bytes() == damaged  # kept aside, never deleted
        job = store.create_job("after", "name: after\n", "/out/after")
        assert store.get_job(job).status == "queued"  # the history works


def test_F10_a_history_locked_at_start_is_a_sentence_and_nothing_is_moved(db: Path):
    JobStore(db).close()
    before = db.read_bytes()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE jobs SET progress = 0")
    try:
        with pytest.raises(StoreLocked) as info:
            JobStore.open(db, busy_timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert str(db) in str(info.value) and "locked by another program" in str(info.value)
    assert db.read_bytes() == before and not list(db.parent.glob("*.corrupt-*"))


# --------------------------------------------------------------------------- H1


class LockMidJob(Recorder):
    """Another program takes the history (BEGIN EXCLUSIVE, as an open sqlite3 shell
    does) at the job's first log and lets go after ``hold_s`` seconds of training."""

    def __init__(self, db: Path, store: JobStore, hold_s: float | None) -> None:
        super().__init__()
        self.db, self.store, self.hold_s = db, store, hold_s
        self.holder: sqlite3.Connection | None = None
        self.taken_at = 0.0
        self.waiting_seen = 0

    def on_log(self, index, metrics):
        super().on_log(index, metrics)
        if self.holder is None and self.taken_at == 0.0:
            self.holder = sqlite3.connect(self.db, isolation_level=None)
            self.holder.execute("BEGIN EXCLUSIVE")
            self.taken_at = time.monotonic()
            return
        self.waiting_seen = max(self.waiting_seen, self.store.pending)
        held = time.monotonic() - self.taken_at
        if self.holder is not None and self.hold_s is not None and held > self.hold_s:
            self.release()
        elif self.holder is not None and self.hold_s is not None:
            time.sleep(0.2)  # the job goes on, slowly, while the lock is held

    def release(self) -> None:
        if self.holder is not None:
            self.holder.execute("COMMIT")
            self.holder.close()
            self.holder = None


def logged_rows(recorder: Recorder) -> int:
    """History rows the job's logged numbers make (one per number)."""
    rows = 0
    for _index, metrics in recorder.logs + recorder.evals:
        rows += sum(1 for v in metrics.values() if isinstance(v, (int, float)))
    return rows


def test_H1_kind4_a_history_locked_longer_than_the_busy_timeout_never_stops_the_job(
    tiny_minilm, tmp_path, db
):
    """Locked for longer than the busy timeout, then released mid-job: the job is done,
    every metric it logged is in the history, its status is done."""
    with JobStore(db, busy_timeout=0.3) as store:
        rec = LockMidJob(db, store, hold_s=1.5)
        steps = finetune(epochs=3, max_steps=40, log_every=2) + "  - type: evaluate\n"
        try:
            result = run(make_recipe(tiny_minilm, tmp_path / "out", steps), rec, store=store)
        finally:
            rec.release()
        assert rec.waiting_seen > 0, "the lock never made a record wait"
        assert result.status == "done", result.error
        job = store.get_job(result.job_id)
        assert job.status == "done" and job.progress == pytest.approx(1.0)
        rows = store.metrics(result.job_id)
        assert len(rows) >= logged_rows(rec) and store.pending == 0
        losses = [m.value for m in rows if m.key == "loss"]
        assert losses == pytest.approx([m["loss"] for _, m in rec.logs if "loss" in m])
        # The evaluate step's figures: its own rows, and the variant's row updated.
        assert "eval_accuracy" in {m.key for m in rows if m.step_index == 1}
        (variant,) = store.variants(result.job_id)
        assert variant.path == str(tmp_path / "out" / "01-finetune")
        assert variant.metrics["eval"]["accuracy"] == pytest.approx(result.summary[1]["accuracy"])


def test_H1_kind4_a_history_that_stays_locked_keeps_the_outcome_in_a_file_added_at_the_next_start(
    tiny_minilm, tmp_path, db
):
    store = JobStore(db, busy_timeout=0.2)
    store.final_patience = 0.5
    rec = LockMidJob(db, store, hold_s=None)  # never let go while the job runs
    try:
        result = run(make_recipe(tiny_minilm, tmp_path / "out", finetune()), rec, store=store)
        assert result.status == "done", result.error  # the job's outcome still reaches us
        (kept,) = sorted(store.kept_dir.glob("*.json"))
        assert any(str(kept) in m and "next start" in m for m in rec.messages), rec.messages
    finally:
        rec.release()
        store.close()
    with JobStore(db) as again:  # the next start
        assert again.merged_files == [kept] and not kept.exists()
        job = again.get_job(result.job_id)
        assert job.status == "done"
        losses = [m.value for m in again.metrics(result.job_id) if m.key == "loss"]
        assert losses == pytest.approx([m["loss"] for _, m in rec.logs if "loss" in m])
        assert [v.path for v in again.variants(result.job_id)] == [
            str(tmp_path / "out" / "01-finetune")
        ]


def test_H1_kind4_records_that_wait_are_bounded(db: Path):
    with JobStore(db, busy_timeout=0.1) as store:
        job = store.create_job("bounded", "name: b\n", "/out/b")
        store.pending_limit = 10
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            for step in range(8):
                store.log_metrics(job, 0, "finetune", {"loss": 1.0 / (step + 1), "step": step})
        finally:
            holder.execute("COMMIT")
            holder.close()
        assert store.dropped_rows > 0
        store.log_metrics(job, 0, "finetune", {"loss": 0.01, "step": 99})  # free again
        time.sleep(1.1)  # a busy history is tried again after a second
        store.log_metrics(job, 0, "finetune", {"loss": 0.001, "step": 100})
        rows = store.metrics(job)
        assert len(rows) + store.dropped_rows == 20 and store.pending == 0
        assert [r.value for r in rows if r.key == "step"][-2:] == [99, 100]  # newest kept


# --------------------------------------------------------------------------- kind 10


def full_history(monkeypatch, db: Path) -> None:
    """The history's disk fills: SQLite may not grow the file past its current size
    (``max_page_count``), which raises SQLITE_FULL, "database or disk is full"."""
    real_connect = JobStore._connect

    def capped(self):
        conn = real_connect(self)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {max(pages, 1)}")
        return conn

    with JobStore(db) as s:  # created and filled to the brim first
        for i in range(40):
            s.create_job(f"filler {i}", "x" * 20, f"/out/{i}")
    monkeypatch.setattr(JobStore, "_connect", capped)
    with JobStore(db) as s, pytest.raises(StoreUnavailable):
        for i in range(10_000):
            s.create_job(f"filler {i}", "x" * 20, f"/out/{i}")


def test_kind10_a_full_disk_under_the_history_is_a_sentence_naming_the_file(
    monkeypatch, tiny_minilm, tmp_path, capsys
):
    db = data_dir() / "history.sqlite3"
    full_history(monkeypatch, db)
    with JobStore(db) as s, pytest.raises(StoreUnavailable) as info:
        s.create_job("one more", "name: one more\n" + "y" * 2000, "/out/x")
    text = str(info.value)
    assert isinstance(info.value, UserError)
    assert str(db) in text and "disk is full" in text and "Free some space" in text

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(recipe_text(tiny_minilm, tmp_path / "out", "  - type: evaluate\n"))
    code = cli.main(["run", str(recipe)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_INPUT, err
    assert "OperationalError" not in err and "internal error" not in err
    assert str(db) in err and "disk is full" in err and "Traceback" not in err


def test_kind10_locked_and_io_errors_of_the_history_are_sentences(store: JobStore, db: Path):
    for raw, words in (
        ("database is locked", "locked by another program"),
        ("database or disk is full", "disk is full"),
        ("disk I/O error", "input/output error"),
        ("attempt to write a readonly database", "read-only"),
    ):
        translated = store._translate(sqlite3.OperationalError(raw))
        assert isinstance(translated, UserError), raw
        assert str(db) in str(translated) and words in str(translated), translated


def test_kind10_an_internal_error_in_a_cli_job_names_the_log_that_holds_its_traceback(
    tiny_minilm, tmp_path, capsys, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("boom in the engine")

    monkeypatch.setattr(context, "train", broken)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(recipe_text(tiny_minilm, tmp_path / "out", finetune()))
    code = cli.main(["run", str(recipe)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_INPUT
    assert "Traceback" not in err and 'File "' not in err, err  # no traceback on screen
    failed = [line for line in err.splitlines() if line.startswith("error: job")]
    assert len(failed) == 1 and "RuntimeError: boom in the engine" in failed[0], err
    assert f"The log {log_file()} has the full traceback" in failed[0]
    written = log_file().read_text(encoding="utf-8")
    assert "Traceback" in written and "boom in the engine" in written
    assert not any(  # the CLI's log handlers are gone once its command ended
        isinstance(h, logging.FileHandler) and h.baseFilename == str(log_file())
        for h in logging.getLogger().handlers
    )


def test_kind10_a_cli_bug_outside_a_job_is_one_sentence_and_the_log_has_the_traceback(
    capsys, monkeypatch
):
    def broken(args):
        raise KeyError("status")

    monkeypatch.setattr(cli, "cmd_history", broken)
    code = cli.main(["history"])
    err = capsys.readouterr().err.strip()
    assert code == cli.EXIT_BUG
    assert err.startswith("internal error: slimpajama history failed (KeyError: 'status').")
    assert str(log_file()) in err and "\n" not in err and "Traceback" not in err
    assert "KeyError: 'status'" in log_file().read_text(encoding="utf-8")


def test_kind10_one_sentence_path_names_the_log_only_where_one_is_written(tmp_path, caplog):
    try:
        raise ValueError("odd")
    except ValueError as exc:
        without = error_sentence(exc, "Reading")
        handler = configure_file_log()
        try:
            with_log = error_sentence(exc, "Reading")
        finally:
            logging.getLogger().removeHandler(handler)
            handler.close()
    assert str(log_file()) not in without and "please report it" in without
    assert f"The log {log_file()} has the full traceback" in with_log
    assert "ValueError: odd" in log_file().read_text(encoding="utf-8")
    full = OSError(28, "No space left on device", str(tmp_path / "x.bin"))
    text = error_sentence(full, "Saving the result")
    assert text == (
        f"Saving the result failed: the disk is full while writing {tmp_path / 'x.bin'}. "
        "Free some space, then try again."
    )
