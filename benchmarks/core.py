#!/usr/bin/env python
"""Design measurements behind the core's defaults, timed with the suite's harness.

* the DFT route on the CPU: ``backend="fft"`` (the default) against ``"matmul"``;
* ``supermel._core.CPU_BLOCK_FRAMES``, the frames processed per cache-sized block
  on the CPU (256 by default), against other sizes and no blocking.

    python benchmarks/core.py [--quick] [--threads N] [--out DIR]

Prints Markdown (and writes results.json / chart.png with ``--out``). One
thread by default; the ratio column is relative to the shipped default.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

import torch  # noqa: E402

import supermel  # noqa: E402
from supermel import _core, bench  # noqa: E402


def _with_block(frames: int, fn):
    def call():
        old = _core.CPU_BLOCK_FRAMES
        _core.CPU_BLOCK_FRAMES = frames
        try:
            return fn()
        finally:
            _core.CPU_BLOCK_FRAMES = old
    return call


def _workload(name: str, seconds: float, batch=None) -> bench.Workload:
    def build(device: str) -> bench.Built:
        x = bench._signal(int(seconds * bench.REFERENCE["sr"]), seed=11, batch=batch)
        xt = torch.from_numpy(x).to(device)
        default = supermel.MelSpectrogram(**bench.REFERENCE, device=device)
        matmul = supermel.MelSpectrogram(**bench.REFERENCE, backend="matmul", device=device)
        cases = [bench.Case("supermel", lambda: default(xt), notes=f"default: backend={default.spectrogram.backend!r}, block {_core.CPU_BLOCK_FRAMES}")]
        cases.append(bench.Case("backend=matmul", lambda: matmul(xt)))
        if device == "cpu":
            for frames in (64, 128, 512, 1024, 1 << 30):
                label = "unblocked" if frames == 1 << 30 else f"block {frames}"
                cases.append(bench.Case(label, _with_block(frames, lambda: default(xt))))
        return bench.Built(cases, reference=lambda: bench._librosa_mel(x))
    return bench.Workload(name, "offline", build, audio_seconds=seconds * (batch or 1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out")
    args = p.parse_args()
    settings = bench.Settings.quick() if args.quick else bench.Settings()
    workloads = [_workload("core 1 s", 1.0), _workload("core 60 s", 60.0), _workload("core batch 64 x 1 s", 1.0, batch=64)]
    res = bench.run_suite(workloads, settings=settings, threads=args.threads, devices=(args.device,))
    print(bench.render_markdown(res, args.device))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        bench.write_chart(res, os.path.join(args.out, "chart.png"))
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(res.to_json(), f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
