# Two entry points for a fresh machine (see README): `make bitstream` and `make test`.
# Both create .venv (Python packages pinned in pyproject.toml) and install Debian's verilator
# when it is missing; when everything is installed they go straight to work.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BOARD ?= icebreaker
PYTEST_ARGS ?=

.PHONY: bitstream test verilator clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

verilator:
	@command -v verilator >/dev/null || { \
	  echo "installing Debian's verilator"; \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq verilator; }

bitstream: $(STAMP)
	$(PY) -m hwgen build --board $(BOARD)

test: $(STAMP) verilator
	$(PY) -m pytest -n auto $(PYTEST_ARGS)

clean:
	rm -rf build .cache .pytest_cache
