"""Benchmark suite: supermel against its peers, timed in the same run, with an exactness column.

``supermel bench`` and ``python benchmarks/run.py`` call :func:`main`. One
harness serves every workload:

* **Warm-up** calls first (they also build caches, plans and CUDA graphs).
* **Interleaved repetitions**: the peers of a workload are timed round-robin
  (A, B, C, A, B, C, ...), a short block of calls per peer per round, so the
  noise of a busy machine hits every peer alike and the ratios hold.
* **Statistics** per call (per push for streaming): median, p99, count, and the
  ratio of each peer's median to supermel's median *from the same run*.
* **Exactness**: relative Frobenius error ``||out - ref|| / ||ref||`` against
  librosa on the same input (against openai-whisper or kaldi-native-fbank for the
  front ends).
* **Threads**: offline workloads run with ``--threads`` (default 1) and with all
  cores; everything else with ``--threads``. torch and the BLAS pools
  (threadpoolctl) are set for each row.
* **CUDA** (``--device cuda``): device-side times from ``torch.cuda.Event`` pairs
  with a synchronisation per call, host-to-device copies included and excluded,
  CUDA-graph replays for streaming, throughput in audio hours per second.
* **Output**: a header (machine, cores, threads, versions, date), Markdown
  tables, ``results.json`` and ``chart.png`` (log-scale time per workload).

Peers are optional (``pip install "supermel[bench]"``): a peer that cannot be
imported, or a supermel API that has not landed, gets a row that says so; it is
never dropped silently.

Workloads use the reference configuration unless named: 16 kHz, n_fft 800,
hop 200, 80 mels, 55-7600 Hz (:data:`REFERENCE`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import importlib
import itertools
import json
import math
import os
import platform
import re
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "REFERENCE",
    "Case",
    "Built",
    "Workload",
    "Settings",
    "Results",
    "PEERS",
    "default_workloads",
    "run_suite",
    "rel_error",
    "render_markdown",
    "update_markdown_file",
    "write_chart",
    "main",
]

#: The reference configuration (Wav2Lip's, the seed's): librosa keywords.
REFERENCE: Dict[str, Any] = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55.0, fmax=7600.0)
_SR = REFERENCE["sr"]
_HOP = REFERENCE["hop_length"]
_NFFT = REFERENCE["n_fft"]

#: Peer whose median is the denominator of the ratio column.
BASELINE = "supermel"

_BEGIN = "<!-- supermel-bench:{device}:begin -->"
_END = "<!-- supermel-bench:{device}:end -->"


# =========================================================================== peers
@dataclass(frozen=True)
class PeerInfo:
    """A peer library: how it is imported, configured and where it is used."""

    name: str
    dist: Optional[str]  # distribution name for the version (None: supermel's own)
    module: Optional[str]  # module imported to check availability
    configured: str
    used_in: str
    missing_hint: str = 'not installed (pip install "supermel[bench]")'


_TORCHAUDIO_HINT = (
    "not installed: torchaudio wheels pin one torch version and PyPI had none for "
    "torch 2.13 when this suite was written (newest torchaudio 2.11.0, which requires torch==2.11.0); "
    "installing it would replace torch"
)

#: Every peer the suite knows, in table order.
PEERS: Tuple[PeerInfo, ...] = (
    PeerInfo("supermel", None, "supermel", "`MelSpectrogram(**reference)` module held by the caller (float32, default backend); "
             "`supermel (function)` is the librosa-style `supermel.melspectrogram(y=numpy)` call; streaming: "
             "`StreamingMelSpectrogram(chunk_size=hop when the chunk is a multiple of the hop)`; front ends: `supermel.frontend(name)`",
             "all"),
    PeerInfo("librosa", "librosa", "librosa", "`librosa.feature.melspectrogram(y=..., **reference)` as users call it (filterbank rebuilt per call); "
             "streaming: the same call with `center=False` on a buffer holding the last n_fft samples; whisper: the librosa expression "
             "of Whisper's front end (frontends.md 2.4)",
             "offline, streaming, whisper"),
    PeerInfo("naive torch", "torch", "torch", "`torch.stft(center=True, pad_mode='constant', periodic Hann)`, `abs()**2`, cached "
             "`librosa.filters.mel` basis, `basis @ S`; streaming: the last n_fft samples, `torch.stft(center=False)`",
             "offline, streaming"),
    PeerInfo("nnAudio", "nnAudio", "nnAudio.features", "`features.MelSpectrogram(pad_mode='constant', htk=False, norm=1 (Slaney area), "
             "fmin, fmax, window='hann')`; float32 conv1d DFT", "offline"),
    PeerInfo("kaldi-native-fbank", "kaldi-native-fbank", "kaldi_native_fbank",
             "librosa-like `FbankOptions`: Hann, 50/12.5 ms, no dither, pre-emphasis or DC removal, no power-of-two rounding, "
             "`mel_opts.is_librosa` (Slaney scale and norm), power, no log; input zero-padded by n_fft/2 with `snip_edges=True` "
             "(librosa's centred framing); features read with `get_frame`. Streaming: `OnlineFbank`, 400 zeros first. "
             "Kaldi fbank: the options of supermel's `kaldi-fbank` preset (torchaudio's defaults, 80 bins), `dither=0`",
             "offline, streaming, kaldi"),
    PeerInfo("audioflux", "audioflux", "audioflux", "`MelSpectrogram(radix2_exp=10, slide_length=200, HANN, POWER, style SLANEY, "
             "normal BAND_WIDTH)`: n_fft 1024 (powers of two only) and an HTK-scale filterbank with Slaney area norm (equal to "
             "librosa `htk=True, norm='slaney'`); input zero-padded by 512 for centred frames. Its own-configuration error is in the notes",
             "offline"),
    PeerInfo("openai-whisper", "openai-whisper", "whisper", "`whisper.log_mel_spectrogram(audio, n_mels=80)`: the original, the exactness reference",
             "whisper"),
    PeerInfo("transformers", "transformers", "transformers",
             "Hugging Face feature extractors called as users call them: `WhisperFeatureExtractor()(y, sampling_rate=16000, "
             "return_tensors='np')` (its torch route, 30 s windows); `SeamlessM4TFeatureExtractor()(y, sampling_rate=16000, "
             "return_tensors='np')` and `ASTFeatureExtractor()` (numpy, float64, frame by frame without torchaudio), "
             "`ParakeetFeatureExtractor()` (torch): the references of the w2v-bert, ast and parakeet workloads. "
             "`supermel (transformers twin)` is `supermel.integrations.transformers`' class of the same name",
             "whisper, w2v-bert, ast, parakeet"),
    PeerInfo("faster-whisper", "faster-whisper", "faster_whisper",
             "`faster_whisper.feature_extractor.FeatureExtractor()(y)` as `WhisperModel.transcribe` calls it (numpy, 160 zeros "
             "appended); compared without the padding. `supermel (faster-whisper twin)` is "
             "`supermel.integrations.faster_whisper.FeatureExtractor`", "whisper"),
    PeerInfo("torchaudio", "torchaudio", "torchaudio", "`transforms.MelSpectrogram(norm='slaney', mel_scale='slaney', pad_mode='constant')`; "
             "kaldi: `compliance.kaldi.fbank(dither=0.0)`", "offline, kaldi", _TORCHAUDIO_HINT),
)
_PEER_BY_NAME = {p.name: p for p in PEERS}


class PeerMissing(Exception):
    """A peer (or a supermel API) is not available; the message says why."""


def _import(module: str, peer: Optional[str] = None) -> Any:
    """Import ``module`` or raise :class:`PeerMissing` with the peer's install hint."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or a binary that fails to load
        info = _PEER_BY_NAME.get(peer or "")
        hint = info.missing_hint if info is not None else "not installed"
        if isinstance(exc, ImportError):
            raise PeerMissing(hint) from None
        raise PeerMissing(f"import {module} failed: {type(exc).__name__}: {exc}") from None


