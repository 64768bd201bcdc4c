"""The one exception type whose message is meant for a person."""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can act on.

    The message is one or two sentences that name the file or field and say what to
    do. The CLI prints it without a traceback; the GUI shows it in a dialog. Anything
    that is not a ``UserError`` is a bug and is logged with its traceback.
    """
