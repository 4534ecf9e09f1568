# Every command a developer or CI needs. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# PostgreSQL run of the database tests; the test database name can be changed so that
# several checkouts on one machine do not share it.
PG_URL ?= postgres://postgres@127.0.0.1:5432/postgres
PG_TEST_NAME ?= test_hosting

.PHONY: help venv browser sandbox-tools pebble lint fmt test test-sqlite test-pg demo bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

venv: $(BIN)/.installed  ## create .venv with the pinned requirements

# The browser test drives Debian's chromium (a tool's own browser download cannot work here).
browser:  ## install chromium for the browser test if it is missing (needs root and apt)
	@command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The app sandbox (docs/security.md): bubblewrap, setpriv (util-linux), and for egress
# iproute2, nsenter and nftables, all from Debian's packages. Without root there is nothing to
# install: the node cannot sandbox anyway, and the sandbox tests say so when they skip.
SANDBOX_PATH := $(PATH):/usr/sbin:/sbin
sandbox-tools:  ## install bubblewrap, nftables and iproute2 for the app sandbox (as root, with apt)
	@if [ "$$(id -u)" = 0 ]; then \
		missing=""; \
		PATH="$(SANDBOX_PATH)" command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
		PATH="$(SANDBOX_PATH)" command -v nft >/dev/null || missing="$$missing nftables"; \
		PATH="$(SANDBOX_PATH)" command -v ip >/dev/null || missing="$$missing iproute2"; \
		PATH="$(SANDBOX_PATH)" command -v setpriv >/dev/null || missing="$$missing util-linux"; \
		[ -z "$$missing" ] || { apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; }; \
	fi

# Automatic HTTPS is tested against Debian's pebble (an RFC 8555 test CA) and
# pebble-challtestsrv (its DNS); the demo runs them as its local ACME server.
pebble:  ## install pebble and pebble-challtestsrv for the ACME tests and the demo (needs root and apt)
	@command -v pebble-challtestsrv >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pebble >/dev/null; }

lint: venv  ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: venv  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test-sqlite: venv browser sandbox-tools pebble
	$(PY) -m pytest

test-pg: venv  ## the database tests again on PostgreSQL
	DATABASE_URL=$(PG_URL) DATABASE_TEST_NAME=$(PG_TEST_NAME) $(PY) -m pytest -m django_db -p no:cacheprovider

test: lint test-sqlite test-pg  ## everything CI runs: lint, all tests on SQLite, database tests on PostgreSQL

demo: venv pebble  ## run the whole platform on this machine
	$(PY) -m scripts.demo

bench: venv  ## run every benchmark in bench/
	for b in bench/*_bench.py; do $(PY) $$b || exit 1; done

clean:  ## remove the virtualenv and local state
	rm -rf $(VENV) var
