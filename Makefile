# Two entry points for a fresh machine (see README): `make bitstream` and `make test`.
# Both create .venv (Python packages pinned in pyproject.toml); `make test` also installs Debian's
# verilator and g++ when missing (python3-venv too, for both, on a Python without ensurepip);
# when everything is installed they go straight to work.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BOARD ?= icebreaker
PYTEST_ARGS ?=

# apt-get install, through sudo when not root.
APT_INSTALL = SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq

.PHONY: bitstream test verilator clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c "import ensurepip" 2>/dev/null || { \
	  echo "installing Debian's python3-venv"; $(APT_INSTALL) python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Verilator compiles its models with a C++ compiler, which Debian's package does not pull in.
verilator:
	@{ command -v verilator && command -v g++; } >/dev/null || { \
	  echo "installing Debian's verilator and g++"; $(APT_INSTALL) verilator g++; }

bitstream: $(STAMP)
	$(PY) -m hwgen build --board $(BOARD)

test: $(STAMP) verilator
	$(PY) -m pytest -n auto $(PYTEST_ARGS)

clean:
	rm -rf build .cache .pytest_cache
