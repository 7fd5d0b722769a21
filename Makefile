# Two commands do all set-up on a fresh Debian machine with Python 3.11:
#   make demo   - the whole system against the simulated venue, on http://localhost:8001
#   make test   - lint, Django system checks and the test suite
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: demo test venv redis-binary bench clean

$(STAMP): requirements.txt
	@infra/scripts/bootstrap.sh $(VENV)
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

redis-binary:
	@infra/scripts/ensure_redis.sh

test: $(STAMP) redis-binary
	$(VENV)/bin/ruff check .
	$(PY) manage.py check
	$(PY) -m pytest

demo: $(STAMP) redis-binary
	$(PY) infra/demo.py

bench: $(STAMP) redis-binary
	$(PY) bench/feed_ingest.py

clean:
	rm -rf $(VENV) .run .pytest_cache .ruff_cache
