"""The budgeted search: the smallest or fastest chain within N points of dev accuracy.

A ``search`` step (:class:`~slimpajama_gui.core.plan.search_step.Search`) asks Optuna's
multi-objective TPE sampler (seeded, with the accuracy budget as a constraint) for
chains of the app's own steps: a distilled student of some depth, a share of attention
heads and of FFN neurons pruned, vocabulary pruning, int8 in PyTorch or onnxruntime.
Each trial runs its chain through the ordinary step handlers on a copy of the starting
model, so every trial's variants are saved, recorded in the history and listed in
Compare like any other (``OUTPUT/NN-search/trial-007/01-distill`` ...).

Order: the first trials are the chains that train nothing (:func:`warm_start`), so a
best-so-far exists within minutes; then the sampler's own proposals (TPE's first six are
random draws from the seed).

Early stopping (the pruning rule): after each step of a trial, its dev accuracy is
known (every model-changing step measures it before saving); a trial more than
``budget_points + prune_margin_points`` below the starting model is stopped there,
since the later steps of a chain (pruning, quantizing) never win accuracy back. Optuna
is told the trial was pruned.

The promise: after every trial, the search's state (:data:`STATE_FILE`: settings, the
starting model's figures, every trial with its chain and figures, the Pareto set, the
best within budget) is written atomically into the search's folder. A Cancel, a stop
from the keyboard or the end of the time budget ends the running trial at its next
stop point and leaves that file, with the best model found (or, when no trial stayed
within budget, the closest one, said so), never nothing. When the search ends, the
best trial's model becomes the job's current model, so later steps (evaluate on test,
benchmark) measure it, and its folder is the job's result.

Example:
    >>> state = load_state(Path("out/02-search"))  # doctest: +SKIP
    >>> state["best"]["path"], state["best"]["within_budget"]
    ('out/02-search/trial-004/02-quantize', True)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slimpajama_gui.core.errors import UserError, error_sentence
from slimpajama_gui.core.jobs.context import HANDLERS, Cancelled, JobContext, accuracy, warn
from slimpajama_gui.core.jobs.search_space import (  # noqa: F401 - the search space, re-exported
    PRUNE_SHARES,
    QUANTIZE_CHOICES,
    chain_for,
    describe_chain,
    kept_layers,
    student_depths,
    suggest,
    warm_start,
)
from slimpajama_gui.core.plan.search_step import Search
from slimpajama_gui.core.plan.steps import Benchmark, Evaluate, Step
from slimpajama_gui.core.runtime.bench import BenchConfig, TorchRunner, benchmark, size_on_disk
from slimpajama_gui.core.storage.atomic import atomic_write_text
from slimpajama_gui.core.techniques.hooks import Control

if TYPE_CHECKING:
    from slimpajama_gui.core.jobs.pipeline import PipelineCallbacks

log = logging.getLogger(__name__)

#: The search's state in its folder, rewritten after every trial.
STATE_FILE = "search.json"
STATE_VERSION = 1
#: Metric keys of one finished trial (``on_eval`` and the history; the live Pareto chart).
TRIAL_PREFIX = "search/"
#: Shares of heads / FFN neurons a trial may remove.
#: Proposals in a row that repeat a finished chain before the space counts as exhausted.
MAX_REPEATS_IN_ROW = 25


def search_folder(output: Path, index: int) -> Path:
    """``OUTPUT/NN-search``: the trials' folders and :data:`STATE_FILE`."""
    return output / f"{index + 1:02d}-search"


def load_state(folder: Path | str) -> dict[str, Any]:
    """The state a search wrote in ``folder`` (``OUTPUT/NN-search``).

    Raises:
        UserError: no readable state there.
    """
    path = Path(folder) / STATE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(
            f"{path} could not be read as a search's state ({exc}); give the folder a "
            "search step wrote (OUTPUT/NN-search)."
        ) from None


def check_search_folder(folder: Path) -> None:
    """Refuse a search folder the app did not write (it would mix with the new trials).

    Raises:
        UserError: naming the folder and what to do.
    """
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise UserError(f"{folder} is not a folder the search wrote; move it or change the output.")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / STATE_FILE).is_file():
        raise UserError(
            f"{folder} already exists and was not written by a search (it has no {STATE_FILE}); "
            "move or rename it, or set the recipe's output to a new folder."
        )


