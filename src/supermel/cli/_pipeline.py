"""From parsed options to a computation: the mel spectrogram options that
``compute``, ``batch`` and ``plot`` share, and :class:`_Pipeline`, which turns
them (librosa's defaults for anything not given, or a ``--preset``) into
audio file -> feature array.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from .._errors import ParameterError
from .._version import __version__
from ._common import _config_dict, _device, _finite_json, _key_value, _norm, _number, _positive_int, _presets_api


#: librosa's defaults for ``librosa.feature.melspectrogram`` (used for options not given).
_LIBROSA_DEFAULTS: Dict[str, Any] = {
    "n_fft": 2048,
    "hop_length": 512,
    "win_length": None,
    "window": "hann",
    "center": True,
    "pad_mode": "constant",
    "power": 2.0,
    "n_mels": 128,
    "fmin": 0.0,
    "fmax": None,
    "htk": False,
    "norm": "slaney",
}

#: Options that, with ``--preset``, are passed on to ``supermel.frontend`` as overrides.
_OVERRIDE_KEYS = ("sr",) + tuple(_LIBROSA_DEFAULTS)


def add_mel_arguments(g: Any) -> None:
    """The STFT and filterbank options of librosa.feature.melspectrogram (shared by every command that takes them)."""
    g.add_argument("--n-fft", dest="n_fft", type=_positive_int, metavar="N", help="FFT size (default 2048)")
    g.add_argument("--hop-length", dest="hop_length", type=_positive_int, metavar="H", help="samples between frames (default 512)")
    g.add_argument("--win-length", dest="win_length", type=_positive_int, metavar="W", help="window length, <= n_fft (default n_fft)")
    g.add_argument("--window", metavar="NAME", help="window function, a scipy.signal.get_window name (default hann)")
    g.add_argument("--n-mels", dest="n_mels", type=_positive_int, metavar="M", help="number of mel bands (default 128)")
    g.add_argument("--fmin", type=_number, metavar="F", help="lowest frequency in Hz (default 0)")
    g.add_argument("--fmax", type=_number, metavar="F", help="highest frequency in Hz (default sr / 2)")
    g.add_argument("--power", type=_number, metavar="P", help="exponent of the magnitude: 2 power, 1 magnitude (default 2)")
    g.add_argument("--htk", action="store_const", const=True, default=None, help="HTK mel scale instead of Slaney's")
    g.add_argument("--norm", type=_norm, metavar="slaney|none|P", help="filter normalisation: slaney (default, area), none, or a p-norm such as 1, 2 or inf")
    g.add_argument("--pad-mode", dest="pad_mode", metavar="MODE", help="padding with centred frames: constant (default), edge, linear_ramp, reflect or symmetric")
    g.add_argument("--no-center", dest="center", action="store_const", const=False, default=None, help="frames start at sample 0 instead of being centred (librosa center=False)")


def _add_core_options(p: argparse.ArgumentParser, *, for_plot: bool = False) -> None:
    g = p.add_argument_group(
        "mel spectrogram options",
        "librosa.feature.melspectrogram's parameters; anything not given takes librosa's default. "
        "With --preset they override the preset's values.",
    )
    g.add_argument("--preset", metavar="NAME", help="use a model front end instead of the plain mel spectrogram (see `supermel presets`); it fixes its own sample rate")
    if for_plot:
        g.add_argument("--sr", type=_positive_int, metavar="SR", help="audio input: resample to SR Hz; .npy input: the rate it was computed at (for a time axis in seconds)")
    else:
        g.add_argument("--sr", type=_positive_int, metavar="SR", help="resample the audio to SR Hz (default: keep each file's own rate; librosa.load would use 22050)")
    add_mel_arguments(g)
    g.add_argument("--db", action="store_true", help="convert to decibels as librosa.power_to_db (amplitude_to_db for --power 1): ref 1.0, top_db 80"
                   + ("; with an .npy input: the array already holds dB" if for_plot else ""))
    g.add_argument("--set", action="append", type=_key_value, metavar="KEY=VALUE",
                   help="with --preset: change one field of its configuration (repeatable; VALUE is JSON, e.g. pad_or_trim=true; "
                   "see `supermel presets NAME`)")
    g.add_argument("--float64", action="store_true", help="compute in float64 (output float64); default float32, as librosa on float32 audio")
    g.add_argument("--device", type=_device, default="cpu", metavar="cpu|cuda", help="where to compute: cpu (default), cuda or cuda:N")


def _config_rate_and_hop(config: Any) -> Tuple[Optional[int], Optional[int]]:
    """A front end's sample rate and hop (samples) from its configuration (Kaldi: sample_frequency, frame_shift)."""
    sr = getattr(config, "sr", None)
    if sr is None:
        sr = getattr(config, "sample_frequency", None)
    hop = getattr(config, "hop_length", None)
    if hop is None:
        sizes = getattr(config, "sizes", None)  # Kaldi: (window, shift, padded window) in samples
        hop = sizes[1] if isinstance(sizes, tuple) and len(sizes) >= 2 else None
    return (None if sr is None else int(round(float(sr)))), (None if hop is None else int(hop))


