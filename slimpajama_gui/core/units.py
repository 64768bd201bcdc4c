"""Numbers as people read them: ``22.7 M`` parameters, ``90.9 MB`` on disk, ``1 min 15 s``.

Below every layer of core (like errors.py and paths.py), so the job plan's estimate and
the Qt screens format sizes the same way, and the accuracy guard's sentences name the
allowed loss as the wizard labels it.
"""

from __future__ import annotations

#: What the wizard calls ``quantize.tolerance`` (points of accuracy): its label there, and
#: the name the guard's sentences give the setting (``guard.allowed_loss``).
TOLERANCE_LABEL = "Max. loss"


def human_count(n: int) -> str:
    """22713216 -> '22.7 M'."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return str(n)


def human_bytes(n: int) -> str:
    """90868376 -> '90.9 MB' (decimal units, as file managers show)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def human_duration(seconds: float | None) -> str:
    """75 → '1 min 15 s'; None → '–'."""
    if seconds is None or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
