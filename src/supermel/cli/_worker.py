"""The work of one ``supermel batch`` worker (a process of the local pool, or a Ray actor).

:class:`Worker` decodes, featurises and writes the work units :func:`supermel.cli._corpus.plan`
made, each output atomically, and returns small result rows ``(entry index, manifest fields,
warnings)``; one failing file never stops the others (:func:`_classify` names why it failed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Sequence, Set, Tuple

from .._errors import ParameterError
from ._common import _atomic_open, _json_default, _write_array
from ._corpus import _SHORTFALL, _sync

__all__ = ["Worker", "set_torch_threads"]


def _classify(exc: BaseException) -> str:
    """A short reason for a failed file, from the error message."""
    msg = str(exc).lower()
    if "cannot read audio" in msg:
        return "unreadable"
    if "no samples" in msg or "is empty" in msg:
        return "empty"
    if "does not exist" in msg:
        return "missing"
    if "not finite" in msg or "nan samples" in msg:
        return "NaN samples"
    if "too large" in msg or "too short" in msg:
        return "too short"
    if isinstance(exc, ParameterError):
        return "invalid"
    if isinstance(exc, MemoryError):
        return "out of memory"
    return "error"


def _failure(entry: Dict[str, Any], exc: BaseException) -> Dict[str, Any]:
    detail = str(exc) if isinstance(exc, ParameterError) else f"{type(exc).__name__}: {exc}"
    return dict(entry, status="failed", reason=_classify(exc), detail=detail)


def set_torch_threads(n: int) -> int:
    """Set torch's intra-op threads (and inter-op ones, when still possible); the previous count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # only before the first inter-op work
        torch.set_num_interop_threads(n)
    return before


