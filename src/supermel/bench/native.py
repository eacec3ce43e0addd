"""The native core's acceptance suite (issue 19): both supermel routes, the peers and the arithmetic floor, one table.

``supermel bench --suite native`` runs these workloads on the CPU, one thread,
in one process; in each workload supermel's native route (``supermel``), its
torch/numpy route (``supermel (SUPERMEL_NATIVE=0)``, the same call inside
``supermel._native.use_native(False)``) and the peers are timed round-robin by
the harness (:func:`.harness._measure`), so every ratio comes from one run.
The workloads reuse the builders of the default suite (offline, streaming,
pool, front ends): each is built once per route, its supermel cases kept from
both builds, its peers from the first.

Without the extension (``supermel._native`` missing, or not built) the native
rows say "n/a (extension not built)" and the route-0 rows are today's route.

The table (:func:`render_native_markdown`) has one line per workload: native,
route 0, peers, the issue's ratios (with their bounds) and the arithmetic floor:
the workload's floating-point operations (:func:`flops_per_frame` times the
frames) divided by one core's peak (:func:`core_peak`).
"""

from __future__ import annotations

import math
import os
import re
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .harness import _HOP, _NFFT, _SR, REFERENCE, Built, Case, Workload, _fmt_time, _signal
from .peers import _case, _librosa_mel, _mel_basis

#: Suffix of the rows of supermel's torch/numpy route (the route ``SUPERMEL_NATIVE=0`` selects).
ROUTE0 = " (SUPERMEL_NATIVE=0)"
NATIVE = "supermel"
TORCH_ROUTE = NATIVE + ROUTE0
COMPILED = "supermel (torch.compile)"


# =========================================================================== routes
def native_status() -> Tuple[bool, str]:
    """``(available, description)`` of the native extension: its instruction set, or why it is n/a."""
    try:
        from supermel import _native  # type: ignore[attr-defined]
    except ImportError:
        return False, "n/a (extension not built; supermel._native is not in this checkout)"
    if not _native.available():
        return False, "n/a (extension not built)"
    isa = getattr(_native, "isa", lambda: None)()
    return True, f"native extension ({isa} kernels)" if isa else "native extension"


@contextmanager
def use_route(native: bool) -> Iterator[None]:
    """``supermel._native.use_native(native)`` where that module exists; nothing otherwise."""
    try:
        from supermel import _native  # type: ignore[attr-defined]
    except ImportError:
        ctx: Any = nullcontext()
    else:
        ctx = _native.use_native(native)
    with ctx:
        yield


def _in_route(fn: Optional[Callable[[], Any]], native: bool) -> Optional[Callable[[], Any]]:
    if fn is None:
        return None

    def run() -> Any:
        with use_route(native):
            return fn()
    return run


def _repeat(fn: Optional[Callable[[], Any]], times: int) -> Optional[Callable[[], Any]]:
    if fn is None or times == 1:
        return fn

    def run() -> Any:
        out = None
        for _ in range(times):
            out = fn()
        return out
    return run