# --------------------------------------------------------------------------- results


@dataclass
class TrialResult:
    """One trial: its chain, how it ended and what it measured."""

    number: int
    params: dict[str, Any]
    chain: str
    steps: list[dict[str, Any]]
    #: complete | pruned | failed | interrupted | repeat (a chain tried before)
    state: str = "running"
    accuracy: float | None = None  # dev accuracy, 0..1
    loss_points: float | None = None  # dev points below the starting model (< 0: better)
    latency_ms: float | None = None  # batch-1 p50 on CPU
    size_bytes: int | None = None
    path: str | None = None  # the trial's final variant folder
    variants: list[str] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""  # why it was pruned or failed

    def cost(self, objective: str) -> float | None:
        value = self.latency_ms if objective == "latency" else self.size_bytes
        return None if value is None else float(value)


def pareto_set(trials: list[TrialResult], objective: str) -> list[int]:
    """Numbers of the complete trials no other beats on both dev accuracy and cost."""
    done = [t for t in trials if t.state == "complete" and t.cost(objective) is not None]
    front = []
    for t in done:
        a, c = t.accuracy or 0.0, t.cost(objective) or 0.0
        dominated = any(
            (o.accuracy or 0.0) >= a and (o.cost(objective) or 0.0) <= c
            and ((o.accuracy or 0.0) > a or (o.cost(objective) or 0.0) < c)
            for o in done
        )  # fmt: skip
        if not dominated:
            front.append(t.number)
    return sorted(front, key=lambda n: next(t.cost(objective) for t in done if t.number == n))


def pick_best(
    trials: list[TrialResult], objective: str, budget_points: float
) -> tuple[TrialResult | None, bool]:
    """(best trial, within budget): the cheapest within the budget (ties: more accurate);
    when none is, the one that lost the fewest points. (None, False) without a finished one.
    """
    done = [t for t in trials if t.state == "complete" and t.cost(objective) is not None]
    within = [t for t in done if (t.loss_points or 0.0) <= budget_points + 1e-9]
    if within:
        return min(within, key=lambda t: (t.cost(objective), -(t.accuracy or 0.0))), True
    if done:
        return min(done, key=lambda t: (t.loss_points, t.cost(objective))), False
    return None, False


# --------------------------------------------------------------------------- a trial's context


class _TrialControl(Control):
    """The job's control, plus the search's deadline: a trial stops at either."""

    def __init__(self, job: Control, deadline: float) -> None:
        super().__init__()
        self.job, self.deadline = job, deadline

    @property
    def timed_out(self) -> bool:
        return time.monotonic() >= self.deadline

    @property
    def should_stop(self) -> bool:
        return self.job.should_stop or self._stop.is_set() or self.timed_out

    @property
    def busy_with(self) -> str | None:
        return self.job.busy_with

    def uncancellable(self, what: str) -> AbstractContextManager[None]:
        return self.job.uncancellable(what)


class _TrialCallbacks:
    """A trial's step events, told to the job as the search's: its messages (named by
    trial), its saved variants (so Compare lists them as they come) and the search's
    progress. A trial's training curves are not drawn: each trial's record has its figures,
    and the search's chart has one point per trial."""

    def __init__(self, job: PipelineCallbacks, index: int, number: int, tick: Callable[[], None]):
        self.job, self.index, self.number, self.tick = job, index, number, tick

    def on_message(self, text: str) -> None:
        self.job.on_message(f"Trial {self.number}: {text}")

    def on_warning(self, text: str) -> None:
        warn(self.job, f"Trial {self.number}: {text}")

    def on_variant(self, index: int, path: Path, record: dict[str, Any]) -> None:
        self.job.on_variant(self.index, path, record)

    def on_progress(self, index: int, done: int, total: int) -> None:
        self.tick()

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None  # on_log, on_eval, on_step_start...


