# qis-edge: every target installs what it needs first, so each works on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: all venv system-deps test test-fast test-adversarial demo bench lint hil-soak clean

all: test

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# Mosquitto is the broker for tests and the Pi; installed when we are root and apt-get exists.
# Without it the tests and demo fall back to the embedded amqtt broker (see docs/design.md).
system-deps:
	@sh scripts/system-deps.sh

test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The attack reproductions of tests/adversarial, slow ones included (`make test` runs only the fast ones).
test-adversarial: $(STAMP)
	$(BIN)/python -m pytest tests/adversarial -m "adversarial or not adversarial" $(PYTEST_ARGS)

demo: $(STAMP) system-deps
	$(BIN)/qis-demo

bench: $(STAMP) system-deps
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python bench/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check shared device gateway firmware tests hil bench

hil-soak: $(STAMP) system-deps
	$(BIN)/python -m pytest hil -m soak -s $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
