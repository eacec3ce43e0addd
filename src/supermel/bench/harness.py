"""The measurement core: what a workload is, the repetition policy, the timer and the interleaved loop.

Nothing here knows a peer or a workload by name (except :data:`BASELINE`, the
ratio's denominator): :mod:`.peers` and the workload modules build
:class:`Case` lists, :mod:`.runner` runs them through :func:`_measure`.
"""

from __future__ import annotations

import gc
import math
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

#: The reference configuration (Wav2Lip's, the seed's): librosa keywords.
REFERENCE: Dict[str, Any] = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55.0, fmax=7600.0)
_SR = REFERENCE["sr"]
_HOP = REFERENCE["hop_length"]
_NFFT = REFERENCE["n_fft"]

#: Peer whose median is the denominator of the ratio column.
BASELINE = "supermel"


class PeerMissing(Exception):
    """A peer (or a supermel API) is not available; the message says why."""


# =========================================================================== cases & workloads
@dataclass
class Case:
    """One peer inside one workload.

    Parameters
    ----------
    peer : str
        Name shown in the tables (``"supermel"`` is the ratio baseline).
    fn : callable or None
        The timed call (no arguments). Streaming peers keep their state in it.
    output : callable or None
        Returns the array compared with the workload's reference; defaults to ``fn()``.
    notes : str
        Short per-row note (configuration forced on the peer, what is timed).
    status : {"ok", "missing", "not available", "error"}
    reason : str
        Why a non-ok case did not run.
    own_check : callable or None
        Returns an extra note (e.g. the error against librosa configured like the peer).
    """

    peer: str
    fn: Optional[Callable[[], Any]] = None
    output: Optional[Callable[[], Any]] = None
    notes: str = ""
    status: str = "ok"
    reason: str = ""
    own_check: Optional[Callable[[], str]] = None


@dataclass
class Built:
    """What a workload builder returns: the reference and the cases."""

    cases: List[Case]
    reference: Optional[Callable[[], Any]] = None
    reference_name: str = "librosa"


@dataclass
class Workload:
    """A benchmark workload.

    Parameters
    ----------
    name : str
        Shown in the tables; ``--only`` matches a substring of it.
    group : {"offline", "streaming", "front end"}
    build : callable ``(device: str) -> Built``
        Imports the peers lazily and returns the cases.
    audio_seconds : float
        Audio per call (all streams), for the throughput column.
    per : {"call", "push"}
    all_threads : bool
        Also run a row with every core (offline workloads).
    devices : tuple of str
        Devices the workload supports.
    """

    name: str
    group: str
    build: Callable[[str], Built]
    audio_seconds: float = 0.0
    per: str = "call"
    all_threads: bool = False
    devices: Tuple[str, ...] = ("cpu", "cuda")


@dataclass
class Settings:
    """Repetition policy.

    Each round runs every peer for about ``slice_s`` (at least one call, at most
    ``max_inner`` calls); rounds repeat until ``budget_s`` per workload is spent,
    at least ``min_rounds`` and at most ``max_rounds`` times, and stop early
    (after one round) once the timing of a workload has taken ``max_workload_s``.
    All-cores rows are made for offline workloads of at most
    ``all_threads_max_audio_s`` seconds of audio per call.
    """

    warmup: int = 5
    warmup_s: float = 0.2
    budget_s: float = 6.0
    slice_s: float = 0.005
    min_rounds: int = 20
    max_rounds: int = 5000
    max_inner: int = 200
    max_workload_s: float = 120.0
    all_threads_max_audio_s: float = math.inf

    @classmethod
    def quick(cls) -> "Settings":
        """Checks the harness end to end: short budgets, all-cores rows for 1 s only."""
        return cls(warmup=1, warmup_s=0.0, budget_s=0.15, slice_s=0.002, min_rounds=3, max_rounds=200, max_inner=50,
                   max_workload_s=2.0, all_threads_max_audio_s=1.0)


