# journeys — the two commands: `make run` (demo server + worker on ./journeys.db) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-sqlite test-postgres test-hours lint audit lock bench clean install screenshots

# Installs exactly what requirements.lock pins (runtime and dev, each file checked against its
# hash), then the package itself with no dependencies and no build isolation (its build backend,
# setuptools, is pinned in the lock too). `make lock` regenerates the lock after pyproject changes.
$(STAMP): pyproject.toml requirements.lock client/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "journeys needs Python >= 3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e client  # journeys-client (its one dependency, httpx, is locked)
	@touch $(STAMP)

install: $(STAMP)

## Set up, create ./journeys.db with a demo org, token and journey (once), and serve on 127.0.0.1:8080.
## Patient data is stored encrypted with the demo's own secret key, made in .demo/secret-key on the
## first run and kept (unless JOURNEYS_SECRET_KEY or JOURNEYS_SECRET_KEY_FILE is set already).
DEMO_KEY := .demo/secret-key
run: $(STAMP)
	$(BIN)/journeys demo --secret-key-file $(DEMO_KEY)
	@if [ -z "$$JOURNEYS_SECRET_KEY$$JOURNEYS_SECRET_KEY_FILE" ]; then export JOURNEYS_SECRET_KEY_FILE=$(DEMO_KEY); fi; \
	  exec $(BIN)/journeys serve

## Set up and run the checks: ruff and mypy, the suite on SQLite, the suite on PostgreSQL
## (skipped with a reason when PostgreSQL is not reachable; required under CI=true), and the
## dependency audit (skipped with a reason when its service is not reachable; required with
## JOURNEYS_AUDIT_REQUIRED=1).
## Every part runs even when an earlier one fails; the summary names each, and the exit
## status is non-zero if any failed.
test: $(STAMP)
	@failed=""; \
	for part in lint test-sqlite test-postgres audit; do \
	  $(MAKE) --no-print-directory $$part || failed="$$failed $$part"; \
	done; \
	echo; \
	for part in lint test-sqlite test-postgres audit; do \
	  case " $$failed " in *" $$part "*) echo "make test: $$part FAILED";; *) echo "make test: $$part passed";; esac; \
	done; \
	test -z "$$failed"

## The suite with the wall clock set to other hours of the day (UTC): tests/tools/shiftclock.c,
## built here with cc, shifts CLOCK_REALTIME for every process of the run (servers and workers
## included) and leaves monotonic clocks and sleeps alone. Nothing may depend on the wall clock's
## hour, date or weekday: this shows it. HOURS are UTC times of today (HH:MM) or full dates
## (YYYY-MM-DDTHH:MM, e.g. a Sunday on a DST change); TESTS narrows the run.
HOURS ?= 03:30 12:00 23:30
TESTS ?=
SHIFTCLOCK := $(VENV)/shiftclock.so
$(SHIFTCLOCK): tests/tools/shiftclock.c $(STAMP)
	cc -shared -fPIC -O2 -o $@ $< -ldl

test-hours: $(SHIFTCLOCK)
	@failed=""; today=$$(date -u +%F); \
	for hour in $(HOURS); do \
	  case $$hour in *T*) when=$$(echo $$hour | tr T ' ');; *) when="$$today $$hour";; esac; \
	  shift=$$(( $$(date -u -d "$$when" +%s) - $$(date -u +%s) )); \
	  echo "== the suite at $$hour UTC (wall clock shifted by $${shift} s)"; \
	  SHIFTCLOCK_SECONDS=$$shift LD_PRELOAD=$(abspath $(SHIFTCLOCK)) \
	    $(BIN)/python -m pytest -q -p no:cacheprovider -m "not postgres_only" $(TESTS) || failed="$$failed $$hour"; \
	done; \
	test -z "$$failed" || { echo "failed at:$$failed UTC"; exit 1; }

lint: $(STAMP)
	$(BIN)/ruff check journeys tests bench client
	$(BIN)/mypy

## The locked versions against PyPI's known vulnerabilities (pip-audit; tests/tools/audit.py says
## why it skips or fails). AUDIT_OPTIONS go to pip-audit, e.g. AUDIT_OPTIONS="-s osv".
AUDIT_OPTIONS ?=
audit: $(STAMP)
	$(BIN)/python tests/tools/audit.py requirements.lock $(AUDIT_OPTIONS)

## Regenerate requirements.lock from pyproject.toml (runtime, dev and the build backend, every file
## with its hash) with pip-compile, in a throwaway venv. UPGRADE=1 moves every pin to the newest
## version pyproject allows; UPGRADE_PACKAGE=NAME only that one (e.g. to leave a vulnerable version).
PIP_TOOLS ?= pip-tools==7.6.2
UPGRADE ?=
UPGRADE_PACKAGE ?=
lock:
	@tool=$$(mktemp -d); trap 'rm -rf "$$tool"' EXIT; \
	$(PYTHON) -m venv "$$tool" && "$$tool/bin/python" -m pip install --quiet --upgrade pip '$(PIP_TOOLS)' && \
	CUSTOM_COMPILE_COMMAND="make lock" "$$tool/bin/pip-compile" --quiet --generate-hashes --allow-unsafe \
	  --all-build-deps --extra dev --strip-extras --no-emit-options \
	  $(if $(UPGRADE),--upgrade) $(foreach p,$(UPGRADE_PACKAGE),--upgrade-package $(p)) \
	  -o requirements.lock pyproject.toml

test-sqlite: $(STAMP)
	$(BIN)/python -m pytest -q -m "not postgres_only"

# The PostgreSQL pass leaves out what runs the same on every database (it ran in the SQLite pass).
test-postgres: $(STAMP)
	JOURNEYS_TEST_DATABASE=postgresql $(BIN)/python -m pytest -q -m "not same_on_every_database"

## The console's screenshots in docs/console/ (docs/console.md shows them), taken by its browser tests.
screenshots: $(STAMP)
	JOURNEYS_SCREENSHOTS=$(abspath docs/console) $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_console*.py

## Benchmarks (bench/README.md): SQLite, and PostgreSQL at JOURNEYS_BENCH_POSTGRES_URL (skipped if unreachable).
JOURNEYS_BENCH_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
bench: $(STAMP)
	JOURNEYS_BENCH_POSTGRES_URL=$(JOURNEYS_BENCH_POSTGRES_URL) $(BIN)/python -m bench

clean:
	rm -rf $(VENV) .demo .screenshots journeys.db journeys.db-wal journeys.db-shm .pytest_cache .ruff_cache
