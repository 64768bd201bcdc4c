"""What the job history holds: its layout (schema and version), its rows, its errors.

:mod:`slimpajama_gui.core.storage.history` reads and writes them (``JobStore``).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimpajama_gui.core.errors import UserError

#: Layout version kept in ``PRAGMA user_version``. 1: the first layout; 2: ``jobs``
#: gains ``recipe_dir``; 3: ``job_steps`` (the steps a job finished) and ``jobs.resumes``
#: (older files are migrated in place when opened).
SCHEMA_VERSION = 3

STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
FINAL_STATUSES = ("done", "failed", "cancelled", "interrupted")

INTERRUPTED_MESSAGE = (
    "the app stopped while this job ran; its saved steps are kept: Resume continues from "
    "them, Re-run starts it again"
)

#: The ``job_steps`` table (version 3); part of :data:`SCHEMA`, and added alone when an
#: older history is migrated.
STEPS_TABLE = """
CREATE TABLE IF NOT EXISTS job_steps (
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    step_index INTEGER NOT NULL,
    step_type TEXT NOT NULL,
    seconds REAL NOT NULL,
    summary_json TEXT NOT NULL DEFAULT '{}',
    ended_at REAL NOT NULL,
    PRIMARY KEY (job_id, step_index)
)
"""

SCHEMA = (
    """
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
    progress REAL NOT NULL DEFAULT 0,
    recipe_dir TEXT,
    resumes TEXT
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
-- A saved variant of a job ("artifacts" is the table's name since version 1).
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
-- A step a job finished (what a resume may skip), with its summary and seconds.
"""
    + STEPS_TABLE
)


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


# SQLite errors by name: which are a lock held elsewhere, which a damaged file.


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
    if "disk is full" in text:
        return "SQLITE_FULL"
    if "disk i/o error" in text:
        return "SQLITE_IOERR"
    if "readonly" in text:
        return "SQLITE_READONLY"
    return "SQLITE_ERROR"


def is_locked(exc: sqlite3.Error) -> bool:
    """Another connection holds the file (SQLITE_BUSY / SQLITE_LOCKED)."""
    return _error_name(exc).startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def is_corrupt(exc: sqlite3.Error) -> bool:
    """The file is damaged or not a database."""
    return _error_name(exc).startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


class StoreLocked(UserError):
    """Another program holds the history file longer than the busy timeout."""


class StoreUnavailable(UserError):
    """The history file cannot be written now: disk full, read-only or an I/O error."""


def is_unavailable(exc: BaseException) -> bool:
    """The file cannot be written for now (busy, locked, full, read-only, I/O error),
    as opposed to a damaged file or a wrong statement: worth trying again later."""
    if isinstance(exc, (StoreLocked, StoreUnavailable)):
        return True
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    name = _error_name(exc)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR")):
        return True
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
        return True
    text = str(exc).lower()
    return any(k in text for k in ("locked", "disk is full", "disk i/o error", "readonly"))


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
    #: The folder the recipe's relative paths are read from (None for jobs recorded
    #: before version 2 of the history: those resolve against the working folder).
    recipe_dir: str | None = None
    #: JSON list, one object per resume: ``at`` (Unix s), ``from_step`` (0-based),
    #: ``reused`` (0-based indexes of the steps taken from the earlier attempt),
    #: ``previous_status`` and ``previous_error``; a re-run from a step has one entry
    #: with ``from_job`` (the job its reused steps come from). None if neither.
    resumes: str | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def resume_log(self) -> list[dict[str, Any]]:
        """The job's resumes, oldest first (see ``resumes``); [] if never resumed."""
        try:
            data = json.loads(self.resumes) if self.resumes else []
        except ValueError:
            return []
        return data if isinstance(data, list) else []

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
class VariantRow:
    """A saved variant a job produced: its folder and its figures.

    ``metrics`` mirrors the ``metrics`` of the variant's ``slimpajama.json``
    (``training``, ``eval``, ``benchmark``...): the pipeline writes both from the same
    record, at save time and after each evaluate and benchmark step.
    """

    id: int
    job_id: int
    step_index: int
    kind: str
    path: str
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0


@dataclass(frozen=True)
class StepRecord:
    """A step a job finished: its 0-based index, type, seconds it ran and its summary."""

    job_id: int
    step_index: int
    step_type: str
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)
    ended_at: float = 0.0


JOB_COLUMNS = (
    "id, name, recipe_yaml, status, created_at, started_at, finished_at, error, "
    "failed_step, output, pid, host, progress, recipe_dir, resumes"
)


#: What :func:`as_number` returns for a value that is not a number (skipped, not logged).
SKIP_VALUE = object()


def json_dict(text: str | None) -> dict[str, Any]:
    """A JSON column as a dict; ``{}`` when empty or unreadable (a damaged row stays listed)."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def as_number(value: Any) -> Any:
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)  # ints, numpy scalars, 0-d tensors
    except (TypeError, ValueError):
        return SKIP_VALUE
    return number if math.isfinite(number) else None  # SQLite has no NaN: NULL


def json_default(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
