"""Step configs: the versioned ``@register_step`` dataclasses a recipe's ``steps:`` holds.

Each step type is one dataclass registered under a short name (``finetune``, ``prune``,
...). :data:`STEP_TYPES` is the allow-list: a YAML file can only ever produce these
classes. Each class carries a ``version`` so a config written by a newer app is refused
with a sentence instead of being misread. Every value check lives in the class's
``validate`` and raises :class:`RecipeError` naming the field. Every number a step takes
has its range in its class's ``bounds`` (a count or size without an upper bound let
``epochs: 1e308`` run unbounded); ``Step.validate`` applies them to every class, and the
wizard's number field for a key allows exactly that key's range (no narrower, so a
recipe ``slimpajama run`` takes is never refused there).

Example:
    >>> step = step_from_dict({"type": "prune", "method": "heads", "amount": 0.3})
    >>> type(step).__name__, step.amount
    ('Prune', 0.3)
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from slimpajama_gui.core.data.spec import MAX_SEED
from slimpajama_gui.core.plan.fields import (
    Bounds,
    RecipeError,
    check_at_most,
    check_bounds,
    choices_text,
    coerce,
    fmt_value,
    require,
)

S = TypeVar("S", bound="Step")

#: type name -> step class; the allow-list for every recipe ever loaded.
STEP_TYPES: dict[str, type[Step]] = {}


def register_step(name: str) -> Callable[[type[S]], type[S]]:
    """Register a step dataclass under ``name`` (the ``type:`` written in YAML).

    Example:
        >>> @register_step("example")  # doctest: +SKIP
        ... @dataclass
        ... class Example(Step):
        ...     version: ClassVar[int] = 1
        ...     size: int = 3
    """

    def decorate(cls: type[S]) -> type[S]:
        if name in STEP_TYPES and STEP_TYPES[name] is not cls:
            raise ValueError(f"step type {name!r} is already registered")
        if not dataclasses.is_dataclass(cls) or not isinstance(cls.__dict__.get("version"), int):
            raise TypeError(f"{cls.__name__} must be a dataclass with `version: ClassVar[int]`")
        cls.step_type = name
        STEP_TYPES[name] = cls
        return cls

    return decorate


@dataclass
class Step:
    """Base of every step config. Subclasses are dataclasses registered by name."""

    step_type: ClassVar[str] = ""
    version: ClassVar[int] = 1
    #: The range of each numeric field (of each item, for a list of numbers), as the
    #: recipe checks it and the wizard's field for it allows it. Every numeric field
    #: must have one; the test suite checks that none is missing.
    bounds: ClassVar[dict[str, Bounds]] = {}

    @classmethod
    def hints(cls) -> dict[str, Any]:
        """Field name -> resolved type annotation, in declaration order."""
        resolved = typing.get_type_hints(cls)
        return {f.name: resolved[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def upgrade(cls, data: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Turn the fields of an older ``version`` into the current ones.

        A step that adds, renames or reinterprets a field bumps ``version`` and
        overrides this, so an older recipe runs as it did (see :class:`Prune`).
        """
        return data

    def validate(self) -> None:
        """Check every field's type, allowed values and range.

        Raises:
            RecipeError: naming the field, what is allowed, and what was given (the
                first of :meth:`problems`).
        """
        problems = self.problems()
        if problems:
            raise problems[0]

    def problems(self) -> list[RecipeError]:
        """Everything :meth:`validate` refuses, not only the first: each field's type,
        then each field's range, then the checks between fields (:meth:`check`, run once
        every field has its type, even where a range is off, so a form lists every
        problem at once rather than one a fix). Values are stored in their canonical
        form as they are checked."""
        out: list[RecipeError] = []
        mistyped: set[str] = set()
        for name, hint in self.hints().items():
            value = getattr(self, name)
            try:
                checked = coerce(name, value, hint)
            except RecipeError as exc:
                out.append(in_step(exc, self.step_type))
                mistyped.add(name)
                continue
            if checked != value or type(checked) is not type(value):
                # e.g. a GUI that set epochs=1 (int): store the canonical form.
                setattr(self, name, checked)
        # Each value in its range first: check() may then compare values.
        idle = self.idle_fields()
        for name, bounds in self.bounds.items():
            if name in mistyped:
                continue
            try:
                if name in idle:  # unused here, yet a typo stays a typo
                    check_at_most(self, name, bounds.high)
                else:
                    check_bounds(self, name, bounds)
            except RecipeError as exc:
                out.append(in_step(exc, self.step_type))
        if not mistyped:
            try:
                self.check()
            except RecipeError as exc:
                out.append(in_step(exc, self.step_type))
        return out

    def idle_fields(self) -> set[str]:
        """Fields this configuration does not use (a prune amount for dropping layers):
        only their upper bound is checked. Subclasses override."""
        return set()

    def check(self) -> None:
        """Checks beyond each field's type and range (values that depend on each
        other); subclasses override."""

    def warnings(self) -> list[str]:
        """Settings that are valid but almost surely a mistake, as clauses that name the
        fields and what to change (no step name, no final full stop). The step runs
        anyway; the wizard shows them beside its problems and a job says them as it
        starts. Subclasses override."""
        return []

    def to_dict(self) -> dict[str, Any]:
        """``{"type": ..., "version": ..., <fields>}`` of plain values."""
        out: dict[str, Any] = {"type": self.step_type, "version": self.version}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, (list, tuple)) else value
        return out


