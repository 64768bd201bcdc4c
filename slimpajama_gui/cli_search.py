"""``slimpajama search``: the best model within an accuracy budget, from a recipe.

Kept beside cli.py (which adds its parser with one line) so the search's options and
report live in one place.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    """Add the ``search`` command to ``slimpajama``'s sub-commands."""
    p = sub.add_parser(
        "search",
        help="find the smallest or fastest model within N dev points of the starting one",
        description="Try compression chains (distilled students, pruned heads and FFN neurons, "
        "vocabulary pruning, int8 in PyTorch or onnxruntime) with Optuna and keep the best "
        "within the accuracy budget. The best-so-far and the Pareto set are written after every "
        "trial (OUTPUT/NN-search/search.json); Ctrl+C or the end of --time returns them.",
    )  # fmt: skip
    p.add_argument("recipe", metavar="RECIPE", help="a recipe: its model, data and output")
    p.add_argument("--budget-points", type=float, default=None,
                   help="dev accuracy points the result may lose against the starting model "
                   "(default: the recipe's search step, else 1.0)")  # fmt: skip
    p.add_argument("--time", default=None, metavar="DURATION",
                   help="wall-clock budget, e.g. 30m, 1h, 600 (seconds); default 30m")  # fmt: skip
    p.add_argument("--objective", choices=["latency", "size"], default=None,
                   help="minimise batch-1 latency on this CPU, or size on disk (default: latency)")  # fmt: skip
    p.add_argument("--seed", type=int, default=None, help="the sampler's seed (default: 0)")
    p.add_argument("--max-trials", type=int, default=None, help="stop after this many trials")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                   help="where trials train (latency is always measured on CPU)")  # fmt: skip
    p.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    from slimpajama_gui.cli import EXIT_CANCELLED, _report
    from slimpajama_gui.cli_output import _console
    from slimpajama_gui.cli_progress import ProgressCallbacks
    from slimpajama_gui.core.errors import UserError
    from slimpajama_gui.core.jobs.pipeline import run
    from slimpajama_gui.core.plan.recipe import load_recipe
    from slimpajama_gui.core.plan.search_step import parse_duration, search_recipe

    recipe = load_recipe(Path(args.recipe))
    try:
        seconds = parse_duration(args.time, "--time") if args.time is not None else None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    recipe, note = search_recipe(
        recipe, budget_points=args.budget_points, time_budget_s=seconds,
        objective=args.objective, seed=args.seed, max_trials=args.max_trials,
    )  # fmt: skip
    console = _console()
    console.print(f"Search: {note}")
    output = recipe.resolve_path(recipe.output)
    index = next(i for i, s in enumerate(recipe.steps) if s.step_type == "search")
    try:
        result = run(recipe, ProgressCallbacks(console), device=args.device)
    except KeyboardInterrupt:
        print_state(console, output, index)
        print("stopped; the best-so-far above is kept", file=sys.stderr)
        return EXIT_CANCELLED
    print_state(console, output, index)
    return _report(console, result)


def print_state(console: Any, output: Path, index: int) -> None:
    """The search's trials and its best, from the state file it wrote (if any)."""
    from slimpajama_gui.cli_output import _print_table
    from slimpajama_gui.core.errors import UserError
    from slimpajama_gui.core.jobs.search import load_state, search_folder

    try:
        state = load_state(search_folder(output, index))
    except UserError:
        return
    pareto = set(state["pareto"])
    best = state["best"].get("trial")
    rows = []
    for t in state["trials"]:
        mark = "best" if t["number"] == best else ("Pareto" if t["number"] in pareto else "")
        rows.append([
            str(t["number"]), t["state"], t["chain"],
            "–" if t["accuracy"] is None else f"{100 * t['accuracy']:.2f} %",
            "–" if t["loss_points"] is None else f"{-t['loss_points']:+.2f}",
            "–" if t["latency_ms"] is None else f"{t['latency_ms']:.2f} ms",
            "–" if t["size_bytes"] is None else f"{t['size_bytes'] / 1e6:.1f} MB", mark,
        ])  # fmt: skip
    _print_table(console, f"Search trials ({state['status']})",
                 ["#", "State", "Chain", "Dev accuracy", "Points", "p50 (batch 1)", "Size", ""],
                 rows)  # fmt: skip
    console.print(state["sentence"])
