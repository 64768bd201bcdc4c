"""Step handlers, one module per kind of step; importing this package registers them all.

Each module decorates its functions with :func:`~slimpajama_gui.core.jobs.context.handles`;
:mod:`slimpajama_gui.core.jobs.pipeline` imports this package so that
:data:`~slimpajama_gui.core.jobs.context.HANDLERS` is complete before a job runs.
"""

from slimpajama_gui.core.jobs.handlers import measure, prune, quantize, sensitivity, static, train
from slimpajama_gui.core.jobs.handlers import search as _search  # noqa: F401 - registers it

__all__ = ["measure", "prune", "quantize", "sensitivity", "static", "train"]
