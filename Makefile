# onebyone — stages chained by artifact: build/MODEL/model.onnx → model.opt.onnx → model.opt.{fp16,int8-trt,int8-ort}.onnx
# → verify → infer on one image → parity on labelled images. The default model is the pretrained EfficientNet-Lite0
# (weights from its PyPI package) checked on the shared ImageNet sample (../shared/data/imagenet-1k-sample): CALIB is
# its 100-image calibration split, EVAL its evaluation split, of which the demo scores EVAL_SAMPLES images.
# The small digits model: make demo MODEL=digits_resnet WEIGHTS= CALIB=digits-calibration EVAL= DEMO_IMAGE=IMG.png
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/onebyone
MODEL  ?= efficientnet_lite0
WEIGHTS ?= pretrained
IMAGENET ?= ../shared/data/imagenet-1k-sample
CALIB  ?= $(IMAGENET):calibration
EVAL   ?= $(IMAGENET):evaluation
EVAL_SAMPLES ?= 300
BUNDLE := build/$(MODEL)
STAMP  := $(VENV)/.installed
SOURCES := $(shell find export optimize runtime -name '*.py' 2>/dev/null)

.PHONY: setup export optimize quantize samples demo serve tritonserver bench test test-fast lint clean

setup: $(STAMP)

# Install torch's CPU wheel first unless a torch is importable, so pip never pulls the CUDA build on a CPU machine.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

$(BUNDLE)/model.onnx: $(STAMP) $(SOURCES)
	$(CLI) export $(MODEL) -o $(BUNDLE) $(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(EVAL),--data $(EVAL))

$(BUNDLE)/model.opt.onnx: $(BUNDLE)/model.onnx
	$(CLI) optimize $< -o $@ --verify --report $(BUNDLE)/optimize-report.json

$(BUNDLE)/model.opt.fp16.onnx: $(BUNDLE)/model.opt.onnx
	$(CLI) quantize $< --precision fp16 --calib $(CALIB)

# One calibration serves both INT8 flavours: whichever runs second finds the first one's calib.json (same model, same
# data) and reuses it; either calibrates by itself when it is missing.
$(BUNDLE)/model.opt.int8-trt.onnx: $(BUNDLE)/model.opt.onnx
	$(CLI) quantize $< --precision int8 --calib $(CALIB) --flavour trt

$(BUNDLE)/model.opt.int8-ort.onnx: $(BUNDLE)/model.opt.onnx
	$(CLI) quantize $< --precision int8 --calib $(CALIB) --flavour ort

QUANTIZED := $(BUNDLE)/model.opt.fp16.onnx $(BUNDLE)/model.opt.int8-trt.onnx $(BUNDLE)/model.opt.int8-ort.onnx

export: $(BUNDLE)/model.onnx

optimize: $(BUNDLE)/model.opt.onnx

quantize: $(QUANTIZED)

# Held-out digits as PNGs (the true label is in the file name) for `onebyone infer` on digits_resnet.
SAMPLES := build/samples
DEMO_IMAGE ?= $(IMAGENET)/images/n01443537_goldfish.JPEG
DEMO_ARTIFACT ?= $(BUNDLE)/model.opt.int8-ort.onnx

$(SAMPLES)/.written: $(STAMP)
	$(PY) -m onebyone.runtime.commands.samples $(SAMPLES) --count 8
	@touch $@

samples: $(SAMPLES)/.written

# The default model and its INT8 `ort` artifact over KServe v2 on loopback (tritonclient snippet in docs/serve.md).
serve: $(QUANTIZED)
	$(CLI) serve $(BUNDLE) $(BUNDLE)/model.opt.int8-ort.onnx --host 127.0.0.1 --port 8000

# What it prints from `verify` on is README's demo block (tests/test_readme.py runs it and compares).
demo: $(QUANTIZED)
	@$(CLI) verify $(BUNDLE)
	@$(CLI) infer $(DEMO_ARTIFACT) --input "$(DEMO_IMAGE)" --top-k 3
	@$(CLI) parity $(BUNDLE) $(BUNDLE)/model.onnx $(BUNDLE)/model.opt.onnx $(QUANTIZED) \
		$(if $(EVAL),--data $(EVAL) --samples $(EVAL_SAMPLES)) --json $(BUNDLE)/parity.json --report $(BUNDLE)/parity.html

