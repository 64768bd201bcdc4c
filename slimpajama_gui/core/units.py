"""Numbers as people read them: ``22.7 M`` parameters, ``90.9 MB`` on disk.

Below every layer of core (like errors.py and paths.py), so the job plan's estimate and
the Qt screens format sizes the same way.
"""

from __future__ import annotations


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
