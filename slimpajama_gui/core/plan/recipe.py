"""Recipes: what a compression job does, as versioned step configs that round-trip YAML.

A recipe names a model, a dataset, an output folder and a list of steps. Each step type
is one dataclass registered under a short name (``finetune``, ``prune``, ...); the
registry is the allow-list, so a YAML file can only ever produce these classes, and
each config carries a ``version`` so a file written by a newer app is refused with a
sentence instead of being misread.

YAML is read with :class:`yaml.SafeLoader` only, node by node, so every complaint can
name the file, the line and the field, and no tag can construct a Python object.

Example:
    >>> recipe = recipe_from_yaml('''
    ... name: sst2-small
    ... model: packaged
    ... dataset: {path: data/sst2}
    ... output: out/sst2-small
    ... steps:
    ...   - type: finetune
    ...     epochs: 1
    ...     learning_rate: 5e-5
    ...   - type: quantize
    ...     method: dynamic_int8
    ... ''')
    >>> recipe.steps[0].learning_rate
    5e-05
    >>> type(recipe.steps[1]).__name__
    'Quantize'
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.storage.safe_io import atomic_write_text

#: The newest recipe layout this app reads and writes.
RECIPE_VERSION = 1

DEVICES = ("auto", "cpu", "cuda")


# --------------------------------------------------------------------------- errors


class RecipeError(UserError):
    """A problem with one field of a recipe, phrased for a person.

    ``field`` is the key as written in YAML; ``step`` is the 0-based step index or
    ``None`` for a top-level key. The loader adds the file and line with
    :meth:`located`.
    """

    def __init__(
        self,
        field: str,
        problem: str,
        *,
        step: int | None = None,
        step_type: str | None = None,
        source: str | None = None,
        line: int | None = None,
    ) -> None:
        self.field = field
        self.problem = problem
        self.step = step
        self.step_type = step_type
        self.source = source
        self.line = line
        where = []
        if source is not None:
            where.append(f"{source} line {line}" if line is not None else source)
        if step is not None:
            where.append(f"step {step + 1} '{step_type}'" if step_type else f"step {step + 1}")
        elif step_type:
            where.append(f"'{step_type}' step")
        text = f"{field}: {problem}"
        if where:
            text += f" ({', '.join(where)})"
        super().__init__(text + ".")

    def located(
        self,
        *,
        step: int | None = None,
        source: str | None = None,
        line: int | None = None,
    ) -> RecipeError:
        """The same error with a step index and/or file position filled in."""
        return RecipeError(
            self.field,
            self.problem,
            step=self.step if step is None else step,
            step_type=self.step_type,
            source=self.source if source is None else source,
            line=self.line if line is None else line,
        )


# --------------------------------------------------------------------------- value checks

_MISSING = object()


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _choices(options: typing.Iterable[Any]) -> str:
    return ", ".join(_fmt(o) for o in options)


def _is_optional(hint: Any) -> tuple[bool, Any]:
    """``(True, X)`` for ``X | None``, else ``(False, hint)``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) < len(typing.get_args(hint)):
            return True, args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007
    return False, hint


def _describe(hint: Any) -> str:
    optional, inner = _is_optional(hint)
    origin = typing.get_origin(inner)
    if inner is bool:
        text = "true or false"
    elif inner is int:
        text = "a whole number"
    elif inner is float:
        text = "a number"
    elif inner is str:
        text = "text"
    elif origin is Literal:
        text = f"one of {_choices(typing.get_args(inner))}"
    elif origin is list:
        item = typing.get_args(inner)[0]
        text = "a list of whole numbers" if item is int else f"a list of ({_describe(item)})"
    elif origin in (typing.Union, types.UnionType):
        text = " or ".join(_describe(a) for a in typing.get_args(inner))
    else:
        text = getattr(inner, "__name__", str(inner))
    return f"{text} (or null)" if optional else text


def coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert a plain value (from YAML or JSON) to the type ``hint`` or raise.

    Numbers written as text (``"5e-5"``, which YAML 1.1 reads as a string) are
    accepted for number fields; booleans are never taken for numbers.

    Raises:
        RecipeError: the value does not fit; the message names ``name``.
    """
    optional, inner = _is_optional(hint)
    if value is None:
        if optional:
            return None
        raise RecipeError(name, f"expected {_describe(inner)}, got nothing")
    origin = typing.get_origin(inner)
    bad = RecipeError(name, f"expected {_describe(hint)}, got {_fmt(value)}")
    if inner is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if inner is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if inner is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise bad from None
            if number.is_integer():
                return int(number)
        raise bad
    if inner is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    if origin is Literal:
        allowed = typing.get_args(inner)
        if value in allowed and type(value) is type(allowed[0]):
            return value
        raise RecipeError(name, f"expected one of {_choices(allowed)}, got {_fmt(value)}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        (item_hint,) = typing.get_args(inner)
        return [coerce(f"{name}[{i}]", v, item_hint) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        # Try the members in order: ``int | str`` takes 3 as 3 and "auto" as "auto".
        for member in typing.get_args(inner):
            try:
                return coerce(name, value, member)
            except RecipeError:
                continue
        raise bad
    if inner is dict:
        if isinstance(value, dict):
            return dict(value)
        raise bad
    raise TypeError(f"recipe field {name} has an unsupported type {hint!r}")


def _require(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise RecipeError(name, problem)


def _positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        _require(math.isfinite(value) and value > 0, name, f"must be above 0, got {_fmt(value)}")


def _non_negative(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        _require(math.isfinite(value) and value >= 0, name, f"must be 0 or more, got {_fmt(value)}")


def _fraction(cfg: Any, name: str, *, low_open: bool, high_open: bool) -> None:
    value = getattr(cfg, name)
    ok = math.isfinite(value) and (value > 0 if low_open else value >= 0)
    ok = ok and (value < 1 if high_open else value <= 1)
    lo, hi = ("above 0" if low_open else "0 or more"), ("below 1" if high_open else "at most 1")
    _require(ok, name, f"must be {lo} and {hi}, got {_fmt(value)}")


# --------------------------------------------------------------------------- step registry

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

    @classmethod
    def hints(cls) -> dict[str, Any]:
        """Field name -> resolved type annotation, in declaration order."""
        resolved = typing.get_type_hints(cls)
        return {f.name: resolved[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def upgrade(cls, data: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Turn the fields of an older ``version`` into the current ones.

        Every step is at version 1, so there is nothing to do yet; a step that
        renames or reinterprets a field bumps ``version`` and overrides this.
        """
        return data

    def validate(self) -> None:
        """Check every field's type, allowed values and range.

        Raises:
            RecipeError: naming the field, what is allowed, and what was given.
        """
        for name, hint in self.hints().items():
            value = getattr(self, name)
            try:
                checked = coerce(name, value, hint)
            except RecipeError as exc:
                raise _in_step(exc, self.step_type) from None
            if checked != value or type(checked) is not type(value):
                # e.g. a GUI that set epochs=1 (int): store the canonical form.
                setattr(self, name, checked)
        try:
            self.check()
        except RecipeError as exc:
            raise _in_step(exc, self.step_type) from None

    def check(self) -> None:
        """Range checks beyond the type; subclasses override."""

    def to_dict(self) -> dict[str, Any]:
        """``{"type": ..., "version": ..., <fields>}`` of plain values."""
        out: dict[str, Any] = {"type": self.step_type, "version": self.version}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, (list, tuple)) else value
        return out


def _in_step(exc: RecipeError, step_type: str) -> RecipeError:
    return RecipeError(
        exc.field,
        exc.problem,
        step=exc.step,
        step_type=step_type,
        source=exc.source,
        line=exc.line,
    )


def step_from_dict(data: dict[str, Any], *, index: int | None = None) -> Step:
    """Build a step from a tagged dict (``{"type": "prune", "version": 1, ...}``).

    Only registered types are built; unknown keys are refused.

    Raises:
        RecipeError: unknown type or key, a newer version, or a bad value.
    """
    data = dict(data)
    kind = data.pop("type", None)
    if kind not in STEP_TYPES:
        got = "no type" if kind is None else f"unknown step type {_fmt(kind)}"
        raise RecipeError("type", f"{got}; allowed types: {_choices(STEP_TYPES)}", step=index)
    cls = STEP_TYPES[kind]
    version = coerce("version", data.pop("version", cls.version), int)
    _check_step_version(cls, version, index)
    data = cls.upgrade(data, version)
    hints = cls.hints()
    unknown = [k for k in data if k not in hints]
    if unknown:
        raise RecipeError(
            unknown[0], _unknown_key_problem(unknown[0], ["type", "version", *hints]),
            step=index, step_type=kind,
        )  # fmt: skip
    step = cls(**{k: coerce(k, v, hints[k]) for k, v in data.items()})
    step.validate()
    return step


