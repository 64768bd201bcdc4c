"""The queue through which a running job's records reach the history (H1).

What a job writes (progress, metrics, variants, its start and end) goes through
one queue: written at once when the history is free, otherwise kept in memory in
order and written with the next record, so a history held by a backup tool or a
sqlite3 shell never stops a job. The final status keeps trying for
``final_patience`` seconds; what is still unwritten then goes to a file beside the
history (``<history>.kept/``) that the next start adds.
:class:`RecordQueue` is a part of :class:`~slimpajama_gui.core.storage.history.JobStore`
(its base class), apart because the queue is its own mechanism; it uses the store's
connection, transactions and error translation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.storage.atomic import atomic_write_text
from slimpajama_gui.core.storage.records import is_unavailable

log = logging.getLogger("slimpajama_gui.core.storage.history")


class RecordQueue:
    """Writes a job's records at once when the history is free, else keeps them in order."""

    #: Seconds a job's record waits for a busy history before it waits in memory.
    record_wait = 0.25
    #: Seconds the final status keeps trying before the records go to a file.
    final_patience = 120.0
    #: The most metric rows kept in memory; beyond it the oldest are dropped (logged).
    pending_limit = 200_000

    def _init_recording(self) -> None:
        self._pending: list[list[Any]] = []
        self._pending_lock = threading.RLock()
        self._pending_rows = 0
        self._next_standin = 0
        self._variant_ids: dict[int, int] = {}
        self._retry_at = 0.0  # monotonic time before which a busy history is not tried
        self._retry_gap = 1.0
        self._outage_logged = False
        #: Metric rows dropped because too many waited in memory.
        self.dropped_rows = 0
        #: Files of records kept by an earlier process and added when this store opened.
        self.merged_files: list[Path] = []

    @property
    def kept_dir(self) -> Path:
        """Where records that could not be written wait for the next start."""
        return self.path.with_name(self.path.name + ".kept")

    @property
    def pending(self) -> int:
        """How many records wait in memory for the history to be free."""
        with self._pending_lock:
            return len(self._pending)

    def _record(self, op: list[Any], *, wait: float | None = None) -> None:
        with self._pending_lock:
            last = self._pending[-1] if self._pending else None
            if op[0] == "progress" and last is not None and last[:2] == op[:2]:
                self._pending[-1] = op  # only the newest progress matters
            else:
                self._pending.append(op)
            if op[0] == "metrics":
                self._pending_rows += len(op[1])
                self._bound()
            if wait == 0.0 or time.monotonic() < self._retry_at:
                return
            self._flush(self.record_wait if wait is None else wait, mine=op)

    def _bound(self) -> None:
        while self._pending_rows > self.pending_limit:
            index = next(i for i, op in enumerate(self._pending) if op[0] == "metrics")
            dropped = self._pending.pop(index)
            self._pending_rows -= len(dropped[1])
            self.dropped_rows += len(dropped[1])
            if self.dropped_rows == len(dropped[1]):
                log.warning(
                    "The job history %s stayed busy; more than %d metric rows waited, the "
                    "oldest are dropped",
                    self.path,
                    self.pending_limit,
                )

    def _flush(self, wait: float, *, mine: list[Any] | None = None) -> bool:
        """Write every waiting record in one transaction; False if the history is busy.

        A record whose job or variant is gone (deleted meanwhile) is dropped and
        logged, or raised if it is ``mine``, the caller's own.
        """
        with self._pending_lock:
            if not self._pending:
                return True
            ops = list(self._pending)
            conn = self._conn
            ids: dict[int, int] = {}
            refused: Exception | None = None
            conn.execute(f"PRAGMA busy_timeout = {max(0, int(wait * 1000))}")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for op in ops:
                        conn.execute("SAVEPOINT record")
                        try:
                            self._apply(conn, op, ids)
                        except (sqlite3.IntegrityError, UserError) as exc:
                            conn.execute("ROLLBACK TO record")
                            if op is mine:
                                refused = exc
                            else:
                                log.warning("A job's record was dropped: %s (%s)", exc, op[0])
                        conn.execute("RELEASE record")
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if not is_unavailable(exc):
                    raise self._translate(exc) from exc
                # Tried again after 1 s, then 2, 4, up to 8: each try may cost the job
                # ``record_wait`` seconds.
                self._retry_at = time.monotonic() + self._retry_gap
                self._retry_gap = min(self._retry_gap * 2, 8.0)
                if not self._outage_logged:
                    self._outage_logged = True
                    log.warning(
                        "The job history %s cannot be written now (%s); the job's records "
                        "wait in memory",
                        self.path,
                        exc,
                    )
                return False
            finally:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            del self._pending[: len(ops)]
            self._pending_rows = sum(len(op[1]) for op in self._pending if op[0] == "metrics")
            self._variant_ids.update(ids)
            self._retry_at, self._retry_gap = 0.0, 1.0
            if self._outage_logged:
                self._outage_logged = False
                log.info("The job history %s is free again; waiting records written", self.path)
            if refused is not None:
                raise refused
            return True

    def _apply(self, conn: sqlite3.Connection, op: list[Any], ids: dict[int, int]) -> None:
        kind = op[0]
        if kind == "metrics":
            conn.executemany(
                "INSERT INTO step_metrics (job_id, step_index, step_type, key, value, ts) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [tuple(row) for row in op[1]],
            )
        elif kind == "progress":
            conn.execute("UPDATE jobs SET progress = ? WHERE id = ?", (op[2], op[1]))
        elif kind == "running":
            _, job_id, started, pid, host, token = op
            self._require(conn, job_id)
            conn.execute(
                "UPDATE jobs SET status = 'running', started_at = ?, finished_at = NULL, "
                "error = NULL, failed_step = NULL, pid = ?, host = ?, pid_token = ? "
                "WHERE id = ?",
                (started, pid, host, token, job_id),
            )
        elif kind == "finish":
            _, job_id, status, finished, error, failed_step = op
            self._require(conn, job_id)
            conn.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, error = ?, failed_step = ?, "
                "progress = CASE WHEN ? = 'done' THEN 1.0 ELSE progress END WHERE id = ?",
                (status, finished, error, failed_step, status, job_id),
            )
        elif kind == "step":
            _, job_id, step_index, step_type, seconds, payload, ended = op
            self._require(conn, job_id)
            conn.execute(
                "INSERT OR REPLACE INTO job_steps (job_id, step_index, step_type, seconds, "
                "summary_json, ended_at) VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, step_index, step_type, seconds, payload, ended),
            )
        elif kind == "variant":
            _, standin, job_id, step_index, variant_kind, path, payload, created = op
            self._require(conn, job_id)
            cur = conn.execute(
                "INSERT INTO artifacts (job_id, step_index, kind, path, metrics_json, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, step_index, variant_kind, path, payload, created),
            )
            ids[standin] = int(cur.lastrowid)
        elif kind == "variant_metrics":
            _, row_id, payload = op
            if row_id < 0:
                row_id = ids.get(row_id, self._variant_ids.get(row_id, row_id))
            cur = conn.execute(
                "UPDATE artifacts SET metrics_json = ? WHERE id = ?", (payload, row_id)
            )
            if cur.rowcount == 0:
                raise UserError(f"Variant row {op[1]} is not in the job history {self.path}.")
        else:
            raise ValueError(f"unknown record {kind!r}")

    def _flush_patiently(self, patience: float) -> Path | None:
        """Keep trying (with backoff) for ``patience`` s, then keep the rest in a file."""
        with self._pending_lock:
            mine = self._pending[-1] if self._pending else None
        deadline = time.monotonic() + patience
        delay = 0.05
        while True:
            remaining = deadline - time.monotonic()
            if self._flush(min(max(remaining, 0.0), self.busy_timeout), mine=mine):
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._keep_pending()
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)

    def _keep_pending(self) -> Path | None:
        """Write what still waits to a file the next start adds; its path, or None."""
        with self._pending_lock:
            if not self._pending:
                return None
            with contextlib.suppress(Exception):
                if self._flush(self.record_wait):
                    return None
            ops = list(self._pending)
            target = self.kept_dir / f"{os.getpid()}-{time.time_ns()}.json"
            try:
                self.kept_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_text(target, json.dumps({"history": str(self.path), "records": ops}))
            except OSError as exc:
                log.error(
                    "The job history %s could not be written, nor could %d records be kept "
                    "in %s (%s)",
                    self.path,
                    len(ops),
                    target,
                    exc,
                )
                return None
            self._pending.clear()
            self._pending_rows = 0
            log.warning(
                "The job history %s stayed unavailable; %d records are kept in %s and will "
                "be added at the next start",
                self.path,
                len(ops),
                target,
            )
            return target

    def _merge_kept(self) -> None:
        """Add the records an earlier process kept in files (see :meth:`_keep_pending`)."""
        if not self.kept_dir.is_dir():
            return
        for file in sorted(self.kept_dir.glob("*.json")):
            try:
                ops = [list(op) for op in json.loads(file.read_text("utf-8"))["records"]]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("Kept job records %s could not be read (%s); left as is", file, exc)
                continue
            with self._pending_lock:
                before = self._pending
                self._pending = ops
                try:
                    written = self._flush(self.busy_timeout)
                except Exception:  # noqa: BLE001 - opening the history must go on
                    log.exception("Kept job records %s could not be added", file)
                    written = False
                self._pending = before
                self._pending_rows = 0
                self._variant_ids.clear()  # stand-ins of the earlier process
            if written:
                with contextlib.suppress(OSError):
                    file.unlink()
                self.merged_files.append(file)
                log.info("Added the job records kept in %s to the history", file)
