# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: setup demo test lint bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[dev]'
	touch $@

demo: setup
	$(VENV)/bin/semwh demo

test: setup
	$(VENV)/bin/pytest -q -n auto --dist loadfile

lint: setup
	$(VENV)/bin/ruff check semwh migrations tests benchmarks examples
	$(VENV)/bin/ruff format --check semwh migrations tests benchmarks examples
	$(VENV)/bin/mypy semwh

bench: setup
	$(PY) benchmarks/analysis.py
	$(PY) benchmarks/extract.py