def _check_step_version(cls: type[Step], version: int, index: int | None) -> None:
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


def _unknown_key_problem(key: str, allowed: list[str]) -> str:
    text = f"unknown key; allowed keys: {', '.join(allowed)}"
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        text += f". Did you mean '{close[0]}'?"
    return text


# --------------------------------------------------------------------------- step types

EvalSplit = Literal["eval", "test"]
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

    def check(self) -> None:
        _positive(self, "epochs", "learning_rate", "batch_size", "eval_batch_size")
        _positive(self, "log_every_steps")
        _fraction(self, "warmup_ratio", low_open=False, high_open=True)
        _non_negative(self, "weight_decay", "max_grad_norm", "eval_every_steps", "seed")
        if self.max_steps is not None:
            _positive(self, "max_steps")


@register_step("evaluate")
@dataclass
class Evaluate(Step):
    """Accuracy / F1 / confusion matrix of the current model on one split."""

    version: ClassVar[int] = 1

    split: EvalSplit = "eval"
    batch_size: int = 64

    def check(self) -> None:
        _positive(self, "batch_size")


@register_step("benchmark")
@dataclass
class Benchmark(Step):
    """Size on disk, latency (p50/p95 at ``latency_batch``) and throughput on CPU."""

    version: ClassVar[int] = 1

    threads: int = 2
    sentences: int = 200  # how many eval sentences to time
    latency_batch: int = 1
    throughput_batch: int = 32
    warmup: int = 10  # untimed calls first
    repeats: int | Literal["auto"] = "auto"  # passes over the sentences; auto = ~3 s budget
    # auto: the variant's own runtime (onnxruntime for ONNX variants, else PyTorch)
    backend: BenchBackend = "auto"

    def check(self) -> None:
        _positive(self, "threads", "sentences", "latency_batch", "throughput_batch")
        _non_negative(self, "warmup")
        if self.repeats != "auto":
            _positive(self, "repeats")


@register_step("prune")
@dataclass
class Prune(Step):
    """Remove weights: unstructured magnitude, attention heads, FFN units, whole layers,
    or vocabulary rows never seen in the training data."""

    version: ClassVar[int] = 1

    method: PruneMethod = "magnitude"
    amount: float = 0.5  # share removed (magnitude/heads/ffn); unused for layers/vocabulary
    scope: PruneScope = "global"  # rank weights across the model or within each layer
    schedule: PruneSchedule = "oneshot"  # gradual = cubic schedule during recovery
    recovery_epochs: float = 1.0  # fine-tuning after pruning; 0 = none
    keep_layers: list[int] | None = None  # method "layers": encoder layers kept, 0-based
    learning_rate: float = 5e-5  # of the recovery fine-tuning
    batch_size: int = 32  # of the recovery fine-tuning (and the importance batches)

    def check(self) -> None:
        if self.method in ("magnitude", "heads", "ffn"):
            _fraction(self, "amount", low_open=True, high_open=True)
        _non_negative(self, "recovery_epochs")
        _positive(self, "learning_rate", "batch_size")
        _require(
            self.schedule == "oneshot" or self.method == "magnitude",
            "schedule",
            f"'gradual' works with method 'magnitude' only; use 'oneshot' for '{self.method}'",
        )
        if self.schedule == "gradual":
            _require(
                self.recovery_epochs > 0,
                "recovery_epochs",
                "must be above 0 when schedule is 'gradual' (pruning happens while it trains)",
            )
        if self.method == "layers":
            _require(
                bool(self.keep_layers),
                "keep_layers",
                "list the encoder layers to keep (e.g. [0, 2, 4]) when method is 'layers'",
            )
        if self.keep_layers is not None:
            _check_layer_list("keep_layers", self.keep_layers)


