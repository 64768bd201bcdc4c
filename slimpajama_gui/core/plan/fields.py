"""Checking a recipe's values: the error that names the field, and type coercion.

A recipe comes from YAML typed by a person, so every value is checked against the
field's type hint (:func:`coerce`: ``"3"`` is not silently an int, ``1e-4`` is a float,
a choice outside a ``Literal`` is refused with the closest valid name, a number that is
not finite is refused) and against its range (:class:`Bounds`, the one statement of a
field's range that the recipe checks with :func:`check_bounds` and the wizard's number
fields allow). Every failure is a
:class:`RecipeError` that names the field, the step and, when known, the file and line.
Its text is built only when a value is refused, and quotes the value cut to a readable
length (:func:`fmt_value`), so a huge or deeply shared value costs nothing when valid.
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from slimpajama_gui.core.data.tables import brief
from slimpajama_gui.core.errors import UserError

# --------------------------------------------------------------------------- errors


class RecipeError(UserError):
    """A problem with one field of a recipe, phrased for a person.

    ``field`` is the key as written in YAML; ``step`` is the 0-based step index or
    ``None`` for a top-level key. The loader adds the file and line with
    :meth:`located`. ``keys`` are the other keys ``problem`` names, as written in YAML
    (``set alpha_kd above 0``), so that a form can say the sentence in its own terms
    (:meth:`worded`).
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
        keys: tuple[str, ...] = (),
    ) -> None:
        self.field = field
        self.problem = problem
        self.step = step
        self.step_type = step_type
        self.source = source
        self.line = line
        self.keys = tuple(keys)
        where = []
        if source is not None:
            where.append(f"{source} line {line}" if line is not None else source)
        if step is not None:
            where.append(f"step {step + 1} '{step_type}'" if step_type else f"step {step + 1}")
        elif step_type:
            where.append(f"'{step_type}' step")
        # A key comes from the file and may be any length; the message shows its start.
        shown = field if len(field) <= 80 else field[:80] + "…"
        text = f"{shown}: {problem}"
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
            keys=self.keys,
        )

    def worded(self, where: str, names: Mapping[str, str]) -> str:
        """The sentence in a form's terms: ``where`` names the field as the form labels
        it (``Distill — Augmented copies``) and ``names`` maps keys to the form's labels
        (``{"alpha_kd": "KD weight"}``); a key named in :attr:`keys` reads as its label,
        except right after its own description, in parentheses (``a KD weight
        (alpha_kd)``), where it already reads in both terms. No step or file position:
        the form shows where the field is.

        Example:
            >>> error = RecipeError("augment", "set alpha_kd above 0", keys=("alpha_kd",))
            >>> error.worded("Distill — Augmented copies", {"alpha_kd": "KD weight"})
            'Distill — Augmented copies: set KD weight above 0.'
        """
        text = self.problem
        for key in self.keys:
            label = names.get(key)
            if label is not None:
                # A whole key, not inside a longer word ("augment" of "augmented") and
                # not the "(key)" after its description.
                pattern = rf"(?<![\w(]){re.escape(key)}(?![\w)])"
                text = re.sub(pattern, lambda _match, label=label: label, text)
        return f"{where}: {text}."


# --------------------------------------------------------------------------- value checks

_MISSING = object()

#: The largest whole number any field takes (the range of a signed 64-bit integer, which
#: is what torch and NumPy convert a Python int to). Fields have tighter bounds of their
#: own; this one keeps a value such as 1e23 from reaching them as an overflow.
MAX_WHOLE = 2**63 - 1
#: The longest list any field takes.
MAX_ITEMS = 1000


def fmt_value(value: Any) -> str:
    """``repr(value)`` for a message, cut to a readable length whatever its size."""
    return brief(value)


