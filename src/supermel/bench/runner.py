"""Running the suite: a workload's rows (exactness, timing, ratios), the run's header, :class:`Results`."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .harness import BASELINE, PeerMissing, Settings, Workload, _all_threads, _fmt_time, _join, _measure, _threads, rel_error
from .peers import _dist_version, peer_table
from .workloads import default_workloads, targets


#: Rows of peers whose name starts with this are supermel's own (module, function, CUDA graph, twins).
SUPERMEL_PREFIX = "supermel"


@dataclass
class Results:
    """Rows of one run plus its header."""

    meta: Dict[str, Any]
    peers: List[Dict[str, Any]]
    rows: List[Dict[str, Any]] = field(default_factory=list)
    skipped: List[Dict[str, str]] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        doc = {"meta": self.meta, "peers": self.peers, "rows": self.rows, "targets": targets(self.rows), "skipped": self.skipped}
        if self.meta.get("suite") == "native":
            from .native import acceptance

            doc["acceptance"] = acceptance(self.rows, self.meta.get("threads", 1))
        return doc


def supermel_errors(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The rows of supermel's own peers (name starting with "supermel") that ended in an error.

    Any of them fails the run (``supermel bench`` exits 1): a CUDA-graph or twin
    row in error is a supermel bug, not a missing peer. "missing" and "not
    available" rows (an optional dependency, an API not merged) do not count.
    """
    return [r for r in rows if str(r.get("peer", "")).startswith(SUPERMEL_PREFIX) and r.get("status") == "error"]


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
