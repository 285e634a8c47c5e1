#!/usr/bin/env bash
# GPU check, for when a machine with a CUDA device is lent (it cannot run on the CPU-only
# development machine): the CUDA tests, then the network table on CUDA, whose last row is
# full-width VGG16 with batch-norm, timed per device sample over the 10k Fashion-MNIST test
# images (target: 250 samples in under 2 minutes, i.e. < 0.48 s a sample).
#
#   benchmarks/gpu_check.sh --data-dir /path/to/fashion-mnist [--samples 250]
#
# Run from the repository root; needs the venv's python (PYTHON=... to override).
set -euo pipefail
DATA_DIR=/usr/share/datasets/fashion-mnist
SAMPLES=250
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) DATA_DIR="$2"; shift 2 ;;
    --samples) SAMPLES="$2"; shift 2 ;;
    *) echo "usage: $0 --data-dir DIR [--samples N]" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-.venv/bin/python}
export PYTHONPATH=.
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
echo "== CUDA tests"
"$PYTHON" -m pytest -q -p no:cacheprovider -k "cuda" tests
echo "== network table on CUDA (${SAMPLES} samples per row, 10k test images)"
"$PYTHON" benchmarks/bench_montecarlo.py --networks-only --device cuda \
    --network-samples "$SAMPLES" --rounds 1 --data-dir "$DATA_DIR" --only "full width"
