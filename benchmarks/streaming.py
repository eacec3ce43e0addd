#!/usr/bin/env python
"""The streaming benchmark of the streaming issue: per-push p50 / p99 with the peers side by side.

    python benchmarks/streaming.py                  # CPU, one thread: one hop, 30 fps frame, 64 streams
    python benchmarks/streaming.py --device cuda    # also the device-I/O rows (a GPU machine)
    python benchmarks/streaming.py --quick

The workloads are the suite's ``streaming`` ones (``supermel bench --only
streaming``), in the reference configuration (16 kHz, n_fft 800, hop 200, 80
mels, 55-7600 Hz); peers: naive torch (the last n_fft samples,
``torch.stft(center=False)``, cached basis), librosa on the same buffer and
kaldi-native-fbank's ``OnlineFbank``. Prints Markdown; the run BENCHMARKS.md
quotes is ``python benchmarks/run.py`` (all workloads), which includes these
rows. Any other argument goes to ``supermel bench``.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    sys.path.insert(0, os.path.join(ROOT, "src"))
    from supermel.bench import main as bench_main

    argv = sys.argv[1:]
    if not any(a == "--only" or a.startswith("--only=") for a in argv):
        argv += ["--only", "streaming"]
    return bench_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