def _supermel_api(name: str, issue: str) -> Any:
    import supermel

    obj = getattr(supermel, name, None)
    if obj is None:
        raise PeerMissing(f"not available: supermel.{name} is missing ({issue} not merged)")
    return obj


def _available(module: str) -> bool:
    """Whether ``module`` can be found, without importing it (a ``None`` entry in sys.modules blocks it)."""
    top = module.split(".")[0]
    if top in sys.modules:
        return sys.modules[top] is not None and (module not in sys.modules or sys.modules[module] is not None)
    try:
        import importlib.util

        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _dist_version(dist: str) -> Optional[str]:
    try:
        from importlib import metadata

        return metadata.version(dist)
    except Exception:
        return None


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


# =========================================================================== results
@dataclass
class Results:
    """Rows of one run plus its header."""

    meta: Dict[str, Any]
    peers: List[Dict[str, Any]]
    rows: List[Dict[str, Any]] = field(default_factory=list)
    skipped: List[Dict[str, str]] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        return {"meta": self.meta, "peers": self.peers, "rows": self.rows, "targets": targets(self.rows), "skipped": self.skipped}


def _row_key(r: Dict[str, Any]) -> Tuple[str, str, int]:
    return (r["device"], r["workload"], r["threads"])


def _run_workload(wl: Workload, device: str, threads: int, settings: Settings, log: Callable[[str], None]) -> List[Dict[str, Any]]:
    base = dict(device=device, workload=wl.name, group=wl.group, threads=threads, per=wl.per, audio_s=wl.audio_seconds)
    try:
        built = wl.build(device)
    except PeerMissing as exc:
        return [dict(base, peer=BASELINE, status="not available", reason=str(exc))]
    # exactness, which also makes the first call of every peer
    ref_val, ref_note = None, ""
    if built.reference is not None:
        try:
            ref_val = built.reference()
        except PeerMissing as exc:
            ref_note = f"reference {built.reference_name} {exc}"
        except Exception as exc:
            ref_note = f"reference {built.reference_name} failed: {type(exc).__name__}: {exc}"
    else:
        ref_note = f"no reference ({built.reference_name} missing)"
    errs: Dict[str, Optional[float]] = {}
    notes: Dict[str, str] = {}
    for c in built.cases:
        notes[c.peer] = c.notes
        if c.status != "ok":
            continue
        try:
            out = c.output() if c.output is not None else c.fn()
        except Exception as exc:
            c.status, c.reason = "error", f"{type(exc).__name__}: {exc}"
            continue
        if ref_val is not None:
            try:
                errs[c.peer] = rel_error(out, ref_val)
            except ValueError as exc:
                notes[c.peer] = _join(notes[c.peer], f"not compared: {exc}")
        if c.own_check is not None:
            try:
                notes[c.peer] = _join(notes[c.peer], c.own_check())
            except Exception as exc:
                notes[c.peer] = _join(notes[c.peer], f"own-config check failed: {exc}")
    ok = [c for c in built.cases if c.status == "ok"]
    run_errors: Dict[str, str] = {}
    times = _measure(ok, settings, device, run_errors) if ok else {}
    timer_name = "cuda events" if device == "cuda" else "perf_counter"
    rows = []
    for c in built.cases:
        row = dict(base, peer=c.peer, status=c.status, reason=c.reason, notes=notes.get(c.peer, ""), reference=built.reference_name)
        if c.peer in run_errors:
            row.update(status="error", reason=run_errors[c.peer])
        if row["status"] == "ok" and c.peer in times and times[c.peer].size:
            t = times[c.peer]
            row.update(
                median_s=float(np.median(t)),
                p99_s=float(np.percentile(t, 99)),
                mean_s=float(np.mean(t)),
                min_s=float(np.min(t)),
                n=int(t.size),
                timer=timer_name,
            )
            if wl.audio_seconds:
                row["audio_h_per_s"] = wl.audio_seconds / row["median_s"] / 3600.0
        row["rel_err"] = errs.get(c.peer)
        if row["rel_err"] is None and row["status"] == "ok" and ref_note:
            row["notes"] = _join(row["notes"], ref_note)
        rows.append(row)
    _add_ratios(rows)
    for r in rows:
        log(f"  {r['peer']:<28} {_fmt_time(r.get('median_s')):>10}  {r['status']}{(': ' + r['reason']) if r.get('reason') else ''}")
    return rows


def _add_ratios(rows: List[Dict[str, Any]]) -> None:
    """ratio = peer median / supermel median, within one workload, device and thread count."""
    base = {_row_key(r): r["median_s"] for r in rows if r["peer"] == BASELINE and r.get("median_s")}
    for r in rows:
        b = base.get(_row_key(r))
        r["ratio"] = (r["median_s"] / b) if (b and r.get("median_s")) else None


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _all_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_suite(
    workloads: Optional[Sequence[Workload]] = None,
    *,
    settings: Optional[Settings] = None,
    threads: int = 1,
    devices: Sequence[str] = ("cpu",),
    only: Optional[str] = None,
    log: Optional[Callable[[str], None]] = None,
) -> Results:
    """Run ``workloads`` (default: :func:`default_workloads`) and return the results.

    Parameters
    ----------
    workloads : sequence of Workload or None
    settings : Settings or None
        Repetition policy (default :class:`Settings`).
    threads : int > 0
        Threads for every row; offline workloads also get an all-cores row.
    devices : sequence of {"cpu", "cuda"}
    only : str or None
        Keep the workloads whose name contains this (case-insensitive).
    log : callable or None
        Progress messages (default: stderr).
    """
    import torch

    settings = settings or Settings()
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    wls = list(default_workloads() if workloads is None else workloads)
    if only:
        wls = [w for w in wls if only.lower() in w.name.lower()]
    results = Results(meta=environment(threads, settings), peers=peer_table())
    results.meta["devices"] = list(devices)
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            results.skipped.append(dict(device="cuda", reason="CUDA is not available on this machine (torch.cuda.is_available() is False)"))
            log("cuda: not available, GPU section skipped")
            continue
        if device == "cuda":
            results.meta["gpu"] = torch.cuda.get_device_name(0)
            results.meta["cuda"] = torch.version.cuda
        for wl in wls:
            if device not in wl.devices:
                continue
            variants = [threads]
            if wl.all_threads and _all_threads() != threads and wl.audio_seconds <= settings.all_threads_max_audio_s:
                variants.append(_all_threads())
            for n in variants:
                log(f"[{device}] {wl.name}, {n} thread{'s' if n > 1 else ''}")
                with _threads(n), torch.inference_mode():
                    results.rows.extend(_run_workload(wl, device, n, settings, log))
    results.meta["finished"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return results


# =========================================================================== environment
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(threads: int, settings: Settings) -> Dict[str, Any]:
    """The header: machine, threads, versions and date."""
    import torch

    import supermel

    env_vars = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    blas = []
    try:
        from threadpoolctl import threadpool_info

        blas = [f"{d.get('internal_api')} {d.get('version') or ''} ({d.get('num_threads')} threads{', ' + d['architecture'] if d.get('architecture') else ''})".replace("  ", " ") for d in threadpool_info()]
    except Exception:
        pass
    versions = {"python": platform.python_version(), "supermel": supermel.__version__, "torch": torch.__version__}
    for dist in ("numpy", "scipy", "librosa"):
        versions[dist] = _dist_version(dist) or "not installed"
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": _all_threads(),
        "platform": platform.platform(),
        "threads": threads,
        "all_threads": _all_threads(),
        "torch_threads_default": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "thread_env": env_vars,
        "blas": blas,
        "versions": versions,
        "settings": asdict(settings),
        "command": "supermel bench " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0] else "",
    }


