# Everything runs from a virtual environment the Makefile creates (.venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The editable install is strict (a link tree), so a new module needs a reinstall:
# the stamp's name follows the list of source files.
SRC_HASH := $(shell find kapflow workflows adapters -name '*.py' | LC_ALL=C sort | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(SRC_HASH)
DB ?= kapflow-demo.db

.PHONY: demo test lint typecheck check clean

# caldav's urllib3-future would replace urllib3 through a .pth file at every start;
# built from source with URLLIB3_NO_OVERRIDE=1 it installs beside urllib3 instead.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	rm -f $(VENV)/.installed-*
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	URLLIB3_NO_OVERRIDE=1 $(BIN)/python -m pip install --quiet -c constraints.txt \
		--no-binary urllib3-future \
		--config-settings editable_mode=strict -e ".[dev,postgres,notify,calendar]"
	touch $(STAMP)

demo: $(STAMP)  ## run the example practice on a fresh SQLite file
	rm -rf $(DB) $(DB)-wal $(DB)-shm $(DB)-mail
	$(BIN)/kapflow --db sqlite:///$(DB) demo

test: $(STAMP)  ## the whole test suite
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check kapflow workflows adapters tests examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict

check: lint typecheck test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
