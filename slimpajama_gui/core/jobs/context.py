"""What a job's steps share, and the helpers every step handler uses.

:class:`JobContext` holds the current model and tokenizer, the data, where the current
variant is saved and how to reach the user (callbacks) and the history (store). Step
types map to handler functions in :data:`HANDLERS`, filled by :func:`handles` (a
registry, not an if/elif chain): a new technique adds a module under
``core/jobs/handlers/`` and its config in ``core/plan/steps.py``.

Every handler has the signature ``handler(ctx, index, step) -> summary`` where
``summary`` is the step's row of the job summary (``{"accuracy": 0.89, ...}``), and
raises :class:`Cancelled` when the control asks to stop, or
:class:`~slimpajama_gui.core.errors.UserError` with a sentence.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from slimpajama_gui.core import data as data_mod
from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.plan.recipe import Recipe, Step
from slimpajama_gui.core.runtime import inputs as inputs_mod
from slimpajama_gui.core.runtime.bench import count_parameters
from slimpajama_gui.core.runtime.evaluate import classification_report, confusion_report, predict
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.storage.leftovers import make_scratch
from slimpajama_gui.core.storage.variant import VariantRecord
from slimpajama_gui.core.techniques import distributed
from slimpajama_gui.core.techniques.hooks import Callbacks, Control, TrainState
from slimpajama_gui.core.techniques.train import TrainConfig, train

if TYPE_CHECKING:
    from slimpajama_gui.core.jobs.pipeline import PipelineCallbacks

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised inside a step when the control asks to stop."""


@dataclass
class JobContext:
    """What the steps share: the current model and where it is saved."""

    recipe: Recipe
    job_id: int
    source: Path
    output: Path
    model: Any
    tokenizer: Any
    dataset: data_mod.TextDataset
    device: torch.device
    callbacks: PipelineCallbacks
    control: Control
    store: JobStore
    #: What the model can represent; every encoding goes through it.
    inputs: inputs_mod.ModelInputs
    model_name: str = ""
    tokenizer_dir: Path | None = None  # where the current tokenizer's files are
    where: str = ""  # the running step for a person: "step 3 of 4 (export)"
    scratch: Path | None = None  # temporary files of this job (removed at the end)
    variant: Path | None = None  # folder of the current model, once saved
    #: The saved variant's record and its row in the history (kept in step).
    record: VariantRecord | None = None
    variant_row: int | None = None
    #: Once the model is an ONNX variant: the PyTorch model it came from (for a
    #: PyTorch benchmark of the same weights), its parameter count and weight format.
    torch_model: Any = None
    onnx_parameters: int | None = None
    onnx_format: str | None = None
    variants: list[Path] = field(default_factory=list)
    #: Where the last training ran (``TrainResult.trained_on``), until the variant it
    #: made is recorded (``saving.new_record`` takes it).
    trained_on: dict[str, Any] | None = None
    #: False on torchrun ranks other than 0: they train, rank 0 writes files and history.
    writes: bool = True
    _encoded: dict[str, data_mod.Encoded] = field(default_factory=dict)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0

    def split(self, name: str) -> data_mod.Split:
        split = getattr(self.dataset, name)
        if split is None:
            raise UserError(
                f"the recipe evaluates on '{name}' but the dataset has no {name} file; "
                f"add 'dataset.{name}: PATH' or evaluate on 'eval'."
            )
        return split

    def encoded(self, name: str) -> data_mod.Encoded:
        if name not in self._encoded:
            spec_len = self.dataset.spec.max_length
            with self.uncancellable(f"tokenizing the {name} data"):
                enc = self.inputs.encode_split(self.split(name), self.tokenizer, spec_len)
            for warning in enc.warnings:
                self.callbacks.on_message(warning)
            self._encoded[name] = enc
        return self._encoded[name]

    def forget_encodings(self) -> None:
        """Token ids changed (a new vocabulary): encode every split again when asked."""
        self._encoded.clear()

    def check_stop(self) -> None:
        if self.control.should_stop:
            raise Cancelled

    def uncancellable(self, what: str):
        """A phase with no stop point, named for whoever asks the job to stop."""
        return self.control.uncancellable(f"{what} in {self.where}" if self.where else what)

    @property
    def is_onnx(self) -> bool:
        return self.onnx_format is not None

    def parameters(self) -> tuple[int, int]:
        if self.is_onnx:
            return self.onnx_parameters or 0, self.onnx_parameters or 0
        return count_parameters(self.model)

    def scratch_dir(self, name: str) -> Path:
        if self.scratch is None:
            # Ranks other than 0 write nothing in the output folder: theirs is private.
            self.scratch = (
                make_scratch(self.output, self.job_id)
                if self.writes
                else Path(tempfile.mkdtemp(prefix="slimpajama-rank-"))
            )
        path = self.scratch / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def warn(callbacks: Any, text: str) -> None:
    """Say ``text``, a warning (a setting that is valid but costly or almost surely a
    slip), as one: through ``on_warning`` where the callbacks tell warnings apart (the
    CLI prints it as one; the window keeps it beside the job), else as a message marked
    "warning:". Notes and findings go through ``on_message``."""
    hook = getattr(callbacks, "on_warning", None)
    if callable(hook):
        hook(text)
    else:
        callbacks.on_message(f"warning: {text}")


Handler = Callable[[JobContext, int, Step], dict[str, Any]]
#: Steps that can run on an ONNX variant (they measure, they do not change weights).
ONNX_STEPS = {"evaluate", "benchmark"}
HANDLERS: dict[str, Handler] = {}


