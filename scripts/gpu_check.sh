#!/usr/bin/env bash
# LayerNorm kernel check on a bare CUDA machine: python3 with torch and triton, lndeploy NOT installed,
# no network. The kernel has one import name, lndeploy.plugins.layernorm (setup.py installs plugins/ as
# lndeploy.plugins): this script lays the tree out that way in a temporary folder, as a wheel installs it,
# and puts it first on PYTHONPATH; nothing onnx is imported. Results: $OUT/gpu_check.json
# (./gpu_check_out/ when OUT is unset).
# Then gpu_custom_op.py runs the zoo models with their LNs on the kernel ($OUT/gpu_custom_op.json).
# Usage: scripts/gpu_check.sh [--interpret] [--no-autotune] [--budget-s 200]
# Exit: 0 all correct, 1 a correctness failure, 3 no CUDA device (nothing measured).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$(dirname "$here")"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp -r lndeploy "$stage/lndeploy"
cp -r plugins "$stage/lndeploy/plugins"
export PYTHONPATH="$stage${PYTHONPATH:+:$PYTHONPATH}"
status=0
"${PYTHON:-python3}" "$here/gpu_check.py" "$@" || status=$?
# the custom op inside the zoo models (skipped by itself where there is no CUDA device)
"${PYTHON:-python3}" "$here/gpu_custom_op.py" || status=$?
exit $status
