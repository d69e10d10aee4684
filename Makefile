# thanos-tools — developer entry points. Needs only Python >= 3.11, make and the package registries.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_DIR := demo-data
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck bench completions man clean

$(VENV)/.installed-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[tui,serve]'
	touch $@

$(VENV)/.installed-test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[tui,serve,test]'
	touch $(VENV)/.installed-run $@

$(DEMO_DIR): | $(VENV)/.installed-run
	$(VENV)/bin/thanos-tools bucket generate --bucket $(DEMO_DIR) --series 2000 --duration 6h \
		--replicas 2 --label cluster=demo --seed 1

demo: $(VENV)/.installed-run $(DEMO_DIR)
	$(VENV)/bin/thanos-tools bucket inspect --bucket $(DEMO_DIR)
	@if [ -t 0 ] && [ -t 1 ]; then $(VENV)/bin/thanos-tools tui --bucket $(DEMO_DIR); \
	else echo "(not a terminal: skipping the TUI; run: $(VENV)/bin/thanos-tools tui --bucket $(DEMO_DIR))"; fi

test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check thanostools tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q -n 2 $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check thanostools tests bench

typecheck: $(VENV)/.installed-test
	$(VENV)/bin/mypy

bench: $(VENV)/.installed-test
	$(PY) bench/run.py

completions man: $(VENV)/.installed-test
	$(PY) -m thanostools.cli.gendocs

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
