# Two commands do all set-up on a fresh Debian machine with Python 3.11:
#   make demo   - the whole system against the simulated venue, on http://localhost:8001
#   make test   - lint, Django system checks and the test suite
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: demo test venv assets redis-binary chromium bench clean

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

test: $(STAMP) assets redis-binary chromium
	$(VENV)/bin/ruff check .
	$(PY) manage.py check
	$(PY) -m pytest

demo: $(STAMP) assets redis-binary
	$(PY) infra/demo.py

bench: $(STAMP) redis-binary
	$(PY) bench/feed_ingest.py
	$(PY) bench/signal_latency.py
	$(PY) bench/api_load.py

clean:
	rm -rf $(VENV) .run .pytest_cache .ruff_cache node_modules
