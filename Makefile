# Two commands set everything up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SRC := $(shell find src -name '*.py' -o -name '*.c' -o -name '*.h' 2>/dev/null) pyproject.toml setup.py

.PHONY: all deps beam-deps test demo bench clean

all: test

# erl and elixir come from Debian when missing (we run as root on CI machines).
beam-deps:
	@if ! command -v erl >/dev/null || ! command -v elixir >/dev/null; then \
	  echo "installing erlang-nox and elixir from Debian"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq erlang-nox elixir >/dev/null; \
	fi
	@erl -noshell -eval 'io:format("OTP ~s~n", [erlang:system_info(otp_release)]), halt().'

$(STAMP): $(SRC)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench,pandas,polars]'
	@touch $(STAMP)

deps: beam-deps $(STAMP)

# The BEAM side runs against this checkout's Python: its worker tests start
# `python -m tether.worker` from the venv, with tests/ on the path for handlers.
BEAM_ENV := TETHER_PYTHON=$(abspath $(PY)) PYTHONPATH=$(abspath tests):$(abspath src) MIX_ENV=test

test: deps
	$(PY) -m pytest -q
	cd beam && $(BEAM_ENV) mix test

demo: deps
	cd beam && TETHER_PYTHON=$(abspath $(PY)) mix run demo.exs

bench: deps
	$(PY) -m tether bench

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
