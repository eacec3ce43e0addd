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

from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np


from .floor import Floor, _cpuinfo, core_peak, floor_cell, floor_header, floors, flops_per_frame  # noqa: F401 (re-exported)
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


def _same_bits(a: Any, b: Any) -> bool:
    from .harness import _to_numpy

    try:
        x, y = np.asarray(_to_numpy(a)), np.asarray(_to_numpy(b))
    except Exception:
        return False
    return x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()


def route_note(case: Case) -> str:
    """Which route a supermel case of the default suite runs, checked: its output (``case.output``,
    else ``case.fn``) as the process runs and inside ``use_native(False)``. The native core and the
    torch route round differently, so the same bits on both mean the native core did not run."""
    ok, why = native_status()
    if not ok:
        return f"route: torch/numpy, {why}"
    if not _enabled():
        return "route: torch/numpy (SUPERMEL_NATIVE=0)"
    run = case.output or case.fn
    if run is None:
        return ""
    try:
        a = run()
        with use_route(False):
            b = run()
    except Exception as exc:  # the timing reports the case's own errors
        return f"route not checked: {type(exc).__name__}: {exc}"
    if _same_bits(a, b):
        return "route: torch/numpy (**native core not taken**: the same bits as SUPERMEL_NATIVE=0)"
    return f"route: {why}"


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
    accept = acceptance(results.rows, threads)
    lines = ["### Native core (issue 19): both routes, the peers, the arithmetic floor", ""]
    lines += _header_md(meta, "cpu")
    lines += [
        f"- **Native extension**: {meta.get('native', 'unknown')}",
        floor_header(meta),
        "- **Routes**: `supermel native` runs as the process runs with the extension; `SUPERMEL_NATIVE=0 route` is the same call inside "
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
        floor = floor_cell(wl, meta, threads=threads, table=fl)
        cells = [wl, str(threads), _cell_time(wrows.get(NATIVE), per), _cell_time(wrows.get(TORCH_ROUTE), per), "; ".join(peer_cells) or "-", "; ".join(ratios) or "-", floor]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines += ["", "Exactness (relative Frobenius error against each workload's reference) and notes, per row:", ""]
    lines += ["| workload | row | rel. error | reference | notes |", "|---|---|---|---|---|"]
    for r in rows:
        err = "-" if r.get("rel_err") is None else f"{r['rel_err']:.1e}"
        lines.append(f"| {_md_cell(r['workload'])} | {_md_cell(r['peer'])} | {err} | {_md_cell(r.get('reference', ''))} | {_md_cell(r.get('notes', ''))} |")
    return "\n".join(lines) + "\n"
