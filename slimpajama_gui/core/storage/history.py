"""Job history (SQLite in WAL mode): jobs, their logged metrics and saved variants.

The history file lives at ``data_dir()/history.sqlite3``. It is checked when opened
(docs/reliability.md F10): a damaged file is moved aside, never deleted, and the caller gets
a :class:`StoreCorrupt` sentence to show; opening again starts a fresh history. Jobs
that were running in a process that no longer exists are marked interrupted (F6). What
a job records never stops it (H1): while another program holds the file, the records
wait in memory, and what is still unwritten when the job ends goes to a file beside the
history that the next start adds. The one-writer lock on output folders is in
:mod:`slimpajama_gui.core.storage.locks`.

Example:
    >>> store = JobStore(tmp / "history.sqlite3")  # doctest: +SKIP
    >>> job = store.create_job("sst2-small", recipe_yaml, "out/sst2-small")
    >>> store.mark_running(job)
    >>> store.log_metrics(job, 0, "finetune", {"loss": 0.41, "step": 10})
    >>> store.finish(job, "done")
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.paths import data_dir
from slimpajama_gui.core.storage.locks import host_name, pid_token, process_gone
from slimpajama_gui.core.storage.record_queue import RecordQueue
from slimpajama_gui.core.storage.records import (
    FINAL_STATUSES,
    INTERRUPTED_MESSAGE,
    JOB_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    SKIP_VALUE,
    STATUSES,
    STEPS_TABLE,
    JobRecord,
    MetricRecord,
    StepRecord,
    StoreCorrupt,
    StoreLocked,
    StoreUnavailable,
    VariantRow,
    as_number,
    is_corrupt,
    is_locked,
    json_default,
    json_dict,
)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- store


class JobStore(RecordQueue):
    """The job history: jobs, their logged metrics, and the variants they saved.

    Safe to share between threads: each thread gets its own SQLite connection, and
    every write runs in a ``BEGIN IMMEDIATE`` transaction that waits up to
    ``busy_timeout`` seconds for another writer (thread or process). A job's records
    (start, progress, metrics, variants, end) wait at most :attr:`record_wait` seconds,
    then wait in memory instead (see "recording" below).

    Args:
        path: the SQLite file; default ``data_dir()/history.sqlite3``.
        busy_timeout: seconds to wait for a lock held by another writer.

    Raises:
        StoreCorrupt: the file was damaged and has been moved aside; construct the
            store again to start a fresh history.
        StoreLocked: another program holds the file.
        UserError: the file is from a newer app, or cannot be opened at all.
    """

    def __init__(self, path: Path | str | None = None, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path) if path is not None else data_dir() / "history.sqlite3"
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._init_recording()
        #: Jobs found running/queued in a dead process at open and marked interrupted.
        self.interrupted_ids: list[int] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(
        cls, path: Path | str | None = None, **kwargs: Any
    ) -> tuple[JobStore, StoreCorrupt | None]:
        """Open the history, starting a fresh one if the file was damaged.

        Returns the store and, if the old file had to be moved aside, the
        :class:`StoreCorrupt` notice to show the user; the app opens either way.
        """
        try:
            return cls(path, **kwargs), None
        except StoreCorrupt as notice:
            return cls(path, **kwargs), notice

    # ---------------------------------------------------------------- connections

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # close() may run on another thread once this one is done
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @property
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._closed:
            # Closed while this thread was busy: its connection is closed here, by the
            # thread that used it (see close()).
            self._local.conn = None
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            conn = None
        if conn is None:
            if self._closed:
                raise RuntimeError("JobStore is closed")
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append((threading.current_thread(), conn))
        return conn

    def close(self) -> None:
        """Close this store: the connections of this thread and of finished threads now,
        those of threads still running when they next touch the store.

        Closing a connection another thread is using crashes the process (SQLite's
        connection object is not safe to close mid-query), which a worker still reading
        the history at shutdown would otherwise cause.

        Records a job could not write yet are tried once more, then kept in a file
        beside the history that the next start adds (H1).
        """
        if not self._closed:
            self._keep_pending()
        self._closed = True
        me = threading.current_thread()
        with self._lock:
            pairs, self._connections = self._connections, []
        for thread, conn in pairs:
            if thread is me or not thread.is_alive():
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            else:
                with self._lock:
                    self._connections.append((thread, conn))
        self._local.conn = None

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; a lock held too long becomes a sentence."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._translate(exc) from exc
        try:
            yield conn
        except sqlite3.OperationalError as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise self._translate(exc) from exc
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise self._translate(exc) from exc

    def _translate(self, exc: sqlite3.Error) -> Exception:
        """A lock, a full disk or an I/O error becomes a sentence naming the file."""
        if is_locked(exc):
            return StoreLocked(
                f"The job history {self.path} is locked by another program (perhaps another "
                "SlimPajama Studio window or a backup tool). Close it and try again."
            )
        name = str(getattr(exc, "sqlite_errorname", "") or "")
        text = str(exc).lower()
        if name.startswith("SQLITE_FULL") or "disk is full" in text:
            return StoreUnavailable(
                f"The job history {self.path} cannot be written: the disk is full. Free "
                "some space on that disk (or choose another data folder in Settings), then "
                "try again."
            )
        if name.startswith("SQLITE_IOERR") or "disk i/o error" in text:
            return StoreUnavailable(
                f"The job history {self.path} cannot be written: the disk reported an "
                "input/output error. Check that the disk is still connected and healthy, "
                "then try again."
            )
        if name.startswith("SQLITE_READONLY") or "readonly" in text:
            return StoreUnavailable(
                f"The job history {self.path} is read-only. Make the file and its folder "
                "writable (or choose another data folder in Settings), then try again."
            )
        return exc

    # ---------------------------------------------------------------- opening

    def _open(self) -> None:
        try:
            conn = self._conn
            rows = conn.execute("PRAGMA quick_check").fetchall()
            problems = [r[0] for r in rows if r[0] != "ok"]
            if problems:
                self._move_aside("; ".join(problems[:3]))
            conn.execute("PRAGMA journal_mode = WAL")
            self._migrate(conn)
            self._merge_kept()
            self._mark_dead_jobs()
        except sqlite3.DatabaseError as exc:
            translated = self._translate(exc)
            if translated is not exc:
                raise translated from exc
            if is_corrupt(exc):
                self._move_aside(str(exc))
            raise UserError(
                f"Cannot open the job history {self.path}: {exc}. Check that the folder is "
                "writable and the disk is not full."
            ) from exc

    def _move_aside(self, detail: str) -> None:
        self.close()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        moved = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while moved.exists():
            moved = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            os.replace(self.path, moved)
        except OSError as exc:
            raise UserError(
                f"The job history {self.path} is damaged ({detail.rstrip('.')}) and could not "
                f"be moved aside ({exc.strerror}). Move or rename it yourself, then start "
                "the app again."
            ) from exc
        # The WAL and shared-memory files belong to the damaged file; keep them with it
        # (SQLite pairs "X" with "X-wal"), so a fresh history does not replay them.
        for suffix in ("-wal", "-shm", "-journal"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                with contextlib.suppress(OSError):
                    os.replace(side, moved.with_name(moved.name + suffix))
        raise StoreCorrupt(self.path, moved, detail.rstrip("."))

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise UserError(
                f"The job history {self.path} was written by a newer SlimPajama Studio "
                f"(history version {version}; this app reads up to {SCHEMA_VERSION}). "
                "Update the app, or move the file away to start a fresh history."
            )
        with self._write() as c:
            # Re-read inside the lock: another process may have just created or migrated it.
            version = c.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
            else:
                if version == 1:
                    # Jobs recorded so far keep NULL: their recipe's folder was not kept.
                    c.execute("ALTER TABLE jobs ADD COLUMN recipe_dir TEXT")
                if version <= 2:
                    # Jobs recorded so far have no finished-step rows: a resume of one
                    # falls back to its saved variants (core/jobs/resume.py).
                    c.execute("ALTER TABLE jobs ADD COLUMN resumes TEXT")
                    c.execute(STEPS_TABLE)
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _mark_dead_jobs(self) -> None:
        """docs/reliability.md F6: running/queued jobs of a dead process become interrupted."""
        rows = self._conn.execute(
            "SELECT id, pid, host, pid_token FROM jobs WHERE status IN ('running', 'queued')"
        ).fetchall()
        host = host_name()
        dead = [
            r["id"]
            for r in rows
            if (r["host"] in (None, host)) and process_gone(r["pid"], r["pid_token"])
        ]
        if not dead:
            return
        now = time.time()
        with self._write() as conn:
            for job_id in dead:
                conn.execute(
                    "UPDATE jobs SET status = 'interrupted', error = ?, finished_at = ? "
                    "WHERE id = ? AND status IN ('running', 'queued')",
                    (INTERRUPTED_MESSAGE, now, job_id),
                )
        self.interrupted_ids = dead

    # ---------------------------------------------------------------- jobs

    def create_job(
        self,
        name: str,
        recipe_yaml: str,
        output: str | Path | None,
        *,
        recipe_dir: str | Path | None = None,
    ) -> int:
        """Add a queued job owned by this process; returns its id.

        ``recipe_dir`` is the folder the recipe's relative paths are read from, kept so
        a Re-run reads the same files whatever the working folder is then.
        """
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO jobs (name, recipe_yaml, status, created_at, output, pid, host, "
                "pid_token, progress, recipe_dir) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, 0, ?)",
                (
                    name,
                    recipe_yaml,
                    time.time(),
                    None if output is None else str(output),
                    os.getpid(),
                    host_name(),
                    pid_token(os.getpid()),
                    None if recipe_dir is None else str(recipe_dir),
                ),
            )
            return int(cur.lastrowid)

    def mark_running(self, job_id: int) -> None:
        """The job starts (or resumes) in this process.

        Written when the history is free: a busy history never stops the job (H1).
        """
        token = pid_token(os.getpid())
        self._record(["running", job_id, time.time(), os.getpid(), host_name(), token])

    def finish(
        self,
        job_id: int,
        status: str,
        error: str | None = None,
        failed_step: str | None = None,
        *,
        patience: float | None = None,
    ) -> Path | None:
        """Record how the job ended: done, failed, cancelled or interrupted.

        With the records still waiting in memory, this keeps trying for ``patience``
        seconds (default :attr:`final_patience`) while the history is busy, full or
        failing (H1); the GUI thread passes 0, so the window never waits on it.

        Returns:
            None once the history has it; otherwise the file beside the history that
            keeps the outcome and the waiting records until the next start adds them.

        Raises:
            UserError: the job is not in the history.
        """
        if status not in FINAL_STATUSES:
            raise ValueError(f"finish() status must be one of {FINAL_STATUSES}, got {status!r}")
        self._record(["finish", job_id, status, time.time(), error, failed_step], wait=0.0)
        return self._flush_patiently(self.final_patience if patience is None else patience)

    def mark_interrupted(self, job_id: int) -> bool:
        """Mark a job that is still queued or running interrupted.

        For the app when it quits while a job cannot stop: a status the job has already
        written itself (done, failed, cancelled) is the truth and stays.

        Returns:
            True if the row was changed.
        """
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET status = 'interrupted', error = ?, finished_at = ? "
                "WHERE id = ? AND status IN ('running', 'queued')",
                (INTERRUPTED_MESSAGE, time.time(), job_id),
            )
            return cur.rowcount > 0

    def set_progress(self, job_id: int, fraction: float) -> None:
        """Overall progress of the job, 0..1 (clamped)."""
        fraction = 0.0 if not math.isfinite(fraction) else min(1.0, max(0.0, float(fraction)))
        self._record(["progress", job_id, fraction])

    def get_job(self, job_id: int) -> JobRecord:
        row = self._conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None:
            raise UserError(f"Job {job_id} is not in the job history {self.path}.")
        return JobRecord(**dict(row))

    def list_jobs(self, limit: int = 100) -> list[JobRecord]:
        """The newest ``limit`` jobs, newest first."""
        rows = self._conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [JobRecord(**dict(r)) for r in rows]

    def delete_job(self, job_id: int) -> None:
        """Forget a job, its metrics and variant rows (saved folders stay on disk)."""
        with self._write() as conn:
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def _require(self, conn: sqlite3.Connection, job_id: int) -> None:
        if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
            raise UserError(f"Job {job_id} is not in the job history {self.path}.")

    # ---------------------------------------------------------------- steps

    def finish_step(
        self,
        job_id: int,
        step_index: int,
        step_type: str,
        seconds: float,
        summary: dict[str, Any] | None = None,
    ) -> None:
        """Record that step ``step_index`` (0-based) of the job ended well after ``seconds``.

        A resume skips exactly the steps recorded here (core/jobs/resume.py). Written
        like every record of a running job: it waits while the history is busy (H1).
        """
        payload = json.dumps(summary or {}, allow_nan=True, default=json_default)
        self._record(["step", job_id, step_index, step_type, float(seconds), payload, time.time()])

    def finished_steps(self, job_id: int) -> list[StepRecord]:
        """The steps the job finished, in step order."""
        rows = self._conn.execute(
            "SELECT job_id, step_index, step_type, seconds, summary_json, ended_at "
            "FROM job_steps WHERE job_id = ? ORDER BY step_index",
            (job_id,),
        ).fetchall()
        return [
            StepRecord(
                r["job_id"],
                r["step_index"],
                r["step_type"],
                r["seconds"],
                json_dict(r["summary_json"]),
                r["ended_at"],
            )  # fmt: skip
            for r in rows
        ]

    def begin_resume(
        self,
        job_id: int,
        from_step: int,
        *,
        recipe_yaml: str,
        recipe_dir: str | Path | None,
    ) -> None:
        """Reopen a failed, cancelled or interrupted job to continue at ``from_step``.

        The rows of steps ``from_step`` and later (their metrics, variants and finished
        marks, all from the attempt that did not finish) are dropped so the charts and
        Compare show one attempt per step; the earlier steps' rows stay. The recipe is
        replaced (the user may have fixed a setting of an unfinished step) and the
        resume is appended to ``resumes`` with the attempt's status and error.

        Raises:
            UserError: the job is not in the history, or is queued, running or done.
        """
        with self._write() as conn:
            row = conn.execute(
                "SELECT status, error, resumes FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None:
                raise UserError(f"Job {job_id} is not in the job history {self.path}.")
            if row["status"] not in ("failed", "cancelled", "interrupted"):
                raise UserError(
                    f"Job #{job_id} is {row['status']}; only a failed, cancelled or "
                    "interrupted job can be resumed."
                )
            try:
                log = json.loads(row["resumes"]) if row["resumes"] else []
            except ValueError:
                log = []
            log.append(
                {
                    "at": time.time(),
                    "from_step": from_step,
                    "reused": list(range(from_step)),
                    "previous_status": row["status"],
                    "previous_error": row["error"],
                }
            )
            for table in ("step_metrics", "artifacts", "job_steps"):
                conn.execute(
                    f"DELETE FROM {table} WHERE job_id = ? AND step_index >= ?",
                    (job_id, from_step),
                )
            conn.execute(
                "UPDATE jobs SET status = 'queued', recipe_yaml = ?, recipe_dir = ?, "
                "resumes = ?, error = NULL, failed_step = NULL, finished_at = NULL "
                "WHERE id = ?",
                (
                    recipe_yaml,
                    None if recipe_dir is None else str(recipe_dir),
                    json.dumps(log),
                    job_id,
                ),
            )

    def note_reuse(self, job_id: int, *, from_job: int, from_step: int) -> None:
        """Record in ``resumes`` that the job took steps before ``from_step`` (0-based)
        from job ``from_job``'s saved variants (a re-run from a step)."""
        with self._write() as conn:
            row = conn.execute("SELECT resumes FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise UserError(f"Job {job_id} is not in the job history {self.path}.")
            try:
                log = json.loads(row["resumes"]) if row["resumes"] else []
            except ValueError:
                log = []
            log.append(
                {
                    "at": time.time(),
                    "from_step": from_step,
                    "reused": list(range(from_step)),
                    "from_job": from_job,
                }
            )
            conn.execute("UPDATE jobs SET resumes = ? WHERE id = ?", (json.dumps(log), job_id))

    # ---------------------------------------------------------------- metrics

    def log_metrics(
        self, job_id: int, step_index: int, step_type: str, metrics: dict[str, Any]
    ) -> None:
        """Append numbers (loss, accuracy, step, ...); values that are not numbers are
        skipped, NaN/inf are kept as NaN.

        While the history is busy the numbers wait in memory (bounded) and are written
        when it is free; the caller never waits more than a fraction of a second (H1).
        """
        now = time.time()
        rows = []
        for key, value in metrics.items():
            number = as_number(value)
            if number is SKIP_VALUE:
                continue
            rows.append((job_id, step_index, step_type, str(key), number, now))
        if not rows:
            return
        self._record(["metrics", rows])

    def metrics(
        self, job_id: int, step_index: int | None = None, key: str | None = None
    ) -> list[MetricRecord]:
        """Logged numbers of a job in the order they were logged."""
        sql = "SELECT job_id, step_index, step_type, key, value, ts FROM step_metrics WHERE job_id = ?"
        args: list[Any] = [job_id]
        if step_index is not None:
            sql += " AND step_index = ?"
            args.append(step_index)
        if key is not None:
            sql += " AND key = ?"
            args.append(key)
        rows = self._conn.execute(sql + " ORDER BY id", args).fetchall()
        return [
            MetricRecord(
                r["job_id"],
                r["step_index"],
                r["step_type"],
                r["key"],
                math.nan if r["value"] is None else r["value"],
                r["ts"],
            )
            for r in rows
        ]

    # ---------------------------------------------------------------- variants

    def add_variant(
        self,
        job_id: int,
        step_index: int,
        kind: str,
        path: str | Path,
        metrics: dict[str, Any] | None = None,
    ) -> int:
        """Record a saved variant (``kind`` "model"); returns its row id.

        ``metrics`` must be JSON-serialisable (numbers that are not become floats or
        strings). While the history is busy the row waits in memory and the id returned
        is a negative stand-in that :meth:`update_variant_metrics` accepts (H1).
        """
        payload = json.dumps(metrics or {}, allow_nan=True, default=json_default)
        with self._pending_lock:
            self._next_standin -= 1
            standin = self._next_standin
        op = ["variant", standin, job_id, step_index, kind, str(path), payload, time.time()]
        self._record(op)
        return self._variant_ids.get(standin, standin)

    def update_variant_metrics(self, row_id: int, metrics: dict[str, Any]) -> None:
        """Replace the figures of a saved variant's row (after an evaluate/benchmark step).

        Raises:
            UserError: there is no such row (its job was deleted from the history).
        """
        payload = json.dumps(metrics or {}, allow_nan=True, default=json_default)
        self._record(["variant_metrics", row_id, payload])

    def remove_variant(self, path: str | Path) -> int:
        """Forget the saved variant(s) at ``path`` (its folder was deleted); returns how many
        rows went. The job and its metrics stay."""
        target = Path(path).expanduser().resolve()
        gone = [r.id for r in self.variants() if Path(r.path).expanduser().resolve() == target]
        with self._write() as conn:
            for row_id in gone:
                conn.execute("DELETE FROM artifacts WHERE id = ?", (row_id,))
        return len(gone)

    def variants(self, job_id: int | None = None) -> list[VariantRow]:
        """Saved variants of one job, or of all jobs, newest first."""
        sql = "SELECT id, job_id, step_index, kind, path, metrics_json, created_at FROM artifacts"
        args: tuple[Any, ...] = ()
        if job_id is not None:
            sql += " WHERE job_id = ?"
            args = (job_id,)
        rows = self._conn.execute(sql + " ORDER BY created_at DESC, id DESC", args).fetchall()
        return [
            VariantRow(
                r["id"],
                r["job_id"],
                r["step_index"],
                r["kind"],
                r["path"],
                json_dict(r["metrics_json"]),
                r["created_at"],
            )  # fmt: skip
            for r in rows
        ]

    def journal_mode(self) -> str:
        return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0])


__all__ = [
    "FINAL_STATUSES",
    "INTERRUPTED_MESSAGE",
    "SCHEMA_VERSION",
    "STATUSES",
    "JobRecord",
    "JobStore",
    "MetricRecord",
    "StepRecord",
    "StoreCorrupt",
    "StoreLocked",
    "StoreUnavailable",
    "VariantRow",
]
