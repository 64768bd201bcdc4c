"""The numbers behind the charts: growing curve buffers, axis steps, labels and keys.

No widgets here. :class:`Series` keeps one curve's points in numpy buffers that grow by
doubling, so a job logging every step appends in amortised O(1) and the chart redraws
only curves marked dirty. The constants say which metric keys are drawn where (see
:mod:`.job_charts` for the routing).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyqtgraph as pg

from slimpajama_gui.core.storage.history import MetricRecord

#: Colour-blind-safe palette (Okabe-Ito), in the order curves are created.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#7F7F7F")

#: Keys of a training log that are bookkeeping, not loss terms.
TRAIN_INFO_KEYS = frozenset({"lr", "grad_norm", "step", "epoch", "examples_per_second"})
SPARSITY_PREFIX = "sparsity/"
#: ``sparsity/overall`` is the whole model's share, shown in the chart title, not a bar.
SPARSITY_OVERALL = "overall"
#: Token ids a vocabulary pruning kept, and those before (``core.jobs.handlers.prune``).
VOCABULARY_KEPT = "vocabulary/kept"
VOCABULARY_ORIGINAL = "vocabulary/original"
#: Accuracy keys drawn: ``<split>_accuracy`` for these splits (not e.g. a quantize
#: step's ``baseline_accuracy``).
ACCURACY_SPLITS = ("train", "eval", "test")
EXPORT_SUFFIXES = (".png", ".svg", ".csv")


def natural_key(text: str) -> list[Any]:
    """'layer 10' sorts after 'layer 2'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


class Series:
    """One curve and its growing buffers, in segments that are drawn unconnected.

    Each point belongs to a segment (the pipeline step that logged it); a new segment
    starts a new line, so a distillation's loss is not joined to the fine-tune's before
    it. The buffers hold the points only; :meth:`drawn` puts a NaN between segments,
    which ``connect="finite"`` leaves as a gap.
    """

    def __init__(self, item: pg.PlotDataItem, capacity: int = 64) -> None:
        self.item = item
        self.x = np.empty(capacity)
        self.y = np.empty(capacity)
        self.n = 0
        self.dirty = False
        #: Indices of the first point of every segment after the first.
        self.breaks: list[int] = []
        self.segment: object = None
        self.color = PALETTE[0]
        #: True when the curve was made with a symbol (else dots come and go with its length).
        self.own_symbol = False

    def append(self, x: float, y: float, segment: object = None) -> None:
        if segment != self.segment:
            if self.n:
                self.breaks.append(self.n)
            self.segment = segment
        if self.n == len(self.x):
            # Doubling keeps appends amortised O(1) however long the job runs.
            self.x = np.resize(self.x, 2 * len(self.x))
            self.y = np.resize(self.y, 2 * len(self.y))
        self.x[self.n] = x
        self.y[self.n] = y
        self.n += 1
        self.dirty = True

    def drawn(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y as handed to pyqtgraph: the points with a NaN between segments."""
        x, y = self.x[: self.n], self.y[: self.n]
        if not self.breaks:
            return x, y
        # The gap's x repeats the next point's, so x stays sorted for clip-to-view
        # (a NaN x would break its binary search); the NaN y alone makes the gap.
        return np.insert(x, self.breaks, x[self.breaks]), np.insert(y, self.breaks, np.nan)

    def segment_lengths(self) -> list[int]:
        """Points per segment, in order."""
        edges = [0, *self.breaks, self.n]
        return [b - a for a, b in zip(edges, edges[1:], strict=False)]


def csv_number(value: float) -> str:
    return "" if not math.isfinite(value) else repr(float(value))


def stepped_range(
    v0: float,
    v1: float,
    lo: float,
    hi: float,
    refit: bool,
    *,
    grow: float,
    pad: float,
    grow_below: bool = True,
) -> tuple[float, float]:
    """The view ``(v0, v1)``, or a new one when the data ``lo..hi`` has left it.

    A new view leaves ``grow`` of the data's span as headroom on the side the data
    left by (so a falling loss or a growing step count moves the view every few points
    rather than on every one) and re-fits when the data fills less than 40 % of it.
    ``grow_below=False`` never leaves it below the data, for values that only count up
    (steps): the axis read -10, -5 before step 0. A point counts as inside only with
    half of ``pad`` to spare: one on the very edge would have its marker cut in half.
    """
    span = hi - lo
    if span <= 0:
        span = abs(hi) * 0.1 or 1.0
    margin = 0.5 * pad * span
    inside = v0 + margin <= lo and hi <= v1 - margin
    if inside and not refit and span >= 0.4 * (v1 - v0):
        return v0, v1
    below = 0.0 if refit or not grow_below or lo >= v0 + margin else grow
    above = 0.0 if refit or hi <= v1 - margin else grow
    return lo - (pad + below) * span, hi + (pad + above) * span


def fmt_value(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3g}"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


def short_layer(name: str) -> str:
    """'layer 3' → 'L3', 'embeddings' → 'emb' (pyqtgraph drops tick labels that collide)."""
    match = re.fullmatch(r"layer[\s_]*(\d+)", name.strip(), flags=re.IGNORECASE)
    if match:
        return f"L{match.group(1)}"
    return name if len(name) <= 4 else name[:3]


def group_records(records: Iterable[MetricRecord]) -> list[tuple[int, dict[str, float]]]:
    """Rebuild the dicts the pipeline logged from flat history records."""
    groups: list[tuple[int, dict[str, float]]] = []
    last: tuple[int, float] | None = None
    for record in records:
        key = (record.step_index, record.ts)
        if key != last or record.key in groups[-1][1]:
            groups.append((record.step_index, {}))
            last = key
        groups[-1][1][record.key] = record.value
    return groups


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
