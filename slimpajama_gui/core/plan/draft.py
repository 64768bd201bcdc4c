"""A job being planned: model, data, chain and settings, checked and turned into a recipe.

The wizard's pages each edit one part of a :class:`Draft` and listen to it (napari's
``Dims``/``QtDims`` pattern: a plain-Python model, views that subscribe), so no page
reads another. The draft answers the questions every page asks — :meth:`Draft.problems`,
:meth:`Draft.recipe`, :meth:`Draft.estimate` — from one evaluation, made once per change
and kept until the next one. It imports no torch and no Qt.

Example:
    >>> draft = Draft()
    >>> seen = []
    >>> unsubscribe = draft.subscribe(seen.append)
    >>> draft.set_job(name="sst2-small", output="out")
    >>> seen
    [{'settings'}]
    >>> draft.recipe()
    Traceback (most recent call last):
    ...
    slimpajama_gui.core.errors.UserError: Choose a model on the first page.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.inspection import ModelInfo
from slimpajama_gui.core.plan.estimate import Estimate, estimate_chain
from slimpajama_gui.core.plan.preflight import clause, head_reason, source_problems
from slimpajama_gui.core.plan.presets import (
    adapt_chain,
    load_preset,
    needs_finetune,
    parse_lr,
    slug,
    step_title,
)
from slimpajama_gui.core.plan.recipe import Recipe
from slimpajama_gui.core.plan.static_step import check_static_chain
from slimpajama_gui.core.plan.steps import (
    KEEP_GENERAL,
    Benchmark,
    Distill,
    Evaluate,
    FineTune,
    Prune,
    RecipeError,
    Step,
)

log = logging.getLogger(__name__)

#: What :meth:`Draft.subscribe` callbacks are told changed.
PARTS = frozenset({"model", "data", "chain", "settings", "vocabulary"})
#: The parts :meth:`Draft.problems` reports on, in the wizard's page order.
PAGES = ("techniques", "settings")

Listener = Callable[[set[str]], None]


@dataclass
class Training:
    """One training step's settings as the user typed them.

    ``learning_rate`` stays text until the recipe is built, so a typo is a sentence on
    the settings page (``'fast' is not a number``) rather than a lost keystroke.
    ``epochs`` is the recovery training of a pruning step.
    """

    epochs: float
    learning_rate: str
    batch_size: int


@dataclass
class _Checked:
    """One evaluation of the draft: what every page asks, computed together."""

    problems: dict[str, list[str]]
    steps: list[Step] | None
    recipe: Recipe | None
    recipe_error: str = ""


@dataclass
class Draft:
    """The job the wizard is building; every setter notifies the subscribers.

    Attributes:
        model: the chosen model's header summary (None: none chosen yet).
        data_spec: the recipe's ``dataset:`` mapping, set once the data was read and
            checked (None while it loads or when it cannot be used).
        label_names: the labels found in the data.
        train_texts: the training texts (for counting the vocabulary they use).
        preset: ``"fast"``, ``"balanced"``, ``"smallest"`` or ``"custom"``.
        chain: the steps, with training settings at their own values.
        preset_notes: sentences saying how a preset was fitted to the model.
        training: per chain index, the settings typed on the settings page.
        name, output, device, threads: the job's settings (output may hold ``{data}``).
    """

    model: ModelInfo | None = None
    data_spec: dict[str, Any] | None = None
    label_names: list[str] = field(default_factory=list)
    train_texts: list[str] = field(default_factory=list)
    preset: str = "balanced"
    chain: list[Step] = field(default_factory=list)
    preset_notes: list[str] = field(default_factory=list)
    training: dict[int, Training] = field(default_factory=dict)
    name: str = ""
    output: str = ""
    device: str = "auto"
    threads: int | None = None
    _vocab: dict[tuple, int] = field(default_factory=dict, repr=False)
    _listeners: list[Listener] = field(default_factory=list, repr=False)
    _checked: _Checked | None = field(default=None, repr=False)

    # -- observing -------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(parts)`` after each change; returns the unsubscribe function.

        ``parts`` is a set drawn from :data:`PARTS`. Listeners run in the order they
        subscribed, on the thread that changed the draft.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _changed(self, *parts: str) -> None:
        self._checked = None
        for listener in list(self._listeners):
            listener(set(parts))

    # -- editing ---------------------------------------------------------------------
    def set_model(self, info: ModelInfo | None) -> None:
        """Choose the model (None: no choice)."""
        if info is self.model:
            return
        self.model = info
        self._changed("model")

    def set_data(
        self,
        spec: Mapping[str, Any] | None,
        label_names: Iterable[str] = (),
        train_texts: Iterable[str] = (),
    ) -> None:
        """The data that was read and checked, or None while it loads / cannot be used."""
        self.data_spec = dict(spec) if spec is not None else None
        self.label_names = list(label_names) if spec is not None else []
        self.train_texts = list(train_texts) if spec is not None else []
        self._changed("data")

    def set_chain(self, preset: str, steps: Sequence[Step], notes: Sequence[str] = ()) -> None:
        """The chain (``preset`` names where it came from; ``"custom"``: the user's own).

        A chain of other step types than before starts from its own training settings:
        :attr:`training` is cleared.
        """
        before = self.signature()
        self.preset = preset
        self.chain = [dataclasses.replace(s) for s in steps]
        self.preset_notes = list(notes)
        if self.signature() != before:
            self.training = {}
        self._changed("chain")

    def use_preset(self, name: str) -> list[Step]:
        """Set the chain to preset ``name`` fitted to the model and data; returns it.

        Raises:
            ValueError: ``name`` is not a preset.
        """
        steps, notes = adapt_chain(load_preset(name), self.model, self.label_names or None)
        self.set_chain(name, steps, notes)
        return self.steps_of_chain()

    def set_training(self, training: Mapping[int, Training]) -> None:
        """The settings page's rows, by chain index (replaces the previous ones)."""
        self.training = dict(training)
        self._changed("settings")

    def set_job(self, **values: Any) -> None:
        """Set any of ``name``, ``output``, ``device``, ``threads`` (0/None: auto).

        Raises:
            TypeError: another keyword.
        """
        unknown = set(values) - {"name", "output", "device", "threads"}
        if unknown:
            raise TypeError(f"unknown job settings: {', '.join(sorted(unknown))}")
        if "threads" in values:
            values["threads"] = values["threads"] or None
        for key, value in values.items():
            setattr(self, key, value)
        self._changed("settings")

    # -- derived ---------------------------------------------------------------------
    @property
    def num_labels(self) -> int | None:
        """Labels in the data, once read (None before)."""
        return len(self.label_names) if self.label_names else None

    @property
    def needs_finetune(self) -> bool:
        """Whether the model has no classifier head for these labels (names compared) yet."""
        return needs_finetune(self.model, self.label_names or None)

    def signature(self) -> tuple:
        """The preset and the chain's step kinds: a new signature means new settings rows."""
        return (self.preset, tuple((s.step_type, getattr(s, "method", None)) for s in self.chain))

    def steps_of_chain(self) -> list[Step]:
        """Copies of the chain, training settings at their defaults."""
        return [dataclasses.replace(s) for s in self.chain]

    def steps(self) -> list[Step]:
        """The chain with the settings written into it.

        Raises:
            UserError: a learning rate that is not a number above 0.
        """
        out = self.steps_of_chain()
        for index, row in sorted(self.training.items()):
            if index >= len(out):
                continue
            step = out[index]
            lr = parse_lr(row.learning_rate, step_title(step))
            if isinstance(step, Prune):
                step.recovery_epochs = row.epochs
            else:
                step.epochs = row.epochs
            step.learning_rate = lr
            step.batch_size = row.batch_size
        if self.threads:
            for step in out:
                if isinstance(step, Benchmark):
                    step.threads = self.threads
        return out

    # -- answers ---------------------------------------------------------------------
    def problems(self, page: str | None = None) -> list[str]:
        """Sentences saying what to fix, for one page of :data:`PAGES` or all of them.

        Empty: that part is fine. The settings page's list includes the recipe's own
        checks (e.g. an output folder inside the source model) once its fields are valid.
        """
        checked = self._check()
        if page is not None:
            return list(checked.problems[page])
        return [text for name in PAGES for text in checked.problems[name]]

    def warnings(self, page: str | None = None) -> list[str]:
        """Sentences about settings that are allowed but almost surely a mistake
        (:meth:`~slimpajama_gui.core.plan.steps.Step.warnings`), for one page of
        :data:`PAGES` or all of them. Unlike :meth:`problems` they never block a page.
        """
        if page not in (None, "techniques"):
            return []  # only the chain has them: the settings page types no such values
        return [f"{step_title(s)} — {text}." for s in self.chain for text in s.warnings()]

    def recipe(self) -> Recipe:
        """The validated recipe (a fresh copy each call).

        Raises:
            UserError: a sentence naming the field to fix.
        """
        checked = self._check()
        if checked.recipe is None:
            raise UserError(checked.recipe_error)
        return copy.deepcopy(checked.recipe)

    def estimate(self) -> Estimate | None:
        """What the chain should leave of the model (None: no model chosen)."""
        if self.model is None:
            return None
        checked = self._check()
        steps = checked.steps if checked.steps is not None else self.steps_of_chain()
        return estimate_chain(
            self.model, steps, vocab_kept=self.vocabulary_count(), num_labels=self.num_labels or 2
        )

    # -- vocabulary count (for the estimate) -----------------------------------------
    def vocabulary_key(self) -> tuple | None:
        """What a vocabulary count depends on (model, data, and the chain's
        ``keep_general``, its last item); None until model and data are set."""
        if self.model is None or self.data_spec is None:
            return None
        general = next(
            (
                s.keep_general
                for s in self.chain
                if isinstance(s, Prune) and s.method == "vocabulary"
            ),
            KEEP_GENERAL,
        )
        return (str(self.model.path), repr(sorted(self.data_spec.items())), general)

    def vocabulary_count(self) -> int | None:
        """Token ids the training data uses with this model's tokenizer, once counted."""
        key = self.vocabulary_key()
        return self._vocab.get(key) if key is not None else None

    def has_vocabulary_count(self, key: tuple) -> bool:
        return key in self._vocab

    def set_vocabulary_count(self, key: tuple, count: int) -> None:
        """Record a count made (on a worker) for ``key`` (see :meth:`vocabulary_key`)."""
        self._vocab[key] = count
        self._changed("vocabulary")

    # -- the one evaluation ----------------------------------------------------------
    def _check(self) -> _Checked:
        if self._checked is None:
            self._checked = self._evaluate()
        return self._checked

    def _evaluate(self) -> _Checked:
        problems = {"techniques": self._chain_problems(), "settings": []}
        settings = problems["settings"]
        if not self.name.strip():
            settings.append("Name: give the job a name.")
        if not self.output.strip():
            settings.append("Output folder: choose where the results go.")
        try:
            steps: list[Step] | None = self.steps()
        except UserError as exc:
            settings.append(str(exc))
            return _Checked(problems, None, None, str(exc))
        for step in steps:
            try:
                step.validate()
            except RecipeError as exc:
                settings.append(f"{step_title(step)} — {exc}")
        recipe, error = None, ""
        try:
            recipe = self._build(steps)
        except UserError as exc:
            error = str(exc)
            if not settings:
                # The recipe's own checks too, e.g. an output folder inside the model.
                settings.append(error)
        return _Checked(problems, steps, recipe, error)

    def _chain_problems(self) -> list[str]:
        out: list[str] = []
        steps = self.chain
        custom = self.preset == "custom"
        if not [s for s in steps if not isinstance(s, (Evaluate, Benchmark))]:
            out.append("Choose at least one technique, or pick a preset.")
        n = self.model.layers if self.model is not None else 0
        if custom:
            picks = [("Distill", s.student_layers) for s in steps if isinstance(s, Distill)] + [
                ("Drop whole layers", s.keep_layers or [])
                for s in steps
                if isinstance(s, Prune) and s.method == "layers"
            ]
            for what, chosen in picks:
                if not chosen:
                    out.append(f"{what}: select at least one layer to keep (click its button).")
                elif n and len(chosen) >= n:
                    out.append(
                        f"{what}: all {n} layers are selected, so nothing gets smaller; "
                        "leave at least one layer out."
                    )
            if len({what for what, _ in picks}) == 2:
                out.append(
                    "Choose either distillation or dropping layers: both decide which layers "
                    "stay, and the second would count layers of the first one's result."
                )
        try:
            check_static_chain(steps)
        except RecipeError as exc:
            out.append(f"Static embeddings — {exc.problem}.")
        if self.model is not None:
            out += source_problems(self.model, steps)
        reason = head_reason(self.model, self.label_names or None)
        if reason is not None and not any(isinstance(s, FineTune) for s in steps):
            out.append(f"Fine-tune: the model{clause(reason)}; tick Fine-tune to train it.")
        for step in steps:
            try:
                dataclasses.replace(step).validate()
            except RecipeError as exc:
                out.append(f"{step_title(step)} — {exc}")
        return out

    def _build(self, steps: list[Step]) -> Recipe:
        info = self.model
        if info is None:
            raise UserError("Choose a model on the first page.")
        recipe = Recipe(
            name=self.name.strip() or slug(info.name),
            model="packaged" if info.source == "packaged" else str(info.path),
            dataset=dict(self.data_spec or {}),
            output=self.output.strip(),
            steps=steps,
            device=self.device,
            threads=self.threads,
        )
        recipe.validate()
        return recipe
