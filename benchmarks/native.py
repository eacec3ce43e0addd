#!/usr/bin/env python
"""The native CPU core's acceptance figures (issue 19), contenders interleaved in one run, one thread.

Reference configuration: 16 kHz, n_fft = win = 800, hop 200, 80 Slaney mels 55-7600 Hz, power 2,
float32, speech. Rows:

* offline 1 s and 60 s: ``supermel.melspectrogram`` on the native core, the same call on today's
  torch route (``supermel._native.use_native(False)``, what ``SUPERMEL_NATIVE=0`` runs), librosa,
  naive torch (``torch.stft`` + ``abs()**2`` + mel product);
* one frame (800 samples, ``center=False``): supermel vs naive torch;
* one-hop push (200 samples) on a ``StreamingMelSpectrogram``: p50 and p99 of single pushes, native
  and torch route, against the naive torch stream (the last n_fft samples, ``torch.stft(center=False)``).

    python benchmarks/native.py [--rounds 7]

Times are medians over rounds of the per-round mean (offline, one frame) or the distribution of
single pushes (streaming); ratios are against the row named in the last column.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import supermel  # noqa: E402
from supermel import _native  # noqa: E402

SR, N_FFT, HOP = 16000, 800, 200
MEL = dict(sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=80, fmin=55.0, fmax=7600.0)


def _signal(seconds: float) -> np.ndarray:
    y, sr = supermel.audio.example_audio()
    reps = int(np.ceil(seconds * SR / y.size))
    return np.ascontiguousarray(np.tile(y, reps)[: int(seconds * SR)], dtype=np.float32)


def _mean_time(fn, number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def _interleaved(contenders: dict, rounds: int, budget: float = 0.05) -> dict:
    """Median over rounds of each contender's mean time; contenders alternate within a round."""
    number = {}
    for k, fn in contenders.items():
        fn()
        t = _mean_time(fn, 1)
        number[k] = max(1, int(budget / max(t, 1e-7)))
    times = {k: [] for k in contenders}
    for _ in range(rounds):
        for k, fn in contenders.items():
            times[k].append(_mean_time(fn, number[k]))
    return {k: float(np.median(v)) for k, v in times.items()}


def _naive_torch():
    basis = torch.as_tensor(supermel.mel_filters(sr=SR, n_fft=N_FFT, n_mels=80, fmin=55.0, fmax=7600.0))
    window = torch.hann_window(N_FFT)

    def mel(x: torch.Tensor, center: bool) -> torch.Tensor:
        s = torch.stft(x, N_FFT, HOP, window=window, center=center, pad_mode="constant", return_complex=True)
        return torch.matmul(basis, s.abs().pow(2))

    return mel


def _fmt(t: float) -> str:
    return f"{t * 1e6:,.0f} us" if t < 1e-3 else f"{t * 1e3:,.2f} ms"


def offline(rounds: int) -> None:
    import librosa

    naive = _naive_torch()
    print("| workload | supermel native | supermel torch route (SUPERMEL_NATIVE=0) | librosa | naive torch | native / librosa | native / torch route |")
    print("|---|---|---|---|---|---|---|")
    for seconds in (1, 60):
        y = _signal(seconds)
        yt = torch.from_numpy(y)

        def torch_route():
            with _native.use_native(False):
                return supermel.melspectrogram(y=y, **MEL)

        t = _interleaved({
            "native": lambda: supermel.melspectrogram(y=y, **MEL),
            "torch": torch_route,
            "librosa": lambda: librosa.feature.melspectrogram(y=y, **MEL),
            "naive": lambda: naive(yt, True),
        }, rounds)
        print(f"| offline {seconds} s | {_fmt(t['native'])} | {_fmt(t['torch'])} | {_fmt(t['librosa'])} | {_fmt(t['naive'])} "
              f"| {t['native'] / t['librosa']:.3f} | {t['native'] / t['torch']:.2f} |")
    y = _signal(1)[:N_FFT]
    yt = torch.from_numpy(y)
    mod = supermel.MelSpectrogram(center=False, **MEL)

    def torch_route_frame():
        with _native.use_native(False):
            return mod(yt)

    t = _interleaved({
        "native": lambda: mod(yt),
        "torch": torch_route_frame,
        "naive": lambda: naive(yt, False),
    }, rounds)
    print(f"| one frame (800, center=False), module | {_fmt(t['native'])} | {_fmt(t['torch'])} | | {_fmt(t['naive'])} "
          f"| native / naive torch {t['native'] / t['naive']:.2f} | {t['native'] / t['torch']:.2f} |")


def streaming(rounds: int) -> None:
    y = _signal(20)
    naive = _naive_torch()
    chunks = [y[i : i + HOP] for i in range(0, y.size - HOP + 1, HOP)]

    def run_stream(flag: bool):
        with _native.use_native(flag):
            s = supermel.StreamingMelSpectrogram(**MEL)
            for c in chunks[:20]:  # past the left padding: the steady state
                s.push(c)
            times = []
            for c in chunks[20:]:
                t0 = time.perf_counter()
                s.push(c)
                times.append(time.perf_counter() - t0)
        return times

    def run_naive():
        buf = torch.zeros(N_FFT // 2)
        times = []
        for c in chunks:
            t0 = time.perf_counter()
            buf = torch.cat([buf, torch.from_numpy(c)])
            n = buf.shape[-1]
            if n >= N_FFT:
                k = (n - N_FFT) // HOP + 1
                naive(buf[: (k - 1) * HOP + N_FFT], False).numpy()
                buf = buf[k * HOP :]
            times.append(time.perf_counter() - t0)
        return times[20:]

    res = {"native": [], "torch": [], "naive": []}
    for _ in range(max(1, rounds // 2)):
        res["native"] += run_stream(True)
        res["torch"] += run_stream(False)
        res["naive"] += run_naive()
    p = {k: (np.percentile(v, 50), np.percentile(v, 99)) for k, v in res.items()}
    print()
    print("| one-hop push (200 samples) | p50 | p99 | p50 / naive torch p50 | p99 / own p50 |")
    print("|---|---|---|---|---|")
    for k, name in (("native", "supermel native"), ("torch", "supermel torch/numpy route"), ("naive", "naive torch")):
        print(f"| {name} | {p[k][0] * 1e6:.1f} us | {p[k][1] * 1e6:.1f} us | {p[k][0] / p['naive'][0]:.2f} | {p[k][1] / p[k][0]:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    if not _native.available():
        sys.exit("supermel._native_ext is not built: pip install -e .")
    print(f"one thread; native kernels: {_native.isa()}; torch {torch.__version__}")
    offline(args.rounds)
    streaming(args.rounds)


if __name__ == "__main__":
    main()
