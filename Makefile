# Two commands set everything up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SRC := $(shell find src -name '*.py' -o -name '*.c' -o -name '*.h' 2>/dev/null) pyproject.toml setup.py

.PHONY: all deps beam-deps test demo bench fuzz clean dist-check

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

# The demo runs the deployment the README recommends on a host given to the node and its workers:
# schedulers bound to CPUs (+stbt: bind where the emulator finds a CPU topology; the demo says which).
demo: deps
	cd beam && TETHER_PYTHON=$(abspath $(PY)) ERL_FLAGS="$(strip $(ERL_FLAGS) +stbt db)" mix run demo.exs

bench: deps
	$(PY) -m tether bench

# Coverage-guided fuzzing with atheris (tests/fuzz/run.py): every target for
# FUZZ_SECONDS each; the first finding stops the run with its input saved.
# atheris is installed here, not by `make test`: CI does not need it.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= etf_decode loads inspect_verify stream worker
fuzz: deps
	$(PY) -m pip install -q atheris
	cd tests && for t in $(FUZZ_TARGETS); do ../$(PY) -m fuzz.run $$t --seconds $(FUZZ_SECONDS) || exit 1; done

# The artifacts as a user gets them: sdist and wheel, the wheel in a fresh venv,
# smoke-tested there (tests/test_dist.py runs the same check inside `make test`).
dist-check: $(STAMP)
	$(PY) tools/dist_check.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
