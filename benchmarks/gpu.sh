#!/usr/bin/env bash
# The GPU benchmark, exactly as BENCHMARKS.md quotes it. Run from anywhere on a
# machine with an NVIDIA GPU and a CUDA build of torch; it writes the GPU
# section of BENCHMARKS.md and benchmarks/results/cuda/.
#
#   bash benchmarks/gpu.sh            # the full GPU run
#   bash benchmarks/gpu.sh --quick    # a one-minute smoke test of the CUDA path
#
# Peers that are not installed are reported as missing; with network access,
# INSTALL=1 first installs the bench extra (never torch itself).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${INSTALL:-0}" = 1 ]; then
    python -m pip install -q -e ".[bench]"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
python - <<'PY'
import torch
assert torch.cuda.is_available(), f"torch {torch.__version__} sees no CUDA device"
print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))
PY
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
python benchmarks/run.py --device cuda "$@"