@register_step("distill")
@dataclass
class Distill(Step):
    """Train a smaller student built from some of the teacher's layers."""

    version: ClassVar[int] = 1

    student_layers: list[int] = field(default_factory=list)  # teacher layers kept, 0-based;
    # empty = every second layer of the teacher (1, 3, 5 of a 6-layer model)
    temperature: float = 2.0
    alpha_kd: float = 0.5  # weight of the logit KD loss; 1 - alpha_kd goes to the labels
    hidden_mse: float = 0.0  # weight of the hidden-state MSE loss
    attention_mse: float = 0.0  # weight of the attention-map MSE loss
    epochs: float = 3.0
    learning_rate: float = 1e-4
    batch_size: int = 32

    def check(self) -> None:
        _check_layer_list("student_layers", self.student_layers)
        _positive(self, "temperature", "epochs", "learning_rate", "batch_size")
        _fraction(self, "alpha_kd", low_open=False, high_open=False)
        _non_negative(self, "hidden_mse", "attention_mse")


@register_step("quantize")
@dataclass
class Quantize(Step):
    """Lower the precision of the weights (and activations for dynamic int8)."""

    version: ClassVar[int] = 1

    method: QuantizeMethod = "dynamic_int8"
    per_channel: bool = True  # one scale per output channel instead of per tensor
    embeddings: bool = True  # quantize the embedding table too (weight-only methods)
    tolerance: float = 0.5  # accuracy points we may lose; more fails the step
    # pytorch: a PyTorch model with int8 modules; onnxruntime: export to ONNX and
    # quantize with onnxruntime (the fastest CPU backend; dynamic_int8 only).
    backend: QuantizeBackend = "pytorch"

    def check(self) -> None:
        _non_negative(self, "tolerance")
        _require(
            self.backend == "pytorch" or self.method == "dynamic_int8",
            "method",
            f"the onnxruntime backend quantizes with dynamic_int8 only, not '{self.method}'",
        )


@register_step("export")
@dataclass
class Export(Step):
    """Export the current model to ONNX (fp32) as a variant that runs with onnxruntime."""

    version: ClassVar[int] = 1

    format: ExportFormat = "onnx"


def _check_layer_list(name: str, layers: list[int]) -> None:
    _require(all(i >= 0 for i in layers), name, f"layer numbers start at 0, got {layers}")
    _require(len(set(layers)) == len(layers), name, f"lists a layer twice: {layers}")


# --------------------------------------------------------------------------- recipe


