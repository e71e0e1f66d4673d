# The two commands: `make demo` and `make test`. Both set up .venv from pyproject.toml when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench install-cuda clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "jaxreg needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/jaxreg compare

test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadfile --durations=10

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# NVIDIA GPUs: .venv as above, plus JAX's CUDA plugin (the cuda extra). Then: python benchmarks/gpu_check.py
install-cuda: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[all,cuda]'

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