def handles(step_type: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of ``step_type`` steps."""

    def register(fn: Handler) -> Handler:
        HANDLERS[step_type] = fn
        return fn

    return register


# --------------------------------------------------------------------------- training


class _TrainBridge(Callbacks):
    """Training-loop events → pipeline events and the job history."""

    def __init__(self, ctx: JobContext, index: int, step_type: str) -> None:
        self.ctx, self.index, self.step_type = ctx, index, step_type

    def on_step_end(self, state: TrainState) -> None:
        # The pipeline weighs it into the job's progress (and the history's).
        self.ctx.callbacks.on_progress(self.index, state.step, state.total_steps)

    def on_log(self, state: TrainState, metrics: dict[str, float]) -> None:
        metrics = dict(metrics, step=state.step)
        self.ctx.store.log_metrics(self.ctx.job_id, self.index, self.step_type, metrics)
        self.ctx.callbacks.on_log(self.index, metrics)

    def on_evaluate(self, state: TrainState, metrics: dict[str, float]) -> None:
        metrics = {f"eval_{k}" if k != "step" else k: v for k, v in metrics.items()}
        self.ctx.store.log_metrics(self.ctx.job_id, self.index, self.step_type, metrics)
        self.ctx.callbacks.on_eval(self.index, metrics)


def eval_batches(ctx: JobContext, name: str, batch_size: int):
    """Batches of split ``name`` in length order (predictions come back in row order)."""
    return data_mod.batches(
        ctx.encoded(name),
        ctx.split(name).labels,
        batch_size,
        shuffle=False,
        seed=0,
        pad_id=ctx.pad_id,
        sort_by_length=True,
    )


def fit(
    ctx: JobContext,
    index: int,
    step_type: str,
    model: Any,
    config: TrainConfig,
    *,
    loss_fn: Any = None,
    callbacks: tuple[Callbacks, ...] = (),
    eval_batch_size: int = 64,
    data: tuple[data_mod.Encoded, Sequence[int]] | None = None,
):
    """The shared training loop on the recipe's data; every technique trains through this.

    ``data`` replaces the train split's token ids and labels (distillation's augmented
    rows); evaluation always reads the eval split. Returns the
    :class:`~slimpajama_gui.core.techniques.train.TrainResult`; raises
    :class:`Cancelled` when the job was asked to stop.
    """
    encoded, labels = data if data is not None else (ctx.encoded("train"), ctx.dataset.train.labels)
    steps_per_epoch = math.ceil(len(encoded) / config.batch_size)
    ctx.encoded("eval")

    def train_batches(epoch: int):
        return data_mod.batches(
            encoded,
            labels,
            config.batch_size,
            shuffle=True,
            seed=config.seed + epoch,
            pad_id=ctx.pad_id,
            sort_by_length=config.group_by_length,
        )

    group = distributed.current()

    def eval_fn(m, control) -> dict[str, float]:
        batches = eval_batches(ctx, "eval", eval_batch_size)
        if group is None:
            preds = predict(m, batches, control=control)
            return classification_report(preds, ctx.dataset.label_names).metrics()
        # Each rank predicts every world_size-th batch; the confusion counts are summed.
        preds = predict(m, distributed.every_nth(batches, group))
        names = ctx.dataset.label_names
        counts = torch.as_tensor(classification_report(preds, names).confusion, dtype=torch.float64)
        summed = distributed.reduce_sum(counts).round().long().tolist()
        return confusion_report(summed, names).metrics()

    config.device = str(ctx.device)
    _say_where(ctx, index, step_type)
    extra = {"loss_fn": loss_fn} if loss_fn is not None else {}
    result = train(
        model,
        # Under torchrun each rank trains on its slice of every global batch.
        lambda epoch: distributed.shard_batches(train_batches(epoch)),
        steps_per_epoch,
        config,
        eval_fn=eval_fn,
        callbacks=[*callbacks, _TrainBridge(ctx, index, step_type)],
        control=ctx.control,
        **extra,
    )
    if result.status == "cancelled":
        raise Cancelled
    ctx.trained_on = result.trained_on()
    return result


def _say_where(ctx: JobContext, index: int, step_type: str) -> None:
    """Tell the job's log where step ``index`` trains (the record says it again)."""
    device = ctx.device
    if device.type == "cuda":
        where = f"{device} ({torch.cuda.get_device_name(device)})"
        if torch.cuda.is_bf16_supported():
            where += " with bf16 autocast"
    else:
        where = "the CPU (fp32)"
    group = distributed.current()
    if group is not None:
        where = f"{group.describe()}, each on {where}"
    text = f"Step {index + 1} ({step_type}) trains on {where}."
    log.info("job %d: %s", ctx.job_id, text)
    ctx.callbacks.on_message(text)


def accuracy(ctx: JobContext, batch_size: int = 64) -> float:
    """The current model's accuracy (0..1) on the eval split."""
    preds = predict(ctx.model, eval_batches(ctx, "eval", batch_size), control=ctx.control)
    ctx.check_stop()
    return classification_report(preds, ctx.dataset.label_names).accuracy


def train_config(step: Any, epochs: float, *, keep_best: bool = True) -> TrainConfig:
    """The training settings of a step that trains on the side (prune recovery, distill)."""
    return TrainConfig(
        epochs=epochs,
        learning_rate=step.learning_rate,
        batch_size=step.batch_size,
        keep_best=keep_best,
        seed=getattr(step, "seed", 0),
        ema_decay=getattr(step, "ema_decay", 0.0),
    )
