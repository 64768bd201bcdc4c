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
from pathlib import Path
from typing import Any

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.inspection import ModelInfo
from slimpajama_gui.core.plan.estimate import Estimate, estimate_chain
from slimpajama_gui.core.plan.preflight import clause, head_reason, source_problems
from slimpajama_gui.core.plan.presets import (
    adapt_chain,
    learning_rate_problem,
    load_preset,
    needs_finetune,
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


@dataclass(frozen=True)
class Problem:
    """One of :meth:`Draft.problems`, with what it is about, so a page can put it beside
    the field and say it in the page's terms (:meth:`worded`).

    Attributes:
        text: the sentence as the draft says it (a recipe check's in the recipe's keys).
        step: the chain index of the step it is about (None: the job, or the chain).
        field: the key it is about (a step's, or the recipe's), if one.
        error: the recipe check that found it, if one did.
    """

    text: str
    step: int | None = None
    field: str | None = None
    error: RecipeError | None = dataclasses.field(default=None, compare=False)

    def worded(self, where: str, names: Mapping[str, str]) -> str:
        """The sentence in a page's terms: a recipe check's names the field ``where``
        (``"Distill — Augmented copies"``) and the keys it mentions by ``names``
        (:meth:`~slimpajama_gui.core.plan.fields.RecipeError.worded`); the draft's own
        sentences are in the wizard's terms already."""
        if self.error is None:
            return self.text
        return self.error.worded(where, names)


@dataclass
class _Checked:
    """One evaluation of the draft: what every page asks, computed together."""

    problems: dict[str, list[Problem]]
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
            UserError: a learning rate that is not a number above 0 (the first).
        """
        steps, problems = self._steps()
        if problems:
            raise UserError(problems[0].text)
        return steps

    def steps_with_settings(self) -> list[Step]:
        """The chain with the settings page's rows written into it, each value that
        reads as one (a learning rate that is no number keeps the step's own); never
        raises. What the user has set, for a chain built anew to start from."""
        return self._steps()[0]

    def _steps(self) -> tuple[list[Step], list[Problem]]:
        """The chain with the settings written into it, and a problem for each learning
        rate that is no number in range (that step keeps the chain's own)."""
        out = self.steps_of_chain()
        problems: list[Problem] = []
        for index, row in sorted(self.training.items()):
            if index >= len(out):
                continue
            step = out[index]
            problem = learning_rate_problem(row.learning_rate)
            if problem:
                # The sentence parse_lr says; a page words it with its own field names.
                text = f"{step_title(step)} — learning rate: {problem}."
                error = RecipeError("learning_rate", problem)
                problems.append(Problem(text, index, "learning_rate", error))
            else:
                step.learning_rate = float(row.learning_rate.strip())
            if isinstance(step, Prune):
                step.recovery_epochs = row.epochs
            else:
                step.epochs = row.epochs
            step.batch_size = row.batch_size
        if self.threads:
            for step in out:
                if isinstance(step, Benchmark):
                    step.threads = self.threads
        return out, problems

    # -- answers ---------------------------------------------------------------------
    def problems(self, page: str | None = None) -> list[str]:
        """Sentences saying what to fix, for one page of :data:`PAGES` or all of them.

        Empty: that part is fine. The settings page's list includes the recipe's own
        checks (e.g. an output folder inside the source model) once its fields are valid.
        """
        return [problem.text for problem in self.issues(page)]

    def issues(self, page: str | None = None) -> list[Problem]:
        """:meth:`problems` with what each is about (:class:`Problem`), in the same order:
        for a page that lists them beside its fields, in its own terms."""
        checked = self._check()
        if page is not None:
            return list(checked.problems[page])
        return [problem for name in PAGES for problem in checked.problems[name]]

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
            settings.append(Problem("Name: give the job a name.", field="name"))
        output = self.output.strip()
        if not output:
            settings.append(Problem("Output folder: choose where the results go.", field="output"))
        elif not _full_path(output):
            # A recipe file's relative paths start at the file; a typed one would start at
            # whatever folder the app was launched from, which the user cannot see.
            settings.append(
                Problem(
                    f"Output folder: “{output}” is not a full path, so the results would go "
                    f"under the folder the app was started from ({Path.cwd()}); type a full "
                    "path, start it with {data} for the app's data folder, or choose a folder "
                    "with Browse….",
                    field="output",
                )
            )
        # Every problem at once: each learning rate, and each step's every field.
        steps, bad_rates = self._steps()
        settings += bad_rates
        settings += _step_problems(steps)
        if bad_rates:
            return _Checked(problems, None, None, bad_rates[0].text)
        recipe, error = None, ""
        try:
            recipe = self._build(steps)
        except UserError as exc:
            error = str(exc)
            if not settings:
                # The recipe's own checks too, e.g. an output folder inside the model.
                settings.append(_recipe_problem(exc))
        return _Checked(problems, steps, recipe, error)

    def _chain_problems(self) -> list[Problem]:
        out: list[Problem] = []
        steps = self.chain
        custom = self.preset == "custom"
        if not [s for s in steps if not isinstance(s, (Evaluate, Benchmark))]:
            out.append(Problem("Choose at least one technique, or pick a preset."))
        n = self.model.layers if self.model is not None else 0
        if custom:
            picks = [
                (index, "Distill", "student_layers", s.student_layers)
                for index, s in enumerate(steps)
                if isinstance(s, Distill)
            ] + [
                (index, "Drop whole layers", "keep_layers", s.keep_layers or [])
                for index, s in enumerate(steps)
                if isinstance(s, Prune) and s.method == "layers"
            ]
            for index, what, key, chosen in picks:
                if not chosen:
                    text = f"{what}: select at least one layer to keep (click its button)."
                    out.append(Problem(text, index, key))
                elif n and len(chosen) >= n:
                    text = (
                        f"{what}: all {n} layers are selected, so nothing gets smaller; "
                        "leave at least one layer out."
                    )
                    out.append(Problem(text, index, key))
            if len({what for _index, what, _key, _chosen in picks}) == 2:
                out.append(
                    Problem(
                        "Choose either distillation or dropping layers: both decide which "
                        "layers stay, and the second would count layers of the first one's "
                        "result."
                    )
                )
        try:
            check_static_chain(steps)
        except RecipeError as exc:
            # In the page's terms: the recipe's says "put the other steps before it",
            # which the wizard's fixed order does not allow.
            after = steps[exc.step] if exc.step is not None else None
            what = step_title(after) if after is not None else "A step"
            text = (
                f"Static embeddings — {what} cannot follow them: the static model has no "
                "transformer layers left, and only accuracy, size and latency can be "
                f"measured on it. Untick {what}, or choose Teacher layers as the student."
            )
            out.append(Problem(text, exc.step))
        if self.model is not None:
            out += [Problem(text) for text in source_problems(self.model, steps)]
        reason = head_reason(self.model, self.label_names or None)
        if reason is not None and not any(isinstance(s, FineTune) for s in steps):
            text = f"Fine-tune: the model{clause(reason)}; tick Fine-tune to train it."
            out.append(Problem(text))
        # A field the draft's own sentences are about (no layer picked) is not refused
        # again in the recipe's terms.
        said = {(p.step, p.field) for p in out if p.field is not None}
        out += [p for p in _step_problems(steps) if (p.step, p.field) not in said]
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


def _step_problems(steps: Sequence[Step]) -> list[Problem]:
    """Every problem of every step (:meth:`~slimpajama_gui.core.plan.steps.Step.problems`),
    the steps left as they are."""
    return [
        Problem(f"{step_title(step)} — {exc}", index, _key(exc.field), exc)
        for index, step in enumerate(steps)
        for exc in dataclasses.replace(step).problems()
    ]


def _recipe_problem(exc: UserError) -> Problem:
    """A problem the recipe's own checks found, about one of its keys or steps if a
    :class:`RecipeError`."""
    if isinstance(exc, RecipeError):
        return Problem(str(exc), exc.step, _key(exc.field), exc)
    return Problem(str(exc))


def _key(field: str) -> str:
    """The key a :class:`RecipeError` names: ``student_layers`` of ``student_layers[3]``."""
    return field.split("[", 1)[0]


def _full_path(text: str) -> bool:
    """Whether an output folder as typed names one place whatever the working folder:
    absolute, under the home folder (``~``) or under the app's data folder (``{data}``)."""
    return "{data}" in text or text.startswith("~") or Path(text).is_absolute()
