# `make demo` and `make test` work on a fresh machine with only python3:
# each creates the virtual environment it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo results tune branch lm lm-results lm-tune test lint typecheck pytest docs dist test-lowest clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,examples,dev,docs]'
	touch $@

# Ten step sizes x ten seeds on MNIST-1D with the committed tuned settings -> runs/compare-mnist1d/.
demo: $(BIN)/.installed
	$(BIN)/python -m examples.main compare

# The same comparison, written where the README and the docs show it (tracked files).
results: $(BIN)/.installed
	$(BIN)/python -m examples.main compare --out examples/results/mnist1d

# Cooldowns branched from one constant run against cosine runs -> examples/results/mnist1d-branch/.
branch: $(BIN)/.installed
	$(BIN)/python -m examples.main branch --out examples/results/mnist1d-branch

# The tuning protocol -> runs/tune-mnist1d/mnist1d.json, compared with examples/tuned/mnist1d.json.
tune: $(BIN)/.installed
	$(BIN)/python -m examples.main tune

# The language model on the standard library's source: every schedule on 3 seeds with the tuned
# settings of examples/tuned/lm.json, then cooldowns branched from orbax checkpoints -> runs/lm/.
lm: $(BIN)/.installed
	$(BIN)/python -m examples.lm compare --out runs/lm
	$(BIN)/python -m examples.lm branch --out runs/lm

# The same, written where the README and the docs show it (tracked files).
lm-results: $(BIN)/.installed
	$(BIN)/python -m examples.lm compare --out examples/results/lm
	$(BIN)/python -m examples.lm branch --out examples/results/lm

# The language model's tuning protocol -> runs/tune-lm/lm.json, compared with examples/tuned/lm.json.
lm-tune: $(BIN)/.installed
	$(BIN)/python -m examples.lm tune --out runs/tune-lm

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy optax_stepdecay

# Two workers, a file each at a time (a document's examples share one namespace): JAX
# compiles each test's programs on one core, and CI has two.
pytest: $(BIN)/.installed
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=25

test: lint typecheck pytest

# The HTML documentation, offline, warnings as errors: docs/_build/html/index.html.
docs: $(BIN)/.installed
	JAX_PLATFORMS=cpu $(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo 'open docs/_build/html/index.html'

# The sdist and wheel, checked as PyPI would; the build must print no deprecation warning, and the
# wheel alone, in a fresh environment outside this checkout, must run the README's code.
dist: $(BIN)/.installed
	rm -rf dist build
	mkdir -p build
	$(BIN)/python -m build > build/build.log 2>&1 || (cat build/build.log; exit 1)
	tail -n 1 build/build.log
	! grep -i deprecat build/build.log
	$(BIN)/twine check --strict dist/*
	$(PYTHON) -m venv build/wheel-venv
	build/wheel-venv/bin/python -m pip install --quiet dist/*.whl
	build/wheel-venv/bin/python -c 'import optax_stepdecay; print(optax_stepdecay.__version__)'
	build/wheel-venv/bin/python -m pip install --quiet pytest sybil
	tmp=$$(mktemp -d) && cp README.md conftest.py $$tmp && \
	  (cd $$tmp && $(CURDIR)/build/wheel-venv/bin/python -m pytest -p no:cacheprovider -q README.md); \
	  status=$$?; rm -rf $$tmp; exit $$status

# The library's tests on the lowest versions pyproject.toml allows for its direct dependencies.
# The oracles (torch, transformers) are not installed here: `make test` requires them in CI.
LOWEST = .venv-lowest
test-lowest: $(BIN)/.installed
	rm -rf $(LOWEST)
	$(BIN)/uv venv --quiet --python $(PYTHON) $(LOWEST)
	VIRTUAL_ENV=$(LOWEST) $(BIN)/uv pip install --quiet --resolution lowest-direct -e '.[test]'
	VIRTUAL_ENV=$(LOWEST) $(BIN)/uv pip list | grep -iE '^(jax|jaxlib|optax|numpy|flax|chex|orbax-checkpoint|matplotlib|hypothesis|pytest|sybil) '
	OPTAX_STEPDECAY_ORACLES=optional $(LOWEST)/bin/python -m pytest -n 2 --dist loadfile \
	  tests optax_stepdecay README.md docs \
	  --ignore-glob='tests/test_example*' --ignore=tests/test_benchmarks.py

clean:
	rm -rf $(VENV) $(LOWEST) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist docs/_build
