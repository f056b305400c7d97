# The two commands: `make run` and `make test`. Each sets up .venv (if needed) and installs the
# project with everything it needs, then runs the system / the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install browser run test lint bench clean infra-down

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel

# torch first: the CPU build of 2.13.0 is on local disk here; a bare `torch` would pull CUDA.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[ml,dev]'
	touch $(STAMP)

install: $(STAMP)

# The dashboard's end-to-end test drives Debian's Chromium (never a browser a tool downloads itself).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the dashboard test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The demo: every agent on the bundled data, the ops API and dashboard beside them; before it stops,
# a screenshot of the live dashboard goes to run-dashboard.png. Each run starts afresh in its own
# home (DEMO_HOME): servers and state of the last demo are stopped and removed first, ~/.cryptiq is
# never touched. After it, e.g. `CRYPTIQ_HOME=.demo .venv/bin/cryptiq pnl` reads its books.
# DEMO_SPEED: 200,000x real time plays the bundled 9 months of hourly candles (8 symbols) in about
# 2 minutes, a pace the agents keep up with on 2 cores, so strategies see their fills before they
# decide again; `max` would replay faster than risk and execution can follow (see README).
DEMO_HOME ?= $(CURDIR)/.demo
DEMO_SPEED ?= 200000
run: install
	-@[ -d "$(DEMO_HOME)" ] && CRYPTIQ_HOME="$(DEMO_HOME)" $(BIN)/cryptiq infra down >/dev/null 2>&1
	rm -rf "$(DEMO_HOME)"
	CRYPTIQ_HOME="$(DEMO_HOME)" $(BIN)/cryptiq run --speed $(DEMO_SPEED) --screenshot run-dashboard.png

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: lint browser
	$(BIN)/pytest

bench: install
	for bench in benchmarks/[!_]*.py; do $(BIN)/python $$bench || exit 1; done

# Stops the servers `make run` left up (the demo's home); `cryptiq infra down` stops those of ~/.cryptiq.
infra-down: install
	CRYPTIQ_HOME="$(DEMO_HOME)" $(BIN)/cryptiq infra down

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
