"""Resume a failed, cancelled or interrupted job from its first unfinished step.

Where a resume writes: into the SAME job and output folder. The steps the job finished
are skipped and never written again: their variant folders (``OUTPUT/NN-type``, each
with the app's own ``slimpajama.json``) are reused as they are, the last one loaded as
the input of the first unfinished step, and their history rows (metrics, variants,
summary) stay. Only the unfinished steps write: a folder a step of this job saved
before it failed (it holds this job's record) is replaced when that step runs again.
The job keeps its row and number; ``jobs.resumes`` records each resume (from which
step, which steps were reused, how the earlier attempt ended).

Which steps are finished: those the history recorded as ended (``job_steps``), in order,
each model-changing one with its folder present and holding this job's record of that
very step. Jobs recorded before the history kept finished steps fall back to their saved
variants: a step with a saved variant is finished, and so is a measuring step
(evaluate, benchmark) followed by one. A resume may use a changed recipe, so the user
can fix a bad setting of the step that failed: the model, the data and the finished
steps must stay as they were (a finished step's folder is the result of its settings),
the unfinished steps may change freely. A measuring step that had not finished adds
its figures to the record of the variant it measures, as it would have in the first
attempt; the weights, config and tokenizer files of a finished step are never written.

Re-run from step N (:func:`seed_rerun`) is the other way to keep finished work: a new
job in a new sibling folder (as Re-run) that takes the steps before N from the earlier
job's saved variants, read and copied, never modified.

Example:
    >>> plan = plan_resume(store, 12)  # doctest: +SKIP
    >>> plan.describe()
    'continues at step 3 of 4 (quantize); steps 1–2 are reused from out/sst2'
    >>> run(plan.recipe, callbacks, resume=plan)  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.plan.recipe import Recipe, recipe_from_yaml
from slimpajama_gui.core.storage.atomic import atomic_dir
from slimpajama_gui.core.storage.history import JobRecord, JobStore
from slimpajama_gui.core.storage.variant import VariantRecord, is_variant_folder

#: Job statuses a resume continues.
RESUMABLE = ("failed", "cancelled", "interrupted")
#: Steps that save no variant: they add figures to the current one.
MEASURING_STEPS = ("evaluate", "benchmark", "sensitivity")


@dataclass
class ReusedVariant:
    """A finished step's saved variant: 0-based step ``index``, folder, record, row id."""

    index: int
    path: Path
    record: VariantRecord
    row_id: int | None


@dataclass
class ResumePlan:
    """What a resume of ``job`` does: run ``recipe`` from step ``first_step`` (0-based).

    ``variants`` are the finished steps' saved variants in step order (the last one is
    the model the first unfinished step starts from); ``seconds`` the measured seconds
    of each finished step (index → seconds), for the progress of the resumed job.
    """

    job: JobRecord
    recipe: Recipe
    output: Path
    first_step: int
    variants: list[ReusedVariant] = field(default_factory=list)
    seconds: dict[int, float] = field(default_factory=dict)
    #: The finished steps' summary rows as the history recorded them (index → row).
    summaries: dict[int, dict] = field(default_factory=dict)
    #: Where the reused steps were saved, when not in ``output`` (a re-run from a step).
    reused_from: Path | None = None

    @property
    def job_id(self) -> int:
        return self.job.id

    @property
    def reused(self) -> list[int]:
        """0-based indexes of the steps taken from the earlier attempt."""
        return list(range(self.first_step))

    def describe(self) -> str:
        """One sentence: where the resume continues and what it reuses."""
        count = len(self.recipe.steps)
        step = self.recipe.steps[self.first_step]
        where = f"continues at step {self.first_step + 1} of {count} ({step.step_type})"
        if self.first_step == 0:
            return f"{where}; no step had finished"
        done = "step 1 is" if self.first_step == 1 else f"steps 1–{self.first_step} are"
        return f"{where}; {done} reused from {self.reused_from or self.output}"


def find_job(store: JobStore, spec: str | int) -> JobRecord:
    """The job named by ``spec``: its number ("12", "#12") or its output folder.

    For a folder, the newest job that wrote there.

    Raises:
        UserError: no such job, or no job wrote to that folder.
    """
    text = str(spec).strip().lstrip("#")
    if text.isdigit():
        return store.get_job(int(text))
    folder = Path(text).expanduser().absolute()
    for job in store.list_jobs(limit=100_000):
        if job.output and Path(job.output).absolute() == folder:
            return job
    raise UserError(
        f"No job in the history wrote to {folder}; give the job's number "
        "(slimpajama history lists them) or the output folder a job saved into."
    )


def recorded_recipe(job: JobRecord) -> Recipe:
    """The recipe the job last ran with, its relative paths read from its folder.

    Raises:
        UserError: the recorded YAML no longer loads.
    """
    base = Path(job.recipe_dir) if job.recipe_dir else None
    recipe = recipe_from_yaml(job.recipe_yaml, f"the recipe of job #{job.id}", base_dir=base)
    if job.output:
        recipe.output = job.output
    return recipe


