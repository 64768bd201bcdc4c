"""The one training loop: fine-tuning, recovery after pruning, and distillation.

Everything that trains goes through :func:`train`, so cancellation, NaN handling,
best-checkpoint keeping and progress events behave the same in every technique.
Its hooks (:class:`~.hooks.Callbacks`, after ``transformers.TrainerCallback``) and the
stop request (:class:`~.hooks.Control`) live in :mod:`.hooks`.

On a GPU the loop trains under bf16 autocast where the GPU has it, copies batches from
pinned memory one batch ahead, and reads losses back to the host only every
``log_every_steps`` steps. Under torchrun (:mod:`.distributed`) it wraps the model in
``DistributedDataParallel``; the caller passes each rank its shard of every global
batch, and logged losses, evaluation counts and stop requests are agreed across ranks.

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
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.saving import non_finite_tensors
from slimpajama_gui.core.techniques import distributed
from slimpajama_gui.core.techniques.hooks import CallbackList, Callbacks, Control, TrainState

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
    #: Steps between read-backs of the loss's finiteness and of the stop decision
    #: shared across torchrun ranks; 0: every step on the CPU, log_every_steps on a GPU.
    check_every_steps: int = 0
    # Batches of rows of similar length (sorted within shuffled chunks of 50 batches,
    # batch order shuffled): with per-batch padding, far fewer pad tokens are computed.
    group_by_length: bool = True
    #: Exponential moving average (EMA) of the weights; 0 turns it off. After every
    #: optimizer step the average moves ``1 - d`` of the way to the new weights, with
    #: ``d = min(ema_decay, (1 + n) / (10 + n))`` after ``n`` updates (the warm-up of
    #: TensorFlow's ``ExponentialMovingAverage(num_updates=...)``, so that a short run's
    #: average is not stuck near the first weights). Evaluation, the best checkpoint and
    #: the trained model are then the average's (Polyak & Juditsky 1992).
    ema_decay: float = 0.0


@dataclass
class TrainResult:
    status: str  # "done" | "cancelled"
    steps: int
    best_metric: float | None
    best_step: int | None
    final_metrics: dict[str, float]
    seconds: float
    examples_per_second: float  # over every rank under torchrun
    #: Where it trained: "cpu", "cuda:0"; with precision "fp32" or "bf16 autocast" and
    #: the number of torchrun processes (1 alone).
    device: str = "cpu"
    precision: str = "fp32"
    processes: int = 1

    def trained_on(self) -> dict[str, object]:
        """What a variant's record says about where it was trained."""
        out: dict[str, object] = {"device": self.device, "precision": self.precision}
        if self.device.startswith("cuda"):
            import torch

            out["gpu"] = torch.cuda.get_device_name(torch.device(self.device))
        if self.processes > 1:
            out["processes"] = self.processes
        return out


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
    """The device a recipe's ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) means here.

    ``auto`` is the first CUDA GPU when PyTorch sees one, else the CPU. Under torchrun
    each rank takes its own (``cuda:LOCAL_RANK``, or the CPU on gloo).

    Raises:
        UserError: CUDA asked for where there is none (or not that many GPUs), naming
            the ``device`` field and what to set instead.
    """
    ranked = distributed.device(requested)
    if ranked is not None:
        return ranked
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                f"device: {requested} asks for a CUDA GPU, but PyTorch finds none on this "
                "machine (no NVIDIA GPU or driver, or a CPU-only build of PyTorch); set "
                "'device: auto' or 'device: cpu' in the recipe (Device on the wizard's "
                "Settings page), or run with --device cpu."
            )
        index = int(requested[5:]) if requested[5:].isdigit() else 0
        if index >= torch.cuda.device_count():
            raise UserError(
                f"device: {requested} names GPU {index}, but this machine has "
                f"{torch.cuda.device_count()} (numbered from 0); set 'device: cuda' for "
                "the first one."
            )
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
    # A tensor, not a float: on a GPU, reading it back every step would stall the loop.
    return loss, {"loss": loss.detach()}


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


#: Batch entries that stay on the CPU: row numbers are bookkeeping, not model input.
_HOST_KEYS = frozenset({"index"})