def in_step(exc: RecipeError, step_type: str) -> RecipeError:
    return RecipeError(
        exc.field,
        exc.problem,
        step=exc.step,
        step_type=step_type,
        source=exc.source,
        line=exc.line,
        keys=exc.keys,
    )


def step_from_dict(data: dict[str, Any], *, index: int | None = None) -> Step:
    """Build a step from a tagged dict (``{"type": "prune", "version": 1, ...}``).

    Only registered types are built; unknown keys are refused.

    Raises:
        RecipeError: unknown type or key, a newer version, or a bad value.
    """
    if not isinstance(data, dict):
        raise RecipeError(
            "steps", f"a step must be a mapping with a 'type', got {fmt_value(data)}", step=index
        )
    data = dict(data)
    kind = data.pop("type", None)
    if not isinstance(kind, str) or kind not in STEP_TYPES:
        got = "no type" if kind is None else f"unknown step type {fmt_value(kind)}"
        raise RecipeError("type", f"{got}; allowed types: {choices_text(STEP_TYPES)}", step=index)
    cls = STEP_TYPES[kind]
    version = coerce("version", data.pop("version", cls.version), int)
    check_step_version(cls, version, index)
    data = cls.upgrade(data, version)
    hints = cls.hints()
    unknown = [k for k in data if k not in hints]
    if unknown:
        raise RecipeError(
            unknown[0], unknown_key_problem(unknown[0], ["type", "version", *hints]),
            step=index, step_type=kind,
        )  # fmt: skip
    step = cls(**{k: coerce(k, v, hints[k]) for k, v in data.items()})
    step.validate()
    return step


def check_step_version(cls: type[Step], version: int, index: int | None) -> None:
    if version > cls.version:
        raise RecipeError(
            "version",
            f"this '{cls.step_type}' step is version {version}, but this SlimPajama Studio "
            f"reads up to version {cls.version}; update the app to run this recipe",
            step=index,
            step_type=cls.step_type,
        )
    if version < 1:
        raise RecipeError("version", f"must be 1 or more, got {version}", step=index,
                          step_type=cls.step_type)  # fmt: skip


def unknown_key_problem(key: str, allowed: list[str]) -> str:
    text = f"unknown key; allowed keys: {', '.join(allowed)}"
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        text += f". Did you mean '{close[0]}'?"
    return text


# --------------------------------------------------------------------------- step types