def peer_table() -> List[Dict[str, Any]]:
    """One entry per peer: version or why it is missing, configuration, workloads.

    Presence is checked without importing (a peer whose import fails anyway
    shows the error in its rows).
    """
    out = []
    for p in PEERS:
        entry: Dict[str, Any] = dict(name=p.name, configured=p.configured, used_in=p.used_in)
        if _available(p.module or ""):
            if p.dist is None:
                import supermel

                entry["version"] = supermel.__version__
            else:
                entry["version"] = _dist_version(p.dist) or "installed (version unknown)"
            entry["status"] = "installed"
        else:
            entry["status"] = "missing"
            entry["version"] = None
            entry["reason"] = p.missing_hint
        out.append(entry)
    return out


# =========================================================================== peer adapters: offline
def _librosa_mel(y: np.ndarray, **over: Any) -> np.ndarray:
    librosa = _import("librosa", "librosa")
    kw = dict(REFERENCE, **over)
    return librosa.feature.melspectrogram(y=y, **kw)


def _mel_basis() -> Tuple[np.ndarray, str]:
    """librosa's filterbank for the reference configuration (supermel's when librosa is missing)."""
    try:
        librosa = _import("librosa", "librosa")
        return librosa.filters.mel(sr=_SR, n_fft=_NFFT, n_mels=80, fmin=55.0, fmax=7600.0), ""
    except PeerMissing:
        import supermel

        return supermel.mel_filters(sr=_SR, n_fft=_NFFT, n_mels=80, fmin=55.0, fmax=7600.0), "basis from supermel.mel_filters (librosa missing)"


def _dev_input(x: np.ndarray, device: str, h2d: bool) -> Tuple[Any, Callable[[Any], Any]]:
    """Input tensor and the per-call transfer: excluded (on the device already) or included (pinned host -> device)."""
    import torch

    t = torch.from_numpy(x)
    if device == "cpu":
        return t, lambda v: v
    if h2d:
        return t.pin_memory(), lambda v: v.to(device, non_blocking=True)
    return t.to(device), lambda v: v


def _case(peer: str, make: Callable[[], Case]) -> Case:
    try:
        return make()
    except PeerMissing as exc:
        status = "not available" if str(exc).startswith("not available") else "missing"
        return Case(peer, status=status, reason=str(exc))
    except Exception as exc:
        return Case(peer, status="error", reason=f"setup failed: {type(exc).__name__}: {exc}")


def _offline_cases(x: np.ndarray, device: str, h2d: bool = False) -> List[Case]:
    import torch

    cases: List[Case] = []
    xin, move = _dev_input(x, device, h2d)

    def supermel_module() -> Case:
        import supermel

        if device == "cpu":
            mod = supermel.MelSpectrogram(**REFERENCE)
            return Case("supermel", lambda: mod(move(xin)))
        mod = supermel.MelSpectrogram(**REFERENCE, device=device, check_finite=False)
        return Case("supermel", lambda: mod(move(xin)), notes="check_finite=False (no host sync)")

    def supermel_function() -> Case:
        import supermel

        return Case("supermel (function)", lambda: supermel.melspectrogram(y=x, **REFERENCE), notes="numpy in, numpy out")

    def naive() -> Case:
        basis_np, note = _mel_basis()
        window = torch.hann_window(_NFFT, device=device)
        basis = torch.as_tensor(basis_np, device=device)

        def f() -> Any:
            s = torch.stft(move(xin), _NFFT, _HOP, window=window, center=True, pad_mode="constant", return_complex=True)
            return torch.matmul(basis, s.abs().pow(2))
        return Case("naive torch", f, notes=note)

    def nnaudio() -> Case:
        features = _import("nnAudio.features", "nnAudio")
        m = features.MelSpectrogram(
            sr=_SR, n_fft=_NFFT, win_length=_NFFT, n_mels=80, hop_length=_HOP, window="hann", center=True, pad_mode="constant",
            power=2.0, htk=False, fmin=55.0, fmax=7600.0, norm=1, verbose=False,
        ).to(device)
        batched = x.ndim > 1

        def f() -> Any:
            v = move(xin)
            out = m(v if batched else v[None])
            return out if batched else out[0]
        return Case("nnAudio", f)

    def torchaudio_peer() -> Case:
        ta = _import("torchaudio.transforms", "torchaudio")
        m = ta.MelSpectrogram(
            sample_rate=_SR, n_fft=_NFFT, hop_length=_HOP, f_min=55.0, f_max=7600.0, n_mels=80, pad_mode="constant",
            center=True, power=2.0, norm="slaney", mel_scale="slaney",
        ).to(device)
        return Case("torchaudio", lambda: m(move(xin)))

    cases += [_case("supermel", supermel_module)]
    if device == "cpu":
        cases += [_case("supermel (function)", supermel_function)]
    cases += [_case("naive torch", naive)]
    if device == "cpu":
        cases += [_case("librosa", lambda: Case("librosa", lambda: _librosa_mel(x)))]
    cases += [_case("nnAudio", nnaudio), _case("torchaudio", torchaudio_peer)]
    if device == "cpu":
        cases += [_case("kaldi-native-fbank", lambda: _knf_offline_case(x)), _case("audioflux", lambda: _audioflux_case(x))]
    return cases


def _knf_librosa_options() -> Any:
    """kaldi-native-fbank options as close to librosa's reference configuration as it allows."""
    knf = _import("kaldi_native_fbank", "kaldi-native-fbank")
    o = knf.FbankOptions()
    fo = o.frame_opts
    fo.samp_freq = float(_SR)
    fo.frame_length_ms = 1000.0 * _NFFT / _SR
    fo.frame_shift_ms = 1000.0 * _HOP / _SR
    fo.dither = 0.0
    fo.preemph_coeff = 0.0
    fo.remove_dc_offset = False
    fo.round_to_power_of_two = False
    fo.snip_edges = True
    fo.window_type = "hann"
    m = o.mel_opts
    m.num_bins = 80
    m.low_freq = 55.0
    m.high_freq = 7600.0
    m.is_librosa = True
    m.norm = "slaney"
    m.use_slaney_mel_scale = True
    o.use_energy = False
    o.use_log_fbank = False
    o.use_power = True
    return o


