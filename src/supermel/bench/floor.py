"""The arithmetic floor of every CPU workload: its floating-point operations / one core's peak.

Shared by both suites' tables (``supermel bench`` and ``--suite native``):
:func:`floors` maps each workload's name to the work of one timed call
(:class:`Floor`: frames x :func:`flops_per_frame`), :func:`core_peak` estimates
one core's float32 peak, :func:`floor_cell` and :func:`floor_header` render them.
The floor is a lower bound no implementation can beat on one core (every
operation at the core's peak, no memory traffic, no call overhead); a row's
``x floor`` says how far from it a peer's median is.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .harness import _HOP, _NFFT, _SR, _fmt_time

__all__ = ["Floor", "flops_per_frame", "floors", "core_peak", "floor_seconds", "floor_cell", "floor_header", "reference_flops_per_frame"]


def flops_per_frame(n_fft: int, nnz: int, *, win_length: Optional[int] = None, extra: float = 0.0) -> float:
    """Floating-point operations of one frame, adds and multiplies counted separately.

    window ``win_length`` + real FFT ``2.5 n log2 n`` + power ``3 (n/2 + 1)``
    (two products, one sum per bin) + sparse mel product ``2 nnz`` + ``extra``
    (a preset's own steps). The reference configuration: 800 + 19,290 + 1,203
    + 1,478 = 22.8 kflop (docs/native.md).
    """
    return float((win_length or n_fft) + 2.5 * n_fft * math.log2(n_fft) + 3 * (n_fft // 2 + 1) + 2 * nnz + extra)


def _nnz(**mel_kw: Any) -> int:
    import supermel

    return int(np.count_nonzero(supermel.mel_filters(**mel_kw)))


def _preset_nnz(name: str, fallback: Dict[str, Any]) -> int:
    """Non-zero weights of a preset's filterbank (its module's ``core.mel_scale.fb``), else of ``fallback``'s."""
    try:
        import warnings

        import supermel

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a Kaldi basis with empty filters warns when built
            fb = supermel.frontend(name).core.mel_scale.fb
        return int((fb != 0).sum())
    except Exception:
        return _nnz(**fallback)


def reference_flops_per_frame() -> float:
    """:func:`flops_per_frame` of the reference configuration (16 kHz, n_fft 800, 80 mels, 55-7600 Hz)."""
    return flops_per_frame(_NFFT, _nnz(sr=_SR, n_fft=_NFFT, n_mels=80, fmin=55.0, fmax=7600.0))


@dataclass
class Floor:
    """Work of one timed call: ``frames`` frames (an average for pushes of a size that is not
    a multiple of the hop) of ``flop_frame`` flops each."""

    frames: float
    flop_frame: float
    what: str

    @property
    def flops(self) -> float:
        return self.frames * self.flop_frame


