# Everything runs from a virtual environment the Makefile creates (.venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DB ?= kapflow-demo.db

.PHONY: demo test lint typecheck check clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt \
		--config-settings editable_mode=strict -e ".[dev,postgres]"
	touch $(STAMP)

demo: $(STAMP)  ## run the example practice on a fresh SQLite file
	rm -f $(DB) $(DB)-wal $(DB)-shm
	$(BIN)/kapflow --db sqlite:///$(DB) demo

test: $(STAMP)  ## the whole test suite
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check kapflow workflows adapters tests examples bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
