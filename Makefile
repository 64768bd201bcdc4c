# SlimPajama Studio — every set-up step lives here, so a fresh machine needs only
#   make run    (create .venv, install, start the app)
#   make test   (lint + import contracts + the whole test suite, headless; the engine's
#                tests run in a second environment without Qt, see test-core)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.installed
# The CPU build of torch; a looser pin pulls a multi-GB CUDA build.
TORCH  := torch==2.13.0
PYTEST_ARGS ?=
# The engine without the GUI toolkit: proves slimpajama_gui.core runs where Qt is absent.
CORE_VENV  ?= .venv-core
CORE_PY    := $(CORE_VENV)/bin/python
CORE_STAMP := $(CORE_VENV)/.installed

.PHONY: run install install-core test test-core lint format screenshots package package-check clean help

help:
	@echo "make run          create .venv, install, start the app"
	@echo "make test         lint, import-linter contracts and the whole test suite (headless)"
	@echo "make test-core    the engine's tests (tests/core) in a venv without Qt"
	@echo "make lint         ruff check + ruff format --check + import-linter"
	@echo "make screenshots  start the app under Xvfb and write docs/screenshots/*.png"
	@echo "make package      build the desktop bundle dist/SlimPajamaStudio/ (PyInstaller)"
	@echo "make package-check start the bundle under Xvfb, validate the .desktop and AppStream files"

install: $(STAMP)

# Re-runs only when pyproject.toml changes; the second `make run` starts at once.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing into $(VENV) (first run takes a few minutes)..."
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[test]" "$(TORCH)"
	@touch $@

run: install
	@if [ "$$(uname -s)" = Linux ] && [ -z "$${DISPLAY}$${WAYLAND_DISPLAY}" ]; then \
	  echo "No display found (neither DISPLAY nor WAYLAND_DISPLAY is set), so the SlimPajama Studio window cannot open here; running the demo job (resources/recipes/demo.yaml) from the command line instead."; \
	  $(VENV)/bin/slimpajama run resources/recipes/demo.yaml; \
	else \
	  tools/system-deps.sh xcb && $(PY) -m slimpajama_gui; \
	fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

install-core: $(CORE_STAMP)

$(CORE_STAMP): pyproject.toml tools/core_requirements.py
	@test -x $(CORE_PY) || $(PYTHON) -m venv $(CORE_VENV)
	@echo "Installing the engine without Qt into $(CORE_VENV)..."
	$(CORE_PY) -m pip --disable-pip-version-check install -q --upgrade pip setuptools wheel "tomli; python_version < '3.11'"
	$(CORE_PY) tools/core_requirements.py pyproject.toml > $(CORE_VENV)/requirements.txt
	$(CORE_PY) -m pip --disable-pip-version-check install -q -r $(CORE_VENV)/requirements.txt "$(TORCH)"
	$(CORE_PY) -m pip --disable-pip-version-check install -q --no-deps -e .
	@touch $@

# The int8 tests run again on the paths this CPU does not take by itself: as an x86 CPU
# without VNNI computes (7-bit activations on fbgemm's AVX2 kernels) and as ARM computes
# (qnnpack, which x86 builds of PyTorch include); see slimpajama_gui/core/techniques/quantize/int8_path.py.
# ARM builds have only the one path. Exit code 5: PYTEST_ARGS selected no int8 test.
INT8_PATHS = no-vnni arm
define int8_passes
	@case "$$(uname -m)" in x86_64|amd64|i?86) ;; \
	  *) echo "No other int8 path to test: this CPU is not x86."; exit 0;; esac; \
	for path in $(INT8_PATHS); do \
	  echo "int8 pass: the tests marked int8 with SLIMPAJAMA_INT8_PATH=$$path"; \
	  SLIMPAJAMA_INT8_PATH=$$path QT_QPA_PLATFORM=offscreen $(1) -m pytest -m int8 $(2); \
	  rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc; \
	done
endef

# The whole suite runs in TEST_WORKERS processes (pytest-xdist), each with one OpenMP
# thread: on 2 cores, 2 workers of 2 threads each spun against each other and ran the
# engine tests slower than one process (measured on an AVX2 AMD EPYC: tests/core 300 s
# in one process, 216 s in 2 workers of 1 thread; tests/qt and tests/benchmarks 688 s
# and 440 s). A test that needs more threads sets them itself.
TEST_WORKERS ?= 2
PARALLEL = OMP_NUM_THREADS=1
XDIST = -n $(TEST_WORKERS)

# tests/core in the venv without Qt; it fails if Qt is importable there.
test-core: $(CORE_STAMP)
	@if $(CORE_PY) -c "import PySide6" 2>/dev/null; then \
	  echo "$(CORE_VENV) has PySide6; test-core must run without Qt."; exit 1; fi
	@echo "Engine tests without Qt ($(CORE_VENV): no PySide6, pyqtgraph or superqt)"
	$(PARALLEL) $(CORE_PY) -m pytest -p no:cacheprovider $(XDIST) tests/core $(PYTEST_ARGS)
	$(call int8_passes,$(PARALLEL) $(CORE_PY),$(XDIST) tests/core $(PYTEST_ARGS))

# With no PYTEST_ARGS: the engine's tests without Qt (test-core), then the GUI and
# benchmark tests with Qt. With PYTEST_ARGS (one test, -k ...): those, in .venv.
test: lint
	@tools/system-deps.sh offscreen
ifeq ($(strip $(PYTEST_ARGS)),)
	@$(MAKE) --no-print-directory test-core
	QT_QPA_PLATFORM=offscreen $(PARALLEL) $(PY) -m pytest $(XDIST) tests/qt tests/benchmarks
else
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest $(PYTEST_ARGS)
	$(call int8_passes,$(PY),$(PYTEST_ARGS))
endif

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

screenshots: install
	@tools/system-deps.sh xvfb
	xvfb-run -a -s "-screen 0 $${SHOT_SIZE:-1280x800}x24" $(PY) -m slimpajama_gui.qt.screenshots docs/screenshots

# The desktop bundle (packaging/README.md). Not part of `make test`: it takes minutes.
# pyinstaller comes from the "package" extra; the folder is replaced on every build.
package: install
	@$(PY) -c "import PyInstaller" 2>/dev/null || $(PIP) install -q -e ".[package]" "$(TORCH)"
	$(PY) -m PyInstaller --noconfirm --clean --log-level WARN \
	  --distpath dist --workpath build/pyinstaller packaging/slimpajama_studio.spec
	@du -sh dist/SlimPajamaStudio | awk '{print "Bundle size: " $$1 " (dist/SlimPajamaStudio)"}'

# Starts the bundle under Xvfb until its main window appears, runs its `slimpajama`
# command, and validates the .desktop and AppStream files.
package-check:
	@tools/system-deps.sh package
	packaging/check_bundle.sh dist/SlimPajamaStudio

clean:
	rm -rf $(VENV) $(CORE_VENV) build dist *.egg-info .pytest_cache .ruff_cache