# =========================================================================== signals & exactness
def _signal(n: int, seed: int = 0, batch: Optional[int] = None) -> np.ndarray:
    """Speech-like test audio: a chirp, a few harmonics and noise (float32, deterministic)."""
    rng = np.random.default_rng(seed)
    shape = (n,) if batch is None else (batch, n)
    t = np.arange(n) / _SR
    f0 = 120.0 + 80.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / _SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    y = 0.2 * env * voiced + 0.02 * rng.standard_normal(shape)
    return np.ascontiguousarray(y, dtype=np.float32)


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def rel_error(out: Any, ref: Any) -> float:
    """Relative Frobenius error ``||out - ref||_F / ||ref||_F`` in float64.

    A time-major output is transposed when that makes the shapes agree; any
    other shape mismatch raises ``ValueError``.
    """
    a = np.asarray(_to_numpy(out), dtype=np.float64)
    b = np.asarray(_to_numpy(ref), dtype=np.float64)
    a, b = np.squeeze(a), np.squeeze(b)
    if a.shape != b.shape and a.ndim >= 2 and np.swapaxes(a, -1, -2).shape == b.shape:
        a = np.swapaxes(a, -1, -2)
    if a.shape != b.shape:
        raise ValueError(f"shape {a.shape} does not match the reference's {b.shape}")
    den = float(np.linalg.norm(b.ravel()))
    num = float(np.linalg.norm((a - b).ravel()))
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


# =========================================================================== timing
class _Timer:
    """Times one call: ``perf_counter_ns`` on the CPU; a CUDA event pair plus a synchronisation on CUDA."""

    def __init__(self, device: str) -> None:
        self.cuda = device == "cuda"
        self.name = "cuda events" if self.cuda else "perf_counter"
        if self.cuda:
            import torch

            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)

    def __call__(self, fn: Callable[[], Any]) -> float:
        if self.cuda:
            self._start.record()
            fn()
            self._end.record()
            self._end.synchronize()
            return self._start.elapsed_time(self._end) * 1e-3
        t0 = time.perf_counter_ns()
        fn()
        return (time.perf_counter_ns() - t0) * 1e-9


def _measure(cases: List[Case], settings: Settings, device: str, errors: Dict[str, str]) -> Dict[str, np.ndarray]:
    """Warm up, then time ``cases`` round-robin; returns per-call seconds by peer.

    A case that raises is removed and its message stored in ``errors``.
    """
    timer = _Timer(device)
    live = list(cases)

    def guarded(c: Case, action: Callable[[], Any]) -> bool:
        try:
            action()
            return True
        except Exception as exc:  # a peer failing is a result, not a crash
            errors[c.peer] = f"{type(exc).__name__}: {exc}"
            live.remove(c)
            return False

    # warm-up: at least `warmup` calls and about `warmup_s` seconds per peer; the
    # fastest warm-up call (the first excluded when there are more) sets the calls per round
    est: Dict[str, float] = {}
    for c in list(live):
        def warm(c: Case = c) -> None:
            seen: List[float] = []
            t_end = time.perf_counter() + settings.warmup_s
            while len(seen) < max(1, settings.warmup) or time.perf_counter() < t_end:
                seen.append(timer(c.fn))
            est[c.peer] = max(min(seen[1:] or seen), 1e-7)
        guarded(c, warm)
    inner = {c.peer: int(min(settings.max_inner, max(1, settings.slice_s // est[c.peer]))) for c in live}
    round_s = sum(inner[c.peer] * est[c.peer] for c in live) or 1e-6
    rounds = int(min(settings.max_rounds, max(settings.min_rounds, settings.budget_s // round_s)))
    times: Dict[str, List[float]] = {c.peer: [] for c in live}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    t_stop = time.perf_counter() + settings.max_workload_s
    try:
        for _ in range(rounds):
            if times and any(times.values()) and time.perf_counter() > t_stop:
                break
            for c in list(live):  # A, B, C, A, B, C, ...
                rec = times[c.peer]

                def block(c: Case = c, rec: List[float] = rec) -> None:
                    for _ in range(inner[c.peer]):
                        rec.append(timer(c.fn))
                guarded(c, block)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {c.peer: np.asarray(times[c.peer]) for c in live}


@contextmanager
def _threads(n: int) -> Iterator[None]:
    """Set torch's intra-op threads and the BLAS pools (threadpoolctl) to ``n``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        # BLAS pools only: torch's OpenMP pool is set above, other OpenMP
        # runtimes (audioflux's bundled libomp) keep their own setting.
        ctx: Any = threadpool_limits(limits=n, user_api="blas")
    except Exception:
        ctx = nullcontext()
    try:
        with ctx:
            yield
    finally:
        torch.set_num_threads(old)


def _all_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _fmt_time(s: Optional[float]) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1.0:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"
