"""A job's overall progress and time left, weighted by what each step costs.

Each step gets an expected cost (:func:`~slimpajama_gui.core.plan.estimate.step_work`:
rows × epochs × model size, not an equal share of the bar), so a fine-tune that takes
nine tenths of a job fills nine tenths of the bar. The cost becomes seconds through the
speed measured in this job: the units per second of the steps that finished (and of the
current step while it reports progress). Once such a speed is measured, the fraction is
time-based (time spent / (time spent + time left)); before, it is the share of the
expected units done, and no time left is claimed.

The fraction never goes back: the time left can grow (a step runs slower than its
first batches said, or another program takes the CPU), and the bar then waits for the
job to catch up rather than moving backwards, which reads as work undone. The current
phase's own rate also takes over from the expected cost gradually (fully once
:data:`BLEND_SHARE` of the phase is done), so a few fast or slow first batches do not
throw the bar forwards.

``remaining_s`` is None until a speed has been measured ("estimating…"). It is
``measured`` when the current step's own rate gives its time left (it has reported
progress for :data:`MIN_MEASURE_S` and a :data:`MIN_MEASURE_SHARE` of its units) and
the steps after it, costed with this job's measured speed, are at most
:data:`MAX_PENDING_SHARE` of it; otherwise it is an estimate, to be shown as one.

Example:
    >>> progress = JobProgress(clock=time.monotonic)  # doctest: +SKIP
    >>> progress.plan(step_work(recipe.steps, ...))
    >>> progress.start_step(0); progress.update(0, 40, 400)
    >>> progress.snapshot()
    Snapshot(fraction=0.08, remaining_s=None, measured=False)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from slimpajama_gui.core.plan.estimate import StepWork

#: A step's own rate counts once it has run this long ...
MIN_MEASURE_S = 2.0
#: ... and done this share of its reported units.
MIN_MEASURE_SHARE = 0.03
#: Time left counts as measured while the steps not yet started are at most this share.
MAX_PENDING_SHARE = 0.25
#: The current phase's rate replaces the expected cost of its step in proportion to the
#: share of the phase done, fully from this share on.
BLEND_SHARE = 0.2
#: Until this job has measured a speed, fixed seconds are weighed at this rate
#: (forward-pass equivalents per second: MiniLM-L6's encoder on two busy CPU cores).
DEFAULT_RATE = 1.5e9


@dataclass(frozen=True)
class Snapshot:
    """Overall progress 0..1; seconds left (None: not measurable yet); whether measured."""

    fraction: float
    remaining_s: float | None
    measured: bool


@dataclass
class _Step:
    work: StepWork
    started: float | None = None
    seconds: float | None = None  # once finished (measured)
    #: The current phase of reported progress: when it began, done and total then.
    phase_start: float | None = None
    done: int = 0
    total: int = 0


@dataclass
class JobProgress:
    """The progress of one job; feed it the pipeline's events, read :meth:`snapshot`.

    Args:
        clock: seconds (monotonic); injectable for tests.
        prior_s: seconds the job ran in an earlier attempt (a resume's reused steps).
    """

    clock: Callable[[], float] = time.monotonic
    prior_s: float = 0.0
    _steps: list[_Step] = field(default_factory=list)
    _start: float = 0.0
    _current: int | None = None
    #: The largest fraction reported so far (the bar never moves back).
    _shown: float = 0.0

    def __post_init__(self) -> None:
        self._start = self.clock()

    def plan(self, work: list[StepWork], done: dict[int, float] | None = None) -> None:
        """The steps' expected costs; ``done`` maps steps finished before (a resume's
        reused ones) to their measured seconds."""
        self._steps = [_Step(w) for w in work]
        self._shown = 0.0
        for index, seconds in (done or {}).items():
            if 0 <= index < len(self._steps):
                self._steps[index].seconds = seconds if math.isfinite(seconds) else 0.0

    def start_step(self, index: int) -> None:
        if 0 <= index < len(self._steps):
            self._current = index
            step = self._steps[index]
            step.started = step.phase_start = self.clock()
            step.done = step.total = 0

    def update(self, index: int, done: int, total: int) -> None:
        """``done`` of ``total`` units of the current phase of step ``index``.

        A step may report several phases (a teacher's cache, then training); a new
        total or a count that goes back starts a new phase, measured afresh.
        """
        if index != self._current or total <= 0:
            return
        step = self._steps[index]
        # The first phase runs from the step's start (tokenizing the data is part of it).
        if (step.total and total != step.total) or done < step.done:
            step.phase_start = self.clock()
        step.done, step.total = min(done, total), total

    def end_step(self, index: int) -> None:
        if 0 <= index < len(self._steps):
            step = self._steps[index]
            start = step.started if step.started is not None else self.clock()
            step.seconds = self.clock() - start
            if self._current == index:
                self._current = None

    # ------------------------------------------------------------------ reading
    def _rate(self) -> float | None:
        """Units per second this job measured: finished steps, then the current one."""
        units = seconds = 0.0
        for step in self._steps:
            if step.seconds is not None and step.started is not None and step.work.units > 0:
                units += step.work.units
                # A fixed budget that ran short must not make the rest look instant.
                seconds += max(step.seconds - step.work.fixed_s, 0.25 * step.seconds, 1e-3)
        if seconds > 0:
            return units / seconds
        current = self._current_step()
        # A step costed at 0 units measures no speed (and would divide by 0 below).
        if current is not None and current.work.units > 0 and self._phase_measured(current):
            share = current.done / current.total
            elapsed = self.clock() - (current.phase_start or self.clock())
            # The phase is the step's work as far as we know (the share is of the phase).
            return current.work.units * share / max(elapsed, 1e-3)
        return None

    def _current_step(self) -> _Step | None:
        return self._steps[self._current] if self._current is not None else None

    def _phase_measured(self, step: _Step) -> bool:
        if step.total <= 0 or step.done <= 0 or step.phase_start is None:
            return False
        elapsed = self.clock() - step.phase_start
        return elapsed >= MIN_MEASURE_S and step.done / step.total >= MIN_MEASURE_SHARE

    def snapshot(self) -> Snapshot:
        """The fraction done, the seconds left and whether they are measured."""
        if not self._steps:
            return Snapshot(0.0, None, False)
        now = self.clock()
        rate = self._rate()
        if rate is None:
            self._shown = max(self._shown, self._unit_share())
            return Snapshot(self._shown, None, False)
        elapsed = self.prior_s + (now - self._start)
        current_left = pending = 0.0
        current_measured = False
        for index, step in enumerate(self._steps):
            if step.seconds is not None:
                continue
            expected = step.work.units / rate + step.work.fixed_s
            if index == self._current and step.started is not None:
                ran = now - step.started
                costed = max(expected - ran, 0.05 * expected)
                if self._phase_measured(step):
                    phase = now - (step.phase_start or now)
                    own = phase * (step.total - step.done) / step.done
                    weight = min(1.0, step.done / step.total / BLEND_SHARE)
                    current_left = weight * own + (1.0 - weight) * costed
                    current_measured = True
                else:
                    current_left = costed
            else:
                pending += expected
        left = current_left + pending
        # Measured: the current step's own rate gives most of it; the steps after it
        # (costed, not yet run) are at most MAX_PENDING_SHARE of what is left.
        measured = (current_measured and pending <= MAX_PENDING_SHARE * left) or left == 0.0
        fraction = elapsed / (elapsed + left) if elapsed + left > 0 else 1.0
        self._shown = max(self._shown, min(max(fraction, 0.0), 1.0))
        return Snapshot(self._shown, left, measured)

    def _unit_share(self) -> float:
        """Before any speed is measured: the share of the expected units done."""

        def units(step: _Step) -> float:
            return step.work.units + step.work.fixed_s * DEFAULT_RATE

        total = sum(units(s) for s in self._steps)
        if total <= 0:
            return 0.0
        done = sum(units(s) for s in self._steps if s.seconds is not None)
        current = self._current_step()
        if current is not None and current.total > 0:
            done += units(current) * current.done / current.total
        return min(done / total, 1.0)
