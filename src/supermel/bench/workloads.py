"""The suite: the default workloads in report order, and the acceptance figures computed from a run's rows."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional

from .frontends import _hf_workload, _kaldi_workload, _whisper_workload
from .harness import _HOP, _SR, BASELINE, Built, Workload, _join, _signal
from .offline import _offline_workload
from .pool import pool_workload
from .streaming import _streaming_workload


# =========================================================================== the suite
def route_checked(wl: Workload) -> Workload:
    """``wl`` whose supermel cases on the CPU note the route they run (:func:`.native.route_note`,
    checked after the exactness call): what the default suite times is the process's route, the
    native core where it is built and enabled."""
    from .native import route_note

    def build(device: str) -> Built:
        built = wl.build(device)
        if device == "cpu":
            for c in built.cases:
                if c.peer.startswith(BASELINE) and c.status == "ok":
                    c.own_check = _chain(c.own_check, lambda c=c: route_note(c))  # type: ignore[misc]
        return built

    return dataclasses.replace(wl, build=build)


def _chain(first: Optional[Callable[[], str]], second: Callable[[], str]) -> Callable[[], str]:
    def check() -> str:
        return _join(second(), first() if first is not None else "")
    return check


def default_workloads() -> List[Workload]:
    """The workloads of issue 5, in report order (supermel's CPU rows checked for their route: :func:`route_checked`)."""
    frame30 = _SR // 30  # one 30 fps video frame: 533 samples
    return [route_checked(w) for w in _default_workloads(frame30)]


def _default_workloads(frame30: int) -> List[Workload]:
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
        pool_workload(64),
        pool_workload(256),
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
    # the live-serving issue: a pool tick of 256 out-of-step streams against lockstep and per-stream objects
    ("serving 256 streams: StreamPool time / lockstep push time", "serving 256 streams out of step (20 ms ticks)", "supermel lockstep", "le", 1.5),
    ("serving 256 streams: StreamPool time / one object per stream", "serving 256 streams out of step (20 ms ticks)", "supermel per stream", "le", 0.25),
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
