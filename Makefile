# journeys — the two commands: `make run` (demo server + worker on ./journeys.db) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-sqlite test-postgres test-hours lint bench clean install screenshots

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "journeys needs Python >= 3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Set up, create ./journeys.db with a demo org, token and journey (once), and serve on 127.0.0.1:8080.
run: $(STAMP)
	$(BIN)/journeys demo
	$(BIN)/journeys serve

## Set up and run the checks: ruff, the suite on SQLite, and the suite on PostgreSQL
## (skipped with a reason when PostgreSQL is not reachable; required under CI=true).
## Every part runs even when an earlier one fails; the summary names each, and the exit
## status is non-zero if any failed.
test: $(STAMP)
	@failed=""; \
	for part in lint test-sqlite test-postgres; do \
	  $(MAKE) --no-print-directory $$part || failed="$$failed $$part"; \
	done; \
	echo; \
	for part in lint test-sqlite test-postgres; do \
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
	$(BIN)/ruff check journeys tests bench
	$(BIN)/mypy

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
