"""Entry point of both bundled executables: the desktop app and the command line.

One executable file serves both (the bundle's Python archive is inside each executable,
so a second one would double its size): started as ``slimpajama`` (a link beside
``slimpajama-studio`` on Linux and macOS, a second console .exe on Windows) it is the
command line, under any other name the desktop app.
"""

import multiprocessing
import sys
from pathlib import Path

CLI_NAME = "slimpajama"


def main() -> int:
    if Path(sys.argv[0]).stem.lower() == CLI_NAME:
        from slimpajama_gui.cli import main as cli_main

        return cli_main()
    from slimpajama_gui.__main__ import main as app_main

    return app_main()


if __name__ == "__main__":
    # A frozen program re-executes itself for multiprocessing's spawned workers; this
    # makes those runs workers instead of second windows.
    multiprocessing.freeze_support()
    sys.exit(main())
