"""Helpers of the `slimpajama` command (cli.py, cli_search.py) besides progress: the
console, tables, a sensitivity step's most sensitive parts, and whole-number arguments."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:  # logs and pipes: wide enough that tables never wrap
        console = Console(stderr=stderr, highlight=False, width=140)
    return console


def _print_table(console, title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[str(c) for c in row])
    # The title on a line of its own that is never wrapped or cut: a table's own title
    # wraps at the table's width, which split a long path (and what follows it).
    console.print(Text(title, style="italic"), soft_wrap=True)
    console.print(table)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def _mb(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:.1f} MB"


def _print_sensitivity(console, path: Path, count: int = 3) -> None:
    """The most sensitive layers, heads, FFN blocks and linears of a saved report."""
    from slimpajama_gui.core.techniques.sensitivity import load_report

    report = load_report(path)
    what = {"layer": "drop layer", "head": "remove head", "ffn": "remove FFN of layer",
            "linear": "int8"}  # fmt: skip
    rows = []
    for kind in ("layer", "head", "ffn", "linear"):
        for key, effect in report.most_sensitive(kind, count):
            name = f"{key[0]}.{key[1]} (layer.head)" if kind == "head" else str(key)
            rows.append([
                f"{what[kind]} {name}",
                f"{effect.loss_change:+.4f}",
                f"{100 * effect.accuracy_change:+.2f}",
                f"{effect.kl:.4f}",
            ])  # fmt: skip
    _print_table(
        console,
        f"Most sensitive parts ({report.rows} {report.split} rows, against loss "
        f"{report.baseline_loss:.4f} and accuracy {_pct(report.baseline_accuracy)}); {path}",
        ["Change", "Loss change", "Accuracy change (points)", "KL"],
        rows,
    )


def _whole(low: int, high: int, zero: str | None = None):
    """An argparse ``type``: a whole number from ``low`` to ``high``, or a usage error.

    ``zero`` describes what 0 means when it is allowed below ``low`` (e.g. "about 3 s").
    The bounds are the engine's own, so the command line refuses what a recipe would.
    """

    def parse(text: str) -> int:
        allowed = f"from {low:,} to {high:,}" + (f", or 0 for {zero}" if zero else "")
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be a whole number {allowed}, not {text[:40]!r}"
            ) from None
        if (zero and value == 0) or low <= value <= high:
            return value
        raise argparse.ArgumentTypeError(f"must be a whole number {allowed}, not {value:,}")

    parse.__name__ = "whole number"  # what argparse names in its own messages
    return parse