def plan_resume(store: JobStore, job_id: int, recipe: Recipe | None = None) -> ResumePlan:
    """Which steps of job ``job_id`` are finished, and where a resume continues.

    Reads the history and the output folder; writes nothing.

    Args:
        recipe: the recipe to continue with (the user's fixed one); default the job's
            recorded recipe. Its output must be the job's output folder.

    Raises:
        UserError: the job cannot be resumed (running, done, every step finished, a
            folder or setting changed since), with what to do instead.
    """
    job = store.get_job(job_id)
    if job.status not in RESUMABLE:
        raise UserError(
            f"Job #{job.id} is {job.status}; only a failed, cancelled or interrupted job "
            "can be resumed (Re-run runs a recipe again into a new folder)."
        )
    old = recorded_recipe(job)
    if recipe is None:
        recipe = old
    recipe.validate()
    output = Path(job.output) if job.output else old.resolve_path(old.output)
    if recipe.resolve_path(recipe.output).absolute() != output.absolute():
        raise UserError(
            f"output: a resume continues job #{job.id} in its own folder {output}, but the "
            f"recipe saves into {recipe.resolve_path(recipe.output)}; set 'output: {output}' "
            "or run the recipe as a new job."
        )
    _check_same_inputs(job, old, recipe)
    finished = _finished_steps(store, job, old)
    first = 0
    variants: list[ReusedVariant] = []
    seconds: dict[int, float] = {}
    for index in finished:
        if index >= len(recipe.steps) or index >= len(old.steps):
            break
        if recipe.steps[index].to_dict() != old.steps[index].to_dict():
            raise UserError(
                f"step {index + 1} ({old.steps[index].step_type}) of job #{job.id} has "
                "finished, and its saved result was made with the settings it had then; "
                "a resume may change only the steps that have not finished (from step "
                f"{len(finished) + 1}). Put step {index + 1} back as it was, or Re-run "
                "the job to start afresh in a new folder."
            )
        folder = _variant_folder(store, job, index)
        if folder is not None:
            variants.append(_reused_variant(job, index, old, *folder))
        first = index + 1
        seconds[index] = finished[index]
    if first >= len(recipe.steps):
        raise UserError(
            f"every step of job #{job.id} has finished; there is nothing to resume "
            "(add a step to the recipe, or Re-run the job)."
        )
    _check_unfinished_folders(job, recipe, output, first)
    summaries = {s.step_index: s.summary for s in store.finished_steps(job.id)}
    return ResumePlan(job, recipe, output, first, variants, seconds, summaries)


def _check_same_inputs(job: JobRecord, old: Recipe, new: Recipe) -> None:
    """The model and the data of a resumed job are the ones its finished steps used."""
    if new.model != old.model or new.resolve_path(new.model) != old.resolve_path(old.model):
        raise UserError(
            f"model: job #{job.id} started from {old.model}; a resume continues from its "
            "saved steps, so the model cannot change. Run the recipe as a new job instead."
        )
    if new.dataset != old.dataset:
        raise UserError(
            f"dataset: job #{job.id}'s finished steps were trained and measured on other "
            "data; a resume keeps the data as it was. Run the recipe as a new job instead."
        )


def _finished_steps(store: JobStore, job: JobRecord, recipe: Recipe) -> dict[int, float]:
    """0-based index → seconds of the steps finished in order from the first."""
    recorded = {s.step_index: s.seconds for s in store.finished_steps(job.id)}
    if not recorded and store.variants(job.id):
        recorded = _finished_from_variants(store, job, recipe)
    finished: dict[int, float] = {}
    for index in range(len(recipe.steps)):
        if index not in recorded:
            break
        finished[index] = recorded[index]
    return finished


def _finished_from_variants(store: JobStore, job: JobRecord, recipe: Recipe) -> dict[int, float]:
    """For jobs recorded before ``job_steps``: a saved variant marks its step finished,
    and the measuring steps before it (seconds unknown: NaN)."""
    saved = {v.step_index for v in store.variants(job.id) if v.kind == "model"}
    if not saved:
        return {}
    last = max(saved)
    return {
        i: float("nan")
        for i, step in enumerate(recipe.steps[: last + 1])
        if i in saved or step.step_type in MEASURING_STEPS
    }


def _variant_folder(store: JobStore, job: JobRecord, index: int) -> tuple[Path, int] | None:
    rows = [v for v in store.variants(job.id) if v.kind == "model" and v.step_index == index]
    if not rows:
        return None
    return Path(rows[0].path), rows[0].id


def _reused_variant(
    job: JobRecord, index: int, recipe: Recipe, path: Path, row_id: int
) -> ReusedVariant:
    step = recipe.steps[index]
    if not is_variant_folder(path):
        raise UserError(
            f"step {index + 1} ({step.step_type}) of job #{job.id} saved {path}, which is no "
            "longer there (or has lost its slimpajama.json), so the job cannot continue "
            "after it; Re-run the job to start afresh in a new folder."
        )
    record = VariantRecord.read(path)
    if record.job_id != job.id or record.step_index != index or record.step != step.to_dict():
        raise UserError(
            f"{path} no longer holds what step {index + 1} of job #{job.id} saved (its "
            "slimpajama.json names another job or step); Re-run the job to start afresh "
            "in a new folder."
        )
    return ReusedVariant(index, path, record, row_id)


