#!/usr/bin/env bash
# The GPU benchmark, exactly as BENCHMARKS.md quotes it. Run from anywhere on a
# machine with an NVIDIA GPU and a CUDA build of torch; it writes the GPU
# section of BENCHMARKS.md and benchmarks/results/cuda/.
#
#   bash benchmarks/gpu.sh            # the full GPU run: 4 s of timing per workload row, 18 rows, about 3 minutes
#   bash benchmarks/gpu.sh --quick    # a one-minute smoke test of the CUDA path
#   BUDGET=6 bash benchmarks/gpu.sh   # another timing budget per workload (seconds; --budget S works too)
#   bash benchmarks/gpu.sh --dry-run  # print the interpreter and the commands, run nothing
#
# The interpreter: $PYTHON when set, else `python` when it exists, else `python3` (a GPU image may
# have only python3, the one with its CUDA torch).
#
# Any argument goes to benchmarks/run.py (`supermel bench`). Peers that are not
# installed (librosa, openai-whisper, kaldi-native-fbank, nnAudio, audioflux,
# ...) are reported as missing, never fatal; with network access, INSTALL=1
# first installs the bench extra (never torch itself).
#
# With OUT set (a remote runner that returns only the files under $OUT), the
# results are also copied there: $OUT/BENCHMARKS.md,
# $OUT/benchmarks/results/cuda/ and the whole log, $OUT/gpu.log.
#
# First the CUDA tests (tests/test_cuda.py, and the other files' CUDA tests where librosa is installed),
# then the benchmark: about 1-2 + 3 minutes (estimated from the CPU run: 42 tests of a few seconds
# each, 18 rows of 4 s timing plus warm-up), under the 8 minutes a lent GPU allows.
#
# Exit status: 1 when a CUDA test failed (or pytest is missing), or run.py's: 1 when a row of
# supermel's own (the CUDA-graph rows included) ended in an error; those rows are the last lines
# of the benchmark's log.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
elif command -v python >/dev/null 2>&1; then
    PY=python
elif command -v python3 >/dev/null 2>&1; then
    PY=python3
else
    echo "gpu.sh: neither python nor python3 is on PATH (set PYTHON=/path/to/python)" >&2
    exit 1
fi
python() { command "$PY" "$@"; }  # every `python` below is the interpreter chosen here
if [ "${1:-}" = "--dry-run" ]; then
    shift
    echo "python: $(type -P "$PY" || echo "$PY") ($(python -c 'import sys; print(sys.version.split()[0])'))"
    echo "would run: $PY -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py"
    echo "would run: $PY benchmarks/run.py --device cuda $*"
    exit 0
fi
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

args=(--device cuda)
budget_given=0
for a in "$@"; do
    case "$a" in
        --budget|--budget=*|--quick) budget_given=1 ;;
    esac
    args+=("$a")
done
if [ "$budget_given" = 0 ]; then
    args+=(--budget "${BUDGET:-4}")
fi

rc=0
# The CUDA tests first (tests/test_cuda.py imports only numpy, torch, pytest and supermel, so it runs on a
# bare GPU image; the CUDA tests of the other files need their references: librosa, hypothesis). A
# failing or missing test run makes the script exit 1, after the benchmark has run.
log() { if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; tee -a "$OUT/gpu.log"; else cat; fi; }
echo "== CUDA tests" | log
if python -c "import pytest" 2>/dev/null; then
    python -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py 2>&1 | log || rc=1
    if python -c "import librosa, hypothesis, websockets, soxr" 2>/dev/null; then
        python -m pytest -q -p no:cacheprovider -rs -k cuda tests/test_modules.py tests/test_streaming.py \
            tests/frontends/test_frontend_streaming.py tests/test_pool.py tests/test_serve.py 2>&1 | log || rc=1
    else
        echo "librosa/hypothesis/websockets/soxr missing: only tests/test_cuda.py ran (pip install -e '.[test]' for the rest)" | log
    fi
else
    echo "pytest is not installed: the CUDA tests did not run" | log
    rc=1
fi
echo "== GPU benchmark" | log
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT/benchmarks/results"
    python benchmarks/run.py "${args[@]}" 2>&1 | tee -a "$OUT/gpu.log" || rc=$?
    cp BENCHMARKS.md "$OUT/" || true
    if [ -d benchmarks/results/cuda ]; then
        cp -r benchmarks/results/cuda "$OUT/benchmarks/results/" || true
    fi
else
    python benchmarks/run.py "${args[@]}" || rc=$?
fi
exit "$rc"
