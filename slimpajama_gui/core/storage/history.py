"""Job history (SQLite in WAL mode) and the one-writer lock on output folders.

The history file lives at ``data_dir()/history.sqlite3``. It is checked when opened
(docs/reliability.md F10): a damaged file is moved aside, never deleted, and the caller gets
a :class:`StoreCorrupt` sentence to show; opening again starts a fresh history. Jobs
that were running in a process that no longer exists are marked interrupted (F6).
:class:`OutputLock` keeps two jobs from writing the same output folder (F7).

Example:
    >>> store = JobStore(tmp / "history.sqlite3")  # doctest: +SKIP
    >>> job = store.create_job("sst2-small", recipe_yaml, "out/sst2-small")
    >>> store.mark_running(job)
    >>> store.log_metrics(job, 0, "finetune", {"loss": 0.41, "step": 10})
    >>> store.finish(job, "done")
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.paths import data_dir

try:  # POSIX; Windows falls back to an O_EXCL lock file
    import fcntl
except ImportError:  # pragma: no cover - exercised on Windows only
    fcntl = None  # type: ignore[assignment]

#: Layout version kept in ``PRAGMA user_version``.
SCHEMA_VERSION = 1

STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
FINAL_STATUSES = ("done", "failed", "cancelled", "interrupted")

INTERRUPTED_MESSAGE = (
    "the app stopped while this job ran; its saved steps are kept, Re-run starts it again"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    recipe_yaml TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN
        ('queued', 'running', 'done', 'failed', 'cancelled', 'interrupted')),
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    error TEXT,
    failed_step TEXT,
    output TEXT,
    pid INTEGER,
    host TEXT,
    pid_token TEXT,
    progress REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS step_metrics (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    step_index INTEGER NOT NULL,
    step_type TEXT NOT NULL,
    key TEXT NOT NULL,
    value REAL,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS step_metrics_job ON step_metrics(job_id, step_index);
CREATE TABLE IF NOT EXISTS artifacts (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    step_index INTEGER NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    metrics_json TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS artifacts_job ON artifacts(job_id);
"""


# --------------------------------------------------------------------------- errors


class StoreCorrupt(UserError):
    """The history file was damaged; it has been moved to ``moved_to``.

    Opening the store again starts an empty history (or use :meth:`JobStore.open`,
    which does that and hands back this error as a notice).
    """

    def __init__(self, path: Path, moved_to: Path, detail: str) -> None:
        self.path = path
        self.moved_to = moved_to
        self.detail = detail
        super().__init__(
            f"The job history {path} is damaged ({detail}). It was moved aside to "
            f"{moved_to.name} in the same folder and a fresh history was started; "
            "your saved models are untouched."
        )


class StoreLocked(UserError):
    """Another program holds the history file longer than the busy timeout."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class JobRecord:
    """One row of the ``jobs`` table; times are Unix seconds."""

    id: int
    name: str
    recipe_yaml: str
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    failed_step: str | None
    output: str | None
    pid: int | None
    host: str | None
    progress: float

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish (or to now while it runs)."""
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at


@dataclass(frozen=True)
class MetricRecord:
    """One logged number of one step."""

    job_id: int
    step_index: int
    step_type: str
    key: str
    value: float  # NaN when the step logged NaN/inf or a missing value
    ts: float


@dataclass(frozen=True)
class ArtifactRecord:
    """A saved variant (or report) a job produced."""

    id: int
    job_id: int
    step_index: int
    kind: str
    path: str
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0


_JOB_COLUMNS = (
    "id, name, recipe_yaml, status, created_at, started_at, finished_at, error, "
    "failed_step, output, pid, host, progress"
)


# --------------------------------------------------------------------------- processes