def _knf_frames(f: Any, start: int, stop: int) -> np.ndarray:
    return np.stack([f.get_frame(i) for i in range(start, stop)], axis=-1) if stop > start else np.zeros((f.dim, 0), np.float32)


def _knf_offline_case(x: np.ndarray) -> Case:
    knf = _import("kaldi_native_fbank", "kaldi-native-fbank")
    opts = _knf_librosa_options()
    pad = _NFFT // 2

    def one(y: np.ndarray) -> np.ndarray:
        f = knf.OnlineFbank(opts)
        f.accept_waveform(float(_SR), np.pad(y, (pad, pad)))
        f.input_finished()
        return _knf_frames(f, 0, f.num_frames_ready)

    def fn() -> np.ndarray:
        return one(x) if x.ndim == 1 else np.stack([one(r) for r in x])
    return Case("kaldi-native-fbank", fn, notes="batch: a loop over rows" if x.ndim > 1 else "")


def _audioflux_case(x: np.ndarray) -> Case:
    af = _import("audioflux", "audioflux")
    from audioflux.type import SpectralDataType, SpectralFilterBankNormalType, SpectralFilterBankStyleType, WindowType

    n_fft = 1024
    m = af.MelSpectrogram(
        num=80, samplate=_SR, low_fre=55.0, high_fre=7600.0, radix2_exp=10, window_type=WindowType.HANN, slide_length=_HOP,
        data_type=SpectralDataType.POWER, style_type=SpectralFilterBankStyleType.SLANEY, normal_type=SpectralFilterBankNormalType.BAND_WIDTH,
    )
    widths = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]

    def fn() -> np.ndarray:
        return m.spectrogram(np.pad(x, widths))

    def own() -> str:
        import torch

        err = rel_error(fn(), _librosa_mel(x, n_fft=n_fft, htk=True))
        note = f"error vs librosa(n_fft=1024, htk=True): {err:.1e}"
        if err > 1e-3:
            note = "WRONG OUTPUT, " + note
            if torch.get_num_threads() > 1:
                note += " (audioflux 0.1.9 computes wrong values when torch's OpenMP pool has more than one thread in the same process)"
        return note
    return Case("audioflux", fn, notes="n_fft 1024, HTK scale (forced)", own_check=own)


def _offline_workload(name: str, x_fn: Callable[[], np.ndarray], seconds: float, h2d: bool = False) -> Workload:
    def build(device: str) -> Built:
        x = x_fn()
        return Built(_offline_cases(x, device, h2d), reference=lambda: _librosa_mel(x))
    return Workload(name, "offline", build, audio_seconds=seconds, all_threads=not h2d, devices=("cuda",) if h2d else ("cpu", "cuda"))


# =========================================================================== peer adapters: streaming
class _BufferStream:
    """A stream that keeps the samples the next frames need and runs ``compute`` on them.

    Starts with ``n_fft // 2`` zeros (librosa's left padding), so the frames it
    emits are librosa's centred frames 0, 1, 2, ... This is the "naive" way:
    per push, concatenate and run an offline ``center=False`` transform.
    """

    def __init__(self, compute: Callable[[Any], Any], cat: Callable[[Any, Any], Any], zeros: Any, empty: Callable[[], Any]) -> None:
        self.compute, self.cat, self.buf, self.empty = compute, cat, zeros, empty

    def push(self, chunk: Any) -> Any:
        buf = self.cat(self.buf, chunk)
        n = buf.shape[-1]
        if n < _NFFT:
            self.buf = buf
            return self.empty()
        k = (n - _NFFT) // _HOP + 1
        out = self.compute(buf[..., : (k - 1) * _HOP + _NFFT])
        self.buf = buf[..., k * _HOP :]
        return out


