"""Where the app keeps its own files (job history, results, logs)."""

from __future__ import annotations

import os
import sys
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