@dataclass(kw_only=True)
class Recipe:
    """A whole job: which model, which data, which steps, where the results go.

    Relative paths in ``model``, ``output`` and the dataset are relative to
    ``base_dir`` (the folder of the recipe file; the working folder when built in
    code). ``base_dir`` is not written to YAML.
    """

    version: int = RECIPE_VERSION
    name: str
    model: str  # a model folder, or "packaged" for the bundled MiniLM
    dataset: dict[str, Any]  # read by data.DatasetSpec; kept as plain YAML values here
    output: str  # folder that receives one sub-folder per saved variant
    steps: list[Step]
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
    threads: int | None = None  # CPU threads for torch; None = torch's default
    seed: int = 0
    save_each_step: bool = True  # save a variant after every model-changing step
    base_dir: Path | None = field(default=None, compare=False, repr=False)

    #: Keys of the YAML mapping, in the order they are written.
    KEYS: ClassVar[tuple[str, ...]] = (
        "version", "name", "model", "dataset", "output", "device", "threads", "seed",
        "save_each_step", "steps",
    )  # fmt: skip
    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "model", "dataset", "output", "steps")
    _SIMPLE: ClassVar[dict[str, Any]] = {
        "version": int, "name": str, "model": str, "output": str, "device": str,
        "threads": int | None, "seed": int, "save_each_step": bool, "dataset": dict,
    }  # fmt: skip

    def resolve_path(self, value: str | Path) -> Path:
        """``value`` as an absolute path; relative ones are taken from ``base_dir``.

        ``{data}`` stands for the app's data folder (``paths.data_dir()``), so shipped
        recipes write results there rather than next to themselves.
        """
        text = str(value)
        if "{data}" in text:
            from slimpajama_gui.core.paths import data_dir

            text = text.replace("{data}", str(data_dir()))
        path = Path(text).expanduser()
        if path.is_absolute():
            return path
        return ((self.base_dir or Path.cwd()) / path).absolute()

    @property
    def uses_packaged_model(self) -> bool:
        return self.model == "packaged"

    def validate(self) -> None:
        """Check every field and every step.

        Raises:
            RecipeError: naming the field (and step) and what to change.
        """
        for name, hint in self._SIMPLE.items():
            setattr(self, name, coerce(name, getattr(self, name), hint))
        if self.version > RECIPE_VERSION:
            raise RecipeError(
                "version",
                f"this recipe is version {self.version}, but this SlimPajama Studio reads up "
                f"to version {RECIPE_VERSION}; update the app to run it",
            )
        _require(self.version >= 1, "version", f"must be 1 or more, got {self.version}")
        _require(bool(self.name.strip()), "name", "must not be empty")
        _require(bool(self.model.strip()), "model", "give a model folder or 'packaged'")
        _require(bool(self.output.strip()), "output", "give a folder for the results")
        device_ok = self.device in DEVICES or (
            self.device.startswith("cuda:") and self.device[5:].isdigit()
        )
        _require(
            device_ok, "device", f"expected one of {_choices(DEVICES)} or 'cuda:N', "
            f"got {_fmt(self.device)}",
        )  # fmt: skip
        if self.threads is not None:
            _require(self.threads >= 1, "threads", f"must be 1 or more, got {self.threads}")
        _require(self.seed >= 0, "seed", f"must be 0 or more, got {self.seed}")
        _require(
            isinstance(self.steps, list) and len(self.steps) > 0,
            "steps",
            "the recipe has no steps; add at least one (for example '- type: finetune')",
        )
        for i, step in enumerate(self.steps):
            if not isinstance(step, Step) or type(step).step_type not in STEP_TYPES:
                raise RecipeError("steps", f"item {i + 1} is not a registered step config")
            try:
                step.validate()
            except RecipeError as exc:
                raise exc.located(step=i) from None
        self._check_output_folder()

    def _check_output_folder(self) -> None:
        # docs/reliability.md F8: a job must never write into its own source model.
        if self.uses_packaged_model:
            return
        model = self.resolve_path(self.model).resolve()
        output = self.resolve_path(self.output).resolve()
        if output == model or model in output.parents:
            raise RecipeError(
                "output",
                f"the output folder {output} is {'the' if output == model else 'inside the'} "
                f"source model folder {model}; choose a folder outside it so the source "
                "model is never overwritten",
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain values in YAML key order (``base_dir`` left out)."""
        out: dict[str, Any] = {}
        for key in self.KEYS:
            value = getattr(self, key)
            if key == "steps":
                value = [s.to_dict() for s in value]
            elif key == "dataset":
                value = dict(value)
            out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, base_dir: Path | None = None) -> Recipe:
        """Build and validate a recipe from plain values (e.g. JSON in slimpajama.json)."""
        unknown = [k for k in data if k not in cls.KEYS]
        if unknown:
            raise RecipeError(unknown[0], _unknown_key_problem(unknown[0], list(cls.KEYS)))
        missing = [k for k in cls.REQUIRED if k not in data]
        if missing:
            raise RecipeError(missing[0], _missing_problem(missing))
        raw_steps = data["steps"]
        if not isinstance(raw_steps, list):
            raise RecipeError("steps", f"expected a list of steps, got {_fmt(raw_steps)}")
        steps = []
        for i, item in enumerate(raw_steps):
            if not isinstance(item, dict):
                raise RecipeError("steps", f"item {i + 1} is not a mapping with a 'type'")
            steps.append(step_from_dict(item, index=i))
        fields = {k: coerce(k, v, cls._SIMPLE[k]) for k, v in data.items() if k != "steps"}
        recipe = cls(**fields, steps=steps, base_dir=base_dir)
        recipe.validate()
        return recipe


def _missing_problem(missing: list[str]) -> str:
    return (
        f"missing; a recipe needs {', '.join(Recipe.REQUIRED[:-1])} and "
        f"{Recipe.REQUIRED[-1]} (missing: {', '.join(missing)})"
    )


# --------------------------------------------------------------------------- YAML

# The only tags a recipe may carry; anything else (``!!python/...``, custom ``!tags``)
# is refused before any value is constructed.
_SAFE_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}"
    for t in ("null", "bool", "int", "float", "str", "map", "seq", "timestamp", "merge")
)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _YamlReader:
    """Walks a composed YAML node tree, keeping line numbers for every message."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.loader = yaml.SafeLoader(text)

    def fail(self, node: yaml.Node | None, text: str) -> UserError:
        where = f"{self.source} line {_line(node)}" if node is not None else self.source
        return UserError(f"{text} ({where}).")

    def field_error(self, exc: RecipeError, node: yaml.Node | None) -> RecipeError:
        return exc.located(source=self.source, line=_line(node) if node is not None else None)

    def read(self) -> yaml.Node:
        try:
            root = self.loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            where = [self.source]
            mark = exc.problem_mark or exc.context_mark
            if mark is not None:
                where[0] += f" line {mark.line + 1}"
            if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
                # e.g. an unclosed "[": say where it opened, not just where the file ended.
                where.append(f"{exc.context} that starts on line {exc.context_mark.line + 1}")
            raise UserError(
                f"{self.source} is not valid YAML: {exc.problem or exc.context}"
                f" ({', '.join(where)}). Fix the file and load it again."
            ) from None
        except yaml.YAMLError as exc:
            raise UserError(f"{self.source} is not valid YAML: {exc}.") from None
        if root is None:
            raise UserError(
                f"{self.source} is empty; a recipe needs name, model, dataset, output and steps."
            )
        self.check_tags(root)
        return root

    def check_tags(self, node: yaml.Node) -> None:
        stack = [node]
        seen: set[int] = set()
        while stack:
            current = stack.pop()
            if id(current) in seen:  # anchors make the tree a graph
                continue
            seen.add(id(current))
            if current.tag not in _SAFE_TAGS:
                raise self.fail(
                    current,
                    f"{self.source} uses the YAML tag {current.tag!r}, which a recipe may not "
                    "use; recipes hold plain values only. Remove the tag",
                )
            if isinstance(current, yaml.MappingNode):
                for key, value in current.value:
                    stack.extend((key, value))
            elif isinstance(current, yaml.SequenceNode):
                stack.extend(current.value)

    def mapping(self, node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Key text -> (key node, value node); refuses non-mappings and duplicates."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping of 'key: value' lines")
        written: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, f"a key in {what} is not plain text")
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key_node.value in written:
                raise self.fail(key_node, f"key '{key_node.value}' appears twice in {what}")
            written.add(key_node.value)
        # Resolve "<<: *anchor" merges; keys written here come after, so they win.
        self.loader.flatten_mapping(node)
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, f"a key in {what} is not plain text")
            out[key_node.value] = (key_node, value_node)
        return out

    def value(self, node: yaml.Node) -> Any:
        """The plain Python value of ``node`` (safe constructors only)."""
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            raise self.fail(node, f"cannot read this value: {exc.problem}") from None

    def unknown_key(self, key: str, key_node: yaml.Node, allowed: list[str], where: str) -> None:
        text = f"unknown key '{key}' in {where}; allowed keys: {', '.join(allowed)}"
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UserError(f"{text} ({self.source} line {_line(key_node)}).{hint}")

    def step(self, index: int, node: yaml.Node) -> Step:
        entries = self.mapping(node, f"step {index + 1}")
        if "type" not in entries:
            raise self.fail(
                node,
                f"step {index + 1} has no 'type'; allowed types: {_choices(STEP_TYPES)}",
            )
        type_node = entries["type"][1]
        kind = self.value(type_node)
        if kind not in STEP_TYPES:
            raise self.fail(
                type_node,
                f"unknown step type {_fmt(kind)} in step {index + 1}; allowed types: "
                f"{_choices(STEP_TYPES)}",
            )
        cls = STEP_TYPES[kind]
        # The version first: a newer step may have keys this app does not know.
        version_node = entries.get("version", (None, None))[1]
        try:
            version = cls.version
            if version_node is not None:
                version = coerce("version", self.value(version_node), int)
            _check_step_version(cls, version, index)
        except RecipeError as exc:
            raise self.field_error(exc, version_node or node) from None
        hints = cls.hints()
        allowed = ["type", "version", *hints]
        for key, (key_node, _) in entries.items():
            if key not in allowed:
                self.unknown_key(key, key_node, allowed, f"step {index + 1} '{kind}'")
        values = {k: self.value(v) for k, (_, v) in entries.items() if k not in ("type", "version")}
        values = cls.upgrade(values, version)
        kwargs = {}
        for key, value in values.items():
            try:
                kwargs[key] = coerce(key, value, hints[key])
            except RecipeError as exc:
                raise self.field_error(
                    _in_step(exc, kind).located(step=index), entries[key][1]
                ) from None
        step = cls(**kwargs)
        try:
            step.validate()
        except RecipeError as exc:
            where = entries.get(exc.field.split("[")[0], (None, node))[1]
            raise self.field_error(exc.located(step=index), where) from None
        return step

    def recipe(self, base_dir: Path | None) -> Recipe:
        root = self.read()
        entries = self.mapping(root, self.source)
        version_node = entries.get("version", (None, None))[1]
        if version_node is not None:
            try:
                version = coerce("version", self.value(version_node), int)
            except RecipeError as exc:
                raise self.field_error(exc, version_node) from None
            if version > RECIPE_VERSION:
                raise UserError(
                    f"{self.source} is a version {version} recipe, written by a newer "
                    f"SlimPajama Studio; this one reads up to version {RECIPE_VERSION}. "
                    "Update the app to run it."
                )
        for key, (key_node, _) in entries.items():
            if key not in Recipe.KEYS:
                self.unknown_key(key, key_node, list(Recipe.KEYS), "the recipe")
        missing = [k for k in Recipe.REQUIRED if k not in entries]
        if missing:
            raise UserError(
                f"{self.source} has no {', '.join(repr(m) for m in missing)}; a recipe needs "
                f"{', '.join(Recipe.REQUIRED[:-1])} and {Recipe.REQUIRED[-1]}."
            )
        fields: dict[str, Any] = {}
        for key, (_, value_node) in entries.items():
            if key == "steps":
                continue
            try:
                fields[key] = coerce(key, self.value(value_node), Recipe._SIMPLE[key])
            except RecipeError as exc:
                raise self.field_error(exc, value_node) from None
        steps_node = entries["steps"][1]
        if isinstance(steps_node, yaml.ScalarNode) and self.value(steps_node) is None:
            step_nodes: list[yaml.Node] = []
        elif isinstance(steps_node, yaml.SequenceNode):
            step_nodes = list(steps_node.value)
        else:
            raise self.fail(steps_node, "steps must be a list, one '- type: ...' item per step")
        steps = [self.step(i, n) for i, n in enumerate(step_nodes)]
        recipe = Recipe(**fields, steps=steps, base_dir=base_dir)
        try:
            recipe.validate()
        except RecipeError as exc:
            if exc.step is not None:
                node = step_nodes[exc.step]
            else:
                node = entries.get(exc.field, (None, steps_node if exc.field == "steps" else root))[
                    1
                ]
            raise self.field_error(exc, node) from None
        return recipe

    def close(self) -> None:
        self.loader.dispose()


