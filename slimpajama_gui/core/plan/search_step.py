"""The ``search`` step: find the best compression chain within an accuracy budget.

Its settings only; the search itself runs in :mod:`slimpajama_gui.core.jobs.search`.
Importing :mod:`slimpajama_gui.core.plan.steps` registers it (one import line there).

Example:
    >>> from slimpajama_gui.core.plan.steps import step_from_dict
    >>> step = step_from_dict({"type": "search", "budget_points": 1.0, "time_budget_s": 600})
    >>> step.objective, step.budget_points
    ('latency', 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from slimpajama_gui.core.plan.fields import Bounds, require
from slimpajama_gui.core.plan.steps import (
    BATCH_SIZE,
    EPOCHS,
    LEARNING_RATE,
    MAX_LAYER,
    POINTS,
    SEED,
    SENTENCES,
    THREADS,
    Step,
    register_step,
)

SearchObjective = Literal["latency", "size"]
SearchTechnique = Literal["distill", "heads", "ffn", "vocabulary", "quantize"]
#: Every technique the search may combine, in the order a chain applies them.
SEARCH_TECHNIQUES: tuple[str, ...] = ("distill", "heads", "ffn", "vocabulary", "quantize")
#: A week: far above any sensible wall-clock budget, low enough to catch a typo.
MAX_SEARCH_SECONDS = 7 * 24 * 3600.0
MAX_TRIALS = 100_000


@register_step("search")
@dataclass
class Search(Step):
    """Try compression chains (distil, prune heads/FFN, prune the vocabulary, int8) and
    keep the smallest or fastest model within ``budget_points`` of dev accuracy.

    Each trial is a chain of ordinary steps whose variants are saved and recorded like
    any other; the search's state (trials, Pareto set, best within budget) is written
    after every trial, so a stop, Cancel or the end of ``time_budget_s`` always leaves
    the best model found on disk.
    """

    version: ClassVar[int] = 1
    bounds: ClassVar[dict[str, Bounds]] = {
        "budget_points": POINTS,
        "time_budget_s": Bounds(0, MAX_SEARCH_SECONDS, low_open=True), "seed": SEED,
        "max_trials": Bounds(0, MAX_TRIALS, low_open=True),
        "depths": Bounds(1, MAX_LAYER),  # a student has at least 1 layer
        "epochs": EPOCHS, "learning_rate": LEARNING_RATE, "batch_size": BATCH_SIZE,
        "prune_margin_points": POINTS, "bench_sentences": SENTENCES, "threads": THREADS,
    }  # fmt: skip

    budget_points: float = 1.0  # dev accuracy points the result may lose vs the start
    time_budget_s: float = 1800.0  # wall clock of the whole search
    objective: SearchObjective = "latency"  # batch-1 CPU latency, or size on disk
    seed: int = 0  # the sampler's seed: the same seed proposes the same chains
    max_trials: int | None = None  # stop after this many trials (None: only the time)
    techniques: list[SearchTechnique] = field(default_factory=lambda: list(SEARCH_TECHNIQUES))
    depths: list[int] = field(default_factory=list)  # student depths to try; [] = derived
    epochs: float = 1.0  # of each trial's distillation and pruning recovery
    learning_rate: float = 1e-4
    batch_size: int = 32
    # A trial whose dev accuracy after one of its steps is more than budget + margin
    # points below the start is stopped there: later steps only lose more.
    prune_margin_points: float = 2.0
    bench_sentences: int = 50  # dev sentences timed per trial (objective latency)
    threads: int = 2  # CPU threads of the latency measurement

    def check(self) -> None:
        require(bool(self.techniques), "techniques",
                f"list at least one of {', '.join(SEARCH_TECHNIQUES)}")  # fmt: skip
        require(len(set(self.techniques)) == len(self.techniques), "techniques",
                "lists a technique twice")  # fmt: skip


def parse_duration(text: str, where: str = "time budget") -> float:
    """Seconds of a duration a person typed: ``"30m"``, ``"1h30m"``, ``"90s"``, ``"600"``.

    Raises:
        ValueError: a sentence naming ``where`` and how to write it.
    """
    import re

    raw = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        seconds = float(raw)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", raw)
        if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*[hms]", "", raw).strip():
            raise ValueError(
                f"{where}: {text!r} is not a duration; write it like 30m, 1h30m, 90s or 600 "
                "(seconds)."
            )
        unit = {"h": 3600.0, "m": 60.0, "s": 1.0}
        seconds = sum(float(n) * unit[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"{where}: must be above 0, got {text!r}.")
    return seconds


def search_recipe(
    recipe: Any,
    *,
    budget_points: float | None = None,
    time_budget_s: float | None = None,
    objective: str | None = None,
    seed: int | None = None,
    max_trials: int | None = None,
) -> tuple[Any, str]:
    """``recipe`` as a search (a copy), with the given settings; and a sentence saying what
    changed.

    A recipe with a search step gets the settings given. Otherwise its leading fine-tuning
    steps stay (a model without a head needs them), its compression steps become one search
    step, its trailing evaluate/benchmark steps measure the best model, and its output gets
    ``-search`` appended, so the recipe's own results are never replaced.

    Raises:
        RecipeError: a setting out of range, naming it.
    """
    import copy

    out = copy.deepcopy(recipe)
    given = {
        "budget_points": budget_points, "time_budget_s": time_budget_s, "objective": objective,
        "seed": seed, "max_trials": max_trials,
    }  # fmt: skip
    given = {k: v for k, v in given.items() if v is not None}
    searches = [s for s in out.steps if isinstance(s, Search)]
    if searches:
        note = f"the recipe's search step runs with {_settings_text(given) or 'its own settings'}"
        for step in searches:
            for key, value in given.items():
                setattr(step, key, value)
            step.validate()
        return out, note + "."
    lead = 0
    while lead < len(out.steps) and out.steps[lead].step_type == "finetune":
        lead += 1
    tail = len(out.steps)
    while tail > lead and out.steps[tail - 1].step_type in ("evaluate", "benchmark"):
        tail -= 1
    replaced = [s.step_type for s in out.steps[lead:tail]]
    search = Search(**given)
    search.validate()
    out.steps = [*out.steps[:lead], search, *out.steps[tail:]]
    out.output = f"{str(out.output).rstrip('/')}-search"
    what = f"steps {', '.join(replaced)} became one search step" if replaced else (
        "a search step was added")  # fmt: skip
    return out, f"{what}; results go to {out.output}."


def _settings_text(given: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in given.items())
