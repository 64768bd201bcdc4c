"""Deleting what a job saved: only folders the app wrote for that job, never anything else.

A folder is the job's when it holds the app's own record (``slimpajama.json``) naming
that job, inside the job's output folder. The source model, files the user put in the
output folder and other jobs' variants are never touched. :func:`delete_result` is the
one way any screen (Models, Jobs, Compare) deletes a result folder.

Example:
    >>> folders = result_folders(store, 12)  # doctest: +SKIP
    >>> delete_results(store, 12, folders)
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.plan.recipe import recipe_from_yaml
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.storage.locks import OutputLock
from slimpajama_gui.core.storage.variant import VariantRecord, is_variant_folder

log = logging.getLogger(__name__)


def result_folders(store: JobStore, job_id: int) -> list[Path]:
    """The variant folders job ``job_id`` saved that are still on disk, in name order.

    Only direct sub-folders of the job's output folder whose record names this job; the
    job's source model is excluded even if it were one of them.
    """
    job = store.get_job(job_id)
    if not job.output:
        return []
    output = Path(job.output)
    source = _source_model(job.recipe_yaml, job.recipe_dir)
    try:
        children = sorted(p for p in output.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []
    folders = []
    for folder in children:
        if not is_variant_folder(folder) or (source is not None and _same(folder, source)):
            continue
        try:
            owner = VariantRecord.read(folder).job_id
        except UserError:
            continue
        if owner == job_id:
            folders.append(folder)
    return folders


def delete_results(store: JobStore, job_id: int, folders: list[Path]) -> list[Path]:
    """Delete ``folders`` (from :func:`result_folders`), checked again one by one.

    The job's variant rows in the history go with them, and the output folder itself
    when nothing else is left in it. The job's row stays (its log and charts).

    Returns:
        The folders deleted.

    Raises:
        UserError: the job is queued or running.
    """
    job = store.get_job(job_id)
    if job.status in ("queued", "running"):
        raise UserError(f"Job #{job_id} is {job.status}; stop it before deleting its results.")
    allowed = set(result_folders(store, job_id))
    deleted = []
    for folder in folders:
        if folder not in allowed:  # changed since the user confirmed: leave it
            log.warning("Not deleting %s: it is not a folder job %s saved", folder, job_id)
            continue
        deleted.append(delete_result(folder, store))
    output = Path(job.output) if job.output else None
    if output is not None and output.is_dir() and not any(output.iterdir()):
        output.rmdir()
    return deleted


def delete_result(folder: Path, store: JobStore) -> Path:
    """Delete one result folder the app saved, and forget it in the history.

    The folder must hold the app's own record, and no job may hold its output folder's
    lock (a job still writing is never cut short). The job's source model is never deleted, however the paths relate.

    Returns:
        ``folder``, deleted.

    Raises:
        UserError: any of the above does not hold, or the folder cannot be removed; the
            sentence names the folder and what to do.
    """
    folder = Path(folder)
    try:
        record = VariantRecord.read(folder) if is_variant_folder(folder) else None
    except UserError:
        record = None
    if record is None or folder.is_symlink():
        raise UserError(
            f"{folder} is not a result this app saved (it has no slimpajama.json); it is "
            "left untouched."
        )
    job = None
    if record.job_id is not None:
        try:
            job = store.get_job(record.job_id)
        except UserError:  # a history that forgot the job: the record alone says it is ours
            job = None
    if job is not None:
        source = _source_model(job.recipe_yaml, job.recipe_dir)
        if source is not None and _same(folder, source):
            raise UserError(f"{folder} is the source model of job #{job.id}; it is kept.")
    # The lock, not the history's status, says whether a job is writing here: a status
    # left "running" by a process that died would otherwise block the folder for good.
    lock = OutputLock(folder.parent)
    try:
        lock.acquire()
    except UserError:
        raise UserError(
            f"{folder.parent} is being written by a job that is still running; delete "
            f"{folder.name} once that job has finished or been cancelled."
        ) from None
    try:
        shutil.rmtree(folder)
    except OSError as exc:
        raise UserError(
            f"could not delete {folder}: {exc.strerror or exc}; close programs using it and "
            "try again."
        ) from None
    finally:
        lock.release()
    store.remove_variant(folder)
    return folder


def _source_model(recipe_yaml: str, recipe_dir: str | None) -> Path | None:
    try:
        recipe = recipe_from_yaml(
            recipe_yaml, "the job's recipe", base_dir=Path(recipe_dir) if recipe_dir else None
        )
    except UserError:
        return None
    return None if recipe.uses_packaged_model else recipe.resolve_path(recipe.model)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
