"""One sentence for the user from any exception a worker raised.

A :class:`~slimpajama_gui.core.errors.UserError` already is that sentence (a refused
input, a missing file). Anything else is a bug: the user reads what failed and where to
look, and the traceback goes to the log, where a report can quote it.
"""

from __future__ import annotations

import logging

from slimpajama_gui.core.errors import UserError

log = logging.getLogger("slimpajama_gui.qt")

#: What a sentence about a bug asks of the user.
REPORT_HINT = "The log has the details; please report it."


def error_sentence(
    exc: BaseException, what: str, *, hint: str = REPORT_HINT, logger: logging.Logger = log
) -> str:
    """The one sentence shown for ``exc``; a bug's traceback is logged first.

    Args:
        exc: what the worker raised.
        what: the action that failed, as a sentence's subject ("The batch run").
        hint: what a bug's sentence ends with.
        logger: where the traceback goes (the calling module's logger).

    Returns:
        ``str(exc)`` for a :class:`UserError`; otherwise
        ``"{what} failed ({Type}: {message}). {hint}"``.
    """
    if isinstance(exc, UserError):
        return str(exc)
    logger.error("%s failed", what, exc_info=exc)
    return f"{what} failed ({type(exc).__name__}: {exc}). {hint}"


__all__ = ["REPORT_HINT", "error_sentence"]
