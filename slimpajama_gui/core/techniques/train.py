"""The one training loop: fine-tuning, recovery after pruning, and distillation.

Everything that trains goes through :func:`train`, so cancellation, NaN handling,
best-checkpoint keeping and progress events behave the same in every technique.
Callbacks follow ``transformers.TrainerCallback``: no-op hooks you override; a
:class:`Control` object carries the stop request in.

Example:
    >>> result = train(model, loader, TrainConfig(epochs=1), eval_fn=my_eval)  # doctest: +SKIP
    >>> result.status, result.best_metric
    ('done', 0.89)
"""

from __future__ import annotations

import copy
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.saving import non_finite_tensors

log = logging.getLogger(__name__)

Batch = Mapping[str, torch.Tensor]
#: ``loss_fn(model, batch) -> (loss, {"term": value, ...})``; distillation passes its own.
LossFn = Callable[[nn.Module, Batch], tuple[torch.Tensor, dict[str, float]]]
#: ``eval_fn(model, control) -> {"accuracy": ..., ...}``
EvalFn = Callable[[nn.Module, "Control"], dict[str, float]]


#: Caps every training loop (fine-tuning, distillation, recovery) at this many optimizer
#: steps when set to a positive integer: a smoke run of a whole recipe for tests and
#: ``benchmarks/presets_demo.py --quick``. Unset in normal use, and never set by the app;
#: a capped loop logs a warning, so a shortened run is never taken for the real one.
MAX_STEPS_ENV = "SLIMPAJAMA_MAX_TRAIN_STEPS"


def step_cap() -> int | None:
    """The step cap of :data:`MAX_STEPS_ENV`, or None when unset.

    Raises:
        UserError: the variable is set to something other than a positive integer.
    """
    raw = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not raw:
        return None
    try:
        cap = int(raw)
    except ValueError:
        cap = 0
    if cap <= 0:
        raise UserError(
            f"{MAX_STEPS_ENV}={raw!r}: must be a positive number of steps; unset it to train "
            "as the recipe says."
        )
    return cap


@dataclass
class TrainConfig:
    """How to train. Defaults suit fine-tuning a MiniLM-sized classifier."""

    epochs: float = 3.0
    learning_rate: float = 5e-5
    batch_size: int = 32
    warmup_ratio: float = 0.06  # fraction of steps spent ramping the LR up from 0
    weight_decay: float = 0.01  # not applied to biases and LayerNorm weights
    max_grad_norm: float = 1.0
    eval_every_steps: int = 0  # 0: evaluate at the end of every epoch
    max_steps: int | None = None  # caps the step count (quick runs, tests)
    keep_best: bool = True  # end with the weights of the best evaluation
    metric: str = "accuracy"  # what "best" means; higher is better
    seed: int = 0
    log_every_steps: int = 10
    device: str = "auto"  # "auto" picks CUDA when present, else CPU
    # Batches of rows of similar length (sorted within shuffled chunks of 50 batches,
    # batch order shuffled): with per-batch padding, far fewer pad tokens are computed.
    group_by_length: bool = True


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

    @property
    def should_stop(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        self._stop.set()

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


@dataclass
class TrainResult:
    status: str  # "done" | "cancelled"
    steps: int
    best_metric: float | None
    best_step: int | None
    final_metrics: dict[str, float]
    seconds: float
    examples_per_second: float


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; the model holds the last good weights."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(
            f"training stopped at step {step}: the loss became {value} (not a finite "
            "number). The model was rolled back to the last good weights. Lower the "
            "learning rate or check the data for broken labels."
        )
        self.step = step


