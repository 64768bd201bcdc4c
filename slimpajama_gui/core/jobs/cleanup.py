"""Deleting what a job saved: only folders the app wrote for that job, never anything else.

A folder is the job's when it holds the app's own record (``slimpajama.json``) naming
that job, inside the job's output folder. The source model, files the user put in the
output folder and other jobs' variants are never touched.

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
        shutil.rmtree(folder)
        deleted.append(folder)
    store.delete_variants(job_id, [str(f) for f in deleted])
    output = Path(job.output) if job.output else None
    if output is not None and output.is_dir() and not any(output.iterdir()):
        output.rmdir()
    return deleted


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
