# The README's commands: `make setup` installs everything, `make test` runs the tests,
# `make lint` checks style and types, `make lock` re-pins the Python dependencies.
# Heavy builds are cached under $(MCO_CACHE), keyed by a hash of their recipe.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export MCO_CACHE ?= $(HOME)/.cache/mco

# Python dependencies are pinned, with hashes, in $(LOCK) (every extra, for Python 3.11+ on
# any platform); uv, itself pinned and installed from PyPI with pip, installs them.
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
LOCK := requirements.lock

.PHONY: setup venv services test test-fast lint lock clean

setup: venv services

venv: $(VENV)/.installed

$(UV):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q 'uv==$(UV_VERSION)'

# Exactly the locked versions (any file whose hash differs is refused), then mco itself.
$(VENV)/.installed: pyproject.toml $(LOCK) | $(UV)
	$(UV) pip install -q --python $(PY) --require-hashes -r $(LOCK)
	$(UV) pip install -q --python $(PY) --no-deps -e .
	touch $@

# After a change to the dependencies in pyproject.toml: re-resolve from PyPI, then `make setup`.
# `make lock LOCK_ARGS=--upgrade` moves every pin to the newest release.
lock: | $(UV)
	$(UV) pip compile -q pyproject.toml --extra all --extra dev --universal --python-version 3.11 \
	  --generate-hashes $(LOCK_ARGS) -o $(LOCK)

# Each service has its own idempotent script under scripts/setup/.
services: venv
	@for s in scripts/setup/[0-9]*.sh; do [ -e "$$s" ] || continue; echo "== $$s"; bash "$$s" || exit 1; done

# Tests in a random order (modules shuffled, and tests within each module; pytest-random-order).
# The seed is printed first; `make test SEED=N` repeats that order.
test: venv
	@seed=$${SEED:-$$RANDOM}; echo "tests in random order, seed $$seed (repeat with: make test SEED=$$seed)"; \
	  $(VENV)/bin/pytest -q -rs -p random_order --random-order-bucket=module --random-order-seed=$$seed tests

test-fast: venv
	$(VENV)/bin/pytest -q -x tests/unit

# ruff and mypy, configured in pyproject.toml ([tool.ruff], [tool.mypy]).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
