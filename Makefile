# onebyone — stages chained by artifact: build/MODEL/model.onnx → model.opt.onnx → (later stages) → verify.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/onebyone
MODEL  ?= digits_resnet
BUNDLE := build/$(MODEL)
STAMP  := $(VENV)/.installed
SOURCES := $(shell find export optimize runtime -name '*.py' 2>/dev/null)

.PHONY: setup export optimize demo bench test test-fast lint clean

setup: $(STAMP)

# Install torch's CPU wheel first unless a torch is importable, so pip never pulls the CUDA build on a CPU machine.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

$(BUNDLE)/model.onnx: $(STAMP) $(SOURCES)
	$(CLI) export $(MODEL) -o $(BUNDLE)

$(BUNDLE)/model.opt.onnx: $(BUNDLE)/model.onnx
	$(CLI) optimize $< -o $@ --verify --report $(BUNDLE)/optimize-report.json

export: $(BUNDLE)/model.onnx

optimize: $(BUNDLE)/model.opt.onnx

demo: $(BUNDLE)/model.opt.onnx
	$(CLI) verify $(BUNDLE)

# Throughput side by side (raw export vs optimize targets on ONNX Runtime CPU): bench/results.json, bench/README.md.
comma := ,
BENCH_MODELS := resnet50,resnet50_v1,inception_block
BENCH_EXPORTS := $(foreach m,$(subst $(comma), ,$(BENCH_MODELS)),build/bench/$(m)/model.onnx)

build/bench/%/model.onnx: $(STAMP) $(SOURCES)
	$(CLI) export $* -o build/bench/$*

bench: $(BENCH_EXPORTS)
	$(PY) -m optimize.bench --models $(BENCH_MODELS) --build build/bench --out bench

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf build
