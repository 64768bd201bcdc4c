"""Where the app keeps its own files (job history, results, logs)."""

from __future__ import annotations

import logging
import os
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path


def data_dir() -> Path:
    """The user's SlimPajama data folder, created on first use.

    ``SLIMPAJAMA_HOME`` overrides it (tests and portable installs); otherwise the
    platform's usual place (``$XDG_DATA_HOME/slimpajama`` on Linux).
    """
    override = os.environ.get("SLIMPAJAMA_HOME")
    if override:
        root = Path(override)
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Application Support" / "SlimPajama"
    elif sys.platform == "win32":
        root = Path(os.environ.get("LOCALAPPDATA", Path.home())) / "SlimPajama"
    else:
        root = (
            Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "slimpajama"
        )
    root.mkdir(parents=True, exist_ok=True)
    return root


def log_file() -> Path:
    logs = data_dir() / "logs"
    logs.mkdir(exist_ok=True)
    return logs / "slimpajama.log"


#: Rotating log: 2 MB per file, three older files kept.
LOG_MAX_BYTES = 2_000_000
LOG_BACKUPS = 3


def configure_file_log(level: int = logging.INFO) -> logging.Handler:
    """Write the log to :func:`log_file` (rotating), for the app and the CLI alike.

    Idempotent: a second call for the same file returns the handler already in place.
    Every message that points to "the log" names this file (see ``core/errors.py``).

    Returns:
        The handler (the CLI removes it when its command ends).
    """
    path = log_file()
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == path:
            return handler
    handler = RotatingFileHandler(
        path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    return handler
