# flowdesk: `make run` serves the app at http://localhost:3000, `make test` runs the whole suite.
# Both set up a fresh checkout first (scripts/setup.sh: idempotent, stamped).
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV := . scripts/env.sh
PYTEST_ARGS ?=

.PHONY: help setup run prod test lint fmt bench clean

help:
	@echo "make run    - set up, start the demo API and the app (dev mode) at http://localhost:3000"
	@echo "make prod   - same, production build: reflex run --env prod (one port: 3000)"
	@echo "make test   - set up (+ Debian chromium), ruff check, pytest over tests/"
	@echo "make lint   - ruff check + ruff format --check"
	@echo "make fmt    - ruff format + ruff check --fix"
	@echo "make bench  - run every bench/*.py (JSON on stdout)"

setup:
	@scripts/setup.sh

# Migrate the database and (FLOWDESK_ENV=dev only) seed the demo tenant; both idempotent.
# The demo orders/CRM API runs beside the app and stops with it (Ctrl-C stops both).
# data/ is kept out of dev hot reload: SQLite's -wal/-shm files change on every query (the
# embedded worker's sweeps included), and Reflex would restart the backend on each.
define serve
	@$(ENV); \
	python -m runtime.cli migrate && python -m runtime.cli seed || exit 1; \
	export REFLEX_HOT_RELOAD_EXCLUDE_PATHS="$$PWD/data"; \
	python -m runtime.demo_api & demo=$$!; \
	trap 'kill $$demo 2>/dev/null; wait $$demo 2>/dev/null' EXIT; \
	trap 'exit 130' INT TERM; \
	reflex run $(1)
endef

run: setup
	$(call serve,)

prod: setup
	$(call serve,--env prod)

test:
	@scripts/setup.sh --browser
	@$(ENV); rc=0; ruff check . || rc=1; python -m pytest $(PYTEST_ARGS) || rc=1; exit $$rc

lint: setup
	@$(ENV); ruff check . && ruff format --check .

fmt: setup
	@$(ENV); ruff format . && ruff check --fix .

bench: setup
	@$(ENV); for f in bench/*.py; do \
	  [ -e "$$f" ] || continue; m=$$(basename "$$f" .py); [ "$$m" = __init__ ] && continue; \
	  echo "== bench.$$m" >&2; python -m "bench.$$m" || exit 1; \
	done

clean:
	rm -rf .web .states tests/e2e/artifacts .pytest_cache .ruff_cache