def choices_text(options: typing.Iterable[Any]) -> str:
    return ", ".join(fmt_value(o) for o in options)


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
        text = f"one of {choices_text(typing.get_args(inner))}"
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

    def bad() -> RecipeError:
        # Built only on failure: formatting a valid value eagerly cost the time and
        # memory of its whole expansion (a YAML alias bomb hung the CLI).
        return RecipeError(name, f"expected {_describe(hint)}, got {fmt_value(value)}")

    if inner is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if inner is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise bad()
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (ValueError, OverflowError):
            raise bad() from None
        if not math.isfinite(number):
            raise RecipeError(name, f"expected a finite number, got {fmt_value(value)}")
        return number
    if inner is int:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str):
            try:
                parsed = float(value.strip())
            except ValueError:
                raise bad() from None
            if not parsed.is_integer():
                raise bad()
            number = int(parsed)
        else:
            raise bad()
        if abs(number) > MAX_WHOLE:
            raise RecipeError(name, f"must be at most {MAX_WHOLE:,}, got {fmt_value(value)}")
        return number
    if inner is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return str(value)
            except ValueError:  # an int beyond Python's 4300-digit limit
                raise bad() from None
        raise bad()
    if origin is Literal:
        allowed = typing.get_args(inner)
        scalar = isinstance(value, (str, int, float, bool))
        if scalar and value in allowed and type(value) is type(allowed[0]):
            return value
        raise RecipeError(
            name,
            f"expected one of {choices_text(allowed)}, got {fmt_value(value)}; write one of these",
        )
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad()
        if len(value) > MAX_ITEMS:
            raise RecipeError(
                name, f"lists {len(value):,} items; at most {MAX_ITEMS:,} are accepted"
            )
        (item_hint,) = typing.get_args(inner)
        return [coerce(f"{name}[{i}]", v, item_hint) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        # Try the members in order: ``int | str`` takes 3 as 3 and "auto" as "auto".
        for member in typing.get_args(inner):
            try:
                return coerce(name, value, member)
            except RecipeError:
                continue
        raise bad()
    if inner is dict:
        if isinstance(value, dict):
            return dict(value)
        raise bad()
    raise TypeError(f"recipe field {name} has an unsupported type {hint!r}")


def require(ok: bool, name: str, problem: str, *, keys: tuple[str, ...] = ()) -> None:
    """Raise :class:`RecipeError` on ``name`` unless ``ok``; ``keys`` are the other keys
    ``problem`` names (:meth:`RecipeError.worded`)."""
    if not ok:
        raise RecipeError(name, problem, keys=keys)


@dataclass(frozen=True)
class Bounds:
    """The numbers a field takes: ``low`` to ``high``, each bound itself left out when
    ``low_open`` / ``high_open`` says so (a temperature is above 0; a share removed is
    above 0 and below 1).

    Stated once per field (a step's :attr:`~slimpajama_gui.core.plan.steps.Step.bounds`):
    a recipe's values are checked against it (:func:`check_bounds`) and the wizard's
    number field for that key allows exactly it, so the two never disagree.

    Example:
        >>> Bounds(0, 1000.0, low_open=True).admits(0)
        False
        >>> Bounds(0, 1, low_open=True, high_open=True).per(0.01)
        Bounds(low=0.0, high=100.0, low_open=True, high_open=True)
    """

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        """Whether ``value`` is in the range (never when it is not finite)."""
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def per(self, unit: float) -> Bounds:
        """The same range counted in ``unit`` s: a share in per cent is ``per(0.01)``,
        seconds in minutes ``per(60)``."""
        return Bounds(self.low / unit, self.high / unit, self.low_open, self.high_open)

    def requirement(self, value: float) -> str:
        """What ``value`` (outside the range) must be instead: ``above 0``, ``at most
        1000``; a share from 0 to 1 names both ends (``above 0 and below 1``)."""
        low, high = _bound_text(self.low), _bound_text(self.high)
        low = f"above {low}" if self.low_open else f"{low} or more"
        high = f"below {high}" if self.high_open else f"at most {high}"
        if self.low == 0 and self.high == 1:
            return f"{low} and {high}"
        return low if value <= self.low or not math.isfinite(value) else high


def _bound_text(bound: float) -> str:
    return f"{bound:,}" if isinstance(bound, int) else f"{bound:g}"


def check_bounds(cfg: Any, name: str, bounds: Bounds) -> None:
    """``cfg.name`` (a number, or each number of a list) is within ``bounds``; anything
    else (None, "auto") is the type's business, not the range's."""
    value = getattr(cfg, name)
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or bounds.admits(item):
            continue
        raise RecipeError(name, f"must be {bounds.requirement(item)}, got {fmt_value(item)}")


def check_at_most(cfg: Any, name: str, limit: float) -> None:
    """``cfg.name`` (a number, or each number of a list) is at most ``limit``."""
    check_bounds(cfg, name, Bounds(-math.inf, limit))


# --------------------------------------------------------------------------- step registry