# Upper bounds of the step fields: far above any sensible value, low enough that a typo
# (an extra zero, 1e308) is refused before it becomes days of work or an overflow.
MAX_EPOCHS = 1000.0
MAX_STEPS = 10**9
MAX_BATCH = 8192
MAX_LEARNING_RATE = 10.0
#: Loss weights, weight decay and the clipping norm.
MAX_WEIGHT = 1e6
MAX_TEMPERATURE = 1000.0
#: Layer numbers (encoders have tens of layers).
MAX_LAYER = 1000
#: CPU threads; torch starts each one.
MAX_THREADS = 1024
MAX_SENTENCES = 1_000_000
MAX_WARMUP = 100_000
MAX_REPEATS = 10_000
#: Token ids (vocabularies have tens of thousands; a few hundred thousand at most).
MAX_VOCAB = 10_000_000
#: Augmented copies per train row (each is one more pass over the train set).
MAX_AUGMENT = 10
#: Accuracy points (of 100): an accuracy guard's tolerance, a search's budget.
MAX_POINTS = 100.0

# Ranges several steps share, named so that the recipe's checks and the wizard's fields
# (which take them from the step classes' ``bounds``) state each one once. A whole
# number "above 0" is 1 or more.
EPOCHS = Bounds(0, MAX_EPOCHS, low_open=True)
#: A pruning step's recovery training: 0 is none.
RECOVERY_EPOCHS = Bounds(0, MAX_EPOCHS)
LEARNING_RATE = Bounds(0, MAX_LEARNING_RATE, low_open=True)
BATCH_SIZE = Bounds(0, MAX_BATCH, low_open=True)
TEMPERATURE = Bounds(0, MAX_TEMPERATURE, low_open=True)
#: Loss weights (hidden and attention MSE), weight decay, the clipping norm (0: off).
WEIGHT = Bounds(0, MAX_WEIGHT)
#: The KD weight: the share of the loss on the teacher's logits.
KD_WEIGHT = Bounds(0, 1)
#: A share of weights, heads or neurons removed by pruning.
SHARE_REMOVED = Bounds(0, 1, low_open=True, high_open=True)
#: A share of something, all of it excluded (warm-up steps, a student's FFN removed).
SHARE_BELOW_ALL = Bounds(0, 1, high_open=True)
#: An EMA decay: 0 (off) up to, not including, 1 (an average that never moves).
EMA_DECAY = Bounds(0, 1, high_open=True)
#: Layer numbers, 0-based.
LAYER = Bounds(0, MAX_LAYER)
#: CPU threads (a recipe's ``threads``, a benchmark's, a search's).
THREADS = Bounds(1, MAX_THREADS)
SEED = Bounds(0, MAX_SEED)
SENTENCES = Bounds(0, MAX_SENTENCES, low_open=True)
POINTS = Bounds(0, MAX_POINTS)

EvalSplit = Literal["eval", "test"]
#: Prune's default ``keep_general``: the tokenizer's most common tokens vocabulary
#: pruning keeps besides the data's (measured: see :class:`Prune`). With the MiniLM
#: tokenizer, 20,000 keep the spelling pieces and the 19,117 most frequent English words
#: whole (``common_token_ids``).
KEEP_GENERAL = 20_000
PruneMethod = Literal["magnitude", "heads", "ffn", "layers", "vocabulary"]
PruneScope = Literal["global", "layer"]
PruneSchedule = Literal["oneshot", "gradual"]
QuantizeMethod = Literal["dynamic_int8", "fp16", "bf16", "weight_int8", "weight_int4"]
QuantizeBackend = Literal["pytorch", "onnxruntime"]
ExportFormat = Literal["onnx"]
BenchBackend = Literal["auto", "pytorch", "onnxruntime"]