class _TrialStore:
    """The job's history as a trial writes it: its variants are rows of the search step;
    the figures its steps log stay in its variant records (they would mix the job's curves)."""

    def __init__(self, store: Any, index: int) -> None:
        self._store, self._index = store, index

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def log_metrics(self, *args: Any, **kwargs: Any) -> None:
        return None

    def add_variant(self, job_id: int, step_index: int, kind: str, path: Any, metrics=None) -> int:
        return self._store.add_variant(job_id, self._index, kind, path, metrics)


#: JobContext fields a trial replaces, and that the best trial hands back to the job.
_MODEL_FIELDS = ("model", "tokenizer", "tokenizer_dir", "inputs", "variant", "record",
                 "variant_row", "torch_model", "onnx_parameters", "onnx_format")  # fmt: skip


# --------------------------------------------------------------------------- the search


class SearchRun:
    """One search over ``ctx``'s current model; :meth:`run` returns the step's summary."""

    def __init__(self, ctx: JobContext, index: int, step: Search) -> None:
        self.ctx, self.index, self.step = ctx, index, step
        self.folder = search_folder(ctx.output, index)
        self.layers = int(getattr(getattr(ctx.model, "config", None), "num_layers", 0) or 1)
        self.trials: list[TrialResult] = []
        self.status = "running"
        self.started = time.monotonic()
        self.deadline = self.started + step.time_budget_s
        self.baseline: dict[str, Any] = {}
        self.best_ctx: JobContext | None = None
        #: The starting model's sensitivity report (a sensitivity step before the search).
        self.report: Any = None
        self.best_number: int | None = None
        self._tick_lock = threading.Lock()
        self._last_tick = 0.0

    # ---------------------------------------------------------------- progress and state
    def _tick(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._tick_lock:
            if not force and now - self._last_tick < 0.5:
                return
            self._last_tick = now
        share = (now - self.started) / self.step.time_budget_s
        if self.step.max_trials:
            share = max(share, len(self.trials) / self.step.max_trials)
        self.ctx.callbacks.on_progress(self.index, int(1000 * min(share, 1.0)), 1000)

    def state(self) -> dict[str, Any]:
        """What :data:`STATE_FILE` holds (plain JSON values)."""
        s = self.step
        best, within = pick_best(self.trials, s.objective, s.budget_points)
        if best is not None:
            best_text = {"trial": best.number, "path": best.path, "within_budget": within,
                         "accuracy": best.accuracy, "loss_points": best.loss_points,
                         "latency_ms": best.latency_ms, "size_bytes": best.size_bytes,
                         "chain": best.chain}  # fmt: skip
        else:
            best_text = {"trial": None, "path": self.baseline.get("path"), "within_budget": True,
                         "accuracy": self.baseline.get("accuracy"), "loss_points": 0.0,
                         "latency_ms": self.baseline.get("latency_ms"),
                         "size_bytes": self.baseline.get("size_bytes"),
                         "chain": "starting model (no trial finished)"}  # fmt: skip
        return {
            "version": STATE_VERSION,
            "status": self.status,
            "job_id": self.ctx.job_id,
            "settings": s.to_dict(),
            "elapsed_s": round(time.monotonic() - self.started, 1),
            "baseline": self.baseline,
            "trials": [dataclasses.asdict(t) for t in self.trials],
            "pareto": pareto_set(self.trials, s.objective),
            "student_layers": (
                "the layers whose removal costs most, from the sensitivity report"
                if self.report is not None
                else "spread evenly, the last layer kept"
            ),  # fmt: skip
            "best": best_text,
            "sentence": self.sentence(),
        }

    def write_state(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.state(), indent=2, allow_nan=False, default=_plain)
        atomic_write_text(self.folder / STATE_FILE, text + "\n")

    def sentence(self) -> str:
        """How the search stands, for a person: what ended it and what it returns."""
        s = self.step
        best, within = pick_best(self.trials, s.objective, s.budget_points)
        done = sum(t.state == "complete" for t in self.trials)
        ended = {
            "running": "Searching",
            "done": "The search tried every chain it was allowed",
            "timed_out": "The search used its time budget",
            "stopped": "The search was stopped",
            "cancelled": "The search was cancelled",
        }[self.status]
        head = f"{ended}: {len(self.trials)} trials, {done} finished"
        if best is None:
            return f"{head}; no trial finished, so the starting model stays the result."
        cost = (f"{best.latency_ms:.2f} ms" if s.objective == "latency"
                else f"{(best.size_bytes or 0) / 1e6:.1f} MB")  # fmt: skip
        what = f"trial {best.number} ({best.chain}): {cost}, {best.loss_points:+.2f} dev points"
        if within:
            return f"{head}; the best within {s.budget_points:g} points is {what}, in {best.path}."
        return (
            f"{head}; no trial stayed within {s.budget_points:g} points, the closest is {what}, "
            f"in {best.path}."
        )

    # ---------------------------------------------------------------- measuring
    def _measure_baseline(self) -> None:
        ctx = self.ctx
        acc = accuracy(ctx)
        path = ctx.variant or ctx.source
        self.baseline = {"accuracy": acc, "path": str(path), "latency_ms": None,
                         "size_bytes": size_on_disk(path) if Path(path).is_dir() else None}  # fmt: skip
        if self.step.objective == "latency":
            self.baseline["latency_ms"] = self._latency(ctx, ctx.model, ctx.tokenizer)

    def _latency(self, ctx: JobContext, model: Any, tokenizer: Any) -> float:
        model.to("cpu")
        config = BenchConfig(threads=self.step.threads, sentences=self.step.bench_sentences,
                             repeats=None, auto_seconds=1.0,
                             max_length=ctx.inputs.fit_length(ctx.dataset.spec.max_length))  # fmt: skip
        result = benchmark(TorchRunner(model), tokenizer, ctx.split("eval").texts, config,
                           model=model, control=ctx.control)  # fmt: skip
        ctx.check_stop()
        model.to(ctx.device)
        return result.latency_p50_ms

    # ---------------------------------------------------------------- one trial
    def _child(self, number: int, control: _TrialControl) -> JobContext:
        ctx = self.ctx
        folder = self.folder / f"trial-{number:03d}"
        with ctx.uncancellable(f"copying the starting model for trial {number}"):
            model = copy.deepcopy(ctx.model)
        return dataclasses.replace(
            ctx,
            output=folder,
            model=model,
            callbacks=_TrialCallbacks(ctx.callbacks, self.index, number, self._tick),
            control=control,
            store=_TrialStore(ctx.store, self.index),
            where=f"trial {number} of the search in {ctx.where}" if ctx.where else "",
            scratch=ctx.scratch_dir(f"search-{self.index + 1:02d}-trial-{number:03d}"),
            variants=list(ctx.variants),
            variant=None,
            record=None,
            variant_row=None,
            _encoded=dict(ctx._encoded),
        )

    def _run_trial(self, result: TrialResult, chain: list[Step], control: _TrialControl) -> None:
        """Run ``chain`` and measure it; fills ``result`` (raises Cancelled when stopped)."""
        s, base = self.step, self.baseline["accuracy"]
        child = self._child(result.number, control)
        first_variant = len(child.variants)
        try:
            for i, sub in enumerate(chain):
                HANDLERS[sub.step_type](child, i, sub)
                result.variants = [str(p) for p in child.variants[first_variant:]]
                acc = (child.record.metrics.get("training") or {}).get("eval_accuracy")
                if acc is None or not math.isfinite(acc):
                    continue
                lost = 100.0 * (base - acc)
                if lost > s.budget_points + s.prune_margin_points:
                    result.state, result.accuracy, result.loss_points = "pruned", acc, lost
                    result.note = (
                        f"stopped after {sub.step_type} (step {i + 1} of {len(chain)}): "
                        f"{lost:.2f} dev points lost, more than the budget "
                        f"{s.budget_points:g} + margin {s.prune_margin_points:g}"
                    )
                    return
            n = len(chain)
            report = HANDLERS["evaluate"](child, n, Evaluate(split="eval"))
            result.accuracy = float(report["accuracy"])
            result.loss_points = 100.0 * (base - result.accuracy)
            assert child.variant is not None
            result.path = str(child.variant)
            if s.objective == "latency":
                bench = Benchmark(threads=s.threads, sentences=s.bench_sentences, warmup=5)
                figures = HANDLERS["benchmark"](child, n + 1, bench)
                result.latency_ms = float(figures["latency_p50_ms"])
                result.size_bytes = int(figures["size_bytes"] or size_on_disk(child.variant))
            else:
                result.size_bytes = size_on_disk(child.variant)
            result.state = "complete"
            best, _ = pick_best([*self.trials, result], s.objective, s.budget_points)
            if best is result:
                self.best_ctx, self.best_number = child, result.number
        finally:
            result.variants = [str(p) for p in child.variants[first_variant:]]

    # ---------------------------------------------------------------- the loop
    def run(self) -> dict[str, Any]:
        import optuna

        s, ctx = self.step, self.ctx
        if ctx.is_onnx:
            raise UserError(
                f"{ctx.where or 'the search step'}: the search needs a PyTorch model, but an "
                "earlier step made it ONNX; put the search before export and onnxruntime "
                "quantization (its trials quantize themselves)."
            )
        check_search_folder(self.folder)
        from slimpajama_gui.core.jobs.handlers.sensitivity import report_for_current_model

        self.report = report_for_current_model(ctx, self.index, self.step)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # The budget is a constraint (Trial.set_constraint): TPE prefers chains within it.
            sampler = optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=6, multivariate=True)
        study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
        for params in warm_start(s, self.layers):
            study.enqueue_trial(params)
        seen: dict[tuple, TrialResult] = {}
        repeats = 0
        ending: BaseException | None = None
        # Until measured, the starting model is known by its folder only; a stop while it
        # is measured still leaves a state that names it.
        self.baseline = {"accuracy": None, "path": str(ctx.variant or ctx.source),
                         "latency_ms": None, "size_bytes": None}  # fmt: skip
        try:
            self._measure_baseline()
            self.write_state()
            while True:
                if s.max_trials is not None and len(self.trials) >= s.max_trials:
                    self.status = "done"
                    break
                if time.monotonic() >= self.deadline:
                    self.status = "timed_out"
                    break
                ctx.check_stop()
                trial = study.ask()
                params = suggest(trial, s, self.layers)
                key = tuple(sorted(params.items()))
                if key in seen or not chain_for(params, s, self.layers, self.report):
                    repeats += 1
                    self._tell_repeat(study, trial, seen.get(key))
                    if repeats >= MAX_REPEATS_IN_ROW:
                        self.status = "done"
                        break
                    continue
                repeats = 0
                ending = self._one(study, trial, params)
                seen[key] = self.trials[-1]
                if isinstance(ending, _TimedOut):
                    ending = None
                    break
                if ending is not None:
                    break
        except Cancelled as exc:  # between trials
            self.status, ending = "cancelled", exc
        except KeyboardInterrupt as exc:
            self.status, ending = "stopped", exc
        finally:
            if self.status == "running":
                self.status = "stopped"
            self._finish()
        if ending is not None:
            raise ending
        return self.summary()

    def _tell_repeat(self, study: Any, trial: Any, earlier: TrialResult | None) -> None:
        import optuna

        if earlier is not None and earlier.state == "complete":
            trial.set_constraint("budget", (earlier.loss_points or 0) - self.step.budget_points)
            study.tell(trial, [earlier.loss_points, earlier.cost(self.step.objective)])
        else:  # the starting model itself, or a chain that failed or was pruned before
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)

    def _one(self, study: Any, trial: Any, params: dict[str, Any]) -> BaseException | None:
        """Run one trial; returns the exception that ends the search (Cancel, Ctrl+C)."""
        import optuna

        s = self.step
        number = len(self.trials) + 1
        chain = chain_for(params, s, self.layers, self.report)
        result = TrialResult(number=number, params=dict(params),
                             chain=describe_chain(params, self.layers),
                             steps=[c.to_dict() for c in chain])  # fmt: skip
        self.trials.append(result)
        self.ctx.callbacks.on_message(f"Search trial {number}: {result.chain}.")
        control = _TrialControl(self.ctx.control, self.deadline)
        started = time.monotonic()
        ending: BaseException | None = None
        try:
            self._run_trial(result, chain, control)
        except Cancelled as exc:
            result.state = "interrupted"
            if self.ctx.control.should_stop:
                self.status, ending = "cancelled", exc
                result.note = "cancelled while it ran"
            else:
                self.status = "timed_out"
                result.note = "the time budget ended while it ran"
        except KeyboardInterrupt as exc:
            result.state, result.note = "interrupted", "stopped from the keyboard while it ran"
            self.status, ending = "stopped", exc
        except UserError as exc:
            result.state, result.note = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - one broken chain must not end the search
            result.state = "failed"
            result.note = error_sentence(exc, f"Search trial {number}", logger=log)
        result.seconds = round(time.monotonic() - started, 1)
        if result.state == "complete":
            trial.set_constraint("budget", (result.loss_points or 0) - s.budget_points)
            study.tell(trial, [result.loss_points, result.cost(s.objective)])
        elif result.state == "pruned":
            trial.set_constraint("budget", (result.loss_points or 0) - s.budget_points)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        if result.state in ("failed", "pruned"):
            self.ctx.callbacks.on_message(f"Search trial {number} {result.state}: {result.note}.")
        self._report(result)
        self.write_state()
        if ending is None and self.status == "timed_out":
            return _TimedOut()
        return ending

    def _report(self, result: TrialResult) -> None:
        """The trial's point for the live Pareto chart, live and in the history."""
        s = self.step
        best, within = pick_best(self.trials, s.objective, s.budget_points)
        figures: dict[str, Any] = {
            "search/trial": result.number,
            "search/complete": 1.0 if result.state == "complete" else 0.0,
            "search/budget_points": s.budget_points,
            "search/baseline_accuracy": self.baseline.get("accuracy"),
            "search/best_trial": best.number if best is not None else math.nan,
            "search/best_within_budget": 1.0 if within else 0.0,
        }
        if result.accuracy is not None:
            figures["search/accuracy"] = result.accuracy
        cost = result.cost(s.objective)
        if cost is not None:
            key = "search/latency_ms" if s.objective == "latency" else "search/size_mb"
            figures[key] = cost if s.objective == "latency" else cost / 1e6
        base = self.baseline.get("latency_ms" if s.objective == "latency" else "size_bytes")
        if base is not None:
            figures["search/baseline_cost"] = base if s.objective == "latency" else base / 1e6
        self.ctx.store.log_metrics(self.ctx.job_id, self.index, "search", figures)
        self.ctx.callbacks.on_eval(self.index, figures)
        self._tick(force=True)

    def _finish(self) -> None:
        """Write the final state; the best trial's model becomes the job's current one."""
        ctx = self.ctx
        self.write_state()
        best, _ = pick_best(self.trials, self.step.objective, self.step.budget_points)
        # Every trial's variants are the job's; the best comes last: the job's result.
        for t in self.trials:
            for p in t.variants:
                ctx.variants.append(Path(p))
        if best is not None and best.path:
            ctx.variants[:] = [p for p in ctx.variants if str(p) != best.path] + [Path(best.path)]
            child = self.best_ctx if self.best_number == best.number else None
            if child is not None:
                for name in _MODEL_FIELDS:
                    setattr(ctx, name, getattr(child, name))
                ctx._encoded = child._encoded
        ctx.callbacks.on_message(self.sentence())

    def summary(self) -> dict[str, Any]:
        """The step's row of the job summary."""
        state = self.state()
        best = state["best"]
        row: dict[str, Any] = {
            "trials": len(self.trials),
            "finished": sum(t.state == "complete" for t in self.trials),
            "search_status": self.status,
            "best_trial": best["trial"],
            "best": best["path"],
            "within_budget": best["within_budget"],
            "accuracy": best["accuracy"],
            "size_bytes": best["size_bytes"],
        }
        if best["latency_ms"] is not None:
            row["latency_p50_ms"] = best["latency_ms"]
        return row


class _TimedOut(Exception):
    """Ends the loop after a trial the time budget cut short (not an error)."""


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def run_search(ctx: JobContext, index: int, step: Search) -> dict[str, Any]:
    """Run the search of step ``index``; its summary row (best trial, its figures).

    Raises:
        Cancelled: the job was cancelled (the state and best-so-far are written first).
        UserError: the model is ONNX already, or the search folder is not the app's.
    """
    return SearchRun(ctx, index, step).run()
