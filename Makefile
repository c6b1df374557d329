# The README's two commands: `make setup` installs everything, `make test` runs the tests.
# Heavy builds are cached under $(MCO_CACHE), keyed by a hash of their recipe.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export MCO_CACHE ?= $(HOME)/.cache/mco

.PHONY: setup venv services test test-fast clean

setup: venv services

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,dev]'
	touch $@

# Each service has its own idempotent script under scripts/setup/.
services: venv
	@for s in scripts/setup/[0-9]*.sh; do [ -e "$$s" ] || continue; echo "== $$s"; bash "$$s" || exit 1; done

test: venv
	$(VENV)/bin/pytest -q -rs tests

test-fast: venv
	$(VENV)/bin/pytest -q -x tests/unit

clean:
	rm -rf $(VENV) .pytest_cache