class _Pipeline:
    """Audio file -> feature array: the core mel spectrogram (librosa defaults) or a preset.

    Built once from the parsed options (parameters are validated here, before
    any file is touched); :meth:`load` and :meth:`compute` are thread-safe.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.preset: Optional[str] = getattr(args, "preset", None)
        self.db: bool = bool(getattr(args, "db", False))
        self.float64: bool = bool(getattr(args, "float64", False))
        self.device: str = getattr(args, "device", None) or "cpu"
        self._check_device()
        given = {k: getattr(args, k, None) for k in _OVERRIDE_KEYS}
        given = {k: v for k, v in given.items() if v is not None}
        if given.get("norm") == "none":
            given["norm"] = None
        self.module: Any = None
        sets = dict(getattr(args, "set", None) or [])
        if self.preset is not None:
            if self.db:
                raise ParameterError("--db applies to the plain mel spectrogram; a preset defines its own output scale (drop --db or --preset)")
            self._init_preset({**given, **sets})
        else:
            if sets:
                raise ParameterError(f"--set {next(iter(sets))}=... changes a preset's configuration; it needs --preset")
            self.sr: Optional[int] = given.pop("sr", None)
            self.params: Dict[str, Any] = dict(_LIBROSA_DEFAULTS)
            self.params.update(given)
            self.hop_length: Optional[int] = self.params["hop_length"]
            self._validate_core()

    # -- set-up ---------------------------------------------------------------------------
    def _check_device(self) -> None:
        if self.device == "cpu":
            return
        import torch

        if not torch.cuda.is_available():
            raise ParameterError(f"--device {self.device}: CUDA is not available (torch {torch.__version__}); use --device cpu")
        index = torch.device(self.device).index
        if index is not None and index >= torch.cuda.device_count():
            raise ParameterError(f"--device {self.device}: only {torch.cuda.device_count()} CUDA device(s) present")

    def _init_preset(self, overrides: Dict[str, Any]) -> None:
        import torch

        frontend = _presets_api("frontend")
        try:
            module = frontend(self.preset, dtype=torch.float64 if self.float64 else None, device=self.device, **overrides)
        except TypeError as exc:
            raise ParameterError(f"preset {self.preset!r} does not accept {sorted(overrides)}: {exc}") from None
        module.eval()
        self.module = module
        self.overrides = overrides
        self.config = getattr(module, "config", None)
        sr, self.hop_length = _config_rate_and_hop(self.config)
        if sr is None:
            raise ParameterError(f"preset {self.preset!r} does not state its sample rate; cannot resample audio for it")
        self.sr = sr
        self.time_axis = int(getattr(module, "time_axis", -1))

    def _validate_core(self) -> None:
        """Run the parameters once on a short silent signal so mistakes fail before any file is read."""
        import numpy as np

        import supermel

        n = min(int(self.params["n_fft"]), 1 << 20)  # one frame's worth (n_fft is a positive int here)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            supermel.melspectrogram(y=np.zeros(n, dtype=np.float32), sr=self.sr or 22050, **self.params)

    # -- per file -------------------------------------------------------------------------
    def load(self, path: Path) -> Tuple[Any, int]:
        """Audio as float32 mono at the pipeline's rate (the file's own if none is fixed).

        A 0-byte file is refused here, in one message for every command (``compute``, ``batch``,
        ``plot``): ``audio file 'x.wav' is empty (0 bytes)``.
        """
        import os

        from ..audio import load

        try:
            empty = os.path.getsize(path) == 0
        except OSError:  # missing, unreadable: load says why
            empty = False
        if empty:
            raise ParameterError(f"audio file {os.fspath(path)!r} is empty (0 bytes)")
        return load(path, sr=self.sr)

    def compute(self, y: Any, sr: int) -> Any:
        """Features of ``y`` (numpy in, numpy out)."""
        import numpy as np
        import torch

        if self.module is not None:
            with torch.inference_mode():
                out = self.module(y)
            if isinstance(out, torch.Tensor):
                out = out.detach().cpu().numpy()
            return np.asarray(out)
        import supermel

        y = y.astype(np.float64) if self.float64 else y
        x: Any = y if self.device == "cpu" else torch.from_numpy(np.ascontiguousarray(y)).to(self.device)
        S = supermel.melspectrogram(y=x, sr=sr, **self.params)
        if self.db:
            S = _to_db(S, float(self.params["power"]))
        if isinstance(S, torch.Tensor):
            S = S.cpu().numpy()
        return S

    def plot_kwargs(self) -> Dict[str, Any]:
        """How :func:`_plot_png` should show this pipeline's output."""
        if self.module is not None:
            mel_config = _config_dict(self.config) if hasattr(self.config, "as_dict") else None
            return {"hop_length": self.hop_length, "preset": self.preset, "time_axis": self.time_axis, "mel_config": mel_config}
        mel_config = {k: self.params[k] for k in ("n_mels", "fmin", "fmax", "htk")}
        return {"hop_length": self.hop_length, "is_db": self.db, "power": float(self.params["power"]), "mel_config": mel_config}

    def metadata(self, sr: Optional[int]) -> Dict[str, Any]:
        """What produced an output: stored in ``.npz`` files and the batch manifest."""
        meta: Dict[str, Any] = {"supermel_version": __version__, "sr": sr, "hop_length": self.hop_length}
        if self.module is not None:
            meta.update(preset=self.preset, overrides=self.overrides, time_axis=self.time_axis, db=False, float64=self.float64)
        else:
            meta.update(self.params, db=self.db, float64=self.float64)
        meta["device"] = self.device
        return _finite_json(meta)

    def describe(self) -> Dict[str, Any]:
        """The run's parameters for the manifest (``sr: null`` = each file's own rate)."""
        meta = self.metadata(self.sr)
        if self.module is not None:
            meta["config"] = _finite_json(_config_dict(self.config))
        return meta


def _to_db(S: Any, power: float) -> Any:
    """librosa's dB conversion: ``power_to_db`` for power (2), ``amplitude_to_db`` for magnitude (1)."""
    import supermel

    if power == 2.0:
        return supermel.power_to_db(S)
    if power == 1.0:
        return supermel.amplitude_to_db(S)
    return supermel.power_to_db(S ** (2.0 / power))  # back to power first
