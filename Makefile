# Two commands do all set-up on a fresh Debian machine with Python 3.11:
#   make demo   - the whole system against the simulated venue, on http://localhost:8001
#   make test   - lint, Django system checks and the test suite
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

# `make test` runs the suite on PostgreSQL, the production database: the machine's own when one
# answers on 127.0.0.1:5432, else one that ensure_postgres.sh installs and starts. Each run has a
# scratch database of its own, kimp_test_<pid>_<random>: pytest-django creates it (through the
# server's `postgres` database) and drops it at the end; the step after pytest drops it too if the run
# died first. No other database is touched. Another server: `make test TEST_DATABASE_URL=postgres://...`
# (a user that may create databases; the set-up step is then skipped).
# SQLite, the embedded default of `make demo`, then gets a short smoke run (tests marked sqlite_smoke).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/kimp

.PHONY: demo test venv assets redis-binary postgres chromium promtool bench clean

$(STAMP): requirements.txt
	@infra/scripts/bootstrap.sh $(VENV)
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

# Dashboard libraries from npm (Chart.js); pages still work without them, minus the charts.
assets: node_modules/.package-lock.json

node_modules/.package-lock.json: package.json
	@if command -v npm >/dev/null 2>&1; then npm install --no-audit --no-fund --loglevel=error; \
	 else echo "assets: npm is missing; the dashboard will have no charts (apt-get install npm)"; fi

redis-binary:
	@infra/scripts/ensure_redis.sh

chromium:
	@infra/scripts/ensure_chromium.sh

# Prometheus' validator for infra/prometheus (tests/test_monitoring.py skips its checks without it).
promtool:
	@infra/scripts/ensure_promtool.sh

postgres:
ifeq ($(origin TEST_DATABASE_URL),file)
	@infra/scripts/ensure_postgres.sh
else
	@echo "postgres: TEST_DATABASE_URL is given; not setting up 127.0.0.1:5432"
endif

test: $(STAMP) assets redis-binary postgres chromium promtool
	$(VENV)/bin/ruff check .
	$(PY) manage.py check
	@db=kimp_test_$$$$_$$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n'); status=0; \
	echo "pytest on PostgreSQL, scratch database $$db"; \
	KIMP_TEST_DB_ENGINE=postgresql DATABASE_URL='$(TEST_DATABASE_URL)' DATABASE_TEST_NAME=$$db \
	  $(PY) -m pytest -m 'not sqlite_smoke' || status=$$?; \
	DATABASE_URL='$(TEST_DATABASE_URL)' $(PY) -m tests.support drop-database $$db || { [ "$$status" != 0 ] || status=1; }; \
	exit $$status
	@dir=$$(mktemp -d "$${TMPDIR:-/tmp}/kimp-sqlite-XXXXXX"); status=0; \
	echo "pytest on SQLite (make demo's default): the smoke tests"; \
	KIMP_TEST_DB_ENGINE=sqlite3 DATABASE_URL=sqlite:///$$dir/kimp.sqlite3 DATABASE_TEST_NAME=$$dir/test.sqlite3 \
	  $(PY) -m pytest -m sqlite_smoke || status=$$?; \
	rm -rf "$$dir"; exit $$status

demo: $(STAMP) assets redis-binary
	$(PY) infra/demo.py

bench: $(STAMP) redis-binary
	$(PY) bench/feed_ingest.py
	$(PY) bench/signal_latency.py
	$(PY) bench/api_load.py

clean:
	rm -rf $(VENV) .run .pytest_cache .ruff_cache node_modules
