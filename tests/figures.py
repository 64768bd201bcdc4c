"""How tests look at measured times and rates: that a figure was taken, never how big.

How fast something ran depends on the machine and its load; speed and memory targets
are checked by the scripts in benchmarks/ (docs/benchmarks.md), never by ``make test``.
A test only checks that a timing was taken and recorded, as a finite number that is not
negative (a coarse clock may read 0 for a fast call), and that summaries of the same
samples are in order (p50 <= p95, median <= max), which holds on any machine.
"""

from __future__ import annotations

import math


def measured(*values: object) -> bool:
    """Every value is a finite number, 0 or more: a figure was measured and recorded."""
    return all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
        for v in values
    )


def in_order(*values: float) -> bool:
    """The values never decrease (e.g. ``in_order(p50, p95)``)."""
    return all(a <= b for a, b in zip(values, values[1:], strict=False))
