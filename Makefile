PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup dev train test test-fast bench gpu-check lint format clean reproduce docs-figures quickstart-precision

$(BIN)/python:
	$(PY) -m venv $(VENV)

setup: $(BIN)/python  ## install the package
	$(BIN)/pip install -e .

dev: $(BIN)/python  ## install the package with test and lint tools
	$(BIN)/pip install -e ".[dev]"

train: setup  ## the quickstart: CPU-sized SVG-LP on one-digit 32x32 SM-MNIST
	$(BIN)/python -m svg_lightning

reproduce: setup  ## the paper's SVG-LP / SVG-FP / deterministic comparison at CPU scale (docs/reproduction.md)
	$(BIN)/python -m svg_lightning.reproduce
	$(BIN)/python -m tools.reproduction_report

docs-figures: setup  ## the quickstart for seeds 1234, 1, 2; both analyses and the full protocol on seed 1234: docs/quickstart.md, docs/figures/, README blocks
	$(BIN)/python -m tools.quickstart_docs --readme README.md

quickstart-precision: setup  ## on a CPU with native bf16: the quickstart in float32 and bf16-mixed for seeds 1234, 1, 2, and whether it should train in bf16 (logs/quickstart_precision/precision.md)
	$(BIN)/python -m tools.quickstart_precision

test: dev  ## the whole suite, as CI runs it
	$(BIN)/python -m pytest -q

test-fast: dev  ## skip subprocess, multi-process and training tests
	$(BIN)/python -m pytest -q -m "not slow"

bench: dev  ## throughput figures, each with its baseline and ratio (docs/performance.md)
	$(BIN)/python -m benchmarks.bench_model
	$(BIN)/python -m benchmarks.bench_eval --onednn 3
	$(BIN)/python -m benchmarks.bench_data

gpu-check:  ## on a GPU machine, < 8 min: training/eval throughput, peak memory -> gpu_check.json (.venv's python if there is one, else python3 with PyTorch; no install needed)
	benchmarks/gpu_check.sh --out gpu_check.json

lint: dev
	$(BIN)/ruff format --check src tests benchmarks notebooks tools
	$(BIN)/ruff check src tests benchmarks notebooks tools

format: dev
	$(BIN)/ruff format src tests benchmarks notebooks tools
	$(BIN)/ruff check --fix src tests benchmarks notebooks tools

clean:
	rm -rf build dist *.egg-info src/*.egg-info .pytest_cache .ruff_cache
