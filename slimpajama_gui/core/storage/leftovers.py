"""What a job leaves on disk when its process dies mid-write, and how it is cleared.

Besides its finished variants, a job writes in two places: a scratch folder beside its
output folder (an ONNX model being exported, a re-numbered tokenizer) and the staging
folders of :func:`~slimpajama_gui.core.storage.atomic.atomic_dir` inside the output folder.
The job removes both when it ends, however it ends, unless the process dies first:
kill -9, a power cut, or the app quitting while the job is inside a step that cannot
stop. Then they are cleared the next time someone holds the
output folder's :class:`~slimpajama_gui.core.storage.locks.OutputLock`: when a job starts
writing there (:func:`sweep_output`), and when the app starts, for the history's
interrupted jobs (:func:`sweep_outputs`). Holding the lock is what makes this safe:
only the lock holder ever writes these names.

Example:
    >>> scratch = make_scratch(Path("out/sst2-small"), job_id=7)  # doctest: +SKIP
    >>> scratch.name
    '.sst2-small.scratch-7-k2j4x9aa'
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.paths import data_dir
from slimpajama_gui.core.storage.atomic import recover_atomic_leftovers
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.storage.locks import OutputLock
from slimpajama_gui.core.storage.variant import is_variant_folder

log = logging.getLogger(__name__)


def _scratch_prefix(output: Path) -> str:
    # Named after the output folder, beside its lock file, so that whoever holds that
    # lock knows these folders are dead jobs' and nobody else's.
    return f".{output.name}.scratch-"


def make_scratch(output: Path, job_id: int) -> Path:
    """A new scratch folder for job ``job_id`` writing into ``output`` (created now)."""
    output = Path(output).expanduser().absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"{_scratch_prefix(output)}{job_id}-"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=output.parent))


def _scratch_folders(output: Path) -> list[Path]:
    # The whole name, so output "a" never takes output "a.scratch-x"'s folders.
    name = re.compile(re.escape(_scratch_prefix(output)) + r"\d+-[a-z0-9_]{8}")
    try:
        return sorted(p for p in output.parent.iterdir() if name.fullmatch(p.name))
    except OSError:
        return []


def sweep_output(output: Path) -> list[Path]:
    """Remove dead jobs' scratch and staging for ``output``; hold its OutputLock.

    Returns:
        The paths removed (or, for an ``.old-`` copy whose swap was cut short, put
        back), for the log.
    """
    output = Path(output).expanduser().absolute()
    touched: list[Path] = []
    try:
        for folder in _scratch_folders(output):
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder, ignore_errors=True)
                touched.append(folder)
        touched += recover_atomic_leftovers(output)
        for variant in _variants(output):  # a record rewritten in place (saving.add_figures)
            touched += recover_atomic_leftovers(variant)
    except OSError as exc:  # housekeeping must never fail the job that asked for it
        log.warning("Could not clear everything a job left in %s: %s", output, exc)
    if touched:
        log.info("Cleared what an interrupted job left: %s", ", ".join(map(str, touched)))
    return touched


def _variants(output: Path) -> list[Path]:
    """The saved variants in ``output``: only their files are the app's to clear."""
    try:
        return [p for p in sorted(output.iterdir()) if is_variant_folder(p)]
    except OSError:
        return []


def _has_leftovers(output: Path) -> bool:
    """Cheap test first, so a clean folder is never locked just to look at it."""
    try:
        return bool(_scratch_folders(output)) or any(
            p.name.startswith(".")
            for folder in (output, *_variants(output))
            for p in folder.iterdir()
        )
    except OSError:
        return False


def sweep_outputs(outputs: Iterable[Path | str]) -> list[Path]:
    """Clear dead jobs' leftovers in ``outputs`` (the app does it at start for the
    output folders of its interrupted jobs).

    A folder another job is writing to right now (its lock is held) is skipped; that
    job clears it when it starts. Never raises for a folder that cannot be read or
    locked: this is housekeeping.

    Returns:
        The paths removed or restored.
    """
    touched: list[Path] = []
    for output in sorted({Path(o).expanduser().absolute() for o in outputs}):
        # Never re-create a folder the user deleted just to lock it.
        if not output.parent.is_dir() or not _has_leftovers(output):
            continue
        try:
            with OutputLock(output):
                touched += sweep_output(output)
        except UserError:
            continue  # a job writes there now; it clears the folder when it starts
        except OSError as exc:
            log.warning("Could not lock %s to clear what a job left: %s", output, exc)
    return touched


def recover_outputs(store: JobStore | None = None) -> list[Path]:
    """What the app and the CLI run when they start (docs/reliability.md F4, O3).

    Every output folder the job history knows is put in order: an output whose
    replacement a kill cut short gets its previous copy back under its name, staging and
    scratch folders are removed (:func:`sweep_outputs`). Only those folders, and only the
    app's own debris names in them, are touched. Never raises: a history that cannot be
    read (busy, damaged) only means nothing is recovered this time.

    Args:
        store: the open history; by default the user's, opened only if it exists and
            with a short wait, so a busy history never delays a start.

    Returns:
        The paths removed or restored.
    """
    try:
        if store is not None:
            jobs = store.list_jobs(limit=RECOVERY_JOBS)
        else:
            path = data_dir() / "history.sqlite3"
            if not path.is_file():
                return []
            with JobStore(path, busy_timeout=0.5) as own:
                jobs = own.list_jobs(limit=RECOVERY_JOBS)
    except Exception as exc:  # noqa: BLE001 - housekeeping never stops a start
        log.warning("Could not read the job history to clear interrupted saves: %s", exc)
        return []
    return sweep_outputs(job.output for job in jobs if job.output)


#: How many of the newest jobs' output folders the recovery at start looks at.
RECOVERY_JOBS = 10_000
