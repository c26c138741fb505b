# Gridx: `make demo` runs the embedded market; `make test` runs every check CI runs.
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/uv/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: demo test install install-dev services browser screenshots lint typecheck migrations-check pytest bench bench-metering bench-api clean

$(UV):
	$(PYTHON) -m venv .tools/uv
	.tools/uv/bin/pip install --quiet uv==$(UV_VERSION)

# The lock file pins every version; --frozen refuses to run if pyproject and lock disagree.
# --compile-bytecode writes the .pyc files once (about 10 s on 2 CPUs, then under a second): a
# machine with PYTHONDONTWRITEBYTECODE set would otherwise compile Django and every library from
# source in each process it starts (each gunicorn and Celery worker, each test subprocess).
install: $(UV)
	$(UV) sync --frozen --inexact --compile-bytecode --python $(PYTHON)
	$(BIN)/python scripts/fetch_static.py

install-dev: $(UV)
	$(UV) sync --frozen --extra dev --compile-bytecode --python $(PYTHON)
	$(BIN)/python scripts/fetch_static.py

demo: install
	$(BIN)/gridx demo

services:
	scripts/ensure-services.sh

# Debian's chromium for the browser tests (tests/e2e), driven by Playwright with executable_path.
browser:
	scripts/ensure-chromium.sh

# Re-take the screenshots in docs/screenshots/ (shown in the README) from the browser tests.
screenshots: install-dev services browser
	GRIDX_SCREENSHOTS=docs/screenshots $(BIN)/pytest tests/e2e -q

lint: install-dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: install-dev
	$(BIN)/mypy

migrations-check: install-dev services
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/python manage.py makemigrations --check --dry-run

pytest: install-dev services browser
	$(BIN)/pytest

test: install-dev services lint typecheck migrations-check pytest

bench: install
	$(BIN)/gridx bench

# Report ingestion into PostgreSQL through the reports endpoint (a throwaway database), then the
# agent's own CPU for 8 GPUs (one simulated hour in a minute).
bench-metering: install services
	DJANGO_SETTINGS_MODULE=config.settings.test GRIDX_TEST_DB=bench_metering $(BIN)/python manage.py metering_bench
	$(BIN)/gridx-agent bench-cpu --gpus 8 --seconds 60 --time-scale 60

# The bid API under load: gunicorn (2 workers) on PostgreSQL (database gridx_bench) and Redis;
# single bids, batches and a /healthz baseline. Figures in docs/api.md.
bench-api: install-dev services
	$(BIN)/python scripts/bench_api.py $(BENCH_API_ARGS)

# Every main page with 10,000 bids and leases (a throwaway PostgreSQL database): p50/p95, query
# counts, and the ratio to /healthz in the same run. Figures in docs/demo.md.
bench-pages: install-dev services
	$(BIN)/python scripts/bench_pages.py $(BENCH_PAGES_ARGS)

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