def _on_device(
    batches: Iterable[Batch], device: torch.device
) -> Iterator[tuple[dict[str, torch.Tensor], float | None, int]]:
    """``(batch on device, loss weight, rows)`` for each batch.

    The shard entries (:func:`.distributed.shard_batch`) are taken out on the host, so
    reading them never waits for the GPU. On CUDA each batch is copied from pinned
    memory without blocking, one batch ahead, so the copy overlaps the step before it.
    """
    cuda = device.type == "cuda"

    def move(batch: Batch) -> tuple[dict[str, torch.Tensor], float | None, int]:
        batch = dict(batch)
        weight = batch.pop(distributed.LOSS_WEIGHT, None)
        rows = batch.pop(distributed.ROWS, None)
        n = int(rows) if rows is not None else int(batch["labels"].shape[0])
        moved = {}
        for k, v in batch.items():
            if k in _HOST_KEYS or v.device == device:
                moved[k] = v
            elif cuda:
                moved[k] = v.pin_memory().to(device, non_blocking=True)
            else:
                moved[k] = v.to(device)
        return moved, (float(weight) if weight is not None else None), n

    if not cuda:
        for batch in batches:
            yield move(batch)
        return
    ahead = None
    for batch in batches:
        nxt = move(batch)
        if ahead is not None:
            yield ahead
        ahead = nxt
    if ahead is not None:
        yield ahead


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    # On a GPU the copy stays there: a copy to the host every few steps would stall it.
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _ema_update(decay: float) -> Callable[[list, list, torch.Tensor], None]:
    """``AveragedModel``'s ``multi_avg_fn``: EMA with the warm-up of
    :attr:`TrainConfig.ema_decay`. torch's ``get_ema_multi_avg_fn`` has a fixed decay,
    which keeps a run of a few hundred steps at its first weights."""

    @torch.no_grad()
    def update(averaged: list, current: list, n_averaged: torch.Tensor) -> None:
        n = int(n_averaged)
        d = min(decay, (1 + n) / (10 + n))
        torch._foreach_lerp_(averaged, current, 1.0 - d)

    return update