def recipe_from_yaml(
    text: str, source: str = "<string>", *, base_dir: Path | None = None
) -> Recipe:
    """Parse and validate recipe YAML.

    Args:
        text: the YAML document.
        source: how to name the document in messages (usually the file path).
        base_dir: folder that relative paths are taken from (default: working folder).

    Raises:
        UserError: a sentence naming the file, line and field at fault.
    """
    reader = _YamlReader(text, source)
    try:
        return reader.recipe(base_dir)
    finally:
        reader.close()


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe file; relative paths in it are relative to its folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"recipe file not found: {path}.") from None
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 and try again."
        ) from None
    except OSError as exc:
        raise UserError(f"cannot read the recipe {path}: {exc.strerror}.") from None
    return recipe_from_yaml(text, str(path), base_dir=path.absolute().parent)


class _RecipeDumper(yaml.SafeDumper):
    """Block style throughout, except short lists of plain values (``[1, 3, 5]``)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Indent "- type: ..." items under "steps:" as people write them by hand.
        super().increase_indent(flow, False)


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flat = all(isinstance(v, (int, float, str, bool)) or v is None for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_RecipeDumper.add_representer(list, _represent_list)


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as YAML (keys in a fixed order, every step field written out)."""
    return yaml.dump(
        recipe.to_dict(),
        Dumper=_RecipeDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    """Validate ``recipe`` and write it to ``path`` atomically.

    Relative paths are written as they are, so they stay relative to the folder the
    recipe came from; save next to it (or use absolute paths) to keep their meaning.
    """
    recipe.validate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, dump_recipe(recipe))