class Worker:
    """Decodes, featurises and writes work units; one per process (or Ray actor).

    Parameters
    ----------
    options : dict
        The parsed command-line options (``vars(args)``) that build the
        :class:`~supermel.cli._pipeline._Pipeline`.
    fmt : str
        ``"npy"`` or ``"npz"`` for one output per input (shards are always ``.npz``).
    min_duration : float
        Inputs shorter than this many seconds are skipped (``too short``).

    Outputs are renamed into place whole (a killed worker never leaves a partial one). With the
    option ``fsync`` they are also flushed to disk before being reported done; without it (the
    default) the OS writes them back in its own time: a power cut can leave empty outputs, which
    :func:`plan` treats as missing.
    """

    def __init__(self, options: Dict[str, Any], fmt: str, min_duration: float) -> None:
        from ._pipeline import _Pipeline

        self.pipeline = _Pipeline(argparse.Namespace(**options))
        self.fmt = fmt
        self.min_duration = float(min_duration)
        self.fsync = bool(options.get("fsync", False))

    def run(self, units: Sequence[Dict[str, Any]]) -> List[Tuple[int, Dict[str, Any], List[str]]]:
        """Process ``units``; one ``(entry index, manifest fields, warning messages)`` per input."""
        rows: List[Tuple[int, Dict[str, Any], List[str]]] = []
        self.written: List[str] = []
        for unit in units:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                # Recorded per file in the manifest instead of printed over the progress bar.
                warnings.filterwarnings("ignore", message=r"n_fft=\d+ is too large for input signal")
                done = self._file(unit) if unit["kind"] == "file" else self._shard(unit)
            messages = [str(w.message) for w in caught]
            rows.extend((i, entry, messages if n == 0 else []) for n, (i, entry) in enumerate(done))
        if self.fsync:
            _sync(self.written)  # on disk before the driver hears they are done
        return rows

    # -- one input ------------------------------------------------------------------------
    def _features(self, src: Path) -> Tuple[Dict[str, Any], Any]:
        """``(manifest fields, features)``; features ``None`` when the fields already say why not."""
        import numpy as np

        pipeline = self.pipeline
        entry: Dict[str, Any] = {}
        from ..audio import TruncatedAudioWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y, sr = pipeline.load(src)
        short = None
        for w in caught:  # a truncated WAV: passed on to the driver, which prints it, ...
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if issubclass(w.category, TruncatedAudioWarning):
                short = _SHORTFALL.search(str(w.message))
        seconds = y.shape[-1] / sr
        entry.update(sr=sr, seconds=round(seconds, 6))
        if short is not None:  # ... and noted in the manifest
            entry["warning"] = f"truncated: the header declares {short[1]} frames but the file holds {short[2]}"
        if not np.isfinite(y).all():
            n_nan = int(np.isnan(y).sum())
            if n_nan:
                return dict(entry, status="failed", reason="NaN samples", detail=f"{n_nan} of {y.shape[-1]} samples are NaN"), None
            n_inf = int(np.isinf(y).sum())
            return dict(entry, status="failed", reason="Inf samples", detail=f"{n_inf} of {y.shape[-1]} samples are infinite"), None
        if seconds < self.min_duration:
            return dict(entry, status="skipped", reason="too short", detail=f"{seconds:.3f} s < --min-duration {self.min_duration:g} s"), None
        if pipeline.module is None:
            n_fft = int(pipeline.params["n_fft"])
            if not pipeline.params["center"] and y.shape[-1] < n_fft:
                return dict(entry, status="failed", reason="too short", detail=f"{y.shape[-1]} samples < n_fft={n_fft} with --no-center (no complete frame)"), None
            if y.shape[-1] < n_fft:
                note = f"{y.shape[-1]} samples < n_fft={n_fft}: the frames are mostly padding"
                entry["warning"] = f"{entry['warning']}; {note}" if "warning" in entry else note
        mel = pipeline.compute(y, sr)
        return dict(entry, status="done", shape=list(mel.shape), dtype=str(mel.dtype)), mel

    def _safe_features(self, src: Path) -> Tuple[Dict[str, Any], Any]:
        entry: Dict[str, Any] = {}
        try:
            return self._features(src)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one bad file must not stop the batch: record it and go on
            return _failure(entry, exc), None

    def _file(self, unit: Dict[str, Any]) -> List[Tuple[int, Dict[str, Any]]]:
        src, out = Path(unit["src"]), Path(unit["out"])
        entry, mel = self._safe_features(src)
        if mel is not None:
            try:
                meta = self.pipeline.metadata(entry.get("sr")) if self.fmt == "npz" else {}  # .npy holds the array only
                _write_array(out, mel, self.fmt, meta, fsync=False)
                self.written.append(os.fspath(out))
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                entry = _failure({k: v for k, v in entry.items() if k in ("sr", "seconds")}, exc)
        return [(int(unit["i"]), entry)]

    def _shard(self, unit: Dict[str, Any]) -> List[Tuple[int, Dict[str, Any]]]:
        """All members of one shard, written as one ``.npz``: an array per member (its key), plus
        ``__supermel_files__`` (the members' manifest fields, JSON) and ``__supermel_params__``."""
        import numpy as np

        arrays: Dict[str, Any] = {}
        done: List[Tuple[int, Dict[str, Any]]] = []
        stored: List[Dict[str, Any]] = []
        rates: Set[Any] = set()
        for i, src, key in unit["members"]:
            entry, mel = self._safe_features(Path(src))
            if mel is not None:
                arrays[key] = mel
                rates.add(entry.get("sr"))
            done.append((int(i), entry))
            stored.append(dict(entry, key=key))
        params = self.pipeline.metadata(rates.pop() if len(rates) == 1 else None)
        extra = {
            "__supermel_files__": np.asarray(json.dumps(stored, default=_json_default)),
            "__supermel_params__": np.asarray(json.dumps(params, default=_json_default)),
        }
        try:
            with _atomic_open(Path(unit["out"]), fsync=False) as fh:
                np.savez(fh, **arrays, **extra)
            self.written.append(os.fspath(unit["out"]))
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            done = [(i, _failure({k: v for k, v in e.items() if k in ("sr", "seconds")}, exc) if e["status"] == "done" else e) for i, e in done]
        return done