def _stream_chunks(y: np.ndarray, size: int) -> List[np.ndarray]:
    n = (y.shape[-1] // size) * size
    return [np.ascontiguousarray(y[..., i : i + size]) for i in range(0, n, size)]


def _streaming_cases(chunk: int, streams: Optional[int], device: str, y_time: np.ndarray, y_exact: np.ndarray, device_io: bool = False) -> List[Case]:
    """Cases for one streaming workload: each has a timed push and a fresh run over ``y_exact``."""
    import torch

    timed_chunks = _stream_chunks(y_time, chunk)
    exact_chunks = _stream_chunks(y_exact, chunk)
    lead = (streams,) if streams else ()

    def drive(make: Callable[[], Any], prep: Callable[[np.ndarray], Any] = lambda c: c, post: Callable[[Any], Any] = _to_numpy) -> Tuple[Callable[[], Any], Callable[[], Any]]:
        s = make()
        pre = [prep(c) for c in timed_chunks]
        it = itertools.cycle(pre)

        def timed() -> Any:
            return s.push(next(it))

        def exact() -> np.ndarray:
            s2 = make()
            return np.concatenate([post(s2.push(prep(c))) for c in exact_chunks], axis=-1)
        return timed, exact

    def sm(graph: bool) -> Callable[[], Case]:
        def make_case() -> Case:
            cls = _supermel_api("StreamingMelSpectrogram", "the streaming issue")
            fixed = chunk if chunk % _HOP == 0 else None
            if graph and fixed is None:
                raise PeerMissing(f"not available: a CUDA graph needs a fixed chunk size that is a multiple of the hop ({chunk} is not)")
            extra = {} if device == "cpu" else {"check_finite": False}

            def make() -> Any:
                return cls(**REFERENCE, num_streams=streams, device=device, chunk_size=fixed, cuda_graph=graph, **extra)
            prep = (lambda c: torch.from_numpy(c).to(device)) if device_io else (lambda c: c)
            timed, exact = drive(make, prep)
            note = f"chunk_size={fixed}" if fixed else f"no fixed chunk size ({chunk} is not a multiple of the hop)"
            if extra:
                note += ", check_finite=False"
            note += ", tensors in and out" if device_io else (", numpy in and out" if device != "cpu" else "")
            return Case("supermel (CUDA graph)" if graph else "supermel", timed, output=exact, notes=note)
        return make_case

    def naive() -> Case:
        basis_np, note = _mel_basis()
        window = torch.hann_window(_NFFT, device=device)
        basis = torch.as_tensor(basis_np, device=device)

        def compute(seg: Any) -> Any:
            s = torch.stft(seg, _NFFT, _HOP, window=window, center=False, return_complex=True)
            out = torch.matmul(basis, s.abs().pow(2))
            return out if device_io else out.cpu().numpy()

        def make() -> _BufferStream:
            return _BufferStream(
                compute,
                lambda a, b: torch.cat([a, b], dim=-1),
                torch.zeros(lead + (_NFFT // 2,), device=device),
                lambda: torch.zeros(lead + (80, 0)) if not device_io else torch.zeros(lead + (80, 0), device=device),
            )
        prep = (lambda c: torch.from_numpy(c).to(device)) if device_io else (lambda c: torch.from_numpy(c).to(device) if device != "cpu" else torch.from_numpy(c))
        timed, exact = drive(make, prep)
        return Case("naive torch", timed, output=exact, notes=_join("last n_fft samples, torch.stft(center=False)", note))

    def librosa_buf() -> Case:
        _import("librosa", "librosa")

        def make() -> _BufferStream:
            return _BufferStream(
                lambda seg: _librosa_mel(seg, center=False),
                lambda a, b: np.concatenate([a, b], axis=-1),
                np.zeros(lead + (_NFFT // 2,), np.float32),
                lambda: np.zeros(lead + (80, 0), np.float32),
            )
        timed, exact = drive(make)
        return Case("librosa", timed, output=exact, notes="same buffer, center=False")

    def knf_stream() -> Case:
        knf = _import("kaldi_native_fbank", "kaldi-native-fbank")
        opts = _knf_librosa_options()

        class One:
            def __init__(self) -> None:
                self.f = knf.OnlineFbank(opts)
                self.f.accept_waveform(float(_SR), np.zeros(_NFFT // 2, np.float32))
                self.t = 0

            def push(self, c: np.ndarray) -> np.ndarray:
                self.f.accept_waveform(float(_SR), c)
                n = self.f.num_frames_ready
                out = _knf_frames(self.f, self.t, n)
                if n > self.t:
                    self.f.pop(n - self.t)
                    self.t = n
                return out

        class Many:
            def __init__(self) -> None:
                self.s = [One() for _ in range(streams or 1)]

            def push(self, c: np.ndarray) -> np.ndarray:
                return np.stack([s.push(r) for s, r in zip(self.s, c)])
        timed, exact = drive(Many if streams else One)
        return Case("kaldi-native-fbank", timed, output=exact, notes="OnlineFbank, librosa-like options" + ("; a loop over streams" if streams else ""))

    cases = [_case("supermel", sm(False))]
    if device == "cuda":
        cases.append(_case("supermel (CUDA graph)", sm(True)))
    cases.append(_case("naive torch", naive))
    if device == "cpu":
        cases += [_case("librosa", librosa_buf), _case("kaldi-native-fbank", knf_stream)]
    return cases


def _streaming_workload(name: str, chunk: int, streams: Optional[int] = None, device_io: bool = False, all_threads: bool = False) -> Workload:
    def build(device: str) -> Built:
        batch = streams
        y_time = _signal(_SR, seed=1, batch=batch)
        y_exact = _signal(_SR // 2, seed=2, batch=batch)
        cases = _streaming_cases(chunk, streams, device, y_time, y_exact, device_io)

        def reference() -> np.ndarray:
            ref = _librosa_mel(y_exact)
            n_out = (y_exact.shape[-1] // chunk) * chunk  # samples pushed
            t_ready = (n_out + _NFFT // 2 - _NFFT) // _HOP + 1  # frames complete without the end
            return ref[..., :t_ready]
        return Built(cases, reference=reference)
    seconds = chunk / _SR * (streams or 1)
    return Workload(name, "streaming", build, audio_seconds=seconds, per="push", devices=("cuda",) if device_io else ("cpu", "cuda"), all_threads=all_threads)


# =========================================================================== peer adapters: front ends
def _frontend(name: str, device: str) -> Any:
    fn = _supermel_api("frontend", "the presets issue")
    try:
        return fn(name, device=device)
    except TypeError:
        mod = fn(name)
        return mod.to(device) if hasattr(mod, "to") else mod


def _whisper_workload() -> Workload:
    seconds = 30.0

    def build(device: str) -> Built:
        import torch

        y = _signal(int(seconds * _SR), seed=3)
        yt = torch.from_numpy(y).to(device)

        def supermel_case() -> Case:
            fe = _frontend("whisper-80", device)
            return Case("supermel", lambda: fe(yt), notes='frontend("whisper-80")')

        def whisper_case() -> Case:
            whisper = _import("whisper", "openai-whisper")
            return Case("openai-whisper", lambda: whisper.log_mel_spectrogram(yt, n_mels=80), notes="the original")

        def librosa_case() -> Case:
            librosa = _import("librosa", "librosa")

            def f() -> np.ndarray:
                p = librosa.feature.melspectrogram(y=y, sr=_SR, n_fft=400, hop_length=160, pad_mode="reflect", n_mels=80)[:, :-1]
                return (librosa.power_to_db(p, ref=1.0, amin=1e-10, top_db=80.0) / 10.0 + 4.0) / 4.0
            return Case("librosa", f, notes="frontends.md 2.4 expression")

        def reference() -> Any:
            whisper = _import("whisper", "openai-whisper")
            return whisper.log_mel_spectrogram(torch.from_numpy(y), n_mels=80)
        def hf_case(twin: bool) -> Callable[[], Case]:
            def make() -> Case:
                hf = _hf_extractors(twin)
                fe = hf.WhisperFeatureExtractor()
                d = "cuda" if device == "cuda" else "cpu"
                name = "supermel (transformers twin)" if twin else "transformers"
                return Case(name, lambda: fe(y, sampling_rate=_SR, return_tensors="np", device=d)["input_features"][0], notes="WhisperFeatureExtractor(), 30 s")
            return make

        cases = [_case("supermel", supermel_case), _case("openai-whisper", whisper_case)]
        if device == "cpu":
            cases.append(_case("librosa", librosa_case))
        def fw_case(twin: bool) -> Callable[[], Case]:
            def make() -> Case:
                _import("faster_whisper", "faster-whisper")
                if twin:
                    try:
                        mod = importlib.import_module("supermel.integrations.faster_whisper")
                    except ImportError:
                        raise PeerMissing("not available: supermel.integrations.faster_whisper is missing") from None
                else:
                    mod = importlib.import_module("faster_whisper.feature_extractor")
                fe = mod.FeatureExtractor()
                name = "supermel (faster-whisper twin)" if twin else "faster-whisper"
                return Case(name, lambda: fe(y), output=lambda: fe(y, padding=0), notes="FeatureExtractor()(y), 160 zeros appended")
            return make

        cases += [_case("transformers", hf_case(False)), _case("supermel (transformers twin)", hf_case(True))]
        if device == "cpu":
            cases += [_case("faster-whisper", fw_case(False)), _case("supermel (faster-whisper twin)", fw_case(True))]
        return Built(cases, reference=reference, reference_name="openai-whisper")
    return Workload("whisper-80 30 s", "front end", build, audio_seconds=seconds, all_threads=True)


def _hf_extractors(twin: bool) -> Any:
    """``transformers`` itself, or ``supermel.integrations.transformers`` (same class names)."""
    if not twin:
        return _import("transformers", "transformers")
    _import("transformers", "transformers")
    try:
        return importlib.import_module("supermel.integrations.transformers")
    except ImportError:
        raise PeerMissing("not available: supermel.integrations.transformers is missing") from None


def _hf_workload(title: str, cls: str, preset: str, key: str, time_major: bool = True) -> Workload:
    """A Hugging Face extractor on 10 s, against the supermel preset and the supermel twin of the
    class (``key``: the output's name; ``time_major=False``: the preset's output is transposed)."""
    seconds = 10.0

    def build(device: str) -> Built:
        y = _signal(int(seconds * _SR), seed=7)

        def supermel_case() -> Case:
            fe = _frontend(preset, "cpu")
            return Case("supermel", (lambda: fe(y)) if time_major else (lambda: fe(y).T), notes=f'frontend("{preset}")')

        def hf_case(twin: bool) -> Callable[[], Case]:
            def make() -> Case:
                fe = getattr(_hf_extractors(twin), cls)()
                name = "supermel (transformers twin)" if twin else "transformers"
                return Case(name, lambda: fe(y, sampling_rate=_SR, return_tensors="np")[key][0], notes=f"{cls}()")
            return make

        def reference() -> Any:
            return getattr(_hf_extractors(False), cls)()(y, sampling_rate=_SR, return_tensors="np")[key][0]
        cases = [_case("supermel", supermel_case), _case("transformers", hf_case(False)), _case("supermel (transformers twin)", hf_case(True))]
        return Built(cases, reference=reference, reference_name="transformers")
    return Workload(title, "front end", build, audio_seconds=seconds, devices=("cpu",))


def _knf_kaldi_options(cfg: Any) -> Any:
    """kaldi-native-fbank options equal to supermel's kaldi-fbank configuration (torchaudio's defaults, 80 bins, dither 0)."""
    knf = _import("kaldi_native_fbank", "kaldi-native-fbank")
    get = (lambda k, d: getattr(cfg, k, d)) if cfg is not None else (lambda k, d: d)
    o = knf.FbankOptions()
    fo = o.frame_opts
    fo.samp_freq = float(get("sample_frequency", 16000.0))
    fo.frame_length_ms = float(get("frame_length", 25.0))
    fo.frame_shift_ms = float(get("frame_shift", 10.0))
    fo.round_to_power_of_two = bool(get("round_to_power_of_two", True))
    fo.dither = 0.0
    fo.preemph_coeff = float(get("preemphasis_coefficient", 0.97))
    fo.remove_dc_offset = bool(get("remove_dc_offset", True))
    fo.window_type = str(get("window_type", "povey"))
    fo.blackman_coeff = float(get("blackman_coeff", 0.42))
    fo.snip_edges = bool(get("snip_edges", True))
    o.mel_opts.num_bins = int(get("num_mel_bins", 80))
    o.mel_opts.low_freq = float(get("low_freq", 20.0))
    o.mel_opts.high_freq = float(get("high_freq", 0.0))
    o.use_power = bool(get("use_power", True))
    o.use_log_fbank = bool(get("use_log_fbank", True))
    o.use_energy = False
    return o


def _kaldi_workload() -> Workload:
    seconds = 10.0

    def build(device: str) -> Built:
        import torch

        y = _signal(int(seconds * _SR), seed=4) * np.float32(32768.0)  # Kaldi's int16 scale
        yt = torch.from_numpy(y).to(device)
        fe, fe_error = None, None
        try:
            fe = _frontend("kaldi-fbank", device)
        except PeerMissing as exc:
            fe_error = exc
        cfg = getattr(fe, "config", None)
        n_bins = int(getattr(cfg, "num_mel_bins", 80))
        int16 = bool(getattr(cfg, "int16_scale", False))

        def knf_run() -> np.ndarray:
            knf = _import("kaldi_native_fbank", "kaldi-native-fbank")
            f = knf.OnlineFbank(_knf_kaldi_options(cfg))
            f.accept_waveform(float(_SR), y * np.float32(32768.0) if int16 else y)
            f.input_finished()
            return _knf_frames(f, 0, f.num_frames_ready).T

        def supermel_case() -> Case:
            if fe is None:
                raise fe_error  # type: ignore[misc]
            return Case("supermel", lambda: fe(yt), notes='frontend("kaldi-fbank")')

        def knf_case() -> Case:
            _knf_kaldi_options(cfg)
            return Case("kaldi-native-fbank", knf_run, notes=f"the preset's options ({n_bins} bins), dither 0; frames read with get_frame")

        def torchaudio_case() -> Case:
            kaldi = _import("torchaudio.compliance.kaldi", "torchaudio")
            scale = 32768.0 if int16 else 1.0
            return Case("torchaudio", lambda: kaldi.fbank(yt[None] * scale, num_mel_bins=n_bins, dither=0.0), notes=f"compliance.kaldi.fbank(num_mel_bins={n_bins}, dither=0)")

        def reference() -> Any:
            try:
                return knf_run()
            except PeerMissing:
                try:
                    kaldi = _import("torchaudio.compliance.kaldi", "torchaudio")
                except PeerMissing:
                    raise PeerMissing("not installed (nor torchaudio, the fallback reference)") from None
                return kaldi.fbank(torch.from_numpy(y)[None] * (32768.0 if int16 else 1.0), num_mel_bins=n_bins, dither=0.0)
        cases = [_case("supermel", supermel_case)]
        if device == "cpu":
            cases.append(_case("kaldi-native-fbank", knf_case))
        cases.append(_case("torchaudio", torchaudio_case))
        return Built(cases, reference=reference, reference_name="kaldi-native-fbank")
    return Workload("kaldi fbank 10 s", "front end", build, audio_seconds=seconds, all_threads=True)


# =========================================================================== the suite
def default_workloads() -> List[Workload]:
    """The workloads of issue 5, in report order."""
    frame30 = _SR // 30  # one 30 fps video frame: 533 samples
    return [
        _offline_workload("offline 1 s", lambda: _signal(_SR), 1.0),
        _offline_workload("offline 60 s", lambda: _signal(60 * _SR, seed=5), 60.0),
        _offline_workload("offline batch 64 x 1 s", lambda: _signal(_SR, seed=6, batch=64), 64.0),
        _offline_workload("offline 60 s (incl. H2D)", lambda: _signal(60 * _SR, seed=5), 60.0, h2d=True),
        _offline_workload("offline batch 64 x 1 s (incl. H2D)", lambda: _signal(_SR, seed=6, batch=64), 64.0, h2d=True),
        _streaming_workload("streaming one hop (200)", _HOP),
        _streaming_workload(f"streaming 30 fps frame ({frame30})", frame30),
        _streaming_workload("streaming 64 streams x one hop", _HOP, streams=64, all_threads=True),  # thread pools meeting: see the p99
        _streaming_workload("streaming one hop (200, device I/O)", _HOP, device_io=True),
        _streaming_workload("streaming 64 streams x one hop (device I/O)", _HOP, streams=64, device_io=True),
        _whisper_workload(),
        _kaldi_workload(),
        _hf_workload("w2v-bert (seamless-m4t) 10 s", "SeamlessM4TFeatureExtractor", "seamless-m4t", "input_features"),
        _hf_workload("ast 10 s", "ASTFeatureExtractor", "ast", "input_values"),
        _hf_workload("parakeet (nemo-80) 10 s", "ParakeetFeatureExtractor", "nemo-80", "input_features", time_major=False),
    ]


# =========================================================================== targets
#: Acceptance figures from the issues: (label, workload, peer, kind, bound).
_TARGETS = (
    ("offline 60 s, 1 thread: supermel time / naive torch time", "offline 60 s", "naive torch", "le", 0.5),
    ("offline 1 s, 1 thread: supermel time / librosa time", "offline 1 s", "librosa", "le", 0.1),
    ("kaldi fbank 10 s: kaldi-native-fbank time / supermel time", "kaldi fbank 10 s", "kaldi-native-fbank", "speedup", 2.0),
    ("whisper-80 30 s: openai-whisper time / supermel time", "whisper-80 30 s", "openai-whisper", "speedup", 2.0),
    ("streaming one hop: supermel time / naive torch time", "streaming one hop (200)", "naive torch", "le", 0.5),
    ("streaming one hop: supermel time / librosa time", "streaming one hop (200)", "librosa", "le", None),
    ("streaming 30 fps frame: supermel time / naive torch time", "streaming 30 fps frame (533)", "naive torch", "le", None),
    ("streaming 64 streams: supermel time / naive torch time", "streaming 64 streams x one hop", "naive torch", "le", None),
    # "workload" kind: supermel on this workload / supermel on the named one
    ("streaming 64 streams x one hop / one hop (supermel)", "streaming 64 streams x one hop", "streaming one hop (200)", "workload", 16.0),
)


def targets(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The acceptance figures, measured on one thread on the CPU, from the rows of this run."""
    out = []
    for label, wl, peer, kind, bound in _TARGETS:
        sel = [r for r in rows if r["device"] == "cpu" and r["workload"] == wl and r["threads"] == 1]
        base = next((r for r in sel if r["peer"] == BASELINE), None)
        if kind == "workload":
            other = next((r for r in rows if r["device"] == "cpu" and r["workload"] == peer and r["threads"] == 1 and r["peer"] == BASELINE), None)
        else:
            other = next((r for r in sel if r["peer"] == peer), None)
        entry: Dict[str, Any] = dict(figure=label, workload=wl, peer=peer, bound=bound, kind=kind, value=None, met=None)
        if base is None or other is None or not base.get("median_s") or not other.get("median_s"):
            why = [f"{r['peer']}: {r['status']} {r.get('reason', '')}".strip() for r in (base, other) if r is not None and r["status"] != "ok"]
            entry["missing"] = "; ".join(why) or "not measured in this run (one thread, CPU)"
        else:
            ratio = base["median_s"] / other["median_s"]
            entry["value"] = (1.0 / ratio) if kind == "speedup" else ratio
            if bound is not None:
                entry["met"] = entry["value"] >= bound if kind == "speedup" else entry["value"] <= bound
            if base.get("p99_s") and other.get("p99_s") and base["per"] == "push" and kind != "workload":
                entry["p50_p99"] = dict(supermel=[base["median_s"], base["p99_s"]], peer=[other["median_s"], other["p99_s"]])
        out.append(entry)
    return out


# =========================================================================== rendering
def _fmt_time(s: Optional[float]) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1.0:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def _fmt_err(e: Optional[float]) -> str:
    if e is None:
        return "-"
    if e == 0.0:
        return "0"
    return f"{e:.1e}"


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


_GROUP_TITLES = {"offline": "Offline", "streaming": "Streaming (per push)", "front end": "Front ends"}


def _header_md(meta: Dict[str, Any], device: str) -> List[str]:
    v = meta["versions"]
    lines = [
        f"- **Date**: {meta['date']}",
        f"- **Machine**: {meta['cpu']}, {meta['cores']} cores ({meta['cores_available']} available), {meta['platform']}",
    ]
    if device == "cuda" and meta.get("gpu"):
        lines.append(f"- **GPU**: {meta['gpu']} (CUDA {meta.get('cuda')}); times are device-side, from CUDA events, one synchronisation per call")
    envs = ", ".join(f"{k}={val}" for k, val in meta["thread_env"].items()) or "none set"
    lines += [
        f"- **Threads**: {meta['threads']} per row unless the row says otherwise (all cores = {meta['all_threads']}); "
        f"torch default {meta['torch_threads_default']} intra-op, {meta['torch_interop_threads']} inter-op; env: {envs}",
        f"- **BLAS**: {'; '.join(meta['blas']) or 'threadpoolctl not installed'}",
        "- **Versions**: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- **Repetitions**: after the exactness call, warm-up of at least {meta['settings']['warmup']} call(s) and "
        f"{meta['settings']['warmup_s']} s per peer, then about {meta['settings']['budget_s']} s per workload round-robin across peers "
        f"(at least {meta['settings']['min_rounds']} rounds, stopped after {meta['settings']['max_workload_s']} s); "
        "garbage collector off while timing",
    ]
    if meta.get("label"):
        lines.insert(0, f"> **{meta['label']}**")
        lines.insert(1, "")
    return lines


def _peers_md(peers: List[Dict[str, Any]]) -> List[str]:
    lines = ["| peer | version | configured as close to librosa as it allows | used in |", "|---|---|---|---|"]
    for p in peers:
        ver = p["version"] if p["status"] == "installed" else f"**missing**: {p.get('reason', '')}"
        lines.append(f"| {p['name']} | {_md_cell(ver)} | {_md_cell(p['configured'])} | {p['used_in']} |")
    return lines


def _rows_md(rows: List[Dict[str, Any]], group: str) -> List[str]:
    tput = group == "offline"
    cols = ["workload", "threads", "peer", "median" if group != "streaming" else "p50 / push", "p99", "n", "x supermel"]
    cols += ["audio h/s"] if tput else []
    cols += ["rel. error", "notes"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        if r["status"] != "ok" or r.get("median_s") is None:
            cells = [r["workload"], str(r["threads"]), r["peer"], f"**{r['status']}**", "", "", ""] + ([""] if tput else []) + ["", _md_cell(r.get("reason", ""))]
        else:
            ratio = f"{r['ratio']:.2f}x" if r.get("ratio") is not None else "-"
            err = _fmt_err(r.get("rel_err"))
            cells = [r["workload"], str(r["threads"]), r["peer"], _fmt_time(r["median_s"]), _fmt_time(r["p99_s"]), str(r["n"]), ratio]
            if tput:
                cells.append(f"{r['audio_h_per_s']:.1f}" if r.get("audio_h_per_s") else "-")
            cells += [err, _md_cell(r.get("notes", ""))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _targets_md(tgts: List[Dict[str, Any]]) -> List[str]:
    lines = ["| acceptance figure (CPU, one thread) | measured | target | met |", "|---|---|---|---|"]
    for t in tgts:
        if t["value"] is None:
            lines.append(f"| {t['figure']} | not measured: {_md_cell(t.get('missing', ''))} | {_bound(t)} | - |")
            continue
        val = f"{t['value']:.2f}x" if t["kind"] == "speedup" else f"{t['value']:.3f}"
        if t.get("p50_p99"):
            s, p = t["p50_p99"]["supermel"], t["p50_p99"]["peer"]
            val += f" (p50/p99 {_fmt_time(s[0])}/{_fmt_time(s[1])} vs {_fmt_time(p[0])}/{_fmt_time(p[1])})"
        met = "-" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['figure']} | {val} | {_bound(t)} | {met} |")
    return lines


def _bound(t: Dict[str, Any]) -> str:
    if t["bound"] is None:
        return "(reported)"
    return f">= {t['bound']}x faster" if t["kind"] == "speedup" else f"<= {t['bound']}"


def render_markdown(results: Results, device: str, chart: Optional[str] = None) -> str:
    """The results section for one device: header, peers, acceptance figures, tables, chart."""
    rows = [r for r in results.rows if r["device"] == device]
    title = "CPU" if device == "cpu" else "GPU (CUDA)"
    lines = [f"### {title} results", ""]
    skipped = [s for s in results.skipped if s["device"] == device]
    if skipped and not rows:
        lines += [f"Not run: {skipped[0]['reason']}.", ""]
        return "\n".join(lines)
    lines += _header_md(results.meta, device) + [""]
    if device == "cpu":
        lines += ["#### Acceptance figures", ""] + _targets_md(targets(results.rows)) + [""]
    lines += ["#### Peers", ""] + _peers_md(results.peers) + [""]
    for group, gtitle in _GROUP_TITLES.items():
        grows = [r for r in rows if r["group"] == group]
        if grows:
            lines += [f"#### {gtitle}", ""] + _rows_md(grows, group) + [""]
    if chart:
        lines += [f"![median time per workload, log scale]({chart})", ""]
    return "\n".join(lines)


def render_full_markdown(results: Results, chart: Optional[str] = None) -> str:
    devices = [d for d in results.meta.get("devices", ["cpu"])]
    return "\n".join(render_markdown(results, d, chart) for d in devices)


_TEMPLATE = """# supermel benchmarks

Regenerate with `python benchmarks/run.py` (see benchmarks/README.md).

## CPU

{cpu_begin}
(no run yet)
{cpu_end}

## GPU

{cuda_begin}
(no run yet)
{cuda_end}
"""


def update_markdown_file(path: str, results: Results, chart: Optional[str] = None) -> None:
    """(Re)write the results sections of ``path`` between the ``supermel-bench`` markers.

    Each device of the run replaces its own section (CPU and GPU runs are kept
    apart); a file without markers gets them appended; a missing file is created.
    """
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    else:
        text = _TEMPLATE.format(
            cpu_begin=_BEGIN.format(device="cpu"), cpu_end=_END.format(device="cpu"),
            cuda_begin=_BEGIN.format(device="cuda"), cuda_end=_END.format(device="cuda"),
        )
    for device in results.meta.get("devices", ["cpu"]):
        begin, end = _BEGIN.format(device=device), _END.format(device=device)
        body = render_markdown(results, device, chart)
        block = f"{begin}\n{body}\n{end}"
        if begin in text and end in text:
            pat = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
            text = pat.sub(lambda _m: block, text, count=1)
        else:
            text = text.rstrip("\n") + f"\n\n{block}\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_chart(results: Results, path: str) -> Optional[str]:
    """Horizontal bars of median time (log scale) per workload and peer, p99 as a tick; returns None on success or why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return 'matplotlib is not installed (pip install "supermel[bench]"): no chart'
    ok = [r for r in results.rows if r.get("median_s")]
    if not ok:
        return "no timed rows: no chart"
    groups: List[Tuple[str, List[Dict[str, Any]]]] = []
    for r in ok:
        label = f"{r['workload']} [{r['device']}, {r['threads']} thr]"
        if not groups or groups[-1][0] != label:
            groups.append((label, []))
        groups[-1][1].append(r)
    peers = list(dict.fromkeys(r["peer"] for r in ok))
    cmap = plt.get_cmap("tab10")
    color = {p: cmap(i % 10) for i, p in enumerate(peers)}
    n_bars = sum(len(g) for _, g in groups)
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.22 * (n_bars + len(groups))))
    y, ticks, labels = 0.0, [], []
    seen = set()
    for label, grows in groups:
        start = y
        for r in grows:
            kw = {"label": r["peer"]} if r["peer"] not in seen else {}
            seen.add(r["peer"])
            ax.barh(y, r["median_s"], height=0.8, color=color[r["peer"]], **kw)
            ax.plot([r["p99_s"]], [y], marker="|", color="black", markersize=8)
            y += 1
        ticks.append((start + y - 1) / 2)
        labels.append(label)
        y += 0.8
    ax.set_xscale("log")
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("median time per call / push (s, log scale); | marks p99")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"supermel benchmarks, {results.meta['date'][:10]}, {results.meta['cpu']}" + (f" / {results.meta['gpu']}" if results.meta.get("gpu") else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# =========================================================================== command line
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="supermel bench",
        description="Benchmark supermel against librosa, naive torch and the other peers (median, p99, ratio, exactness).",
    )
    p.add_argument("--quick", action="store_true", help="short budgets: checks the harness end to end in under a minute")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="threads per row (default 1); offline workloads also get an all-cores row")
    p.add_argument("--device", choices=("cpu", "cuda", "all"), default="cpu", help="cpu (default), cuda, or all")
    p.add_argument("--only", metavar="SUBSTRING", help="run only the workloads whose name contains this")
    p.add_argument("--out", metavar="DIR", help="write results.json, results.md and chart.png here")
    p.add_argument("--markdown-file", metavar="FILE", help="(re)write the results section of this file (e.g. BENCHMARKS.md)")
    p.add_argument("--label", metavar="TEXT", help="a line shown above the results (e.g. 'development run, machine busy')")
    p.add_argument("--budget", type=float, metavar="SECONDS", help="override the timing budget per workload")
    p.add_argument("--list", action="store_true", help="list the workloads and peers, then exit")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``supermel bench``: run the suite, print Markdown, write the files asked for.

    Returns 0, or 1 when a supermel row failed with an error (a broken harness or
    library, as opposed to a missing peer).
    """
    args = _parser().parse_args(argv)
    if args.threads <= 0:
        _parser().error(f"--threads {args.threads} must be a positive integer")
    if args.list:
        for w in default_workloads():
            print(f"{w.group:<10} {w.name}  (devices: {', '.join(w.devices)})")
        for p in peer_table():
            print(f"peer {p['name']:<20} {p['version'] or 'missing: ' + p.get('reason', '')}")
        return 0
    settings = Settings.quick() if args.quick else Settings()
    if args.budget is not None:
        settings.budget_s = args.budget
    devices = ("cpu", "cuda") if args.device == "all" else (args.device,)
    t0 = time.perf_counter()
    results = run_suite(settings=settings, threads=args.threads, devices=devices, only=args.only)
    results.meta["command"] = "supermel bench " + " ".join(argv if argv is not None else sys.argv[1:])
    results.meta["wall_s"] = round(time.perf_counter() - t0, 1)
    if args.label:
        results.meta["label"] = args.label
    chart_rel = None
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        chart_path = os.path.join(args.out, "chart.png")
        why = write_chart(results, chart_path)
        if why:
            print(why, file=sys.stderr)
        else:
            chart_rel = chart_path
        with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
            json.dump(results.to_json(), f, indent=1, default=str)
        with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as f:
            f.write(render_full_markdown(results, "chart.png" if chart_rel else None))
    text = render_full_markdown(results, chart_rel)
    if args.markdown_file:
        rel = os.path.relpath(chart_rel, os.path.dirname(os.path.abspath(args.markdown_file))) if chart_rel else None
        update_markdown_file(args.markdown_file, results, rel)
    print(text)
    print(f"\n(wall time {results.meta['wall_s']} s)", file=sys.stderr)
    failed = [r for r in results.rows if r["peer"] == BASELINE and r["status"] == "error"]
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
