"""What a training loop shares with the thread that runs it: the stop request
(:class:`Control`), the loop's state (:class:`TrainState`) and the progress hooks
(:class:`Callbacks`, after ``transformers.TrainerCallback``).

Kept apart from :mod:`.train` because jobs, the search and the GUI's Cancel use a
:class:`Control` and callbacks without training anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from slimpajama_gui.core.techniques import distributed


class Control:
    """Carries a stop request from any thread into the loop (checked every step).

    It also tells the thread that asks for a stop what the job is doing when it cannot
    stop at once: code that runs a phase with no stop point inside (an ONNX export, a
    save that must finish or be discarded) wraps it in :meth:`uncancellable`, and
    :attr:`busy_with` names it until the phase ends.

    Example:
        >>> control = Control()
        >>> with control.uncancellable("exporting the model to ONNX in step 3 of 4 (export)"):
        ...     control.busy_with
        'exporting the model to ONNX in step 3 of 4 (export)'
        >>> control.busy_with is None
        True
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        # A tuple replaced whole, never changed in place: another thread reading it
        # sees one consistent value without a lock.
        self._busy: tuple[str, ...] = ()
        # Under torchrun a request is seen only once every rank agreed on it (agree()),
        # so all ranks leave a loop at the same batch and none waits in a collective.
        self._synced = False
        self._agreed = False

    @property
    def should_stop(self) -> bool:
        if self._synced:
            return self._agreed
        return self._agreed or self._stop.is_set()

    def request_stop(self) -> None:
        """Ask the job to stop (any thread; a signal handler may call it)."""
        self._stop.set()

    def sync_with_ranks(self, synced: bool = True) -> None:
        """Share stop requests with the other torchrun ranks at :meth:`agree` points
        (True), or take them at once again (False: this rank goes on alone)."""
        self._synced = synced

    def agree(self, *flags: bool | torch.Tensor) -> tuple[bool, ...]:
        """The stop decision, and ``flags`` (e.g. "the loss is not finite"), as every
        rank sees them: one all-reduce (max) that every rank calls at the same point.
        Alone, this process's own answers (a device tensor is read back here, once).

        Returns:
            ``(stop, *flags)`` as booleans.
        """
        if not self._synced:
            return (self.should_stop, *(bool(f) for f in flags))
        agreed = distributed.agree_max([self._stop.is_set(), *flags])
        self._agreed = self._agreed or agreed[0] > 0
        return (self._agreed, *(v > 0 for v in agreed[1:]))

    @property
    def busy_with(self) -> str | None:
        """The phase that cannot be stopped part-way running now (innermost), or None.

        Safe to read from any thread.
        """
        busy = self._busy
        return busy[-1] if busy else None

    @contextmanager
    def uncancellable(self, what: str) -> Iterator[None]:
        """Mark the body as a phase with no stop point; ``what`` names it for a person.

        ``what`` reads after "the job is ...": "saving 02-prune in step 2 of 3 (prune)".
        A stop requested meanwhile takes effect at the next stop point after the body.
        """
        outer = self._busy
        self._busy = (*outer, what)
        try:
            yield
        finally:
            self._busy = outer


@dataclass
class TrainState:
    """What the loop knows now; passed to every callback."""

    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    started_at: float = field(default_factory=time.monotonic)
    best_metric: float | None = None
    best_step: int | None = None
    last_loss: float | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0


class Callbacks:
    """No-op hooks; override the ones you need.

    ``on_step_end`` runs right after the optimizer step, so a callback may change the
    weights there (gradual pruning re-applies its masks in it).
    """

    def on_train_begin(self, state: TrainState) -> None: ...

    def on_step_end(self, state: TrainState) -> None: ...

    def on_log(self, state: TrainState, metrics: dict[str, float]) -> None: ...

    def on_evaluate(self, state: TrainState, metrics: dict[str, float]) -> None: ...

    def on_end(self, state: TrainState, status: str) -> None: ...


class CallbackList(Callbacks):
    """Several callbacks called in order (e.g. a pruning schedule and the progress bridge)."""

    def __init__(self, callbacks: Iterable[Callbacks]) -> None:
        self.callbacks = list(callbacks)

    def on_train_begin(self, state: TrainState) -> None:
        for cb in self.callbacks:
            cb.on_train_begin(state)

    def on_step_end(self, state: TrainState) -> None:
        for cb in self.callbacks:
            cb.on_step_end(state)

    def on_log(self, state: TrainState, metrics: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_log(state, metrics)

    def on_evaluate(self, state: TrainState, metrics: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_evaluate(state, metrics)

    def on_end(self, state: TrainState, status: str) -> None:
        for cb in self.callbacks:
            cb.on_end(state, status)
