"""`python -m slimpajama_gui` and `slimpajama-gui`: start the desktop app."""

from __future__ import annotations

import os
import sys


def _no_display() -> bool:
    return sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
        or os.environ.get("QT_QPA_PLATFORM") in {"offscreen", "minimal", "vnc"}
    )


def main(argv: list[str] | None = None) -> int:
    if _no_display():
        # One sentence instead of Qt's "could not load the Qt platform plugin" abort.
        print(
            "No display found (DISPLAY and WAYLAND_DISPLAY are unset): the SlimPajama Studio "
            "window needs one; use the `slimpajama` command line instead, or run under xvfb-run.",
            file=sys.stderr,
        )
        return 2
    from slimpajama_gui.qt.app import run_app

    return run_app(sys.argv if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