def floors() -> Dict[str, Floor]:
    """The arithmetic of one timed call of each CPU workload of both suites, by workload name.

    Preset steps counted (per frame): Whisper's log10, max, clamp and scale per value (4);
    Kaldi's DC removal and pre-emphasis per sample (4) and log per value (1), 400-sample
    frames in a 512-point FFT; SeamlessM4T: Kaldi plus mean/variance normalisation per
    value (4); AST: Kaldi plus its normalisation per value (2); NeMo: pre-emphasis per
    sample of a hop (2), log and per-feature normalisation per value (6), a 400-sample
    window in a 512-point FFT.
    """
    ref = reference_flops_per_frame()
    t1 = 1 + _SR // _HOP
    t60 = 1 + 60 * _SR // _HOP
    wh = flops_per_frame(400, _preset_nnz("whisper-80", dict(sr=_SR, n_fft=400, n_mels=80)), extra=4 * 80)
    kaldi_mel = dict(sr=_SR, n_fft=512, fmin=20.0, fmax=8000.0, htk=True, norm=None)
    kd = flops_per_frame(512, _preset_nnz("kaldi-fbank", dict(kaldi_mel, n_mels=80)), win_length=400, extra=4 * 400 + 80)
    sm = flops_per_frame(512, _preset_nnz("seamless-m4t", dict(kaldi_mel, n_mels=80)), win_length=400, extra=4 * 400 + 80 + 4 * 80)
    ast = flops_per_frame(512, _preset_nnz("ast", dict(kaldi_mel, n_mels=128)), win_length=400, extra=4 * 400 + 128 + 2 * 128)
    nemo = flops_per_frame(512, _preset_nnz("nemo-80", dict(sr=_SR, n_fft=512, n_mels=80, fmax=8000.0)), win_length=400, extra=2 * 160 + 6 * 80)
    wh30 = 1 + 30 * _SR // 160
    k10 = 1 + (10 * _SR - 400) // 160  # snip_edges: 998
    n10 = 1 + 10 * _SR // 160  # centred: 1001
    push30 = (_SR // 30) / _HOP  # a 533-sample push: 2.665 frames on average
    tick = 320 / _HOP  # a 20 ms chunk: 1.6 frames per stream on average
    out = {
        # the default suite
        "offline 1 s": Floor(t1, ref, f"{t1} frames"),
        "offline 60 s": Floor(t60, ref, f"{t60} frames"),
        "offline batch 64 x 1 s": Floor(64 * t1, ref, f"64 x {t1} frames"),
        "streaming one hop (200)": Floor(1, ref, "1 frame"),
        f"streaming 30 fps frame ({_SR // 30})": Floor(push30, ref, f"{push30:.3g} frames on average"),
        "streaming 64 streams x one hop": Floor(64, ref, "64 frames"),
        "serving 64 streams out of step (20 ms ticks)": Floor(64 * tick, ref, f"{64 * tick:.4g} frames on average"),
        "serving 256 streams out of step (20 ms ticks)": Floor(256 * tick, ref, f"{256 * tick:.4g} frames on average"),
        "whisper-80 30 s": Floor(wh30, wh, f"{wh30} frames of 400"),
        "kaldi fbank 10 s": Floor(k10, kd, f"{k10} frames of 400 in 512"),
        "w2v-bert (seamless-m4t) 10 s": Floor(k10, sm, f"{k10} frames of 400 in 512"),
        "ast 10 s": Floor(k10, ast, f"{k10} frames of 400 in 512, 128 mels"),
        "parakeet (nemo-80) 10 s": Floor(n10, nemo, f"{n10} frames of 400 in 512"),
        # --suite native
        "one frame (800 samples, center=False)": Floor(1, ref, "1 frame"),
        "one-hop push (200 samples)": Floor(1, ref, "1 frame"),
        "StreamPool 256 out-of-step streams, 5 ticks (2,048 frames)": Floor(2048, ref, "2,048 frames"),
        "torch.compile vs eager 1 s": Floor(t1, ref, f"{t1} frames"),
        "torch.compile vs eager 60 s": Floor(t60, ref, f"{t60} frames"),
    }
    return out


def _cpuinfo() -> Dict[str, str]:
    info: Dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    info.setdefault(k.strip(), v.strip())
                elif info:
                    break
    except OSError:
        pass
    return info


def core_peak(override_gflops: Optional[float] = None) -> Tuple[float, str]:
    """One core's float32 peak in flop/s and how it was derived.

    ``clock x 2 FMA pipes x fp32 lanes per pipe x 2`` (a fused multiply-add is
    two operations, as :func:`flops_per_frame` counts them): 8 lanes with AVX2
    (and with AVX-512 on AMD, whose Zen 4 runs 512-bit operations as two
    256-bit halves), 16 with AVX-512 on Intel, 4 with SSE only. The clock is
    the nominal one (``cpu MHz`` of /proc/cpuinfo, else ``@ x GHz`` in the model
    name, else 3 GHz). ``override_gflops`` (``--peak-gflops``, or env
    ``SUPERMEL_BENCH_PEAK_GFLOPS``) replaces the estimate.
    """
    env = os.environ.get("SUPERMEL_BENCH_PEAK_GFLOPS")
    if override_gflops is None and env:
        override_gflops = float(env)
    if override_gflops is not None:
        return override_gflops * 1e9, f"{override_gflops:g} Gflop/s as given"
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    ghz, src = 3.0, "assumed"
    if info.get("cpu MHz"):
        ghz, src = float(info["cpu MHz"]) / 1000.0, "cpu MHz"
    else:
        m = re.search(r"@\s*([\d.]+)\s*GHz", info.get("model name", ""))
        if m:
            ghz, src = float(m.group(1)), "model name"
    if "avx512f" in flags and "GenuineIntel" in info.get("vendor_id", ""):
        lanes, isa = 16, "AVX-512"
    elif "avx2" in flags or "avx512f" in flags:
        lanes, isa = 8, "AVX2" if "avx512f" not in flags else "AVX-512 as 2x256 (AMD)"
    else:
        lanes, isa = 4, "SSE"
    peak = ghz * 1e9 * 2 * lanes * 2
    return peak, f"{peak / 1e9:.1f} Gflop/s = {ghz:.2f} GHz ({src}) x 2 FMA pipes x {lanes} fp32 lanes ({isa}) x 2 flop per FMA"


def _peak(meta: Dict[str, Any]) -> Tuple[float, str]:
    """The run's peak (``meta`` of a run made by ``supermel bench``), else the estimate."""
    if meta.get("core_peak_flops"):
        return float(meta["core_peak_flops"]), str(meta.get("core_peak_how", ""))
    return core_peak()


def floor_header(meta: Dict[str, Any]) -> str:
    """The header line that states how the floor column is computed."""
    _, how = _peak(meta)
    return (
        f"- **Arithmetic floor**: the workload's flops / one core's peak, {how}; flops per frame = window + 2.5 n log2 n (real FFT) "
        "+ 3 (n/2 + 1) (power) + 2 x non-zero filterbank weights (+ a preset's own steps); the reference configuration: "
        f"{reference_flops_per_frame() / 1e3:.1f} kflop per frame; a row with N threads is held to N cores' peak"
    )


def floor_seconds(workload: str, meta: Dict[str, Any], *, threads: int = 1, table: Optional[Dict[str, Floor]] = None) -> Optional[float]:
    """The floor of one timed call of ``workload`` on ``threads`` cores, in seconds (None without one)."""
    f = (table if table is not None else floors()).get(workload)
    return None if f is None else f.flops / (_peak(meta)[0] * max(1, threads))


def floor_cell(workload: str, meta: Dict[str, Any], *, threads: int = 1, table: Optional[Dict[str, Floor]] = None) -> str:
    """``"22.2 us (1.84 Mflop, 81 frames)"``: the floor of ``workload`` at ``threads`` cores; ``"-"`` without one."""
    f = (table if table is not None else floors()).get(workload)
    s = floor_seconds(workload, meta, threads=threads, table=table)
    if f is None or s is None:
        return "-"
    return f"{_fmt_time(s)} ({f.flops / 1e6:.3g} Mflop, {f.what})"
