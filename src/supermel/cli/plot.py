"""``supermel plot``: a labelled image of a saved mel spectrogram (``.npy``/``.npz``) or of an audio file.

The figure itself is built by :mod:`supermel.cli._figure` (shared with ``compute --plot``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from .._errors import ParameterError
from ._common import _check_input_file, _check_output, _is_dir_target, _preset_config, _require_matplotlib
from ._figure import _plot_png
from ._pipeline import _LIBROSA_DEFAULTS, _add_core_options, _Pipeline


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``supermel plot`` and its options to the subcommands ``sub``."""
    p = sub.add_parser(
        "plot",
        help="image of a mel spectrogram (.npy/.npz or audio)",
        description="Save a labelled mel spectrogram image: time in seconds (when the sample rate and hop are known), "
        "frequency in Hz on the mel scale (when the mel parameters are known), colour bar in dB. An .npz written by "
        "supermel carries its sample rate, hop and mel parameters; for an .npy pass --sr and --hop-length (and --fmin, "
        "--fmax, --htk, --n-mels unless librosa's defaults). Arrays holding dB (negative values, or --db) are shown as they are; power spectrograms "
        "in dB relative to their maximum.",
    )
    p.add_argument("input", metavar="FILE", help="a .npy/.npz array (n_mels, n_frames), or an audio file to compute first")
    p.add_argument("-o", "--output", metavar="PNG", help="image file (default <stem>.png in the current directory)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    _add_core_options(p, for_plot=True)


def _load_array(path: Path) -> Tuple[Any, Dict[str, Any]]:
    """An array saved by ``compute``/``batch``: ``(array, metadata)`` (metadata only from ``.npz``)."""
    import numpy as np

    try:
        data = np.load(path, allow_pickle=False)
        if not hasattr(data, "files"):  # .npy: a plain array
            return data, {}
        with data:
            names = list(data.files)
            if not names:
                raise ValueError("the archive holds no array")
            arr = data["mel"] if "mel" in names else data[names[0]]
            meta = json.loads(str(data["params"])) if "params" in names else {}
        return arr, meta
    except (OSError, ValueError, EOFError) as exc:
        raise ParameterError(f"cannot read array file {str(path)!r}: {exc}") from None


def _saved_preset_config(name: str, overrides: Any) -> Optional[Dict[str, Any]]:
    """The configuration a preset's saved array was made with (for its mel axis), or ``None``."""
    try:
        config = _preset_config(name)
    except ParameterError:  # presets not installed, or an unknown name
        return None
    if isinstance(overrides, dict):
        config.update(overrides)
    return config


def run(args: argparse.Namespace) -> int:
    """Run ``supermel plot``; the exit status."""
    src = Path(args.input)
    _check_input_file(src, "file", "not an audio or .npy/.npz file")
    _require_matplotlib()
    out = Path(args.output) if args.output else Path(f"{src.stem}.png")
    if args.output and _is_dir_target(args.output):
        out = Path(args.output) / f"{src.stem}.png"
    _check_output(out, "plot", {})  # before reading or computing anything
    kw: Dict[str, Any]
    if src.suffix.lower() in (".npy", ".npz"):
        mel, meta = _load_array(src)
        if args.preset and not meta:  # a bare .npy that a preset produced: take its rate, hop and layout
            pipeline = _Pipeline(args)
            file_sr, kw = pipeline.sr, pipeline.plot_kwargs()
        elif meta.get("preset"):
            file_sr = meta.get("sr")
            kw = {"hop_length": meta.get("hop_length"), "preset": meta["preset"], "time_axis": int(meta.get("time_axis", -1)),
                  "mel_config": _saved_preset_config(str(meta["preset"]), meta.get("overrides"))}
        else:
            file_sr = meta.get("sr")
            power = meta.get("power", args.power if args.power is not None else 2.0)
            kw = {"hop_length": meta.get("hop_length"), "is_db": bool(args.db or meta.get("db", False)), "power": float(power)}
            if meta:  # an .npz from supermel: its parameters
                kw["mel_config"] = meta
            elif args.sr is not None or args.fmax is not None:  # a bare .npy: the options given, else librosa's defaults
                kw["mel_config"] = {"n_mels": args.n_mels, "fmin": args.fmin or 0.0, "fmax": args.fmax, "htk": bool(args.htk)}
        sr = args.sr if args.sr is not None else file_sr
        if args.hop_length is not None:
            kw["hop_length"] = args.hop_length
        elif kw["hop_length"] is None and sr is not None and not meta and not args.preset:
            kw["hop_length"] = _LIBROSA_DEFAULTS["hop_length"]  # a bare .npy with --sr: librosa's default hop
    else:
        pipeline = _Pipeline(args)
        y, sr = pipeline.load(src)
        mel = pipeline.compute(y, sr)
        kw = pipeline.plot_kwargs()
    in_hz = _plot_png(mel, out, sr=sr, title=src.name, **kw)
    hop = kw["hop_length"]
    if not args.quiet:
        notes = [] if sr and hop else ["time axis in frames: pass --sr and --hop-length for seconds"]
        if not in_hz:
            notes.append("mel axis in bins: pass --sr for Hz, with --fmin/--fmax/--htk/--n-mels unless librosa's defaults")
        print(f"{src} -> {out}: shape {tuple(mel.shape)}" + "".join(f" ({n})" for n in notes))
    return 0