@register_step("finetune")
@dataclass
class FineTune(Step):
    """Supervised fine-tuning of the whole model on the recipe's dataset."""

    version: ClassVar[int] = 1
    bounds: ClassVar[dict[str, Bounds]] = {
        "epochs": EPOCHS, "learning_rate": LEARNING_RATE, "batch_size": BATCH_SIZE,
        "eval_batch_size": BATCH_SIZE, "warmup_ratio": SHARE_BELOW_ALL,
        "weight_decay": WEIGHT, "max_grad_norm": WEIGHT,
        "eval_every_steps": Bounds(0, MAX_STEPS),
        "max_steps": Bounds(0, MAX_STEPS, low_open=True), "seed": SEED,
        "log_every_steps": Bounds(0, MAX_STEPS, low_open=True), "ema_decay": EMA_DECAY,
    }  # fmt: skip

    epochs: float = 3.0  # fractional epochs are allowed (e.g. 0.5 for a quick run)
    learning_rate: float = 5e-5
    batch_size: int = 32
    eval_batch_size: int = 64
    warmup_ratio: float = 0.06  # share of steps with a linear LR warm-up
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0  # 0 turns clipping off
    eval_every_steps: int = 0  # 0 = evaluate once per epoch
    max_steps: int | None = None  # stop early after this many optimizer steps
    keep_best: bool = True  # keep the checkpoint with the best eval accuracy
    seed: int = 0
    log_every_steps: int = 10
    # Exponential moving average of the weights (0: off; 0.999 is usual): evaluation, the
    # best checkpoint and the result use the average of the recent steps' weights.
    ema_decay: float = 0.0


@register_step("evaluate")
@dataclass
class Evaluate(Step):
    """Accuracy / F1 / confusion matrix of the current model on one split."""

    version: ClassVar[int] = 1
    bounds: ClassVar[dict[str, Bounds]] = {"batch_size": BATCH_SIZE}

    split: EvalSplit = "eval"
    batch_size: int = 64


@register_step("benchmark")
@dataclass
class Benchmark(Step):
    """Size on disk, latency (p50/p95 at ``latency_batch``) and throughput on CPU."""

    version: ClassVar[int] = 1
    bounds: ClassVar[dict[str, Bounds]] = {
        "threads": THREADS, "sentences": SENTENCES, "latency_batch": BATCH_SIZE,
        "throughput_batch": BATCH_SIZE, "warmup": Bounds(0, MAX_WARMUP),
        "repeats": Bounds(0, MAX_REPEATS, low_open=True),  # or "auto"
    }  # fmt: skip

    threads: int = 2
    sentences: int = 200  # how many eval sentences to time
    latency_batch: int = 1
    throughput_batch: int = 32
    warmup: int = 10  # untimed calls first
    repeats: int | Literal["auto"] = "auto"  # passes over the sentences; auto = ~3 s budget
    # auto: the variant's own runtime (onnxruntime for ONNX variants, else PyTorch)
    backend: BenchBackend = "auto"


