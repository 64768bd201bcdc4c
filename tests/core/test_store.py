"""store: job history in SQLite (F6, F10) and the output-folder lock (F7)."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.paths import data_dir
from slimpajama_gui.core.storage import history as store_mod
from slimpajama_gui.core.storage import locks as locks_mod
from slimpajama_gui.core.storage.history import (
    INTERRUPTED_MESSAGE,
    JobStore,
    StoreCorrupt,
    StoreLocked,
)
from slimpajama_gui.core.storage.locks import OutputLock

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "history.sqlite3"


@pytest.fixture
def store(db: Path):
    with JobStore(db) as s:
        yield s


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_default_location_and_wal_mode() -> None:
    with JobStore() as s:
        assert s.path == data_dir() / "history.sqlite3"
        assert s.path.exists()
        assert s.journal_mode() == "wal"
        conn = sqlite3.connect(s.path)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.close()
        assert version == store_mod.SCHEMA_VERSION


def test_a_first_version_history_is_migrated_in_place(db: Path) -> None:
    """Version 1 had no recipe_dir, resumes or job_steps: they are added, old rows stay."""
    v1 = store_mod.SCHEMA.replace(",\n    recipe_dir TEXT,\n    resumes TEXT\n", "\n")
    v1 = v1.replace(store_mod.STEPS_TABLE, "")
    assert "recipe_dir" not in v1 and "job_steps" not in v1 and "resumes" not in v1
    conn = sqlite3.connect(db)
    conn.executescript(v1)
    conn.execute(
        "INSERT INTO jobs (name, recipe_yaml, status, created_at, output, progress) "
        "VALUES ('old', 'name: old\n', 'done', 1.0, '/out/old', 1.0)"
    )
    conn.execute(
        "INSERT INTO artifacts (job_id, step_index, kind, path, metrics_json, created_at) "
        "VALUES (1, 0, 'model', '/out/old/01-finetune', '{\"eval\": {\"accuracy\": 0.9}}', 1.0)"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with JobStore(db) as store:
        old = store.get_job(1)
        assert (old.name, old.status, old.recipe_dir) == ("old", "done", None)
        [row] = store.variants(1)
        assert row.metrics == {"eval": {"accuracy": 0.9}}
        new = store.create_job("new", "name: new\n", "/out/new", recipe_dir="/proj")
        assert store.get_job(new).recipe_dir == "/proj"
        assert old.resume_log == [] and store.finished_steps(1) == []
        store.finish_step(new, 0, "finetune", 12.5, {"accuracy": 0.9})
        [step] = store.finished_steps(new)
        assert (step.step_type, step.seconds, step.summary) == ("finetune", 12.5, {"accuracy": 0.9})
        store.update_variant_metrics(row.id, {"eval": {"accuracy": 0.91}})
        assert store.variants(1)[0].metrics == {"eval": {"accuracy": 0.91}}
        with pytest.raises(UserError, match="not in the job history"):
            store.update_variant_metrics(row.id + 100, {})
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store_mod.SCHEMA_VERSION
    conn.close()


def test_job_lifecycle(store: JobStore) -> None:
    job = store.create_job("sst2-small", "name: sst2-small\n", "/out/sst2-small")
    record = store.get_job(job)
    assert (record.status, record.name, record.output) == (
        "queued",
        "sst2-small",
        "/out/sst2-small",
    )
    assert record.recipe_yaml == "name: sst2-small\n"
    assert record.pid == os.getpid() and record.progress == 0.0 and record.started_at is None

    store.mark_running(job)
    store.set_progress(job, 0.4)
    running = store.get_job(job)
    assert running.status == "running" and running.started_at is not None
    assert running.progress == pytest.approx(0.4)
    store.set_progress(job, 7.0)
    assert store.get_job(job).progress == 1.0

    store.finish(job, "failed", error="loss became NaN at step 12", failed_step="finetune")
    failed = store.get_job(job)
    assert (failed.status, failed.error, failed.failed_step) == (
        "failed",
        "loss became NaN at step 12",
        "finetune",
    )
    assert failed.is_final and failed.duration is not None and failed.duration >= 0

    second = store.create_job("again", "name: again\n", None)
    store.mark_running(second)
    store.finish(second, "done")
    assert store.get_job(second).progress == 1.0
    assert [j.id for j in store.list_jobs()] == [second, job]
    assert [j.id for j in store.list_jobs(limit=1)] == [second]
    with pytest.raises(ValueError):
        store.finish(second, "running")
    with pytest.raises(UserError, match=r"Job 999 is not in the job history .*history\.sqlite3"):
        store.get_job(999)


def test_metrics_and_variants_round_trip(store: JobStore) -> None:
    job = store.create_job("a", "name: a\n", "/out/a")
    other = store.create_job("b", "name: b\n", "/out/b")
    store.log_metrics(job, 0, "finetune", {"loss": 0.7, "step": 10, "lr": 5e-5})
    store.log_metrics(job, 0, "finetune", {"loss": float("nan"), "note": "text is skipped"})
    store.log_metrics(job, 1, "evaluate", {"accuracy": 0.894, "f1": True})
    rows = store.metrics(job)
    assert [(m.step_index, m.step_type, m.key) for m in rows] == [
        (0, "finetune", "loss"),
        (0, "finetune", "step"),
        (0, "finetune", "lr"),
        (0, "finetune", "loss"),
        (1, "evaluate", "accuracy"),
        (1, "evaluate", "f1"),
    ]
    assert rows[0].value == 0.7 and math.isnan(rows[3].value) and rows[5].value == 1.0
    assert [m.value for m in store.metrics(job, key="loss")][0] == 0.7
    assert [m.key for m in store.metrics(job, step_index=1)] == ["accuracy", "f1"]
    assert store.metrics(other) == []

    first = store.add_variant(job, 0, "variant", "/out/a/01-finetune", {"accuracy": 0.89})
    second = store.add_variant(job, 2, "variant", Path("/out/a/02-quantize"), {"size_mb": 23.1})
    third = store.add_variant(other, 0, "report", "/out/b/report.md", {})
    assert [a.id for a in store.variants()] == [third, second, first]
    mine = store.variants(job)
    assert [(a.step_index, a.path, a.metrics) for a in mine] == [
        (2, "/out/a/02-quantize", {"size_mb": 23.1}),
        (0, "/out/a/01-finetune", {"accuracy": 0.89}),
    ]

    store.delete_job(job)
    assert [j.id for j in store.list_jobs()] == [other]
    assert store.metrics(job) == [] and store.variants(job) == []
    assert [a.id for a in store.variants()] == [third]


def test_dead_process_jobs_become_interrupted_on_reopen(db: Path) -> None:
    with JobStore(db) as s:
        killed = s.create_job("killed", "name: killed\n", "/out/k")
        s.mark_running(killed)
        orphan = s.create_job("queued in a dead app", "name: q\n", "/out/q")
        mine = s.create_job("still running here", "name: m\n", "/out/m")
        s.mark_running(mine)
        elsewhere = s.create_job("another machine", "name: e\n", "/out/e")
        s.mark_running(elsewhere)
        finished = s.create_job("finished", "name: f\n", "/out/f")
        s.finish(finished, "done")
    pid = dead_pid()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE jobs SET pid = ? WHERE id IN (?, ?)", (pid, killed, orphan))
        conn.execute("UPDATE jobs SET host = 'other-host', pid = ? WHERE id = ?", (pid, elsewhere))
    conn.close()

    with JobStore(db) as s:
        assert sorted(s.interrupted_ids) == sorted([killed, orphan])
        for job in (killed, orphan):
            record = s.get_job(job)
            assert record.status == "interrupted"
            assert record.error == INTERRUPTED_MESSAGE
            assert record.finished_at is not None
        assert s.get_job(mine).status == "running"  # this process is alive
        assert s.get_job(elsewhere).status == "running"  # cannot check another host
        assert s.get_job(finished).status == "done"


def test_reused_pid_counts_as_dead(db: Path) -> None:
    if locks_mod.pid_token(os.getpid()) is None:
        pytest.skip("process start times are only read on Linux")
    with JobStore(db) as s:
        job = s.create_job("old", "name: old\n", "/out/old")
        s.mark_running(job)
    conn = sqlite3.connect(db)
    with conn:  # our pid, but recorded for a process that started at another time
        conn.execute("UPDATE jobs SET pid_token = 'another-boot:123' WHERE id = ?", (job,))
    conn.close()
    with JobStore(db) as s:
        assert s.get_job(job).status == "interrupted"


def test_corrupt_file_is_moved_aside_and_a_fresh_history_starts(db: Path) -> None:
    garbage = b"this is not a database, it is a damaged copy\x00\xff" * 200
    db.write_bytes(garbage)
    with pytest.raises(StoreCorrupt) as info:
        JobStore(db)
    notice = info.value
    assert isinstance(notice, UserError)
    moved = notice.moved_to
    assert moved.parent == db.parent and moved.name.startswith("history.sqlite3.corrupt-")
    assert moved.read_bytes() == garbage  # nothing deleted
    message = str(notice)
    assert str(db) in message and moved.name in message and "fresh history" in message

    with JobStore(db) as fresh:
        assert fresh.list_jobs() == []
        job = fresh.create_job("new", "name: new\n", "/out/new")
        assert fresh.get_job(job).status == "queued"
    assert moved.read_bytes() == garbage


def test_damaged_pages_are_caught_by_the_integrity_check(db: Path) -> None:
    with JobStore(db) as s:
        for i in range(300):
            s.create_job(f"job {i}", "x" * 500, f"/out/{i}")
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(db.read_bytes())
    assert len(data) > 6 * page_size
    for page in (2, 4):  # scribble over interior pages, keep the header intact
        start = page * page_size
        data[start : start + page_size] = b"\xa5" * page_size
    db.write_bytes(bytes(data))

    store, notice = JobStore.open(db)
    with store:
        assert isinstance(notice, StoreCorrupt)
        assert notice.moved_to.exists()
        assert store.list_jobs() == []


def test_open_returns_no_notice_for_a_healthy_file(db: Path) -> None:
    store, notice = JobStore.open(db)
    store.close()
    assert notice is None


def test_locked_file_is_a_sentence_naming_it(db: Path) -> None:
    JobStore(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE jobs SET progress = 0")
    try:
        with pytest.raises(StoreLocked) as info:
            JobStore(db, busy_timeout=0.2)
        assert isinstance(info.value, UserError)
        assert str(db) in str(info.value) and "locked by another program" in str(info.value)
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert db.exists() and not list(db.parent.glob("*.corrupt-*"))  # nothing moved aside


def test_newer_schema_is_refused(db: Path) -> None:
    JobStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(UserError, match=r"newer SlimPajama Studio \(history version 99"):
        JobStore(db)


def test_concurrent_writes_from_four_threads(store: JobStore) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(15):
                job = store.create_job(f"t{n}-{i}", "name: t\n", f"/out/{n}/{i}")
                store.mark_running(job)
                store.log_metrics(job, 0, "finetune", {"loss": 1.0 / (i + 1), "step": i})
                store.set_progress(job, 0.5)
                store.add_variant(job, 0, "variant", f"/out/{n}/{i}/v", {"i": i})
                store.finish(job, "done")
                store.list_jobs(limit=5)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    jobs = store.list_jobs(limit=1000)
    assert len(jobs) == 60 and all(j.status == "done" for j in jobs)
    assert len(store.variants()) == 60
    assert sum(len(store.metrics(j.id)) for j in jobs) == 120


# --------------------------------------------------------------------------- OutputLock


def test_second_lock_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "sst2-small"
    with OutputLock(folder, job_id=3) as lock:
        assert lock.held and lock.path.exists() and not folder.exists()
        with pytest.raises(UserError) as info:
            OutputLock(folder, job_id=4).acquire()
        assert str(info.value).startswith(
            f"{folder} is already being written by job 3 (pid {os.getpid()})."
        )
        # The same folder spelled differently is the same lock.
        with pytest.raises(UserError, match="job 3"):
            OutputLock(tmp_path / "out" / "." / "sst2-small").acquire()
        # A sibling folder is not affected.
        with OutputLock(tmp_path / "out" / "other", job_id=5):
            pass
    assert not lock.held and not lock.path.exists()  # released and cleaned up on exit
    with OutputLock(folder, job_id=4):
        pass


def test_lock_is_refused_from_another_thread(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    result: list[BaseException | None] = []

    def other_thread() -> None:
        try:
            OutputLock(folder, job_id=2).acquire()
            result.append(None)
        except UserError as exc:
            result.append(exc)

    with OutputLock(folder, job_id=1):
        t = threading.Thread(target=other_thread)
        t.start()
        t.join(timeout=10)
    assert isinstance(result[0], UserError) and "job 1" in str(result[0])


HOLDER = """
import sys
from slimpajama_gui.core.storage.locks import OutputLock
lock = OutputLock(sys.argv[1], job_id=7).acquire()
print("locked", flush=True)
sys.stdin.read()
lock.release()
"""


def spawn_holder(folder: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_across_processes(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "shared"
    proc = spawn_holder(folder)
    try:
        with pytest.raises(UserError) as info:
            OutputLock(folder, job_id=8).acquire()
        assert f"already being written by job 7 (pid {proc.pid})" in str(info.value)
    finally:
        proc.communicate("", timeout=30)  # the holder releases and exits
    assert proc.returncode == 0
    with OutputLock(folder, job_id=8):
        pass


def test_lock_of_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    proc = spawn_holder(folder)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdin.close()
    proc.stdout.close()
    assert (tmp_path / ".out.slimpajama.lock").exists()  # left behind by kill -9
    with OutputLock(folder, job_id=9) as lock:
        assert lock.held


def test_exclusive_file_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locks_mod, "fcntl", None)  # as on Windows
    folder = tmp_path / "out"
    with (
        OutputLock(folder, job_id=1) as lock,
        pytest.raises(UserError, match=rf"already being written by job 1 \(pid {os.getpid()}\)"),
    ):
        OutputLock(folder, job_id=2).acquire()
    assert not lock.path.exists()
    # A stale lock file of a dead process is taken over.
    lock.path.write_text(f'{{"job": 5, "pid": {dead_pid()}, "host": null}}')
    with OutputLock(folder, job_id=6):
        assert '"job": 6' in lock.path.read_text()
    assert not lock.path.exists()


def test_mark_interrupted_never_replaces_a_status_the_job_wrote(store: JobStore) -> None:
    running = store.create_job("running", "name: running\n", "/out/a")
    store.mark_running(running)
    queued = store.create_job("queued", "name: queued\n", "/out/b")
    finished = {}
    for status in ("done", "failed", "cancelled"):
        finished[status] = store.create_job(status, f"name: {status}\n", f"/out/{status}")
        store.mark_running(finished[status])
        store.finish(finished[status], status)
    assert store.mark_interrupted(running) and store.mark_interrupted(queued)
    for job in (running, queued):
        record = store.get_job(job)
        assert record.status == "interrupted" and record.error == store_mod.INTERRUPTED_MESSAGE
        assert record.finished_at is not None
    for status, job in finished.items():
        assert not store.mark_interrupted(job)
        assert store.get_job(job).status == status
