#!/usr/bin/env python
"""The full benchmark run: tables into BENCHMARKS.md, files into benchmarks/results/<device>/.

    python benchmarks/run.py                    # CPU, the run BENCHMARKS.md quotes
    python benchmarks/run.py --device cuda      # the GPU section (see gpu.sh)
    python benchmarks/run.py --quick --label "development run"
    python benchmarks/run.py --suite native     # the native core's table (issue 19): its own section, benchmarks/results/native/

Every argument goes to ``supermel bench`` (``supermel.bench.main``); ``--out``
and ``--markdown-file`` get the defaults above unless given. Works from a
checkout without installing (``src/`` is put on the path).
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _device(argv: list) -> str:
    """The results folder: the device, or ``native`` for ``--suite native``."""
    if any(a in ("--suite=native",) for a in argv) or any(a == "--suite" and argv[i + 1 : i + 2] == ["native"] for i, a in enumerate(argv)):
        return "native"
    for i, a in enumerate(argv):
        if a == "--device" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--device="):
            return a.split("=", 1)[1]
    return "cpu"


def main() -> int:
    sys.path.insert(0, os.path.join(ROOT, "src"))
    os.chdir(ROOT)
    from supermel.bench import main as bench_main

    argv = sys.argv[1:]
    if not any(a == "--out" or a.startswith("--out=") for a in argv):
        argv += ["--out", os.path.join("benchmarks", "results", _device(argv))]
    if not any(a == "--markdown-file" or a.startswith("--markdown-file=") for a in argv):
        argv += ["--markdown-file", "BENCHMARKS.md"]
    return bench_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