@register_step("prune")
@dataclass
class Prune(Step):
    """Remove weights: unstructured magnitude, attention heads, FFN units, whole layers,
    or vocabulary rows neither the training data nor general text needs.

    Version 2 added ``keep_general``; a version-1 recipe gets 0 there, so it keeps
    what it kept before (only the ids its training texts use).
    """

    version: ClassVar[int] = 2
    bounds: ClassVar[dict[str, Bounds]] = {
        "amount": SHARE_REMOVED, "recovery_epochs": RECOVERY_EPOCHS, "keep_layers": LAYER,
        "learning_rate": LEARNING_RATE, "batch_size": BATCH_SIZE,
        "keep_general": Bounds(0, MAX_VOCAB),
    }  # fmt: skip

    method: PruneMethod = "magnitude"
    amount: float = 0.5  # share removed (magnitude/heads/ffn); unused for layers/vocabulary
    scope: PruneScope = "global"  # rank weights across the model or within each layer
    schedule: PruneSchedule = "oneshot"  # gradual = cubic schedule during recovery
    recovery_epochs: float = 1.0  # fine-tuning after pruning; 0 = none
    keep_layers: list[int] | None = None  # method "layers": encoder layers kept, 0-based
    learning_rate: float = 5e-5  # of the recovery fine-tuning
    batch_size: int = 32  # of the recovery fine-tuning (and the importance batches)
    # method "vocabulary": also keep this many of the tokenizer's most common tokens, so
    # text from outside the training data reads as it did (the default is measured on
    # resources/ood, docs/benchmarks.md "ood-check"); 0 = only the ids the data uses
    keep_general: int = KEEP_GENERAL

    @classmethod
    def upgrade(cls, data: dict[str, Any], from_version: int) -> dict[str, Any]:
        if from_version < 2 and data.get("method") == "vocabulary":
            data.setdefault("keep_general", 0)  # version 1 kept only the data's ids
        return data

    def idle_fields(self) -> set[str]:
        return set() if self.method in ("magnitude", "heads", "ffn") else {"amount"}

    def check(self) -> None:
        require(
            self.schedule == "oneshot" or self.method == "magnitude",
            "schedule",
            f"'gradual' works with method 'magnitude' only; use 'oneshot' for '{self.method}'",
        )
        if self.schedule == "gradual":
            require(
                self.recovery_epochs > 0,
                "recovery_epochs",
                "must be above 0 when schedule is 'gradual' (pruning happens while it trains)",
                keys=("schedule",),
            )
        if self.method == "layers":
            require(
                bool(self.keep_layers),
                "keep_layers",
                "list the encoder layers to keep (e.g. [0, 2, 4]) when method is 'layers'",
            )
        if self.keep_layers is not None:
            _check_layer_list("keep_layers", self.keep_layers)


#: :meth:`Distill.warnings` when no loss term reads the teacher: legal (the student then
#: trains on the labels alone, like fine-tuning a smaller model), but almost surely a
#: slip, since the point of distilling is to learn from the teacher.
NO_TEACHER_SIGNAL = (
    "the KD weight (alpha_kd), hidden MSE (hidden_mse) and attention MSE (attention_mse) are "
    "all 0, so the student learns only from the labels, not from the teacher; raise the KD "
    "weight or a hidden or attention MSE weight above 0"
)


@register_step("distill")
@dataclass
class Distill(Step):
    """Train a smaller student built from some of the teacher's layers."""

    version: ClassVar[int] = 1
    bounds: ClassVar[dict[str, Bounds]] = {
        "student_layers": LAYER, "temperature": TEMPERATURE, "alpha_kd": KD_WEIGHT,
        "hidden_mse": WEIGHT, "attention_mse": WEIGHT, "epochs": EPOCHS,
        "learning_rate": LEARNING_RATE, "batch_size": BATCH_SIZE,
        "ffn_fraction": SHARE_BELOW_ALL, "augment": Bounds(0, MAX_AUGMENT),
        "augment_rate": Bounds(0, 1, low_open=True), "ema_decay": EMA_DECAY,
    }  # fmt: skip

    student_layers: list[int] = field(default_factory=list)  # teacher layers kept, 0-based;
    # empty = every second layer of the teacher (1, 3, 5 of a 6-layer model)
    temperature: float = 2.0
    alpha_kd: float = 0.5  # weight of the logit KD loss; 1 - alpha_kd goes to the labels
    hidden_mse: float = 0.0  # weight of the hidden-state MSE loss
    attention_mse: float = 0.0  # weight of the attention-map MSE loss
    epochs: float = 3.0
    learning_rate: float = 1e-4
    batch_size: int = 32
    # Share of each student layer's FFN neurons removed before training (the least
    # important by gradient score): a smaller student that KD trains from the start.
    ffn_fraction: float = 0.0
    # Altered copies of each train row, with a share (augment_rate) of their whole words
    # swapped for near neighbours in the teacher's word-embedding table; the copies learn
    # from the teacher's logits. More varied text keeps the student closer to the teacher
    # on text unlike the train set; each copy costs one more epoch of training time.
    augment: int = 0
    augment_rate: float = 0.3
    # Exponential moving average of the student's weights (0: off), as in fine-tune.
    ema_decay: float = 0.0

    def check(self) -> None:
        _check_layer_list("student_layers", self.student_layers)
        require(
            not self.augment or self.alpha_kd > 0,
            "augment",
            "the augmented copies learn from the teacher's logits, which a KD weight "
            "(alpha_kd) of 0 turns off; set alpha_kd above 0 or augment to 0",
            keys=("alpha_kd", "augment"),
        )

    def warnings(self) -> list[str]:
        if self.alpha_kd == 0 and self.hidden_mse == 0 and self.attention_mse == 0:
            return [NO_TEACHER_SIGNAL]
        return []


