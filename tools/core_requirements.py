"""Print the project's requirements without the GUI toolkit, one per line.

``make test-core`` installs these into a virtual environment that has no Qt, so the
engine's tests prove that ``slimpajama_gui.core`` runs headless (servers, torchrun).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the Makefile installs tomli there
    import tomli as tomllib

#: Distributions that only the window needs.
GUI = {"pyside6-essentials", "pyside6", "pyqtgraph", "superqt", "pytest-qt"}


def main() -> int:
    project = tomllib.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    for requirement in wanted:
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()
        if name not in GUI:
            print(requirement)
    return 0


if __name__ == "__main__":
    sys.exit(main())