class Diverged(NonFiniteLoss):
    """Training diverged without a NaN loss: the weights, or the model's outputs on a
    training batch, are no longer finite (X1). Nothing trained may be saved from it; the
    model holds the last weights that were checked sound."""

    def __init__(self, step: int, what: str, learning_rate: float) -> None:
        UserError.__init__(
            self,
            f"training diverged by optimizer step {step}: {what}, so nothing was saved "
            f"from it. Lower the learning rate (now {learning_rate:g}) and run it again.",
        )
        self.step = step


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was requested but no CUDA GPU is available; use 'cpu'.")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def cross_entropy_loss(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch.get("attention_mask"),
        token_type_ids=batch.get("token_type_ids"),
    )
    loss = nn.functional.cross_entropy(out.logits.float(), batch["labels"])
    return loss, {"loss": float(loss.detach())}


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "norm" in name.lower() else decay).append(
            p
        )
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _linear_warmup_decay(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _to(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def train(
    model: nn.Module,
    train_batches: Callable[[int], Iterable[Batch]],
    steps_per_epoch: int,
    config: TrainConfig,
    *,
    eval_fn: EvalFn | None = None,
    loss_fn: LossFn = cross_entropy_loss,
    callbacks: Callbacks | Iterable[Callbacks] | None = None,
    control: Control | None = None,
) -> TrainResult:
    """Train ``model`` in place.

    Args:
        train_batches: ``train_batches(epoch)`` yields the batches of one epoch (dicts
            of tensors with ``labels``); a new seeded order each epoch is the caller's.
        steps_per_epoch: batches per epoch, for the schedule and progress.
        eval_fn: evaluates the model; its ``config.metric`` decides the best weights.
        loss_fn: returns the loss and the named loss terms to log.
        callbacks: progress hooks (called on this thread).
        control: stop requests; checked before every step and inside evaluation.

    Returns:
        A :class:`TrainResult`; ``status`` is "cancelled" when stopped on request (the
        model then holds the best or the latest weights).

    Raises:
        NonFiniteLoss: the loss became NaN/inf; the model holds the last good weights.
        Diverged: (a NonFiniteLoss) the weights are not finite at a snapshot, or the
            weights or the last batch's logits are not finite at an evaluation or the end.
    """
    if callbacks is None:
        callbacks = Callbacks()
    elif not isinstance(callbacks, Callbacks):
        callbacks = CallbackList(callbacks)
    control = control or Control()
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    model.to(device)

    total = math.ceil(config.epochs * steps_per_epoch)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    cap = step_cap()
    if cap is not None and cap < total:
        log.warning("%s=%d caps this training at %d of %d steps", MAX_STEPS_ENV, cap, cap, total)
        total = cap
    if total <= 0:
        raise UserError("nothing to train: the epochs and max_steps give 0 steps; raise epochs.")
    optimizer = torch.optim.AdamW(
        _param_groups(model, config.weight_decay), lr=config.learning_rate
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _linear_warmup_decay(int(config.warmup_ratio * total), total)
    )
    # bf16 autocast on GPUs that have it; the CPU path stays fp32 (exact and reproducible).
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and torch.cuda.is_bf16_supported()
        else nullcontext()
    )
    state = TrainState(total_steps=total)
    eval_every = config.eval_every_steps or steps_per_epoch
    best_weights: dict[str, torch.Tensor] | None = None
    last_good = _snapshot(model)
    last_eval: dict[str, float] = {}
    examples = 0
    status = "done"
    window: dict[str, list[float]] = {}
    last_batch: Batch | None = None

    def check_diverged(batch: Batch | None) -> None:
        """Raise :class:`Diverged` if the weights, or the logits of ``batch`` (the last
        one trained on) under the current weights, are not finite: the update after
        the last loss can blow the model up while every loss seen was finite. (The
        loss function is not called: a distillation loss counts its teacher calls.)"""
        bad = non_finite_tensors(model)
        what = f"the weights contain inf/NaN (in {', '.join(bad[:3])})" if bad else None
        if what is None and batch is not None:
            was_training = model.training
            model.eval()
            with torch.no_grad(), autocast:
                logits = model(
                    input_ids=batch["input_ids"],
                    attention_mask=batch.get("attention_mask"),
                    token_type_ids=batch.get("token_type_ids"),
                ).logits
            model.train(was_training)
            if not bool(torch.isfinite(logits).all()):
                what = "the model's outputs (logits) on a training batch are inf/NaN"
        if what is not None:
            model.load_state_dict(last_good)  # as for a NaN loss: the last sound weights
            callbacks.on_end(state, "failed")
            raise Diverged(state.step, what, config.learning_rate)

    def evaluate() -> None:
        nonlocal best_weights, last_eval
        if eval_fn is None:
            return
        check_diverged(last_batch)
        model.eval()
        metrics = eval_fn(model, control)
        model.train()
        if control.should_stop:
            return
        last_eval = dict(metrics)
        score = metrics.get(config.metric)
        if score is not None and (state.best_metric is None or score > state.best_metric):
            state.best_metric, state.best_step = score, state.step
            if config.keep_best:
                best_weights = _snapshot(model)
        callbacks.on_evaluate(state, dict(metrics, step=state.step))

    callbacks.on_train_begin(state)
    model.train()
    epoch = 0
    try:
        while state.step < total and status == "done":
            for batch in train_batches(epoch):
                if control.should_stop:
                    status = "cancelled"
                    break
                batch = _to(batch, device)
                last_batch = batch
                with autocast:
                    loss, parts = loss_fn(model, batch)
                value = float(loss.detach())
                if not math.isfinite(value):
                    model.load_state_dict(last_good)
                    callbacks.on_end(state, "failed")
                    raise NonFiniteLoss(state.step + 1, value)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                state.step += 1
                state.epoch = state.step / steps_per_epoch
                state.last_loss = value
                examples += int(batch["labels"].shape[0])
                for key, v in parts.items():
                    window.setdefault(key, []).append(v)
                # A cheap rolling copy lets a NaN at step N roll back to step N-k weights.
                if state.step % max(1, config.log_every_steps) == 0:
                    check_diverged(None)  # a snapshot to roll back to must be sound
                    last_good = _snapshot(model)
                callbacks.on_step_end(state)
                if state.step % max(1, config.log_every_steps) == 0 or state.step == total:
                    logged = {k: sum(v) / len(v) for k, v in window.items()}
                    logged.update(
                        lr=scheduler.get_last_lr()[0],
                        grad_norm=float(grad_norm),
                        epoch=state.epoch,
                        examples_per_second=examples / max(state.elapsed, 1e-9),
                    )
                    window.clear()
                    callbacks.on_log(state, logged)
                if state.step % eval_every == 0 or state.step == total:
                    evaluate()
                    if control.should_stop:
                        status = "cancelled"
                        break
                if state.step >= total:
                    break
            epoch += 1
        if status == "done" and state.step > 0:
            check_diverged(last_batch)
    finally:
        model.eval()
    if best_weights is not None and config.keep_best:
        model.load_state_dict(best_weights)
    callbacks.on_end(state, status)
    return TrainResult(
        status=status,
        steps=state.step,
        best_metric=state.best_metric,
        best_step=state.best_step,
        final_metrics=last_eval,
        seconds=state.elapsed,
        examples_per_second=examples / max(state.elapsed, 1e-9),
    )


def clone_model(model: nn.Module) -> nn.Module:
    """A deep copy on the same device (the pipeline keeps each step's input intact)."""
    return copy.deepcopy(model)
