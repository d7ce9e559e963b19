#!/usr/bin/env bash
# The GPU benchmark in one call (< 9 minutes on one H100, stand-in weights built on the spot):
#
#   SAM_AGE_SHARED=$PWD/.devshared PYTHONPATH=$PWD/src bash benchmarks/gpu.sh
#
# Prints the markdown table at the end; the JSON and the table go to $OUT (when set, e.g. the
# device runner's output folder) or benchmarks/results/. Extra arguments go to run.py
# (e.g. --cases ours,training  --faces 8  --batch_size 44).
set -euo pipefail
cd "$(dirname "$0")/.."
export SAM_AGE_TEST_CACHE="${SAM_AGE_TEST_CACHE:-/tmp/sam-age-test-cache}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 530 python3 benchmarks/run.py --device cuda --repeat 3 --output "${OUT:-benchmarks/results}" "$@"
