# SlimPajama Studio — every set-up step lives here, so a fresh machine needs only
#   make run    (create .venv, install, start the app)
#   make test   (same environment, lint + import contract + the whole test suite, headless)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.installed
# The CPU build of torch; a looser pin pulls a multi-GB CUDA build.
TORCH  := torch==2.13.0
PYTEST_ARGS ?=

.PHONY: run install test lint format screenshots clean help

help:
	@echo "make run          create .venv, install, start the app"
	@echo "make test         lint, import-linter contract and the whole test suite (headless)"
	@echo "make lint         ruff check + ruff format --check + import-linter"
	@echo "make screenshots  start the app under Xvfb and write docs/screenshots/*.png"

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

# The int8 tests run again on the paths this CPU does not take by itself: as an x86 CPU
# without VNNI computes (7-bit activations on fbgemm's AVX2 kernels) and as ARM computes
# (qnnpack, which x86 builds of PyTorch include); see slimpajama_gui/core/techniques/quantize/int8_path.py.
# ARM builds have only the one path. Exit code 5: PYTEST_ARGS selected no int8 test.
INT8_PATHS = no-vnni arm

test: lint
	@tools/system-deps.sh offscreen
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest $(PYTEST_ARGS)
	@case "$$(uname -m)" in x86_64|amd64|i?86) ;; \
	  *) echo "No other int8 path to test: this CPU is not x86."; exit 0;; esac; \
	for path in $(INT8_PATHS); do \
	  echo "int8 pass: the tests marked int8 with SLIMPAJAMA_INT8_PATH=$$path"; \
	  SLIMPAJAMA_INT8_PATH=$$path QT_QPA_PLATFORM=offscreen $(PY) -m pytest -m int8 $(PYTEST_ARGS); \
	  rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc; \
	done

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

screenshots: install
	@tools/system-deps.sh xvfb
	xvfb-run -a -s "-screen 0 $${SHOT_SIZE:-1280x800}x24" $(PY) -m slimpajama_gui.qt.screenshots docs/screenshots

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