def _check_unfinished_folders(job: JobRecord, recipe: Recipe, output: Path, first: int) -> None:
    """A folder an unfinished step will write is this job's own, or not there yet."""
    for index in range(first, len(recipe.steps)):
        step = recipe.steps[index]
        folder = output / f"{index + 1:02d}-{step.step_type}"
        if not folder.exists():
            continue
        owner = None
        if is_variant_folder(folder):
            try:
                owner = VariantRecord.read(folder).job_id
            except UserError:
                owner = None
        if owner != job.id:
            raise UserError(
                f"step {index + 1} of job #{job.id} would save into {folder}, which holds "
                "something this job did not save; move it away, or Re-run the job into a "
                "new folder."
            )


# --------------------------------------------------------------------------- re-run from a step


def rerun_steps(store: JobStore, job_id: int) -> list[int]:
    """The steps (0-based) a re-run of job ``job_id`` could start at, reusing the ones
    before: 1 up to its first unfinished step (or its last step), [] if none finished."""
    job = store.get_job(job_id)
    try:
        recipe = recorded_recipe(job)
    except UserError:
        return []
    finished = _finished_steps(store, job, recipe)
    return list(range(1, min(len(finished), len(recipe.steps) - 1) + 1))


def check_rerun_from(store: JobStore, job_id: int, first_step: int) -> None:
    """Raise unless a re-run of job ``job_id`` can start at ``first_step`` (0-based).

    Raises:
        UserError: the job did not finish the steps before it, or it is the first step.
    """
    allowed = rerun_steps(store, job_id)
    if first_step not in allowed:
        reach = f"step 2 to {allowed[-1] + 1}" if allowed else "no step (none had finished)"
        raise UserError(
            f"a re-run of job #{job_id} can start at {reach}, not at step {first_step + 1}: "
            "it reuses the steps the job finished before that one."
        )


def seed_rerun(
    store: JobStore, new_job: int, recipe: Recipe, old_job: int, first_step: int
) -> ResumePlan:
    """Start job ``new_job`` (a re-run of ``old_job`` into its own new folder) with the
    old job's steps before ``first_step`` as they were saved; hold its output lock.

    The old job's folders are only read. The last of its variants the new job starts
    from is copied into the new folder (same name, its record naming the new job), so
    the steps that follow add their figures to the copy, never to the earlier run's
    folder; earlier variants are referenced (the copy's ``parent`` names them). The
    new job's history gets the reused steps (finished, with their seconds and summary),
    the copy's variant row and a ``resumes`` entry naming the job it came from.

    Raises:
        UserError: the old job has not finished the steps before ``first_step``, a
            reused step's settings differ, or its folder no longer holds its record.
    """
    old = store.get_job(old_job)
    old_recipe = recorded_recipe(old)
    finished = _finished_steps(store, old, old_recipe)
    if not 1 <= first_step < len(recipe.steps) or first_step > len(finished):
        raise UserError(
            f"job #{old.id} finished steps 1–{len(finished)}; a re-run can start at step 2 "
            f"to {min(len(finished), len(recipe.steps) - 1) + 1}, not at step {first_step + 1}."
        )
    _check_same_inputs(old, old_recipe, recipe)
    variants: list[ReusedVariant] = []
    for index in range(first_step):
        if recipe.steps[index].to_dict() != old_recipe.steps[index].to_dict():
            raise UserError(
                f"step {index + 1} differs from the one job #{old.id} ran; a re-run reuses "
                "only steps that are unchanged."
            )
        folder = _variant_folder(store, old, index)
        if folder is not None:
            variants.append(_reused_variant(old, index, old_recipe, *folder))
    output = recipe.resolve_path(recipe.output)
    copied: list[ReusedVariant] = []
    if variants:
        last = variants[-1]
        target = output / last.path.name
        record = VariantRecord.read(last.path)
        record.job_id = new_job
        record.recipe = recipe.to_dict()  # the copy is the new job's (its folder, its run)
        with atomic_dir(target) as staging:
            shutil.copytree(last.path, staging, dirs_exist_ok=True, symlinks=True)
            record.write(staging)
        row = store.add_variant(new_job, last.index, "model", target, record.metrics)
        copied = [ReusedVariant(v.index, v.path, v.record, None) for v in variants[:-1]]
        copied.append(ReusedVariant(last.index, target, record, row))
    summaries = {s.step_index: s.summary for s in store.finished_steps(old.id)}
    for index in range(first_step):
        store.finish_step(
            new_job, index, recipe.steps[index].step_type, finished[index],
            summaries.get(index, {}),
        )  # fmt: skip
    store.note_reuse(new_job, from_job=old.id, from_step=first_step)
    job = store.get_job(new_job)
    seconds = {i: finished[i] for i in range(first_step)}
    return ResumePlan(
        job, recipe, output, first_step, copied, seconds, summaries,
        reused_from=Path(old.output) if old.output else None,
    )  # fmt: skip