# A real tritonserver (2.51, CPU, Python backend) from the PyPI wheel nvidia-pytriton==0.7.0, fetched once into the
# cache and used as a binary; tests/test_real_triton.py and bench/serve_triton.py run it (bench/tritonserver.py).
tritonserver: $(STAMP)
	$(PY) -c "from bench.tritonserver import home; print(home() / 'bin' / 'tritonserver')"

# Side by side in one run: optimize targets vs the raw export, precision (FP16/INT8) vs ORT's quantize_static, and
# ResNet-50 sessions (torch eager vs ORT FP32 vs ORT INT8) through `onebyone bench`, OpenVINO beside ORT and torch
# (bench/openvino-<cpu class>.*), and the thin server vs the in-process session through tritonclient. Each part writes bench/<part>.{json,md};
# bench/report.py merges them into bench/results.json and bench/README.md (docs/bench.md).
comma := ,
BENCH_MODELS := resnet50,resnet50_v1,inception_block
BENCH_EXPORTS := $(foreach m,$(subst $(comma), ,$(BENCH_MODELS)),build/bench/$(m)/model.onnx)

build/bench/%/model.onnx: $(STAMP) $(SOURCES)
	$(CLI) export $* -o build/bench/$*

# Dense prediction at any resolution: DeepLabV3 exported with a dynamic H×W (checked at 520x520, 640x384, 384x640),
# FP16 and both INT8 flavours (calibrated on 16 ImageNet images, batches at each checked size in turn).
DENSE := build/bench/deeplabv3_resnet50
$(DENSE)/model.opt.int8-ort.onnx: $(STAMP) $(SOURCES)
	$(CLI) export deeplabv3_resnet50 -o $(DENSE) --dynamic height,width
	$(CLI) optimize $(DENSE)/model.onnx -o $(DENSE)/model.opt.onnx
	$(CLI) quantize $(DENSE)/model.opt.onnx --precision fp16
	$(CLI) quantize $(DENSE)/model.opt.onnx --precision int8 --flavour trt --calib $(CALIB) --calib-samples 16 --batch-size 2
	$(CLI) quantize $(DENSE)/model.opt.onnx --precision int8 --flavour ort --calib $(CALIB) --calib-samples 16 --batch-size 2

bench: $(BENCH_EXPORTS) $(DENSE)/model.opt.int8-ort.onnx
	$(PY) -m bench.optimize --models $(BENCH_MODELS) --build build/bench --out bench
	$(PY) -m bench.precision --build build/bench --out bench
	$(CLI) bench resnet50 build/bench/resnet50/model.target-ort.onnx build/bench/resnet50/model.int8-ort.onnx \
		--labels "torch eager,ORT FP32 --target ort,ORT INT8 ort" --backend torch,onnxruntime,onnxruntime \
		--batch 1,8 --seconds 15 \
		--json bench/runtime.json --markdown bench/runtime.md
	$(PY) -m bench.openvino --build build/bench --out bench
	$(CLI) bench $(DENSE)/model.opt.onnx $(DENSE)/model.opt.fp16.onnx $(DENSE)/model.opt.int8-ort.onnx \
		$(DENSE)/model.opt.onnx $(DENSE)/model.opt.int8-trt.onnx \
		--labels "ORT FP32,ORT FP16,ORT INT8 ort,OpenVINO FP32,OpenVINO INT8 trt" \
		--backend onnxruntime,onnxruntime,onnxruntime,openvino,openvino --sizes 256x256,512x512,1024x1024 --batch 1 \
		--seconds 10 --title "DeepLabV3-ResNet50 against resolution" --json bench/resolution.json \
		--markdown bench/resolution.md
	$(PY) -m bench.serve --build build/bench --out bench
	$(PY) -m bench.serve_triton --build build/bench --out bench
	$(PY) -m bench.accuracy --build build/bench --out bench
	$(PY) -m bench.accuracy --build build/bench --out bench --stock-only
	$(PY) -m bench.kernels --build build/bench/kernels --out bench
	$(PY) -m bench.report bench

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf build