@register_step("quantize")
@dataclass
class Quantize(Step):
    """Lower the precision of the weights (and activations for dynamic int8)."""

    version: ClassVar[int] = 1
    bounds: ClassVar[dict[str, Bounds]] = {"tolerance": POINTS}

    method: QuantizeMethod = "dynamic_int8"
    per_channel: bool = True  # one scale per output channel instead of per tensor
    embeddings: bool = True  # quantize the embedding table too (weight-only methods)
    tolerance: float = 0.5  # accuracy points we may lose; more fails the step
    # pytorch: a PyTorch model with int8 modules; onnxruntime: export to ONNX and
    # quantize with onnxruntime (the fastest CPU backend; dynamic_int8 only).
    backend: QuantizeBackend = "pytorch"
    # onnxruntime only: 4 stores the word-embedding table in 4 bits (blocks of 32 with
    # their own scale), about half its int8 size; the linears stay int8.
    embedding_bits: Literal[8, 4] = 8

    def check(self) -> None:
        require(
            self.backend == "pytorch" or self.method == "dynamic_int8",
            "method",
            f"the onnxruntime backend quantizes with dynamic_int8 only, not '{self.method}'",
        )
        require(
            self.embedding_bits == 8 or self.embeddings,
            "embedding_bits",
            "4-bit embeddings quantize the word embeddings, which 'embeddings: false' "
            "keeps in float; set embeddings: true or embedding_bits: 8",
        )
        require(
            self.embedding_bits == 8 or self.backend == "onnxruntime",
            "embedding_bits",
            "4-bit embeddings need 'backend: onnxruntime' (PyTorch's int8 embeddings "
            "have 8 bits); set backend: onnxruntime or embedding_bits: 8",
        )


@register_step("export")
@dataclass
class Export(Step):
    """Export the current model to ONNX (fp32) as a variant that runs with onnxruntime."""

    version: ClassVar[int] = 1

    format: ExportFormat = "onnx"


def _check_layer_list(name: str, layers: list[int]) -> None:
    # Each number's range is LAYER (from 0), checked before.
    require(len(set(layers)) == len(layers), name, f"lists a layer twice: {fmt_value(layers)}")


@register_step("sensitivity")
@dataclass
class Sensitivity(Step):
    """Measure, on a sample of one split, what dropping each layer, removing each
    attention head and FFN block, and int8-quantizing each linear costs in loss and
    accuracy (core/techniques/sensitivity.py). The model is not changed."""

    version: ClassVar[int] = 1
    bounds: ClassVar[dict[str, Bounds]] = {
        "rows": SENTENCES, "seed": SEED, "batch_size": BATCH_SIZE,
    }  # fmt: skip

    split: EvalSplit = "eval"
    rows: int = 256  # rows sampled from the split (all of them if it has fewer)
    seed: int = 0  # which rows are sampled
    batch_size: int = 32
    layers: bool = True  # drop each encoder layer
    heads: bool = True  # remove each attention head
    ffn: bool = True  # remove each layer's FFN block
    linears: bool = True  # int8-quantize each linear layer alone

    def check(self) -> None:
        require(
            self.layers or self.heads or self.ffn or self.linears,
            "layers",
            "turn on at least one of layers, heads, ffn and linears",
        )


# Steps defined in their own modules register here, once steps.py is complete.
from slimpajama_gui.core.plan import search_step as _search_step  # noqa: E402, F401
from slimpajama_gui.core.plan import static_step  # noqa: E402, F401
