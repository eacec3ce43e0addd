"""The work of one ``supermel batch`` worker (a process of the local pool, or a Ray actor).

:class:`Worker` decodes, featurises and writes the work units :func:`supermel.cli._corpus.plan`
made, each output atomically, and returns small result rows ``(entry index, manifest fields,
warnings)``; one failing file never stops the others (:func:`_classify` names why it failed).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from .._errors import ParameterError
from ._common import _atomic_open, _json_default, _write_array
from ._corpus import _SHORTFALL, _sync

__all__ = ["Worker", "set_torch_threads", "is_disk_full", "DISK_FULL"]

Row = Tuple[int, Dict[str, Any], List[str]]


#: errno values that mean the output's filesystem is full: ``supermel batch`` stops on them.
DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)

#: The manifest reason of an output that could not be written because the disk is full.
DISK_FULL = "disk full"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the filesystem is full (ENOSPC, or EDQUOT: over the quota)."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def _classify(exc: BaseException) -> str:
    """A short reason for a failed file, from the error message."""
    if is_disk_full(exc):
        return DISK_FULL
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


# =========================================================================== the test hook
#: ``SUPERMEL_TEST_FAULTS``: faults injected for the tests of the command line (through the real
#: executable, where nothing can be monkeypatched). ``;``-separated ``ACTION:NAME[:ARG]``, NAME an
#: input's file name: ``enospc:NAME`` (writing its output fails with ENOSPC), ``kill:NAME``
#: (the process kills itself with SIGKILL before writing its output), ``kill-after-write:NAME``
#: (after writing it, before reporting it), ``sleep:NAME:SECONDS`` (before computing it). A kill
#: with ARG (a file path) happens once: only while that file does not exist (it is created first).
_FAULTS_VAR = "SUPERMEL_TEST_FAULTS"


def _parse_faults(text: str) -> Dict[Tuple[str, str], str]:
    faults: Dict[Tuple[str, str], str] = {}
    for spec in filter(None, (t.strip() for t in text.split(";"))):
        action, _, rest = spec.partition(":")
        name, _, arg = rest.partition(":")
        faults[(action, name)] = arg
    return faults


_FAULTS = _parse_faults(os.environ.get(_FAULTS_VAR, ""))


def _fault(action: str, src: Path, out: Optional[Path] = None) -> None:
    """Inject the fault ``action`` for the input ``src`` when the test hook asks for it (``out``:
    the output being written; ENOSPC strikes after part of it reached its temporary file)."""
    if not _FAULTS or (action, src.name) not in _FAULTS:
        return
    arg = _FAULTS[(action, src.name)]
    if action == "enospc":
        full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if out is not None:
            with _atomic_open(out, fsync=False) as fh:
                fh.write(b"\x93NUMPY partial")
                raise full
        raise full
    if action == "sleep":
        time.sleep(float(arg))
        return
    if arg:  # once: the marker file says it happened
        try:
            os.close(os.open(arg, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)


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

    def run(
        self, units: Sequence[Dict[str, Any]], on_rows: Optional[Callable[[List[Row]], None]] = None,
        stop: Optional[Callable[[], bool]] = None, on_begin: Optional[Callable[[int], None]] = None,
    ) -> List[Row]:
        """Process ``units``; one ``(entry index, manifest fields, warning messages)`` per input.

        ``on_rows``, when given, receives each unit's rows as soon as its output is written (with
        ``fsync``: once the task's outputs are synced), ``on_begin`` the position of each unit as
        it starts. ``stop`` is asked before each unit: true, the remaining units are not started
        (their rows are missing). A full disk (ENOSPC/EDQUOT) while writing an output stops the
        task too: that unit's rows say ``disk full``, and no further unit is started.
        """
        rows: List[Row] = []
        held: List[List[Row]] = []
        self.written: List[str] = []
        for k, unit in enumerate(units):
            if stop is not None and stop():
                break
            if on_begin is not None:
                on_begin(k)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                # Recorded per file in the manifest instead of printed over the progress bar.
                warnings.filterwarnings("ignore", message=r"n_fft=\d+ is too large for input signal")
                done = self._file(unit) if unit["kind"] == "file" else self._shard(unit)
            messages = [str(w.message) for w in caught]
            unit_rows = [(i, entry, messages if n == 0 else []) for n, (i, entry) in enumerate(done)]
            rows.extend(unit_rows)
            if on_rows is not None:
                if self.fsync:
                    held.append(unit_rows)
                else:
                    on_rows(unit_rows)
            if any(entry.get("reason") == DISK_FULL for _, entry, _ in unit_rows):
                break
        if self.fsync:
            _sync(self.written)  # on disk before the driver hears they are done
            if on_rows is not None:
                for unit_rows in held:
                    on_rows(unit_rows)
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
        if _FAULTS:
            _fault("sleep", src)
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
                if _FAULTS:
                    _fault("kill", src)
                    _fault("enospc", src, out)
                _write_array(out, mel, self.fmt, meta, fsync=False)
                self.written.append(os.fspath(out))
                if _FAULTS:
                    _fault("kill-after-write", src)
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
            if _FAULTS:
                for _, src, _ in unit["members"]:
                    _fault("kill", Path(src))
                    _fault("enospc", Path(src), Path(unit["out"]))
            with _atomic_open(Path(unit["out"]), fsync=False) as fh:
                np.savez(fh, **arrays, **extra)
            self.written.append(os.fspath(unit["out"]))
            if _FAULTS:
                for _, src, _ in unit["members"]:
                    _fault("kill-after-write", Path(src))
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            done = [(i, _failure({k: v for k, v in e.items() if k in ("sr", "seconds")}, exc) if e["status"] == "done" else e) for i, e in done]
        return done
