"""The one exception type whose message is meant for a person, and the one path from
any exception to the sentence the CLI prints and the GUI shows."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

log = logging.getLogger("slimpajama_gui")


class UserError(Exception):
    """A failure the user can act on.

    The message is one or two sentences that name the file or field and say what to
    do. The CLI prints it without a traceback; the GUI shows it in a dialog. Anything
    that is not a ``UserError`` is a bug and is logged with its traceback.
    """


#: What a sentence about a bug ends with when no log file is being written.
REPORT_HINT = "The log has the details; please report it."

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def log_file_in_use() -> Path | None:
    """The file the log is written to now (the GUI's and the CLI's rotating log), or None."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            path = Path(handler.baseFilename)
            if path.is_file():  # not /dev/null, not a file never created
                return path
    return None


def report_hint() -> str:
    """How a bug's sentence ends: where its traceback is, only if a log file exists."""
    path = log_file_in_use()
    if path is None:
        return REPORT_HINT
    return f"The log {path} has the full traceback; please report it."


def error_sentence(
    exc: BaseException, what: str, *, hint: str | None = None, logger: logging.Logger = log
) -> str:
    """The one sentence shown for ``exc``, by the CLI and the GUI alike.

    A :class:`UserError` already is that sentence. A full disk or a refused
    permission is the user's to fix, so it is said as such. Anything else is a bug: its
    traceback goes to ``logger`` (and so to the log file) and the sentence says where.

    Args:
        exc: what was raised.
        what: the action that failed, as a sentence's subject ("The batch run").
        hint: what a bug's sentence ends with; default :func:`report_hint`.
        logger: where the traceback goes (the calling module's logger).

    Returns:
        ``str(exc)`` for a :class:`UserError`; a sentence naming the file for a full
        disk or a refused permission; otherwise ``"{what} failed ({Type}: {message}).
        {hint}"``.
    """
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        logger.warning("%s failed: disk full (%s)", what, exc)
        where = f" while writing {exc.filename}" if exc.filename else ""
        return f"{what} failed: the disk is full{where}. Free some space, then try again."
    if isinstance(exc, PermissionError) and exc.filename:
        logger.warning("%s failed: permission denied (%s)", what, exc)
        return (
            f"{what} failed: permission denied for {exc.filename}. Make it readable and "
            "writable for your user (or choose another folder), then try again."
        )
    logger.error("%s failed", what, exc_info=exc)
    return f"{what} failed ({type(exc).__name__}: {exc}). {hint or report_hint()}"