def routed(
    name: str,
    base: Workload,
    *,
    supermel: Sequence[str] = (NATIVE,),
    peers: Sequence[str] = (),
    repeat: int = 1,
    audio_seconds: Optional[float] = None,
    note: str = "",
) -> Workload:
    """``base`` with each of its ``supermel`` cases on both routes, and its ``peers``.

    The native case keeps its name (``"supermel"``, the ratio baseline) and runs
    as the process runs (the extension's route when it is built and enabled;
    checked when the workload is built); the route-0 case is named with
    :data:`ROUTE0` and every call runs inside ``use_native(False)`` (about a
    microsecond of context manager, counted in its times). ``repeat`` calls make
    one timed call (e.g. 5 pool ticks); peers not in ``peers`` are dropped.
    """

    def build(device: str) -> Built:
        ok, why = native_status()
        with use_route(True):
            first = base.build(device)
        with use_route(False):
            second = base.build(device)
        by_first = {c.peer: c for c in first.cases}
        by_second = {c.peer: c for c in second.cases}
        cases: List[Case] = []
        for peer in supermel:
            c = by_first.get(peer)
            if c is None:
                continue
            if not ok:
                cases.append(Case(peer, status="not available", reason="n/a (extension not built)"))
            elif c.status != "ok":
                cases.append(c)
            else:
                if not _enabled():
                    c.fn, c.output = _in_route(c.fn, True), _in_route(c.output or c.fn, True)
                c.fn = _repeat(c.fn, repeat)
                c.notes = "; ".join(p for p in (c.notes, why, note) if p)
                cases.append(c)
        for peer in supermel:
            c = by_second.get(peer)
            if c is None:
                continue
            c.peer = peer + ROUTE0
            if c.status == "ok":
                c.output = _in_route(c.output or c.fn, False)
                c.fn = _repeat(_in_route(c.fn, False), repeat)
                c.notes = "; ".join(p for p in (c.notes, "use_native(False) around each call", note) if p)
            cases.append(c)
        for peer in peers:
            c = by_first.get(peer)
            if c is not None:
                if c.status == "ok":
                    c.fn = _repeat(c.fn, repeat)
                cases.append(c)
        return Built(cases, reference=first.reference, reference_name=first.reference_name)

    seconds = base.audio_seconds * repeat if audio_seconds is None else audio_seconds
    return Workload(name, base.group, build, audio_seconds=seconds, per=base.per, all_threads=False, devices=("cpu",))


def _enabled() -> bool:
    try:
        from supermel import _native  # type: ignore[attr-defined]
    except ImportError:
        return False
    return bool(_native.enabled())


# =========================================================================== new workloads
def one_frame_workload() -> Workload:
    """One frame: 800 samples, ``center=False`` (a tensor in, as a model's data loader holds it)."""

    def build(device: str) -> Built:
        import torch

        import supermel

        x = _signal(_NFFT, seed=21)
        xt = torch.from_numpy(x)

        def sm() -> Case:
            mod = supermel.MelSpectrogram(**REFERENCE, center=False)
            return Case(NATIVE, lambda: mod(xt), notes="MelSpectrogram(center=False), tensor in")

        def naive() -> Case:
            basis_np, note = _mel_basis()
            window = torch.hann_window(_NFFT)
            basis = torch.as_tensor(basis_np)

            def f() -> Any:
                s = torch.stft(xt, _NFFT, _HOP, window=window, center=False, return_complex=True)
                return torch.matmul(basis, s.abs().pow(2))
            return Case("naive torch", f, notes=note or "torch.stft(center=False), abs()**2, basis @ S")

        def lib() -> Case:
            return Case("librosa", lambda: _librosa_mel(x, center=False))

        cases = [_case(NATIVE, sm), _case("naive torch", naive), _case("librosa", lib)]
        return Built(cases, reference=lambda: _librosa_mel(x, center=False))

    return Workload("one frame (800 samples, center=False)", "offline", build, audio_seconds=_NFFT / _SR, devices=("cpu",))


def compile_workload(seconds: int) -> Workload:
    """``torch.compile(MelSpectrogram(...), fullgraph=True)`` (inductor) against the same module eager
    (both on each route: the compiled graph's ops run the route its eager calls take)."""

    def build(device: str) -> Built:
        import torch

        import supermel

        x = torch.from_numpy(_signal(seconds * _SR, seed=30 + seconds))

        def eager() -> Case:
            mod = supermel.MelSpectrogram(**REFERENCE)
            return Case(NATIVE, lambda: mod(x), notes="the module eager")

        def compiled() -> Case:
            mod = supermel.MelSpectrogram(**REFERENCE)
            fn = torch.compile(mod, fullgraph=True, dynamic=False)
            return Case(COMPILED, lambda: fn(x), notes="torch.compile(module, fullgraph=True, dynamic=False), inductor; compiled in the exactness call (not timed)")

        return Built([_case(NATIVE, eager), _case(COMPILED, compiled)], reference=lambda: _librosa_mel(x.numpy()))

    return Workload(f"torch.compile vs eager {seconds} s", "offline", build, audio_seconds=float(seconds), devices=("cpu",))


