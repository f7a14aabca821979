# `make test` and `make demo` work on a fresh clone: each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
PLUGINS := $(sort $(dir $(wildcard plugins/*/pyproject.toml)))
STAMP := $(VENV)/.installed
# pytest-xdist workers for `make test`: one per core, at most 4 (each end-to-end test takes ~1-2 GiB)
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))
GPU_OUT ?= $(if $(OUT),$(OUT),gpu-check-out)

.PHONY: test lint demo install clean gpu-check

$(STAMP): core/pyproject.toml $(wildcard plugins/*/pyproject.toml) Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and pinned: the local CPU wheel (an unpinned torch pulls GBs of CUDA packages)
	$(PIP) install -q torch==2.13.0
	# setuptools 77+ reads the SPDX `license = "Apache-2.0"` of our pyproject.toml files
	$(PIP) install -q "setuptools>=77" wheel pytest pytest-xdist ruff import-linter
	# optional libraries whose code paths the tests exercise (int8 T5 encoder)
	$(PIP) install -q bitsandbytes accelerate
	$(PIP) install -q -e core $(addprefix -e ,$(PLUGINS))
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .
	# the layering (pyproject.toml [tool.importlinter]): core never imports a plugin, plugins use
	# studio.api only, no import cycles
	$(VENV)/bin/lint-imports --no-cache

test: $(STAMP) lint
	# worksteal: an idle worker takes queued tests from a busy one (the end-to-end tests are long)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=30

# DreamFusion on the embedded primitives model, offline, on the CPU: train, test video, mesh, eval.
demo: $(STAMP)
	bash tools/demo.sh $(VENV)/bin/studio "a red cube"

# On the GPU machine (no venv there: its python already has torch + CUDA).
gpu-check:
	bash tools/gpu-check.sh $(GPU_OUT)

clean:
	rm -rf $(VENV) outputs
