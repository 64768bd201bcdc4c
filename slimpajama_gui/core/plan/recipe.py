"""Recipes: what a compression job does, as versioned step configs that round-trip YAML.

A recipe names a model, a dataset, an output folder and a list of steps. The steps are
the versioned configs of :mod:`slimpajama_gui.core.plan.steps` (re-exported here); their
registry is the allow-list, so a YAML file can only ever produce those classes.

YAML is read with :class:`yaml.SafeLoader` only, node by node, so every complaint names
the file, the line and the field, and no tag can construct a Python object. A recipe is
bounded before any value is built: a regular file of at most :data:`MAX_RECIPE_BYTES`,
whose anchors and aliases may not expand it beyond :data:`MAX_YAML_NODES` values (a
500-byte "billion laughs" document expands to billions), nor refer to themselves.

Example:
    >>> recipe = recipe_from_yaml('''
    ... name: sst2-small
    ... model: packaged
    ... dataset: {train: data/sst2/train.tsv}
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

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from slimpajama_gui.core.data.spec import DatasetSpec
from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.plan.fields import choices_text, coerce, fmt_value, require
from slimpajama_gui.core.plan.static_step import DistillStatic, check_static_chain  # noqa: F401

# The step configs live in steps.py; they are re-exported here so a recipe and its steps
# come from one import (``from slimpajama_gui.core.plan.recipe import Recipe, Prune``).
from slimpajama_gui.core.plan.steps import (  # noqa: F401 (re-exported)
    MAX_THREADS,
    SEED,
    STEP_TYPES,
    THREADS,
    Benchmark,
    Distill,
    Evaluate,
    Export,
    FineTune,
    Prune,
    Quantize,
    RecipeError,
    Step,
    check_step_version,
    in_step,
    register_step,
    step_from_dict,
    unknown_key_problem,
)
from slimpajama_gui.core.storage.atomic import same_or_inside

#: The newest recipe layout this app reads and writes.
RECIPE_VERSION = 1

DEVICES = ("auto", "cpu", "cuda")

#: The longest path accepted in ``model`` and ``output`` (Linux's PATH_MAX).
MAX_PATH_CHARS = 4096

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
        require(self.version >= 1, "version", f"must be 1 or more, got {self.version}")
        require(bool(self.name.strip()), "name", "must not be empty")
        require(
            len(self.name) <= 200, "name", f"must be at most 200 characters, not {len(self.name):,}"
        )
        require(bool(self.model.strip()), "model", "give a model folder or 'packaged'")
        require(bool(self.output.strip()), "output", "give a folder for the results")
        for key in ("model", "output"):
            value = getattr(self, key)
            require(
                "\0" not in value and len(value) <= MAX_PATH_CHARS,
                key,
                f"must be a path without NUL characters, at most {MAX_PATH_CHARS} characters long",
            )
        device_ok = self.device in DEVICES or (
            self.device.startswith("cuda:") and self.device[5:].isdigit()
        )
        require(
            device_ok, "device", f"expected one of {choices_text(DEVICES)} or 'cuda:N', "
            f"got {fmt_value(self.device)}",
        )  # fmt: skip
        if self.threads is not None:
            require(
                THREADS.admits(self.threads),
                "threads",
                f"must be from {THREADS.low} to {THREADS.high}, got {self.threads}",
            )
        require(
            SEED.admits(self.seed),
            "seed",
            f"must be from {SEED.low} to {SEED.high}, got {self.seed}",
        )
        self._check_dataset()
        require(
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
        check_static_chain(self.steps)
        self._check_output_folder()

    def warnings(self, first_step: int = 0) -> list[str]:
        """Sentences about steps (from ``first_step``, 0-based) whose settings are valid
        but almost surely a mistake (:meth:`Step.warnings`), e.g. a distillation with no
        weight on the teacher. A job says them as it starts; they never stop it."""
        return [
            f"Step {index + 1} '{step.step_type}': {text}."
            for index, step in enumerate(self.steps)
            if index >= first_step
            for text in step.warnings()
        ]

    def _check_dataset(self) -> None:
        """The ``dataset:`` section's settings, checked now rather than when the job starts.

        Only the values: the files are read (and checked) by the job.
        """
        try:
            DatasetSpec.from_dict(self.dataset)
        except UserError as exc:
            text = str(exc).rstrip(".")
            first, _, rest = text.partition(" ")
            if first.startswith("dataset.") and rest:
                raise RecipeError(first, rest) from None
            raise RecipeError("dataset", text) from None

    def _check_output_folder(self) -> None:
        output = self.resolve_path(self.output).resolve()
        # A job saves its first variant only after training; a folder it cannot make
        # must be refused now, not minutes later as an internal error.
        existing = next((p for p in (output, *output.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            where = "is a file" if existing == output else f"is inside {existing}, which is a file"
            raise RecipeError(
                "output", f"the output folder {output} {where}; choose a folder for the results"
            )
        if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
            raise RecipeError(
                "output",
                f"the output folder {output} cannot be created or written: {existing} is not "
                "writable for you; choose a folder you can write to",
            )
        if existing is not None and existing != output:
            # Permission bits do not tell everything: /proc or a read-only mount refuse a
            # new folder even to root. Try one, as the job will, and take it away again.
            try:
                probe = tempfile.mkdtemp(prefix=".slimpajama-check-", dir=existing)
            except OSError as exc:
                raise RecipeError(
                    "output",
                    f"the output folder {output} cannot be created: {existing} refuses new "
                    f"folders ({exc.strerror or exc}); choose a folder you can write to",
                ) from None
            os.rmdir(probe)
        # docs/reliability.md F8: a job must never write into its own source model.
        if self.uses_packaged_model:
            return
        model = self.resolve_path(self.model).resolve()
        # Compared as the disk sees them: links, "..", another case on a case-blind disk.
        if same_or_inside(output, model):
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
        if not isinstance(data, dict):
            raise RecipeError("recipe", f"expected a mapping of settings, got {fmt_value(data)}")
        unknown = [k for k in data if k not in cls.KEYS]
        if unknown:
            raise RecipeError(unknown[0], unknown_key_problem(unknown[0], list(cls.KEYS)))
        missing = [k for k in cls.REQUIRED if k not in data]
        if missing:
            raise RecipeError(missing[0], _missing_problem(missing))
        raw_steps = data["steps"]
        if not isinstance(raw_steps, list):
            raise RecipeError("steps", f"expected a list of steps, got {fmt_value(raw_steps)}")
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


# YAML reading and writing live in recipe_yaml.py; imported at the end, once Recipe is
# defined, and re-exported so one import still serves (``from ...recipe import load_recipe``).
from slimpajama_gui.core.plan.recipe_yaml import (  # noqa: E402, F401 (re-exported)
    MAX_RECIPE_BYTES,
    MAX_YAML_ALIASES,
    MAX_YAML_NODES,
    dump_recipe,
    load_recipe,
    recipe_from_yaml,
    save_recipe,
)
