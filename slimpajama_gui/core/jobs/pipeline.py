"""Run a recipe: load the model and data, run the steps in order, save each variant.

The pipeline knows no screen. It reports through :class:`PipelineCallbacks` (no-op
hooks; the CLI prints, the GUI's bridge emits Qt signals) and reads stop requests from a
:class:`~slimpajama_gui.core.techniques.train.Control`: checked between steps and inside every
loop (training steps, evaluation and benchmark batches, importance-scoring batches,
vocabulary-counting chunks, quantization-guard candidates). The phases that have no
loop of ours to check in (loading the data, model and tokenizer, tokenizing a split,
exporting to ONNX, loading an ONNX session, saving a variant) run inside
``control.uncancellable(...)``, so whoever asks the job to stop can say what it waits
for; the stop is honoured right after them. Step types map to handler functions in
:data:`~slimpajama_gui.core.jobs.context.HANDLERS` (a registry, not an if/elif chain);
a new technique adds a module under ``core/jobs/handlers/`` and its config in
``core/plan/steps.py``. Saved variants are written through
:mod:`slimpajama_gui.core.jobs.saving`.

Example:
    >>> result = run(load_recipe("resources/recipes/demo.yaml"))  # doctest: +SKIP
    >>> result.status, result.final
    ('done', PosixPath('.../demo-output/01-finetune'))
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from slimpajama_gui.core import data as data_mod
from slimpajama_gui.core.errors import UserError, error_sentence
from slimpajama_gui.core.jobs import handlers as _handlers  # noqa: F401 - registers them
from slimpajama_gui.core.jobs.context import HANDLERS, ONNX_STEPS, Cancelled, JobContext, warn
from slimpajama_gui.core.jobs.progress import JobProgress
from slimpajama_gui.core.jobs.resume import (
    ResumePlan,
    ReusedVariant,
    check_rerun_from,
    plan_resume,
    seed_rerun,
)
from slimpajama_gui.core.jobs.saving import check_outputs
from slimpajama_gui.core.model.catalog import packaged_minilm_path
from slimpajama_gui.core.model.tokenizers import IMPORT_LOCK
from slimpajama_gui.core.plan.estimate import step_work
from slimpajama_gui.core.plan.preflight import first_untrained_use, source_problems
from slimpajama_gui.core.plan.recipe import Recipe, Step, dump_recipe, recipe_from_yaml
from slimpajama_gui.core.runtime import inputs as inputs_mod
from slimpajama_gui.core.runtime.loading import open_model
from slimpajama_gui.core.storage.history import JobRecord, JobStore
from slimpajama_gui.core.storage.leftovers import sweep_output
from slimpajama_gui.core.storage.locks import OutputLock
from slimpajama_gui.core.techniques import distributed
from slimpajama_gui.core.techniques.hooks import Control
from slimpajama_gui.core.techniques.quantize import int8_path
from slimpajama_gui.core.techniques.train import MAX_STEPS_ENV, NonFiniteLoss, pick_device, step_cap

log = logging.getLogger(__name__)


class PipelineCallbacks:
    """No-op hooks; every call happens on the thread that runs the pipeline."""

    def on_job_start(self, job_id: int, recipe: Recipe) -> None: ...

    def on_message(self, text: str) -> None:
        """A warning or note for the user (data warnings, a new classifier head...)."""

    def on_step_start(self, index: int, step: Step, count: int) -> None: ...

    def on_progress(self, index: int, done: int, total: int) -> None:
        """``done`` of ``total`` units of the current step (training steps, batches)."""

    def on_log(self, index: int, metrics: dict[str, float]) -> None:
        """Training metrics: loss (and each loss term), lr, grad_norm, step, epoch."""

    def on_eval(self, index: int, metrics: dict[str, Any]) -> None: ...

    def on_sensitivity(self, index: int, measurement: dict[str, Any]) -> None:
        """One sensitivity measurement (``Measurement.to_event``: kind, layer/head/name,
        loss_change, accuracy_change, kl, done, total), as the sensitivity step makes it."""

    def on_variant(self, index: int, path: Path, record: dict[str, Any]) -> None:
        """A variant was saved in ``path``; ``record`` is its ``slimpajama.json``."""

    def on_step_end(self, index: int, step: Step, summary: dict[str, Any]) -> None: ...

    def on_overall(self, fraction: float, remaining_s: float | None, measured: bool) -> None:
        """The whole job's progress, 0..1, weighted by each step's cost (core/jobs/progress.py).

        ``remaining_s`` is None until this job has measured its speed; ``measured`` says
        whether it comes from the current step's own rate (else it is an estimate).
        Sent at each step's start and end and at most twice a second in between.
        """

    def on_end(self, status: str, error: str | None) -> None: ...


@dataclass
class PipelineResult:
    job_id: int
    status: str  # done | failed | cancelled
    error: str | None = None
    failed_step: str | None = None
    variants: list[Path] = field(default_factory=list)
    #: one row per step: {"step": "finetune", "accuracy": ..., "p50_ms": ...}
    summary: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> Path | None:
        return self.variants[-1] if self.variants else None


# --------------------------------------------------------------------------- running


def recipe_for_rerun(job: JobRecord, *, taken: Iterable[Path | str] = ()) -> Recipe:
    """The recipe of a recorded job, to run again into a new output folder.

    Relative paths are read from the recipe's folder (jobs recorded before the history
    kept it resolve against the working folder). The output becomes a sibling of the
    job's folder named after it and the run (``out`` → ``out-run2``, ``out-run3``, …):
    the first that does not exist and is not in ``taken``, the outputs of other jobs
    (recorded or queued), so a re-run never replaces what an earlier run saved.

    Raises:
        UserError: the recorded YAML no longer loads (named by the job's number).
    """
    base = Path(job.recipe_dir) if job.recipe_dir else None
    recipe = recipe_from_yaml(job.recipe_yaml, f"the recipe of job #{job.id}", base_dir=base)
    first = Path(job.output) if job.output else recipe.resolve_path(recipe.output)
    stem = RUN_SUFFIX.sub("", first.name)  # a re-run of a re-run is the next run of the job
    busy = {Path(p).absolute() for p in taken}
    run_number = 2
    while True:
        candidate = (first.parent / f"{stem}-run{run_number}").absolute()
        if not candidate.exists() and candidate not in busy:
            break
        run_number += 1
    recipe.output = str(candidate)
    return recipe


#: The ``-runN`` a re-run adds to its job's output folder name.
RUN_SUFFIX = re.compile(r"-run\d+$")


def resolve_model_path(recipe: Recipe) -> Path:
    return (
        packaged_minilm_path() if recipe.uses_packaged_model else recipe.resolve_path(recipe.model)
    )


def run(
    recipe: Recipe,
    callbacks: PipelineCallbacks | None = None,
    control: Control | None = None,
    *,
    store: JobStore | None = None,
    device: str | None = None,
    resume: ResumePlan | None = None,
    rerun_from: tuple[int, int] | None = None,
) -> PipelineResult:
    """Run every step of ``recipe`` and record the job; never raises for a failed job.

    Args:
        resume: continue that job (:func:`~slimpajama_gui.core.jobs.resume.plan_resume`)
            instead of starting a new one: its finished steps are skipped, their
            folders reused unchanged, and ``recipe`` (the plan's) runs from
            ``resume.first_step`` in the job's own output folder and history row.
        rerun_from: (job id, 0-based step): a new job (``recipe`` is its re-run recipe,
            saving into a new folder) that takes the steps before that step from that
            job's saved variants (:func:`~slimpajama_gui.core.jobs.resume.seed_rerun`)
            and runs the rest.

    Returns:
        The job's outcome. ``status`` is "failed" with a sentence in ``error`` (and the
        step in ``failed_step``) when something went wrong; earlier variants stay.

    Raises:
        UserError: only for a ``resume`` that is no longer possible (checked again
            under the output folder's lock; the job's row is left as it was), or a
            ``rerun_from`` step the earlier job had not reached (no job is created).
    """
    callbacks = callbacks or PipelineCallbacks()
    control = control or Control()
    group = distributed.current()
    main = group is None or group.is_main
    if group is not None:
        if resume is not None or rerun_from is not None:
            raise UserError(
                "resuming or re-running a job takes one process; run it without torchrun "
                "(slimpajama resume / rerun), or start the recipe anew under torchrun."
            )
        control.sync_with_ranks(True)
    own_store = store is None
    private = None
    if not main:  # its history rows are rank 0's to write; this store is thrown away
        private = Path(tempfile.mkdtemp(prefix="slimpajama-rank-"))
        store = JobStore(private / "history.sqlite3")
    store = store or JobStore()
    started = time.monotonic()
    recipe.validate()
    output = recipe.resolve_path(recipe.output)
    # The recipe's folder goes with it, so a Re-run from another working folder (or a
    # later start of the app) reads the same files.
    base = (recipe.base_dir or Path.cwd()).absolute()
    lock = None
    if resume is not None:
        job_id = resume.job_id
        lock = OutputLock(output, job_id=job_id).acquire()
        try:
            # Planned again under the lock: nothing can change the folder from here on.
            resume = plan_resume(store, job_id, recipe)
            store.begin_resume(job_id, resume.first_step, recipe_yaml=dump_recipe(recipe),
                               recipe_dir=base)  # fmt: skip
        except BaseException:
            lock.release()
            if own_store:
                store.close()
            raise
    else:
        if rerun_from is not None:
            check_rerun_from(store, *rerun_from)
        job_id = store.create_job(recipe.name, dump_recipe(recipe), str(output), recipe_dir=base)
    result = PipelineResult(job_id=job_id, status="running")
    current: str | None = None
    threads_before = torch.get_num_threads()
    tracker = _Reporting(callbacks, JobProgress(), store, job_id)
    callbacks = tracker
    lockstep = _Lockstep(control, recipe.steps, group)
    if lock is not None:
        held = _held(lock)
    elif main:
        held = OutputLock(output, job_id=job_id)
    else:  # rank 0 holds the output folder for the whole torchrun job
        held = contextlib.nullcontext()
    try:
        with held:
            # What a job killed in this folder left behind (only a lock holder writes it).
            if main:
                sweep_output(output)
            store.mark_running(job_id)
            if rerun_from is not None:
                current = "taking the steps of the earlier job"
                resume = seed_rerun(store, job_id, recipe, *rerun_from)
            first = resume.first_step if resume is not None else 0
            if resume is not None:  # the reused steps' time counts as done
                tracker.progress.prior_s = sum(
                    v for v in resume.seconds.values() if math.isfinite(v)
                )
                # The job's whole summary: reused steps as the history has them.
                result.summary = [
                    {"step": recipe.steps[i].step_type, **resume.summaries.get(i, {}),
                     "reused": True}
                    for i in resume.reused
                ]  # fmt: skip
            callbacks.on_job_start(job_id, recipe)
            if resume is not None:
                source = f" of job #{rerun_from[0]}" if rerun_from is not None else ""
                callbacks.on_message(f"Job #{job_id} {resume.describe()}{source}.")
            # Valid, almost surely a slip: said as a warning, not refused.
            for text in recipe.warnings(first):
                warn(callbacks, text)
            cap = step_cap()
            if cap is not None:  # a smoke run: its figures are not the recipe's
                callbacks.on_message(
                    f"{MAX_STEPS_ENV}={cap}: every training loop of this job stops after "
                    f"{cap} optimizer steps, whatever the recipe says; its accuracies are "
                    "those of a smoke run."
                )
            current = "loading the model and data"
            ctx = _prepare(recipe, job_id, output, callbacks, control, store, device, resume)
            ctx.writes = main
            current = "checking the output folder"
            # O1: never replace what the app did not write (a resume reuses earlier steps).
            if main:
                check_outputs(ctx, recipe.steps, resume.first_step if resume is not None else 0)
            tracker.plan(ctx, resume.seconds if resume is not None else {})
            lockstep.point(ok=True)  # every rank loaded the same model and data
            for index, step in enumerate(recipe.steps):
                if index < first:
                    continue  # finished in an earlier attempt; its folder is reused
                if not main and index > lockstep.last_shared:
                    break  # rank 0 alone runs what follows the last training step
                ctx.check_stop()
                current = f"step {index + 1} ({step.step_type})"
                ctx.where = f"step {index + 1} of {len(recipe.steps)} ({step.step_type})"
                callbacks.on_step_start(index, step, len(recipe.steps))
                if ctx.is_onnx and step.step_type not in ONNX_STEPS:
                    raise UserError(
                        f"step {index + 1} '{step.step_type}' needs a PyTorch model, but an "
                        "earlier step turned the model into ONNX; move export and "
                        "onnxruntime quantization to the end of the recipe."
                    )
                step_started = time.monotonic()
                if main or step.step_type not in ONNX_STEPS:
                    summary = HANDLERS[step.step_type](ctx, index, step)
                else:  # measuring changes nothing: rank 0 measures, the others wait
                    summary = {}
                summary["seconds"] = time.monotonic() - step_started
                result.summary.append({"step": step.step_type, **summary})
                store.finish_step(job_id, index, step.step_type, summary["seconds"], summary)
                callbacks.on_step_end(index, step, summary)
                if index <= lockstep.last_shared:
                    lockstep.point(ok=True)  # rank 0 saved this step's variant
            result.status = "done"
    except Cancelled:
        result.status = "cancelled"
        result.error = f"cancelled during {current}" if current else "cancelled"
    except KeyboardInterrupt:
        result.status, result.error = "cancelled", "interrupted from the keyboard"
        raise
    except NonFiniteLoss as exc:
        result.status, result.error, result.failed_step = "failed", str(exc), current
    except UserError as exc:
        result.status, result.error, result.failed_step = "failed", str(exc), current
    except Exception as exc:  # noqa: BLE001 - a bug must still end the job as "failed"
        result.status, result.failed_step = "failed", current
        # The one path from an exception to a sentence (core/errors.py): a full disk is
        # said as such; a bug is logged with its traceback and the sentence names the log.
        result.error = error_sentence(exc, "The job", logger=log)
    finally:
        # A rank that leaves early still passes every agreement point (saying it
        # failed), so the others learn it there instead of waiting in a collective.
        lockstep.drain()
        torch.set_num_threads(threads_before)
        result.seconds = time.monotonic() - started
        if result.status == "running":  # an exception we re-raise (KeyboardInterrupt)
            result.status = "cancelled"
        if "ctx" in locals():
            result.variants = list(ctx.variants)
            if ctx.scratch is not None:
                shutil.rmtree(ctx.scratch, ignore_errors=True)
        kept = store.finish(
            job_id, result.status, error=result.error, failed_step=result.failed_step
        )
        if kept is not None:  # H1: the history stayed busy; the outcome still reaches the user
            callbacks.on_message(
                f"The job history {store.path} could not be written; this job's outcome "
                f"({result.status}) and records are kept in {kept} and will be added to the "
                "history at the next start."
            )
        callbacks.on_end(result.status, result.error)
        if own_store or private is not None:
            store.close()
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
    return result


#: Steps that only rank 0 runs under torchrun when no training step follows them:
#: they measure, quantize or export, and nothing after them trains.
MAIN_ONLY_STEPS = ONNX_STEPS | {"quantize", "export"}


class PeerFailed(UserError):
    """Another torchrun process of the job failed or stopped; this one stops too."""

    def __init__(self) -> None:
        super().__init__(
            "another process of this torchrun job failed or stopped, so this one stopped "
            "too; torchrun's output shows each process's own message."
        )


class _Lockstep:
    """The points where every torchrun rank agrees that all went well so far.

    Every rank passes the same points in the same order: after loading, then after
    each step up to the last one that is not a measuring, quantizing or exporting step
    (:attr:`last_shared`; all ranks run those, rank 0 alone the rest). At each point
    one all-reduce shares "I failed" and stop requests; a rank that leaves early
    passes its remaining points in :meth:`drain`, failed, so no rank waits forever.
    Alone (no torchrun) every call does nothing.
    """

    def __init__(self, control: Control, steps: list[Step], group) -> None:
        self.control, self.group = control, group
        shared = [i for i, s in enumerate(steps) if s.step_type not in MAIN_ONLY_STEPS]
        self.last_shared = shared[-1] if shared else -1
        self.left = 0 if group is None else 2 + self.last_shared

    def point(self, ok: bool) -> None:
        if self.left <= 0:
            return
        self.left -= 1
        stop, failed = self.control.agree(not ok)
        if self.left == 0:
            self.control.sync_with_ranks(False)  # from here rank 0 goes on alone
        if ok and failed:
            raise PeerFailed
        if ok and stop:
            raise Cancelled

    def drain(self) -> None:
        while self.left > 0:
            self.point(ok=False)


class _Reporting:
    """The caller's callbacks, with the job's weighted progress kept on the way through.

    Every event is passed on unchanged; step starts, ends and progress also move the
    :class:`JobProgress`, whose snapshot goes out as ``on_overall`` and into the history.
    """

    #: Seconds between two ``on_overall`` calls (and history writes) inside a step.
    EVERY_S = 0.5

    def __init__(
        self, callbacks: PipelineCallbacks, progress: JobProgress, store: JobStore, job_id: int
    ) -> None:
        self._callbacks, self.progress = callbacks, progress
        self._store, self._job_id = store, job_id
        self._sent = -math.inf
        self._stored = -math.inf

    def __getattr__(self, name: str) -> Any:
        return getattr(self._callbacks, name)

    def plan(self, ctx: JobContext, done: dict[int, float]) -> None:
        data = ctx.dataset
        work = step_work(
            ctx.recipe.steps,
            parameters=_compute_parameters(ctx),
            layers=int(getattr(getattr(ctx.model, "config", None), "num_layers", 0) or 1),
            train_rows=len(data.train.labels),
            eval_rows=len(data.eval.labels),
            test_rows=len(data.test.labels) if data.test is not None else 0,
        )
        self.progress.plan(work, done)
        self._report(force=True)

    def on_step_start(self, index: int, step: Step, count: int) -> None:
        self.progress.start_step(index)
        self._callbacks.on_step_start(index, step, count)
        self._report(force=True)

    def on_progress(self, index: int, done: int, total: int) -> None:
        self.progress.update(index, done, total)
        self._callbacks.on_progress(index, done, total)
        self._report()

    def on_step_end(self, index: int, step: Step, summary: dict[str, Any]) -> None:
        self.progress.end_step(index)
        self._callbacks.on_step_end(index, step, summary)
        self._report(force=True)

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._sent < self.EVERY_S:
            return
        self._sent = now
        snap = self.progress.snapshot()
        # Callbacks written before this hook (duck-typed ones) simply do not get it.
        hook = getattr(self._callbacks, "on_overall", None)
        if hook is not None:
            hook(snap.fraction, snap.remaining_s, snap.measured)
        if force or now - self._stored >= 1.0:  # the history needs no more than 1 write/s
            self._stored = now
            self._store.set_progress(self._job_id, snap.fraction)


def _compute_parameters(ctx: JobContext) -> int:
    """Parameters a forward pass computes with (the embedding tables are lookups)."""
    named = getattr(ctx.model, "named_parameters", None)
    if named is None:  # an ONNX model
        return ctx.onnx_parameters or 1
    return sum(p.numel() for name, p in named() if "embed" not in name) or 1


@contextlib.contextmanager
def _held(lock: OutputLock) -> Iterator[OutputLock]:
    """A lock taken already (a resume plans under it), released on leaving."""
    try:
        yield lock
    finally:
        lock.release()


def _prepare(
    recipe: Recipe,
    job_id: int,
    output: Path,
    callbacks: PipelineCallbacks,
    control: Control,
    store: JobStore,
    device: str | None,
    resume: ResumePlan | None = None,
) -> JobContext:
    int8_path.check_setting()  # a mistyped override fails before any step runs
    with IMPORT_LOCK:  # a start-up warm-up still importing: wait for it, never race it
        pass
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    # Reading a file and a model has no stop point; the stop is honoured in between.
    if control.should_stop:
        raise Cancelled
    spec = data_mod.DatasetSpec.from_dict(recipe.dataset)
    with control.uncancellable("loading the data"):
        dataset = data_mod.load_dataset(spec, base_dir=recipe.base_dir)
    for warning in dataset.warnings:
        callbacks.on_message(warning)
    if control.should_stop:
        raise Cancelled
    source = resolve_model_path(recipe)
    reused = resume.variants[-1] if resume is not None and resume.variants else None
    remaining = recipe.steps[resume.first_step :] if resume is not None else recipe.steps
    with control.uncancellable("loading the model"):
        # A resume starts from the last finished step's variant, read as saved.
        handle = open_model(reused.path if reused is not None else source)
        problems = source_problems(handle.info, remaining, dataset.label_names)
        if problems:  # before any step, not as an internal error in step 1
            raise UserError(problems[0])
        # A trained head's rows are its classes: the data is numbered as the head is.
        dataset, note = inputs_mod.match_label_order(
            dataset, inputs_mod.head_label_names(handle.info.path), handle.info.name
        )
        if note:
            callbacks.on_message(note)
        id2label = dict(enumerate(dataset.label_names))
        model = handle.load_model(num_labels=dataset.num_labels, id2label=id2label)
    report = getattr(model, "load_report", None)
    if report is not None and report.new_keys:
        callbacks.on_message(
            f"{handle.info.name} gets a new {dataset.num_labels}-class classifier head "
            "(randomly initialised); fine-tune before trusting its predictions."
        )
    with control.uncancellable("loading the tokenizer"):
        tokenizer = handle.load_tokenizer()
    # Tokens, segment ids, positions and labels the model cannot represent: all refused
    # (or fitted, as transformers fits them) here, before any step writes anything.
    inputs, notes = inputs_mod.check_job_inputs(
        model,
        tokenizer,
        dataset,
        name=handle.info.name,
        max_length=spec.max_length,
        first_label_step=first_untrained_use(remaining),
    )
    for note in notes:
        callbacks.on_message(note)
    run_device = pick_device(device or recipe.device)
    model.to(run_device)
    ctx = JobContext(
        recipe=recipe,
        job_id=job_id,
        source=handle.info.path,
        tokenizer_dir=handle.info.path,
        output=output,
        model=model,
        tokenizer=tokenizer,
        dataset=dataset,
        device=run_device,
        callbacks=callbacks,
        control=control,
        store=store,
        inputs=inputs,
        model_name=handle.info.name,
    )
    if reused is not None:
        _continue_from(ctx, resume, reused, control)
    return ctx


def _continue_from(
    ctx: JobContext, resume: ResumePlan, reused: ReusedVariant, control: Control
) -> None:
    """Make ``ctx`` what the finished steps left: their variants, the last one current."""
    record = reused.record
    if record.source_model:
        ctx.source = Path(record.source_model)
    ctx.variants = [v.path for v in resume.variants]
    ctx.variant, ctx.record, ctx.variant_row = reused.path, record, reused.row_id
    if record.onnx is not None:
        # An ONNX variant runs in onnxruntime; a PyTorch benchmark times the model it
        # was exported from, as in the first attempt.
        ctx.onnx_format = record.weights_format
        ctx.onnx_parameters = record.parameters
        parent = Path(record.parent) if record.parent else ctx.source
        with control.uncancellable("loading the model the ONNX variant was exported from"):
            ctx.torch_model = open_model(parent).load_model(
                num_labels=ctx.dataset.num_labels, id2label=dict(enumerate(ctx.dataset.label_names))
            )
