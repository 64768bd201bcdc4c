"""The search step: tries compression chains within an accuracy budget (core/jobs/search.py)."""

from __future__ import annotations

from typing import Any

from slimpajama_gui.core.jobs.context import JobContext, handles
from slimpajama_gui.core.jobs.search import run_search
from slimpajama_gui.core.plan.search_step import Search


@handles("search")
def search(ctx: JobContext, index: int, step: Search) -> dict[str, Any]:
    """Run the search; the best trial's model becomes the current one (its summary row)."""
    return run_search(ctx, index, step)