def _wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in PyTorch's DistributedDataParallel (gradients averaged across ranks).

    The wrapper answers attribute reads it lacks from the model (``config``, the
    distillation projection), so loss functions take it wherever they take the model.
    """
    from torch.nn.parallel import DistributedDataParallel

    class _DDP(DistributedDataParallel):
        def __getattr__(self, name: str):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.module, name)

    return _DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


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
    group = distributed.current()
    world = group.world_size if group is not None else 1
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
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else nullcontext()
    # The loss goes through the wrapper (DDP averages gradients in backward); weights,
    # snapshots and evaluation use the model itself.
    net = _wrap_ddp(model, device) if group is not None else model
    # Reading a value back from the GPU waits for every queued kernel: the loss's
    # finiteness and the stop request are checked every step on the CPU, every
    # log_every_steps steps on a GPU (a NaN there rolls back all the same).
    sync_every = config.check_every_steps or (
        1 if device.type == "cpu" else max(1, config.log_every_steps)
    )
    state = TrainState(total_steps=total)
    # The average lives beside the model (a copy of its weights); its buffers follow the
    # model's. Floating-point weights only: the loop trains nothing else.
    ema = (
        torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=_ema_update(config.ema_decay))
        if config.ema_decay > 0
        else None
    )
    if ema is not None:
        ema.module.eval()
    eval_every = config.eval_every_steps or steps_per_epoch
    best_weights: dict[str, torch.Tensor] | None = None
    last_good = _snapshot(model)
    last_eval: dict[str, float] = {}
    examples = 0
    status = "done"
    window: dict[str, torch.Tensor | float] = {}
    window_steps = 0
    pending_bad: torch.Tensor | None = None  # any non-finite loss since the last check
    first_bad: torch.Tensor | None = None  # the first such loss
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
        # Each rank checked its own batch: all of them raise, or none (the all-reduce
        # runs on every rank, whatever this one found).
        if (
            batch is not None
            and group is not None
            and distributed.agree_max([what is not None])[0] > 0
            and what is None
        ):
            what = "the model's outputs (logits) on another process's batch are inf/NaN"
        if what is not None:
            model.load_state_dict(last_good)  # as for a NaN loss: the last sound weights
            callbacks.on_end(state, "failed")
            raise Diverged(state.step, what, config.learning_rate)

    def evaluate() -> None:
        nonlocal best_weights, last_eval
        if eval_fn is None:
            return
        check_diverged(last_batch)
        scored = ema.module if ema is not None else model
        model.eval()
        metrics = eval_fn(scored, control)
        model.train()
        if control.should_stop:
            return
        last_eval = dict(metrics)
        score = metrics.get(config.metric)
        if score is not None and (state.best_metric is None or score > state.best_metric):
            state.best_metric, state.best_step = score, state.step
            if config.keep_best:
                best_weights = _snapshot(scored)
        callbacks.on_evaluate(state, dict(metrics, step=state.step))

    def flush_window() -> dict[str, float]:
        """The mean of each loss term since the last log (over every rank) and the
        examples trained so far (every rank): one read-back, one all-reduce."""
        nonlocal window_steps
        keys = sorted(window)
        values = torch.stack(
            [torch.as_tensor(window[k], dtype=torch.float32, device=device) for k in keys]
            + [torch.tensor(float(examples), device=device)]
        )
        summed = distributed.reduce_sum(values).tolist()
        means = {k: v / max(1, window_steps) for k, v in zip(keys, summed, strict=False)}
        means["examples"] = summed[-1]
        window.clear()
        window_steps = 0
        return means

    callbacks.on_train_begin(state)
    model.train()
    epoch = 0
    try:
        while state.step < total and status == "done":
            for batch, weight, rows in _on_device(train_batches(epoch), device):
                if group is None and control.should_stop:  # free alone: no read-back
                    status = "cancelled"
                    break
                last_batch = batch
                with autocast:
                    loss, parts = loss_fn(net, batch)
                if weight is not None:  # this rank's share of the global batch
                    loss = loss * weight
                detached = loss.detach()
                bad = ~torch.isfinite(detached)
                if pending_bad is None:
                    pending_bad, first_bad = bad, detached
                else:
                    first_bad = torch.where(pending_bad, first_bad, detached)
                    pending_bad = pending_bad | bad
                if (state.step + 1) % sync_every == 0 or state.step + 1 >= total:
                    stop, nonfinite = control.agree(pending_bad)
                    if nonfinite:
                        value = float(first_bad) if bool(pending_bad) else float("nan")
                        model.load_state_dict(last_good)
                        callbacks.on_end(state, "failed")
                        raise NonFiniteLoss(state.step + 1, value)
                    pending_bad = first_bad = None
                    if stop:
                        status = "cancelled"
                        break
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                if ema is not None:
                    ema.update_parameters(model)
                state.step += 1
                state.epoch = state.step / steps_per_epoch
                examples += rows
                # Each rank adds its share of the global batch's mean (weight / world).
                share = 1.0 if weight is None else weight / world
                for key, v in parts.items():
                    term = v.detach() if isinstance(v, torch.Tensor) else v
                    window[key] = window.get(key, 0.0) + term * share
                window_steps += 1
                # A cheap rolling copy lets a NaN at step N roll back to step N-k weights.
                if state.step % max(1, config.log_every_steps) == 0:
                    check_diverged(None)  # a snapshot to roll back to must be sound
                    last_good = _snapshot(model)
                callbacks.on_step_end(state)
                if state.step % max(1, config.log_every_steps) == 0 or state.step == total:
                    logged = flush_window()
                    seen = logged.pop("examples")
                    state.last_loss = logged.get("loss")
                    logged.update(
                        lr=scheduler.get_last_lr()[0],
                        grad_norm=float(grad_norm),
                        epoch=state.epoch,
                        examples_per_second=seen / max(state.elapsed, 1e-9),
                    )
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
    elif ema is not None and int(ema.n_averaged) > 0:
        model.load_state_dict(ema.module.state_dict())
    callbacks.on_end(state, status)
    if group is not None and status == "done":
        # Every rank ends here together; a cancelled rank may have left mid-epoch.
        examples = int(distributed.reduce_sum(torch.tensor(float(examples))).item())
    return TrainResult(
        status=status,
        steps=state.step,
        best_metric=state.best_metric,
        best_step=state.best_step,
        final_metrics=last_eval,
        seconds=state.elapsed,
        examples_per_second=examples / max(state.elapsed, 1e-9),
        device=str(device),
        precision="bf16 autocast" if bf16 else "fp32",
        processes=world,
    )


def clone_model(model: nn.Module) -> nn.Module:
    """A deep copy on the same device (the pipeline keeps each step's input intact)."""
    return copy.deepcopy(model)
