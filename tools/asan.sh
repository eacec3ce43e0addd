#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer build of the native core, then the kernel tests on it.
#
#     tools/asan.sh                      # build/asan, then python -m pytest -q tests/test_native.py
#     tools/asan.sh tests/test_pool.py   # other test files instead
#
# Needs the project's environment (pip install -e ".[test]": numpy, torch, nanobind, pytest, ...),
# gcc/g++ with libasan and libubsan, cmake and ninja (or the PyPI ones of the build requirements).
# The module is loaded from build/asan through SUPERMEL_NATIVE_LIB; python itself is not
# instrumented, so the sanitizer runtimes are preloaded and leak checking is off (the interpreter's
# own allocations are not ours). Any sanitizer report fails the run (halt_on_error).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
BUILD=build/asan
NB_DIR=$("$PY" -m nanobind --cmake_dir)
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSUPERMEL_SANITIZE=ON \
    -DPython_EXECUTABLE="$(command -v "$PY")" -Dnanobind_DIR="$NB_DIR" >/dev/null
cmake --build "$BUILD"
LIB=$(ls "$BUILD"/_native_ext*.so)
CXX=${CXX:-g++}
PRELOAD="$($CXX -print-file-name=libasan.so):$($CXX -print-file-name=libubsan.so)"
tests=("$@")
[ ${#tests[@]} -eq 0 ] && tests=(tests/test_native.py)
echo "sanitized module: $LIB"
LD_PRELOAD="$PRELOAD" SUPERMEL_NATIVE_LIB="$PWD/$LIB" \
    ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1" \
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
    "$PY" -m pytest -q -p no:cacheprovider "${tests[@]}"
