#!/usr/bin/env python
"""The native real FFT (supermel._native_ext) against pocketfft (scipy.fft) and torch's MKL rFFT.

Batched float32 real FFTs of n_fft = 800 (the reference configuration) on 81 frames
(1 s at hop 200) and 4801 frames (60 s), one thread, contenders interleaved
(best of several rounds of each, median of those); and the accuracy of each
against numpy's float64 FFT (max |error| / max |X|, per dtype).

    python benchmarks/fft.py [--n-fft 800] [--rounds 7]

Needs the extension built (``pip install -e .``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

import numpy as np  # noqa: E402
import scipy.fft  # noqa: E402
import torch  # noqa: E402

from supermel import _native  # noqa: E402


def _best(fn, number: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-fft", type=int, default=800)
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
    n = args.n_fft
    print(f"n_fft={n}, float32, one thread; native kernels: {_native.isa()}")
    print("| frames | native | scipy.fft (pocketfft) | torch.fft.rfft (MKL) | native / scipy | native / torch |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for frames in (81, 4801):
        x = rng.standard_normal((frames, n)).astype(np.float32)
        xt = torch.from_numpy(x)
        plan = _native.make_plan(n_fft=n, window=np.ones(n), fb=None, dtype=np.float32, weights=np.float32, power=2.0)
        out = np.empty((frames, n // 2 + 1, 2), np.float32)
        tout = torch.empty((frames, n // 2 + 1), dtype=torch.complex64)
        contenders = {
            "native": lambda: plan.rfft(x, out),
            "scipy": lambda: scipy.fft.rfft(x, axis=-1, workers=1),
            "torch": lambda: torch.fft.rfft(xt, dim=-1, out=tout),
        }
        number = max(3, int(2e5 // (frames * n) * 10))
        times = {k: [] for k in contenders}
        for _ in range(args.rounds):
            for k, fn in contenders.items():  # interleaved
                times[k].append(_best(fn, number))
        med = {k: float(np.median(v)) * 1e6 for k, v in times.items()}
        print(
            f"| {frames}x{n} | {med['native']:.0f} us | {med['scipy']:.0f} us | {med['torch']:.0f} us "
            f"| {med['native'] / med['scipy']:.2f} | {med['native'] / med['torch']:.2f} |"
        )
    print()
    print("Accuracy against numpy's float64 FFT, max |error| / max |X| over 64 frames of noise:")
    print("| n_fft | native f32 | scipy f32 | torch f32 | native f64 | scipy f64 |")
    print("|---|---|---|---|---|---|")
    for nn in (400, 512, 800, 1024, 2048, 441, 1023, 4097):
        x = rng.standard_normal((64, nn))
        want = np.fft.rfft(x)
        scale = np.abs(want).max()
        row = []
        for dt in (np.float32, np.float64):
            xd = x.astype(dt)
            plan = _native.make_plan(n_fft=nn, window=np.ones(nn), fb=None, dtype=dt, weights=dt, power=2.0)
            row.append(np.abs(_native.rfft(plan, xd) - want).max() / scale)
            row.append(np.abs(scipy.fft.rfft(xd, axis=-1) - want).max() / scale)
            if dt == np.float32:
                row.append(np.abs(torch.fft.rfft(torch.from_numpy(xd), dim=-1).numpy() - want).max() / scale)
        print(f"| {nn} | {row[0]:.1e} | {row[1]:.1e} | {row[2]:.1e} | {row[3]:.1e} | {row[4]:.1e} |")


if __name__ == "__main__":
    main()
