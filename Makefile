# Everything runs from a virtual environment the Makefile creates (.venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The editable install is strict (a link tree), so a new module needs a reinstall:
# the stamp's name follows the list of source files (the console's templates and static files too).
SRC_HASH := $(shell find kapflow workflows adapters \( -name '*.py' -o -name '*.html' -o -path '*/static/*' \) \
	| LC_ALL=C sort | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(SRC_HASH)
DB ?= kapflow-demo.db
PORT ?= 8443

.PHONY: demo serve-demo screenshots test lint typecheck docs check clean migration bench bench-quick

# caldav's urllib3-future would replace urllib3 through a .pth file at every start;
# built from source with URLLIB3_NO_OVERRIDE=1 it installs beside urllib3 instead.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || { echo "kapflow: creating the virtual environment in $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@rm -f $(VENV)/.installed-*
	@echo "kapflow: updating pip"
	@$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	@echo "kapflow: installing kapflow and its pinned dependencies (constraints.txt); a minute or two the first time"
	@URLLIB3_NO_OVERRIDE=1 $(BIN)/python -m pip install --quiet -c constraints.txt \
		--no-binary urllib3-future \
		--config-settings editable_mode=strict -e ".[dev,postgres,notify,calendar,docs,serve,fhir,pdf]"
	@touch $(STAMP)
	@echo "kapflow: installed into $(VENV)"

demo: $(STAMP)  ## run the example practice on a fresh SQLite file
	rm -rf $(DB) $(DB)-wal $(DB)-shm $(DB)-mail
	$(BIN)/kapflow --db sqlite:///$(DB) demo

serve-demo: $(STAMP)  ## the demo practice served over HTTP on 127.0.0.1:$(PORT), with a front-desk API key
	rm -rf $(DB) $(DB)-wal $(DB)-shm $(DB)-mail $(DB).key
	$(BIN)/kapflow --db sqlite:///$(DB) demo > /dev/null
	(umask 077; $(BIN)/kapflow --db sqlite:///$(DB) apikey create --name demo-pms --role front_desk > $(DB).key)
	@$(BIN)/kapflow --db sqlite:///$(DB) --config $(DB)-settings.toml cases --state inquiry --json | \
		$(BIN)/python -c 'import json, sys; print("try: curl -s -X POST http://127.0.0.1:$(PORT)/v1/cases/" \
		+ json.load(sys.stdin)[0]["id"] + "/triggers/hold -H \"Authorization: Bearer $$(cat $(DB).key)\"" \
		+ " -H \"Content-Type: application/json\" -d '"'"'{\"data\": {\"reason\": \"client travelling\"}}'"'"'")'
	$(BIN)/kapflow --db sqlite:///$(DB) --config $(DB)-settings.toml serve --port $(PORT)

test: $(STAMP)  ## the whole test suite, on as many processes as cores (four at most: one PostgreSQL, one machine)
	$(BIN)/pytest -q -n auto --maxprocesses 4

screenshots: $(STAMP)  ## docs/images: the console's screenshots (its browser tests, Debian's chromium), a superbill's page
	KAPFLOW_SCREENSHOTS=docs/images $(BIN)/pytest -q tests/browser/test_demo_console.py
	KAPFLOW_SCREENSHOTS=docs/images $(BIN)/pytest -q tests/integration/test_superbill.py -k "insurers and sqlite"

lint: $(STAMP)
	$(BIN)/ruff check kapflow workflows adapters tests examples bench

# bench/ is scripts importing each other by name, run from their folder.
bench: $(STAMP)  ## the benchmarks, full sizes (minutes); writes bench/results.json and prints a table
	$(BIN)/python bench/run.py

bench-quick: $(STAMP)  ## the benchmarks at smaller sizes (under a minute on 2 cores)
	$(BIN)/python bench/run.py --quick

# bench/ is scripts importing each other by name, not a package: checked on its own.
typecheck: $(STAMP)
	$(BIN)/mypy --strict
	$(BIN)/mypy --strict bench

# The documentation site from docs/ (mkdocs.yml), warnings as errors, into site/. The API pages read
# kapflow through the editable install's link tree (build/__editable__.*), where setuptools has mapped
# workflows/ and adapters/ into kapflow.workflows and kapflow.adapters. NO_MKDOCS_2_WARNING silences
# Material's banner about its end of life (May 2027), printed at every build.
docs: $(STAMP)  ## the documentation site, into site/ (open site/index.html)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

check: lint typecheck docs test

# A new revision from what changed in kapflow/store/tables.py (Alembic's autogenerate against a scratch
# database at the newest revision). Autogenerate misses renames and data changes: read it, edit it.
migration: $(STAMP)  ## make migration MSG="add a notes column to cases"
	@test -n "$(MSG)" || { echo 'usage: make migration MSG="what changed"' >&2; exit 2; }
	@file=$$($(BIN)/python -c 'import sys; from pathlib import Path; from kapflow.store.schema import new_revision; \
		print(new_revision(sys.argv[1], Path("kapflow/store/migrations")))' "$(MSG)") || exit 1; \
	$(BIN)/ruff format -q "$$file"; $(BIN)/ruff check -q --fix "$$file"; \
	echo "wrote $$file: read it and edit it by hand, then make test"

clean:
	rm -rf $(VENV) site .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
