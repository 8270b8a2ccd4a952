# The two commands of the README: `make run` and `make test`. Both begin with `make install`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WHEELHOUSE := $(VENV)/wheelhouse

.PHONY: install tools run test test-unit chaos bench bench-quick lint clean test-worker

install: $(STAMP)

$(STAMP): requirements.lock requirements-runtime.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@# The images' dependencies as wheels (pip's cache has them by now): the wheel-install test
	@# installs a built modelcert wheel from them into a fresh venv, offline, as the images do.
	rm -rf $(WHEELHOUSE)
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check --require-hashes \
		-r requirements-runtime.lock --wheel-dir $(WHEELHOUSE)
	@touch $(STAMP)

# promtool and shellcheck for the tests that use them (apt, as root on Debian); in CI always.
tools:
	scripts/install-test-tools

run: install
	$(BIN)/modelcert dev

test: install $(if $(CI),tools)
	$(BIN)/python -m pytest -m "not chaos" $(PYTEST_ARGS)

# The pure tests only (no database, broker or process): well under a minute.
test-unit: install
	$(BIN)/python -m pytest -m unit -q $(PYTEST_ARGS)

chaos: install
	CHAOS_JOBS=$${CHAOS_JOBS:-2000} $(BIN)/python -m pytest -m chaos -s $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench

bench-quick: install
	$(BIN)/python -m bench --quick

test-worker: install
	$(BIN)/python scripts/test-worker

lint: install
	$(BIN)/ruff format --check app worker tests bench
	$(BIN)/ruff check app worker tests bench
	$(BIN)/lint-imports
	$(BIN)/deptry .
	$(BIN)/mypy app worker

clean:
	rm -rf $(VENV) .modelcert
