#!/usr/bin/env python
"""Design measurements behind the core's defaults, timed with the suite's harness.

* the DFT route on the CPU: ``backend="fft"`` (the default) against ``"matmul"``;
* ``supermel._core.CPU_BLOCK_SAMPLES``, the frame samples processed per
  cache-sized block on the CPU (256 frames of 800 by default), against other
  sizes and no blocking;
* the number of row blocks of the block-sparse filterbank
  (:func:`supermel._core.split_filterbank`), on the reference configuration
  (60 s) and on Whisper's (30 s, n_fft 400, 80 mels).

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
from supermel.bench.harness import _signal  # noqa: E402
from supermel.bench.peers import _librosa_mel  # noqa: E402


def _with_block(frames: int, fn):
    def call():
        old = _core.CPU_BLOCK_SAMPLES
        _core.CPU_BLOCK_SAMPLES = frames * bench.REFERENCE["n_fft"]
        try:
            return fn()
        finally:
            _core.CPU_BLOCK_SAMPLES = old
    return call


def _fb_blocks_workload(name: str, seconds: float, config: dict) -> bench.Workload:
    """The blocked CPU mel with the filterbank split into 1..8 row blocks (the default marked)."""
    def build(device: str) -> bench.Built:
        x = _signal(int(seconds * config["sr"]), seed=11)
        mod = supermel.MelSpectrogram(**config, device=device)
        z = mod.spectrogram.pad_input(torch.from_numpy(x)[None].to(device))
        kw = dict(mod.mel_function(torch.float32).keywords)
        fb = mod.mel_scale.fb.cpu().numpy()
        default = len(kw["fb_blocks"])
        cases = [bench.Case("supermel", lambda: _core.mel_frames(z, **kw), notes=f"default: {default} row blocks")]
        for nb in (1, 2, 3, 4, 6, 8):
            if nb == default:
                continue
            blocks = [(lo, hi, torch.from_numpy(w).to(device)) for lo, hi, w in _core.split_filterbank(fb, n_blocks=nb)]
            cases.append(bench.Case(f"{nb} row blocks", lambda b=blocks: _core.mel_frames(z, **{**kw, "fb_blocks": b})))
        return bench.Built(cases, reference=lambda: _core.mel_frames(z, **kw))
    return bench.Workload(name, "offline", build, audio_seconds=seconds)


def _workload(name: str, seconds: float, batch=None) -> bench.Workload:
    def build(device: str) -> bench.Built:
        x = _signal(int(seconds * bench.REFERENCE["sr"]), seed=11, batch=batch)
        xt = torch.from_numpy(x).to(device)
        default = supermel.MelSpectrogram(**bench.REFERENCE, device=device)
        matmul = supermel.MelSpectrogram(**bench.REFERENCE, backend="matmul", device=device)
        cases = [bench.Case("supermel", lambda: default(xt), notes=f"default: backend={default.spectrogram.backend!r}, block {_core.block_frames(bench.REFERENCE['n_fft'])}")]
        cases.append(bench.Case("backend=matmul", lambda: matmul(xt)))
        if device == "cpu":
            for frames in (64, 128, 512, 1024, 1 << 30):
                label = "unblocked" if frames == 1 << 30 else f"block {frames}"
                cases.append(bench.Case(label, _with_block(frames, lambda: default(xt))))
        return bench.Built(cases, reference=lambda: _librosa_mel(x))
    return bench.Workload(name, "offline", build, audio_seconds=seconds * (batch or 1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out")
    args = p.parse_args()
    settings = bench.Settings.quick() if args.quick else bench.Settings()
    whisper = dict(sr=16000, n_fft=400, hop_length=160, n_mels=80, fmax=8000.0, pad_mode="reflect")
    workloads = [
        _workload("core 1 s", 1.0),
        _workload("core 60 s", 60.0),
        _workload("core batch 64 x 1 s", 1.0, batch=64),
        _fb_blocks_workload("filterbank blocks, reference 60 s", 60.0, bench.REFERENCE),
        _fb_blocks_workload("filterbank blocks, whisper 30 s", 30.0, whisper),
    ]
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