def _host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # pragma: no cover - os.kill(pid, 0) would kill it there
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # QUERY_LIMITED
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def pid_token(pid: int) -> str | None:
    """Something that tells this process apart from a later one given the same pid.

    On Linux: the boot id and the process start time; elsewhere ``None`` (then only
    :func:`pid_alive` is used).
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
        # Field 22 (start time); split after the ")" that ends the command name.
        start = stat.rsplit(")", 1)[1].split()[19]
        return f"{boot}:{start}"
    except (OSError, IndexError):
        return None


def _process_gone(pid: int | None, token: str | None) -> bool:
    if pid is None or not pid_alive(pid):
        return True
    if token is not None:
        now = pid_token(pid)
        if now is not None and now != token:
            return True  # the pid was reused by another process
    return False


# --------------------------------------------------------------------------- store


def _error_name(exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", None)  # Python 3.11+
    if name:
        return name
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "SQLITE_BUSY"
    if "not a database" in text:
        return "SQLITE_NOTADB"
    if "malformed" in text or "corrupt" in text:
        return "SQLITE_CORRUPT"
    return "SQLITE_ERROR"


def _is_locked(exc: sqlite3.Error) -> bool:
    return _error_name(exc).startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def _is_corrupt(exc: sqlite3.Error) -> bool:
    return _error_name(exc).startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


class JobStore:
    """The job history: jobs, their logged metrics, and the artifacts they saved.

    Safe to share between threads: each thread gets its own SQLite connection, and
    every write runs in a ``BEGIN IMMEDIATE`` transaction that waits up to
    ``busy_timeout`` seconds for another writer (thread or process).

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
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
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
            check_same_thread=False,  # only close() crosses threads
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @property
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("JobStore is closed")
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection this store opened (from any thread)."""
        self._closed = True
        with self._lock:
            conns, self._connections = self._connections, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

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
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise self._translate(exc) from exc

    def _translate(self, exc: sqlite3.Error) -> Exception:
        if _is_locked(exc):
            return StoreLocked(
                f"The job history {self.path} is locked by another program (perhaps another "
                "SlimPajama Studio window or a backup tool). Close it and try again."
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
            self._mark_dead_jobs()
        except sqlite3.DatabaseError as exc:
            if _is_locked(exc):
                raise self._translate(exc) from exc
            if _is_corrupt(exc):
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
            # Re-read inside the lock: another process may have just created it.
            if c.execute("PRAGMA user_version").fetchone()[0] == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _mark_dead_jobs(self) -> None:
        """docs/reliability.md F6: running/queued jobs of a dead process become interrupted."""
        rows = self._conn.execute(
            "SELECT id, pid, host, pid_token FROM jobs WHERE status IN ('running', 'queued')"
        ).fetchall()
        host = _host()
        dead = [
            r["id"]
            for r in rows
            if (r["host"] in (None, host)) and _process_gone(r["pid"], r["pid_token"])
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

    def create_job(self, name: str, recipe_yaml: str, output: str | Path | None) -> int:
        """Add a queued job owned by this process; returns its id."""
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO jobs (name, recipe_yaml, status, created_at, output, pid, host, "
                "pid_token, progress) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, 0)",
                (
                    name,
                    recipe_yaml,
                    time.time(),
                    None if output is None else str(output),
                    os.getpid(),
                    _host(),
                    pid_token(os.getpid()),
                ),
            )
            return int(cur.lastrowid)

    def mark_running(self, job_id: int) -> None:
        """The job starts (or resumes) in this process."""
        with self._write() as conn:
            self._require(conn, job_id)
            conn.execute(
                "UPDATE jobs SET status = 'running', started_at = ?, finished_at = NULL, "
                "error = NULL, failed_step = NULL, pid = ?, host = ?, pid_token = ? "
                "WHERE id = ?",
                (time.time(), os.getpid(), _host(), pid_token(os.getpid()), job_id),
            )

    def finish(
        self,
        job_id: int,
        status: str,
        error: str | None = None,
        failed_step: str | None = None,
    ) -> None:
        """Record how the job ended: done, failed, cancelled or interrupted."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"finish() status must be one of {FINAL_STATUSES}, got {status!r}")
        with self._write() as conn:
            self._require(conn, job_id)
            conn.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, error = ?, failed_step = ?, "
                "progress = CASE WHEN ? = 'done' THEN 1.0 ELSE progress END WHERE id = ?",
                (status, time.time(), error, failed_step, status, job_id),
            )

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
        with self._write() as conn:
            conn.execute("UPDATE jobs SET progress = ? WHERE id = ?", (fraction, job_id))

    def get_job(self, job_id: int) -> JobRecord:
        row = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None:
            raise UserError(f"Job {job_id} is not in the job history {self.path}.")
        return JobRecord(**dict(row))

    def list_jobs(self, limit: int = 100) -> list[JobRecord]:
        """The newest ``limit`` jobs, newest first."""
        rows = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [JobRecord(**dict(r)) for r in rows]

    def delete_job(self, job_id: int) -> None:
        """Forget a job, its metrics and artifact rows (saved folders stay on disk)."""
        with self._write() as conn:
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def _require(self, conn: sqlite3.Connection, job_id: int) -> None:
        if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
            raise UserError(f"Job {job_id} is not in the job history {self.path}.")

    # ---------------------------------------------------------------- metrics

    def log_metrics(
        self, job_id: int, step_index: int, step_type: str, metrics: dict[str, Any]
    ) -> None:
        """Append numbers (loss, accuracy, step, ...); values that are not numbers are
        skipped, NaN/inf are kept as NaN."""
        now = time.time()
        rows = []
        for key, value in metrics.items():
            number = _as_number(value)
            if number is _SKIP:
                continue
            rows.append((job_id, step_index, step_type, str(key), number, now))
        if not rows:
            return
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO step_metrics (job_id, step_index, step_type, key, value, ts) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

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

    # ---------------------------------------------------------------- artifacts

    def add_artifact(
        self,
        job_id: int,
        step_index: int,
        kind: str,
        path: str | Path,
        metrics: dict[str, Any] | None = None,
    ) -> int:
        """Record a saved variant; ``metrics`` must be JSON-serialisable."""
        payload = json.dumps(metrics or {}, allow_nan=True, default=_json_default)
        with self._write() as conn:
            self._require(conn, job_id)
            cur = conn.execute(
                "INSERT INTO artifacts (job_id, step_index, kind, path, metrics_json, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, step_index, kind, str(path), payload, time.time()),
            )
            return int(cur.lastrowid)

    def artifacts(self, job_id: int | None = None) -> list[ArtifactRecord]:
        """Saved variants of one job, or of all jobs, newest first."""
        sql = "SELECT id, job_id, step_index, kind, path, metrics_json, created_at FROM artifacts"
        args: tuple[Any, ...] = ()
        if job_id is not None:
            sql += " WHERE job_id = ?"
            args = (job_id,)
        rows = self._conn.execute(sql + " ORDER BY created_at DESC, id DESC", args).fetchall()
        out = []
        for r in rows:
            try:
                metrics = json.loads(r["metrics_json"] or "{}")
            except ValueError:
                metrics = {}
            out.append(
                ArtifactRecord(
                    r["id"],
                    r["job_id"],
                    r["step_index"],
                    r["kind"],
                    r["path"],
                    metrics,
                    r["created_at"],
                )  # fmt: skip
            )
        return out

    def journal_mode(self) -> str:
        return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0])


