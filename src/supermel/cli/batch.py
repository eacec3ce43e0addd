"""``supermel batch``: preprocess a directory tree of audio files, mirroring it, with a manifest.

Files are processed in threads (``--workers``); one file that fails is recorded
in the manifest and the others are still written. tqdm, when installed, shows the progress.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Tuple

from .._errors import ParameterError
from .._version import __version__
from ._common import MANIFEST_NAME, _check_output, _finite_json, _number, _path_kind, _write_array, _write_json
from ._pipeline import _add_core_options, _Pipeline


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``supermel batch`` and its options to the subcommands ``sub``."""
    p = sub.add_parser(
        "batch",
        help="preprocess a directory tree of audio files",
        description="Compute mel spectrograms for every file under IN_DIR matching --glob, mirroring the tree under OUT_DIR. "
        "Existing outputs are skipped unless --overwrite; files that cannot be processed are reported (and recorded in "
        f"OUT_DIR/{MANIFEST_NAME}) while the others are still written. Exit status 0 when every file is done or skipped, "
        "1 when any failed.",
    )
    p.add_argument("in_dir", metavar="IN_DIR", help="directory of audio files")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output directory (created; mirrors IN_DIR's tree)")
    p.add_argument("--glob", default="**/*.wav", help="files to process, relative to IN_DIR (default '**/*.wav', quote it)")
    p.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="files processed in parallel threads (default 1)")
    p.add_argument("--format", choices=("npy", "npz"), help="output format, as for compute (default npy)")
    p.add_argument("--min-duration", dest="min_duration", type=_number, default=0.0, metavar="SEC", help="skip files shorter than SEC seconds (reported as 'too short'; default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    _add_core_options(p)


class _Progress:
    """tqdm when installed, else a plain counter on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled
        self.bar: Any = None
        self.tty = sys.stderr.isatty()
        self.step = max(1, total // 10)
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, unit="file", desc="supermel batch", file=sys.stderr, dynamic_ncols=True)

    def update(self) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
        elif self.tty:
            print(f"\rsupermel batch: {self.done}/{self.total} files", end="", file=sys.stderr, flush=True)
        elif self.done % self.step == 0 or self.done == self.total:
            print(f"supermel batch: {self.done}/{self.total} files", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.tty and self.total:
            print(file=sys.stderr)


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


def _process_file(src: Path, out: Path, pipeline: _Pipeline, fmt: str, min_duration: float) -> Dict[str, Any]:
    """One batch item; never raises (except KeyboardInterrupt): returns its manifest entry."""
    import numpy as np

    entry: Dict[str, Any] = {}
    try:
        y, sr = pipeline.load(src)  # a truncated WAV warns (printed) ...
        seconds = y.shape[-1] / sr
        entry.update(sr=sr, seconds=round(seconds, 6))
        from ..audio import _wav_shortfall

        short = _wav_shortfall(os.fspath(src))
        if short is not None:  # ... and is noted in the manifest
            entry["warning"] = f"truncated: the header declares {short[0]} frames but the file holds {short[1]}"
        n_nan = int(np.isnan(y).sum())
        if n_nan:
            return dict(entry, status="failed", reason="NaN samples", detail=f"{n_nan} of {y.shape[-1]} samples are NaN")
        n_inf = int(np.isinf(y).sum())
        if n_inf:
            return dict(entry, status="failed", reason="Inf samples", detail=f"{n_inf} of {y.shape[-1]} samples are infinite")
        if seconds < min_duration:
            return dict(entry, status="skipped", reason="too short", detail=f"{seconds:.3f} s < --min-duration {min_duration:g} s")
        if pipeline.module is None:
            n_fft = int(pipeline.params["n_fft"])
            if not pipeline.params["center"] and y.shape[-1] < n_fft:
                return dict(entry, status="failed", reason="too short", detail=f"{y.shape[-1]} samples < n_fft={n_fft} with --no-center (no complete frame)")
            if y.shape[-1] < n_fft:
                note = f"{y.shape[-1]} samples < n_fft={n_fft}: the frames are mostly padding"
                entry["warning"] = f"{entry['warning']}; {note}" if "warning" in entry else note
        mel = pipeline.compute(y, sr)
        _write_array(out, mel, fmt, pipeline.metadata(sr))
        return dict(entry, status="done", shape=list(mel.shape), dtype=str(mel.dtype))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one bad file must not stop the batch: record it and go on
        detail = str(exc) if isinstance(exc, ParameterError) else f"{type(exc).__name__}: {exc}"
        return dict(entry, status="failed", reason=_classify(exc), detail=detail)


def _split_outputs(found: List[Path], out_dir: Path) -> Tuple[List[Path], List[Path]]:
    """``found`` split into (inputs, files inside ``out_dir``: outputs, excluded from the inputs)."""
    out_abs = out_dir.resolve()
    inputs: List[Path] = []
    inside: List[Path] = []
    for p in found:
        (inside if out_abs in p.resolve().parents else inputs).append(p)
    return inputs, inside


def _excluded_reason(in_dir: Path, out_dir: Path, excluded: List[Path], glob: str) -> Tuple[str, str]:
    """Why files matching --glob were left out (the output folder is, is in or holds the input folder), and a hint."""
    in_abs, out_abs = in_dir.resolve(), out_dir.resolve()
    hint = f"give an output folder outside {str(in_dir)!r}"
    if out_abs == in_abs:
        where = "is the input folder"
    elif in_abs in out_abs.parents:
        where = f"is inside the input folder {str(in_dir)!r}"
    elif out_abs in in_abs.parents:
        where = f"contains the input folder {str(in_dir)!r}"
        hint = f"give an output folder that neither contains nor is inside {str(in_dir)!r}"
    else:  # through symbolic links
        where = f"holds files of the input folder {str(in_dir)!r}"
    n = len(excluded)
    names = [p.relative_to(in_dir).as_posix() for p in excluded[:3]]
    more = f", ... ({n - 3} more)" if n > 3 else ""
    reason = (
        f"the output folder {str(out_dir)!r} {where}, and files in the output folder are not read as inputs: "
        f"{n} file{'s' if n != 1 else ''} matching --glob {glob!r} excluded ({', '.join(names)}{more})"
    )
    return reason, hint


def run(args: argparse.Namespace) -> int:
    """Run ``supermel batch``; the exit status."""
    in_dir, out_dir = Path(args.in_dir), Path(args.out_dir)
    kind = _path_kind(in_dir)
    if kind == "missing":
        raise ParameterError(f"input directory {str(in_dir)!r} does not exist")
    if kind == "file":
        raise ParameterError(f"input {str(in_dir)!r} is a file, not a folder: use `supermel compute` for single files")
    if kind == "other":
        raise ParameterError(f"input {str(in_dir)!r} is not a folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise ParameterError(f"output folder {str(out_dir)!r} is {'a file' if out_dir.is_file() else 'not a folder'}: give a folder for the outputs")
    if args.workers < 1:
        raise ParameterError(f"--workers {args.workers} must be at least 1")
    if args.min_duration < 0:
        raise ParameterError(f"--min-duration {args.min_duration} must be >= 0")
    fmt = args.format or "npy"
    pipeline = _Pipeline(args)
    _check_output(out_dir, "to output folder", {}, is_folder=True)  # it (or where it will be made) must take files
    try:
        found = sorted(in_dir.glob(args.glob))
    except (ValueError, NotImplementedError) as exc:
        raise ParameterError(f"--glob {args.glob!r}: {exc}") from None
    files, excluded = _split_outputs([p for p in found if p.is_file()], out_dir)
    if excluded:  # files under OUT_DIR are (earlier) outputs, never inputs: say so
        reason, hint = _excluded_reason(in_dir, out_dir, excluded, args.glob)
        if not files:
            raise ParameterError(f"no input files: {reason}; {hint}")
        warnings.warn(f"{reason}; the other {len(files)} are processed")
    if not files:
        raise ParameterError(f"no files in {str(in_dir)!r} match --glob {args.glob!r}")

    t_start = time.perf_counter()
    entries: List[Dict[str, Any]] = []
    todo: List[Tuple[int, Path, Path]] = []
    claimed: Dict[Path, str] = {}
    for src in files:
        rel = src.relative_to(in_dir)
        out = out_dir / rel.with_suffix("." + fmt)
        entry: Dict[str, Any] = {"input": rel.as_posix(), "output": out.relative_to(out_dir).as_posix()}
        if out in claimed:
            entry.update(status="failed", reason="duplicate output", detail=f"{claimed[out]} is also written to {entry['output']}")
        elif out.exists() and not args.overwrite:
            entry.update(status="skipped", reason="output exists", detail="use --overwrite to recompute")
        else:
            todo.append((len(entries), src, out))
        claimed.setdefault(out, rel.as_posix())
        entries.append(entry)

    progress = _Progress(len(files), enabled=not args.quiet)
    for entry in entries:
        if "status" in entry:
            progress.update()
    out_dir.mkdir(parents=True, exist_ok=True)
    interrupted = False
    with warnings.catch_warnings():
        # Recorded per file in the manifest instead of printed over the progress bar.
        warnings.filterwarnings("ignore", message=r"n_fft=\d+ is too large for input signal")
        try:
            if args.workers == 1:
                for i, src, out in todo:
                    entries[i].update(_process_file(src, out, pipeline, fmt, args.min_duration))
                    progress.update()
            else:
                with concurrent.futures.ThreadPoolExecutor(max_workers=args.workers) as pool:
                    futures = {pool.submit(_process_file, src, out, pipeline, fmt, args.min_duration): i for i, src, out in todo}
                    try:
                        for fut in concurrent.futures.as_completed(futures):
                            entries[futures[fut]].update(fut.result())
                            progress.update()
                    except KeyboardInterrupt:
                        for fut in futures:
                            fut.cancel()
                        raise
        except KeyboardInterrupt:
            interrupted = True
        finally:
            progress.close()
    for entry in entries:
        if "status" not in entry:
            entry.update(status="failed", reason="interrupted", detail="not processed: the run was interrupted")

    counts = {s: sum(e["status"] == s for e in entries) for s in ("done", "skipped", "failed")}
    elapsed = time.perf_counter() - t_start
    manifest = {
        "supermel_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "batch",
        "in_dir": os.path.abspath(in_dir),
        "out_dir": os.path.abspath(out_dir),
        "glob": args.glob,
        "format": fmt,
        "overwrite": bool(args.overwrite),
        "parameters": pipeline.describe(),
        "counts": counts,
        "elapsed_s": round(elapsed, 3),
        "files": entries,
    }
    manifest_path = out_dir / MANIFEST_NAME
    _write_json(manifest_path, _finite_json(manifest))

    print(
        f"supermel batch: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed "
        f"of {len(entries)} files in {elapsed:.1f} s; manifest {manifest_path}"
    )
    for entry in entries:
        if entry["status"] != "done":
            print(f"  {entry['status']:<8} {entry['input']}: {entry['reason']} ({entry['detail']})")
    if interrupted:
        raise KeyboardInterrupt
    return 1 if counts["failed"] else 0
