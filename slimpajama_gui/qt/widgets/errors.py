"""One sentence for the user from any exception a worker raised.

The GUI's name for :func:`slimpajama_gui.core.errors.error_sentence`, the one path the
CLI takes too: a :class:`~slimpajama_gui.core.errors.UserError` already is that
sentence; anything else is a bug, whose traceback goes to the log the sentence names.
"""

from __future__ import annotations

import logging

from slimpajama_gui.core.errors import REPORT_HINT, report_hint
from slimpajama_gui.core.errors import error_sentence as _core_sentence

log = logging.getLogger("slimpajama_gui.qt")


def error_sentence(
    exc: BaseException, what: str, *, hint: str | None = None, logger: logging.Logger = log
) -> str:
    """The one sentence shown for ``exc``; a bug's traceback is logged first.

    See :func:`slimpajama_gui.core.errors.error_sentence` (same arguments; the
    traceback goes to this package's logger by default).
    """
    return _core_sentence(exc, what, hint=hint, logger=logger)


__all__ = ["REPORT_HINT", "error_sentence", "report_hint"]
