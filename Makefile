# Gridx: `make demo` runs the embedded market; `make test` runs every check CI runs.
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/uv/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: demo test install install-dev services lint typecheck migrations-check pytest bench clean

$(UV):
	$(PYTHON) -m venv .tools/uv
	.tools/uv/bin/pip install --quiet uv==$(UV_VERSION)

# The lock file pins every version; --frozen refuses to run if pyproject and lock disagree.
install: $(UV)
	$(UV) sync --frozen --inexact --python $(PYTHON)

install-dev: $(UV)
	$(UV) sync --frozen --extra dev --python $(PYTHON)

demo: install
	$(BIN)/gridx demo

services:
	scripts/ensure-services.sh

lint: install-dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: install-dev
	$(BIN)/mypy

migrations-check: install-dev services
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/python manage.py makemigrations --check --dry-run

pytest: install-dev services
	$(BIN)/pytest

test: install-dev services lint typecheck migrations-check pytest

bench: install
	$(BIN)/gridx bench

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