_SKIP = object()


def _as_number(value: Any) -> Any:
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)  # ints, numpy scalars, 0-d tensors
    except (TypeError, ValueError):
        return _SKIP
    return number if math.isfinite(number) else None  # SQLite has no NaN: NULL


def _json_default(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


# --------------------------------------------------------------------------- output lock

LOCK_SUFFIX = ".slimpajama.lock"


class OutputLock:
    """One writer per output folder (docs/reliability.md F7), across threads and processes.

    The lock file ``.<folder name>.slimpajama.lock`` sits beside the folder, not inside
    it, because a finished variant replaces its folder atomically. It is held with
    ``fcntl.flock``, so the kernel frees it when the holder dies; where ``flock`` is
    missing (Windows) or refused (some network file systems) an ``O_EXCL`` file with the
    holder's pid is used and a dead holder's file is taken over.

    Example:
        >>> with OutputLock(Path("out/sst2-small"), job_id=3):  # doctest: +SKIP
        ...     run_steps()
    """

    def __init__(self, folder: Path | str, job_id: int | None = None) -> None:
        self.folder = Path(folder).expanduser().absolute()
        self.job_id = job_id
        self.path = self.folder.parent / f".{self.folder.name}{LOCK_SUFFIX}"
        self._fd: int | None = None
        self._exclusive_file = False

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _record(self) -> bytes:
        return json.dumps({"job": self.job_id, "pid": os.getpid(), "host": _host()}).encode()

    def _refuse(self, holder: dict[str, Any]) -> UserError:
        job = holder.get("job")
        who = f"job {job}" if job is not None else "another job"
        pid = holder.get("pid")
        if pid is not None:
            host = holder.get("host")
            who += f" (pid {pid}{'' if host in (None, _host()) else f' on {host}'})"
        return UserError(
            f"{self.folder} is already being written by {who}. Wait for it to finish, "
            "cancel it, or choose another output folder."
        )

    def _read_holder(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_bytes() or b"{}")
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> OutputLock:
        """Take the lock or raise :class:`UserError` naming the holder."""
        if self._fd is not None:
            raise RuntimeError("OutputLock is already held by this object")
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            try:
                self._acquire_flock()
                return self
            except _FlockUnsupported:
                pass
        self._acquire_exclusive_file()
        return self

    def _acquire_flock(self) -> None:
        assert fcntl is not None
        for _ in range(50):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._refuse(self._read_holder()) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise _FlockUnsupported from exc
                raise
            # A releasing holder unlinks the file; if we locked an unlinked inode,
            # start over on the file that is at the path now.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, self._record())
            self._fd = fd
            return
        raise UserError(f"Could not lock {self.folder}: the lock file {self.path} keeps changing.")

    def _acquire_exclusive_file(self) -> None:
        for _ in range(50):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._read_holder()
                pid = holder.get("pid")
                same_host = holder.get("host") in (None, _host())
                if isinstance(pid, int) and same_host and not pid_alive(pid):
                    # A stale lock of a dead process: take it over.
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)
                    continue
                if not holder:
                    # Being written right now, or an empty leftover; look again shortly.
                    time.sleep(0.01)
                    holder = self._read_holder()
                    if not holder:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(self.path)
                        continue
                raise self._refuse(holder) from None
            os.write(fd, self._record())
            self._fd = fd
            self._exclusive_file = True
            return
        raise UserError(f"Could not lock {self.folder}: the lock file {self.path} keeps changing.")

    def release(self) -> None:
        """Give the lock back (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Unlink while still holding it, so nobody can lock the file we remove.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if not self._exclusive_file and fcntl is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        self._exclusive_file = False

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a forgotten lock must not outlive its object
        with contextlib.suppress(Exception):
            self.release()


class _FlockUnsupported(Exception):
    pass
