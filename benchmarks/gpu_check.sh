#!/usr/bin/env bash
# One-command GPU check (docs/performance.md): training and best-of-100 throughput, peak memory,
# DDP with two GPUs; figures to gpu_check.json. Stops after 8 minutes whatever happens.
# Dry run on a CPU: benchmarks/gpu_check.sh --device cpu --tiny --no-compile
set -euo pipefail
cd "$(dirname "$0")/.."
# From the checkout, installed or not: a GPU machine with PyTorch and torchmetrics but no package
# index runs it as it is (PYTHON=python3 benchmarks/gpu_check.sh).
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
exec timeout 480 "$PYTHON" -m benchmarks.gpu_check "$@"  # from the root: the benchmarks package