# =========================================================================== the suite
def native_workloads() -> List[Workload]:
    """Issue 19's workloads, in table order (CPU, one thread)."""
    from .frontends import _kaldi_workload, _whisper_workload
    from .offline import _offline_workload
    from .pool import pool_workload
    from .streaming import _streaming_workload

    return [
        routed("offline 1 s", _offline_workload("offline 1 s", lambda: _signal(_SR), 1.0), peers=("librosa", "naive torch")),
        routed("offline 60 s", _offline_workload("offline 60 s", lambda: _signal(60 * _SR, seed=5), 60.0), peers=("librosa", "naive torch")),
        routed("one frame (800 samples, center=False)", one_frame_workload(), peers=("naive torch", "librosa")),
        routed("one-hop push (200 samples)", _streaming_workload("one-hop push", _HOP), peers=("naive torch", "kaldi-native-fbank")),
        routed(
            "StreamPool 256 out-of-step streams, 5 ticks (2,048 frames)", pool_workload(256), supermel=(NATIVE, "supermel lockstep"),
            repeat=5, note="one timed call = 5 ticks of 20 ms chunks",
        ),
        routed("whisper-80 30 s", _whisper_workload(), peers=("openai-whisper",)),
        routed("kaldi fbank 10 s", _kaldi_workload(), peers=("kaldi-native-fbank",)),
        routed("torch.compile vs eager 1 s", compile_workload(1), supermel=(NATIVE, COMPILED)),
        routed("torch.compile vs eager 60 s", compile_workload(60), supermel=(NATIVE, COMPILED)),
    ]


# =========================================================================== arithmetic floor
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
        import supermel

        fb = supermel.frontend(name).core.mel_scale.fb
        return int((fb != 0).sum())
    except Exception:
        return _nnz(**fallback)


@dataclass
class Floor:
    """Work of one timed call: ``frames`` frames of ``flop_frame`` flops each."""

    frames: int
    flop_frame: float
    what: str

    @property
    def flops(self) -> float:
        return self.frames * self.flop_frame


