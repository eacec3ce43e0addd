#!/usr/bin/env python
"""A live lip-sync loop: audio arrives one video frame at a time, mel windows leave per frame.

A talking-head model such as Wav2Lip needs, for video frame ``i``, the 16
mel columns starting at ``floor(80 i / fps)``. This script plays the bundled
speech clip (or a file) as if it came from a microphone, one video frame of
audio per push, for several avatars (streams) at once. It prints the time
each push took and the look-ahead a frame waits for, and checks every window
against the offline computation.

    python examples/lipsync_realtime.py                 # 25 fps, one stream, the bundled clip
    python examples/lipsync_realtime.py --fps 29.97 --streams 8
    python examples/lipsync_realtime.py speech.wav --fps 30

It runs the loop on one torch thread and one BLAS thread (``--threads``), as the README
advises for a streaming thread: torch's intra-op pool and OpenBLAS's threads make a small push
wait for descheduled workers (default threads on 2 busy cores: p99 45-49 ms at 8 streams, past
the 33 ms budget of a video frame; one thread: a few ms). ``--threads 0`` keeps the defaults.

Exit status 0 when every window equals the offline one.
"""

from __future__ import annotations

import argparse
import fractions
import sys
import time
from typing import List, Optional

import numpy as np
import torch

import supermel
from supermel import audio


def configure_threads(n: int) -> str:
    """Limit torch's intra-op pool and the BLAS/OpenMP pools (threadpoolctl) to ``n`` threads.

    ``n = 0`` leaves them as they are. Returns a line describing the threads in use.
    """
    if n > 0:
        torch.set_num_threads(n)
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # without threadpoolctl: OPENBLAS_NUM_THREADS=1 before the start does it
            pass
        else:
            threadpool_limits(limits=n)  # kept for the rest of the process
    try:
        from threadpoolctl import threadpool_info

        pools = ", ".join(f"{p['internal_api']} {p['num_threads']}" for p in threadpool_info()) or "none"
    except ImportError:
        pools = "threadpoolctl not installed"
    return f"threads: torch {torch.get_num_threads()}; BLAS/OpenMP pools: {pools}"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", nargs="?", help="audio file (default: the bundled speech clip)")
    p.add_argument("--fps", default="25", help="video frame rate, e.g. 25, 30, 29.97 or 30000/1001 (default 25)")
    p.add_argument("--streams", type=int, default=1, help="avatars driven at once (default 1)")
    p.add_argument("--seconds", type=float, default=None, help="play only the first SEC seconds")
    p.add_argument("--threads", type=int, default=1,
                   help="torch and BLAS threads for the loop (default 1, as the README advises; 0: leave the defaults)")
    args = p.parse_args(argv)
    if args.threads < 0:
        p.error(f"--threads {args.threads}: use a number >= 0")
    threads = configure_threads(args.threads)

    fps = fractions.Fraction(args.fps)
    y, sr = audio.example_audio() if args.file is None else audio.load(args.file, sr=16000)
    if args.seconds is not None:
        y = y[: int(args.seconds * sr)]
    # each avatar gets its own (here: scaled) voice
    voices = np.stack([y * (1.0 - 0.1 * k) for k in range(args.streams)]).astype(np.float32)

    chunker = supermel.Wav2LipChunker(fps, frontend="wav2lip", num_streams=args.streams)
    samples_per_frame = sr / fps  # e.g. 640 at 25 fps; 533.87 at 29.97: chunks of 533 or 534 samples
    edges = [round(i * samples_per_frame) for i in range(int(len(y) / samples_per_frame) + 2)]
    edges = [e for e in edges if e <= len(y)]
    if edges[-1] != len(y):
        edges.append(len(y))

    windows, times = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        t0 = time.perf_counter()
        w = chunker.push(voices[:, a:b])  # (streams, n, 80, 16): the windows this chunk completes
        times.append(time.perf_counter() - t0)
        windows.append(w)
    windows.append(chunker.flush())
    got = np.concatenate(windows, axis=1)

    fe = supermel.frontend("wav2lip")
    want = np.stack([supermel.wav2lip_mel_chunks(fe(v), fps) for v in voices])
    ok = got.shape == want.shape and np.allclose(got, want, rtol=0, atol=1e-4)
    t = np.array(times) * 1e3
    print(f"{len(t)} pushes of {float(samples_per_frame):.2f} samples ({float(fps):g} fps), {args.streams} stream(s)")
    print(f"push time: median {np.median(t):.3f} ms, p99 {np.percentile(t, 99):.3f} ms, max {t.max():.3f} ms "
          f"(budget {1000 / float(fps):.1f} ms per video frame)")
    print(threads)
    print(f"look-ahead: {chunker.latency_ms:.1f} ms of audio after a frame's window start")
    print(f"windows: {got.shape[1]} per stream, shape {got.shape[2:]}; equal to the offline windows: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
