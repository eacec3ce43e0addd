"""``supermel compute``: mel spectrograms of audio files (or of the bundled example) to ``.npy``/``.npz``."""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .._errors import ParameterError
from ._common import _check_input_file, _check_output, _is_dir_target, _require_matplotlib, _write_array
from ._figure import _plot_png
from ._pipeline import _add_core_options, _Pipeline


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``supermel compute`` and its options to the subcommands ``sub``."""
    p = sub.add_parser(
        "compute",
        help="mel spectrograms of audio files to .npy/.npz",
        description="Compute the mel spectrogram of each audio file, exactly as librosa.feature.melspectrogram "
        "(or a model front end with --preset), and save it. Without -o, FILE.wav gives FILE.npy in the current directory.",
        epilog="exit status: 0 every input computed; 1 with several inputs, any failed (each is reported on stderr and the "
        "others are still computed), or an output could not be written; 2 invalid options, or the one input is not "
        "usable audio (missing, empty, unreadable, NaN samples).",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="audio files (WAV; FLAC/OGG/... with soundfile)")
    p.add_argument("--example", action="store_true", help="also process the bundled 12 s speech clip (written as example_mel.npy without -o)")
    p.add_argument("-o", "--output", metavar="OUT", help="output file for one input; a directory for several (default: <stem>.npy in the current directory)")
    p.add_argument("--format", choices=("npy", "npz"), help="npy: the array only (default); npz: array 'mel' plus sr, hop_length, db and the parameters as JSON 'params'")
    p.add_argument("--plot", metavar="PNG", help="also save an image of each spectrogram (a directory for several inputs); needs matplotlib")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-file summary line")
    _add_core_options(p)


def _resolve_format(fmt: Optional[str], output: Optional[str]) -> str:
    if fmt:
        return fmt
    if output and output.lower().endswith(".npz"):
        return "npz"
    return "npy"


#: File names that -o / --plot cannot mean as a folder for several inputs.
_ARRAY_SUFFIXES = (".npy", ".npz")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def run(args: argparse.Namespace) -> int:
    """Run ``supermel compute``; the exit status."""
    inputs: List[Tuple[Path, str]] = [(Path(f), Path(f).stem) for f in args.files]
    if args.example:
        from ..audio import example_path

        inputs.append((Path(example_path()), "example_mel"))
    if not inputs:
        raise ParameterError("no input: pass audio FILES or --example (see `supermel compute --help`)")
    several = len(inputs) > 1
    for src, _ in inputs:  # a folder is a mistake of the command line; with several inputs a missing file is one failure
        if not several or src.is_dir():
            _check_input_file(src, "audio file", "not an audio file (for a folder of audio files use `supermel batch`)")
    fmt = _resolve_format(args.format, args.output)
    if args.plot:
        _require_matplotlib()
    # Several inputs need folders: refuse a file name rather than make a folder called two.npy.
    for flag, option, suffixes, example in (("-o", args.output, _ARRAY_SUFFIXES, "-o mels/"), ("--plot", args.plot, _IMAGE_SUFFIXES, "--plot plots/")):
        if several and option and not _is_dir_target(option) and Path(option).suffix.lower() in suffixes:
            raise ParameterError(
                f"{flag} {option!r} names one {Path(option).suffix} file but there are {len(inputs)} inputs: "
                f"give a folder for several inputs (e.g. {example})"
            )

    def target(option: Optional[str], stem: str, suffix: str) -> Path:
        if option is None:
            return Path(f"{stem}.{suffix}")
        if several or _is_dir_target(option):
            return Path(option) / f"{stem}.{suffix}"
        return Path(option)

    outputs = [target(args.output, stem, fmt) for _, stem in inputs]
    plots = [target(args.plot, stem, "png") if args.plot else None for _, stem in inputs]
    seen: Dict[str, Path] = {}
    for (src, _), out in zip(inputs, outputs):
        key = os.path.abspath(out)
        if key in seen:
            raise ParameterError(f"{src} and {seen[key]} would both be written to {out}; compute them separately")
        seen[key] = src
    pipeline = _Pipeline(args)
    probed: Dict[Path, str] = {}
    for out, png in zip(outputs, plots):  # every path checked before any file is computed or written
        _check_output(out, "output", probed)
        if png is not None:
            _check_output(png, "plot", probed)
    failed: List[Path] = []
    for (src, _), out, png in zip(inputs, outputs, plots):
        if not several:  # one input: its error is the command's (exit 2, or 1 when the output cannot be written)
            _compute_one(args, pipeline, src, out, png, fmt)
            continue
        try:
            _compute_one(args, pipeline, src, out, png, fmt)
        except (ParameterError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise  # a full disk fails every other input too: stop (exit 1)
            failed.append(src)
            message = str(exc) if isinstance(exc, ParameterError) else f"{type(exc).__name__}: {exc}"
            named = message if os.fspath(src) in message else f"{src}: {message}"
            print(f"supermel: error: {named}", file=sys.stderr, flush=True)
    if failed:
        names = ", ".join(map(os.fspath, failed[:5])) + (f", ... ({len(failed) - 5} more)" if len(failed) > 5 else "")
        print(f"supermel compute: {len(inputs) - len(failed)} done, {len(failed)} failed ({names})", file=sys.stderr)
        return 1
    return 0


def _compute_one(args: argparse.Namespace, pipeline: _Pipeline, src: Path, out: Path, png: Optional[Path], fmt: str) -> None:
    """Load, compute and write one input (and its plot); errors propagate."""
    t0 = time.perf_counter()
    y, sr = pipeline.load(src)
    t1 = time.perf_counter()
    mel = pipeline.compute(y, sr)
    t2 = time.perf_counter()
    _write_array(out, mel, fmt, pipeline.metadata(sr))
    extra = ""
    if png is not None:
        _plot_png(mel, png, sr=sr, title=src.name, **pipeline.plot_kwargs())
        extra = f", plot {png}"
    if not args.quiet:
        print(
            f"{src} -> {out}: shape {tuple(mel.shape)} {mel.dtype}, {y.shape[-1] / sr:.2f} s of audio at {sr} Hz, "
            f"{(t2 - t0) * 1e3:.1f} ms (mel {(t2 - t1) * 1e3:.1f} ms){extra}",
            flush=True,
        )