def floors() -> Dict[str, Floor]:
    """The arithmetic of each workload (by name)."""
    ref = flops_per_frame(_NFFT, _nnz(sr=_SR, n_fft=_NFFT, n_mels=80, fmin=55.0, fmax=7600.0))
    t1 = 1 + _SR // _HOP
    t60 = 1 + 60 * _SR // _HOP
    wh = flops_per_frame(400, _preset_nnz("whisper-80", dict(sr=_SR, n_fft=400, n_mels=80)), extra=4 * 80)  # + log10, max, clamp, scale per value
    # Kaldi: 400-sample frames in a 512-point FFT; DC removal (2), pre-emphasis (2) and the window (1) per sample, log per value
    kd = flops_per_frame(512, _preset_nnz("kaldi-fbank", dict(sr=_SR, n_fft=512, n_mels=80, fmin=20.0, fmax=8000.0, htk=True, norm=None)), win_length=400, extra=4 * 400 + 80)
    return {
        "offline 1 s": Floor(t1, ref, f"{t1} frames"),
        "offline 60 s": Floor(t60, ref, f"{t60} frames"),
        "one frame (800 samples, center=False)": Floor(1, ref, "1 frame"),
        "one-hop push (200 samples)": Floor(1, ref, "1 frame"),
        "StreamPool 256 out-of-step streams, 5 ticks (2,048 frames)": Floor(2048, ref, "2,048 frames"),
        "whisper-80 30 s": Floor(1 + 30 * _SR // 160, wh, f"{1 + 30 * _SR // 160} frames of 400"),
        "kaldi fbank 10 s": Floor(1 + (10 * _SR - 400) // 160, kd, f"{1 + (10 * _SR - 400) // 160} frames of 400 in 512"),
        "torch.compile vs eager 1 s": Floor(t1, ref, f"{t1} frames"),
        "torch.compile vs eager 60 s": Floor(t60, ref, f"{t60} frames"),
    }


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


# =========================================================================== ratios (the acceptance figures)
#: (workload, label, numerator peer, its statistic, denominator peer, its statistic, kind, bound).
#: kind "le": numerator / denominator <= bound; "speedup": denominator / numerator >= bound.
SPECS: Tuple[Tuple[str, str, str, str, str, str, str, Optional[float]], ...] = (
    ("offline 1 s", "native / librosa", NATIVE, "median", "librosa", "median", "le", 0.1),
    ("offline 1 s", "native / naive torch", NATIVE, "median", "naive torch", "median", "le", None),
    ("offline 60 s", "native / route 0", NATIVE, "median", TORCH_ROUTE, "median", "le", 0.5),
    ("offline 60 s", "native / librosa", NATIVE, "median", "librosa", "median", "le", None),
    ("one frame (800 samples, center=False)", "native / naive torch", NATIVE, "median", "naive torch", "median", "le", 0.6),
    ("one-hop push (200 samples)", "native p50 / naive torch p50", NATIVE, "median", "naive torch", "median", "le", 0.15),
    ("one-hop push (200 samples)", "native p99 / native p50", NATIVE, "p99", NATIVE, "median", "le", 4.0),
    ("StreamPool 256 out-of-step streams, 5 ticks (2,048 frames)", "pool / lockstep (native)", NATIVE, "median", "supermel lockstep", "median", "le", 1.1),
    ("StreamPool 256 out-of-step streams, 5 ticks (2,048 frames)", "pool / lockstep (route 0)", TORCH_ROUTE, "median", "supermel lockstep" + ROUTE0, "median", "le", None),
    ("whisper-80 30 s", "openai-whisper / native", NATIVE, "median", "openai-whisper", "median", "speedup", 2.5),
    ("kaldi fbank 10 s", "kaldi-native-fbank / native", NATIVE, "median", "kaldi-native-fbank", "median", "speedup", 10.0),
    ("torch.compile vs eager 1 s", "compiled / eager (native)", COMPILED, "median", NATIVE, "median", "le", 1.0),
    ("torch.compile vs eager 1 s", "compiled / eager (route 0)", COMPILED + ROUTE0, "median", TORCH_ROUTE, "median", "le", 1.0),
    ("torch.compile vs eager 60 s", "compiled / eager (native)", COMPILED, "median", NATIVE, "median", "le", 1.0),
    ("torch.compile vs eager 60 s", "compiled / eager (route 0)", COMPILED + ROUTE0, "median", TORCH_ROUTE, "median", "le", 1.0),
)

_STAT = {"median": "median_s", "p99": "p99_s"}


def _to_route0(peer: str) -> str:
    return peer + ROUTE0 if peer in (NATIVE, "supermel lockstep", COMPILED) else peer


def acceptance(rows: List[Dict[str, Any]], threads: int = 1) -> List[Dict[str, Any]]:
    """The issue's figures from a run's CPU rows at ``threads``. Where the native rows are n/a,
    the figure is also given for route 0 (``route0_value``), so a run without the extension still says where today's route stands."""
    sel = {(r["workload"], r["peer"]): r for r in rows if r["device"] == "cpu" and r["threads"] == threads}

    def value(wl: str, num: str, ns: str, den: str, ds: str, kind: str) -> Optional[float]:
        a, b = sel.get((wl, num)), sel.get((wl, den))
        if not a or not b or not a.get(_STAT[ns]) or not b.get(_STAT[ds]):
            return None
        r = a[_STAT[ns]] / b[_STAT[ds]]
        return 1.0 / r if kind == "speedup" else r

    out = []
    for wl, label, num, ns, den, ds, kind, bound in SPECS:
        v = value(wl, num, ns, den, ds, kind)
        e: Dict[str, Any] = dict(workload=wl, figure=label, kind=kind, bound=bound, value=v, met=None)
        if v is not None and bound is not None:
            e["met"] = v >= bound if kind == "speedup" else v <= bound
        if v is None and NATIVE in (num, den) and (num, den) != (_to_route0(num), _to_route0(den)):
            e["route0_value"] = value(wl, _to_route0(num), ns, _to_route0(den), ds, kind)
        out.append(e)
    return out


# =========================================================================== the table
def _cell_time(r: Optional[Dict[str, Any]], per: str) -> str:
    if r is None:
        return "-"
    if r.get("status") != "ok" or r.get("median_s") is None:
        return f"{r.get('status')}: {r.get('reason', '')}".strip() if r.get("status") != "not available" else str(r.get("reason") or "n/a")
    if per == "push":
        return f"p50 {_fmt_time(r['median_s'])} / p99 {_fmt_time(r['p99_s'])}"
    return _fmt_time(r["median_s"])


def _fmt_ratio(e: Dict[str, Any]) -> str:
    def num(v: float) -> str:
        return f"{v:.2f}x" if e["kind"] == "speedup" else f"{v:.3f}"

    bound = "" if e["bound"] is None else (f" (>= {e['bound']:g}x" if e["kind"] == "speedup" else f" (<= {e['bound']:g}")
    if e["value"] is not None:
        met = "" if e["met"] is None else (": met" if e["met"] else ": **not met**")
        return f"{e['figure']} {num(e['value'])}{bound}{met}{')' if bound else ''}"
    if e.get("route0_value") is not None:
        return f"{e['figure']} n/a; route 0: {num(e['route0_value'])}{bound}{')' if bound else ''}"
    return f"{e['figure']} -{bound}{')' if bound else ''}"


def render_native_markdown(results: Any) -> str:
    """The issue-19 table of a ``--suite native`` run (CPU rows at the run's thread count)."""
    from ._markdown import _header_md, _md_cell

    meta = results.meta
    threads = meta.get("threads", 1)
    rows = [r for r in results.rows if r["device"] == "cpu" and r["threads"] == threads]
    fl = floors()
    peak = meta.get("core_peak_flops") or core_peak()[0]
    how = meta.get("core_peak_how") or core_peak()[1]
    accept = acceptance(results.rows, threads)
    lines = ["### Native core (issue 19): both routes, the peers, the arithmetic floor", ""]
    lines += _header_md(meta, "cpu")
    lines += [
        f"- **Native extension**: {meta.get('native', 'unknown')}",
        f"- **Arithmetic floor**: the workload's flops / one core's peak, {how}; flops per frame = window + 2.5 n log2 n (real FFT) "
        "+ 3 (n/2 + 1) (power) + 2 x non-zero filterbank weights (+ a preset's own steps); the reference configuration: "
        f"{flops_per_frame(_NFFT, _nnz(sr=_SR, n_fft=_NFFT, n_mels=80, fmin=55.0, fmax=7600.0)) / 1e3:.1f} kflop per frame",
        f"- **Routes**: `supermel native` runs as the process runs with the extension; `SUPERMEL_NATIVE=0 route` is the same call inside "
        "`supermel._native.use_native(False)` (today's torch/numpy route); contenders of a workload timed round-robin in this one run",
        "",
        "| workload | threads | supermel native | supermel SUPERMEL_NATIVE=0 route | peers | ratios (issue 19 bound) | arithmetic floor |",
        "|---|---|---|---|---|---|---|",
    ]
    names = list(dict.fromkeys(r["workload"] for r in rows))
    for wl in names:
        wrows = {r["peer"]: r for r in rows if r["workload"] == wl}
        per = next(iter(wrows.values()))["per"]
        own = (NATIVE, TORCH_ROUTE)
        peers = [p for p in wrows if p not in own]
        peer_cells = []
        for p in peers:
            peer_cells.append(f"{p} {_cell_time(wrows[p], per)}")
        ratios = [_fmt_ratio(e) for e in accept if e["workload"] == wl]
        f = fl.get(wl)
        floor = f"{_fmt_time(f.flops / peak)} ({f.flops / 1e6:.3g} Mflop, {f.what})" if f else "-"
        cells = [wl, str(threads), _cell_time(wrows.get(NATIVE), per), _cell_time(wrows.get(TORCH_ROUTE), per), "; ".join(peer_cells) or "-", "; ".join(ratios) or "-", floor]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines += ["", "Exactness (relative Frobenius error against each workload's reference) and notes, per row:", ""]
    lines += ["| workload | row | rel. error | reference | notes |", "|---|---|---|---|---|"]
    for r in rows:
        err = "-" if r.get("rel_err") is None else f"{r['rel_err']:.1e}"
        lines.append(f"| {_md_cell(r['workload'])} | {_md_cell(r['peer'])} | {err} | {_md_cell(r.get('reference', ''))} | {_md_cell(r.get('notes', ''))} |")
    return "\n".join(lines) + "\n"
