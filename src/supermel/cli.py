"""The ``supermel`` command line (also ``python -m supermel``).

Subcommands
-----------
``compute``
    Mel spectrograms of audio files (or of the bundled example) to ``.npy``/``.npz``.
``batch``
    Preprocess a directory tree of audio files, mirroring it, with a manifest.
``plot``
    A labelled image of a saved mel spectrogram or of an audio file.
``presets``
    List the model front ends, or print one's configuration as JSON.
``bench``
    The benchmark harness (:mod:`supermel.bench`).

Every output is written atomically (a temporary file in the same directory,
then :func:`os.replace`), so an interrupted or failed run never leaves a
partial file, and every output path is checked before anything is computed.
Invalid parameters, paths or audio (:class:`supermel.ParameterError`) and
usage errors print one line, ``supermel: error: <message>`` (usage errors end
with a ``(see `supermel COMMAND --help`)`` hint), and exit with status 2.
Warnings (e.g. a truncated WAV file) print ``supermel: warning: <message>``.

Heavy modules (matplotlib, tqdm, the presets) are imported only by the
subcommands that need them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import importlib
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, NoReturn, Optional, Sequence, Tuple

from ._errors import ParameterError
from ._version import __version__

__all__ = ["main", "build_parser", "MANIFEST_NAME"]

#: File name of the manifest ``supermel batch`` writes into its output directory.
MANIFEST_NAME = "supermel_manifest.json"

_CLI_EXTRA = "pip install 'supermel[cli]'"

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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import (os.umask is process-wide and not thread-safe to probe later).
_FILE_MODE = 0o666 & ~_umask()


# =========================================================================== small helpers
def _missing_extra(module: str, what: str) -> ParameterError:
    return ParameterError(f"{what} needs the optional module {module!r}, which is not installed: {_CLI_EXTRA}")


@contextlib.contextmanager
def _atomic_open(path: Path, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file next to ``path``; on success move it onto ``path``.

    On any exception the temporary file is removed and ``path`` is untouched
    (a previous version, if any, survives).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _json_default(obj: Any) -> Any:
    """JSON encoding of numpy scalars/arrays, paths, tuples and other plain objects."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    mod = type(obj).__module__
    if mod.startswith("torch"):
        return str(obj)
    if callable(obj):
        return getattr(obj, "__name__", repr(obj))
    return repr(obj)


def _write_json(path: Path, data: Any) -> None:
    with _atomic_open(path, "w") as fh:
        json.dump(data, fh, indent=2, default=_json_default, allow_nan=False)
        fh.write("\n")


def _path_kind(path: Path) -> str:
    """``'file'``, ``'dir'``, ``'missing'`` or ``'other'`` (a device, pipe, socket)."""
    if path.is_file():
        return "file"
    if path.is_dir():
        return "dir"
    return "other" if path.exists() else "missing"


def _check_input_file(path: Path, what: str, is_dir_hint: str) -> None:
    """A clear :class:`ParameterError` unless ``path`` is a regular file."""
    kind = _path_kind(path)
    if kind == "missing":
        raise ParameterError(f"{what} {str(path)!r} does not exist")
    if kind == "dir":
        raise ParameterError(f"{str(path)!r} is a directory, {is_dir_hint}")
    if kind == "other":
        raise ParameterError(f"{what} {str(path)!r} is not a regular file")


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (``.`` or ``/`` at the latest)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _check_output(path: Path, what: str, probed: Dict[Path, str], *, is_folder: bool = False) -> None:
    """Fail before any work (nothing written) if ``path`` cannot be written as a file (or made as a folder).

    The nearest existing ancestor must be a writable directory: a regular file
    there (``-o notes.txt/out.npy``) or a read-only place is reported by name.
    Writability is probed with a temporary file (permission bits do not tell
    for root, ACLs or read-only mounts); ``probed`` caches folders already
    checked (folder -> error, ``""`` when fine).
    """
    if path.is_dir() and not is_folder:
        raise ParameterError(f"cannot write {what} {str(path)!r}: it is an existing directory")
    folder = _nearest_existing(path if is_folder else path.parent)
    if folder not in probed:
        probed[folder] = ""
        if not folder.is_dir():
            kind = "a regular file" if folder.is_file() else "a special file"
            probed[folder] = f"{str(folder)!r} is {kind}, not a folder"
        else:
            try:
                fd, tmp = tempfile.mkstemp(prefix=".supermel-probe-", dir=str(folder))
                os.close(fd)
                os.unlink(tmp)
            except OSError as exc:
                probed[folder] = f"cannot create files in {str(folder)!r} ({exc.strerror or exc})"
    if probed[folder]:
        raise ParameterError(f"cannot write {what} {str(path)!r}: {probed[folder]}")


def _write_array(path: Path, array: Any, fmt: str, meta: Dict[str, Any]) -> None:
    """Save ``array`` atomically as ``.npy`` (array only) or ``.npz`` (``mel`` plus metadata)."""
    import numpy as np

    with _atomic_open(path) as fh:
        if fmt == "npz":
            extra = {
                "sr": np.asarray(meta.get("sr") if meta.get("sr") is not None else -1),
                "hop_length": np.asarray(meta.get("hop_length") if meta.get("hop_length") is not None else -1),
                "db": np.asarray(bool(meta.get("db", False))),
                "params": np.asarray(json.dumps(meta, default=_json_default)),
            }
            np.savez(fh, mel=array, **extra)
        else:
            np.save(fh, array, allow_pickle=False)


def _finite_json(x: Any) -> Any:
    """Replace non-finite floats (not valid JSON) by strings."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _finite_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_json(v) for v in x]
    return x


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _norm(text: str) -> Any:
    """``--norm``: ``slaney``, ``none`` or a number p (including ``inf``), as librosa's ``norm``."""
    low = text.strip().lower()
    if low == "slaney":
        return "slaney"
    if low == "none":
        return "none"  # turned into None by _Pipeline (None here would mean "not given")
    try:
        return float(low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use 'slaney', 'none' or a number p for the p-norm (e.g. 1, 2, inf)") from None


def _key_value(text: str) -> Tuple[str, Any]:
    """``--set KEY=VALUE``: VALUE parsed as JSON (true, 0.5, null, "x", [..]), else taken as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: use KEY=VALUE, e.g. pad_or_trim=true")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return key.strip(), parsed


def _device(text: str) -> str:
    low = text.strip().lower()
    if not (low == "cpu" or low == "cuda" or low.startswith("cuda:")):
        raise argparse.ArgumentTypeError(f"{text!r}: use 'cpu', 'cuda' or 'cuda:N'")
    return low


# =========================================================================== the compute pipeline
def _import_optional(module: str, what: str, extra: str) -> Any:
    """Import one of supermel's optional submodules, or raise a friendly :class:`ParameterError`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name == module:
            raise ParameterError(f"{module} ({what}) is not part of this installation of supermel {__version__}") from None
        raise ParameterError(f"{what} needs the optional module {exc.name!r}, which is not installed: pip install 'supermel[{extra}]'") from None


def _presets_module() -> Any:
    """``supermel.presets``, imported on first use, or a friendly error."""
    return _import_optional("supermel.presets", "the front-end presets", "cli")


def _presets_api(name: str) -> Callable[..., Any]:
    mod = _presets_module()
    fn = getattr(mod, name, None)
    if fn is None:
        import supermel

        fn = getattr(supermel, name, None)
    if fn is None:
        raise ParameterError(f"supermel.presets provides no {name}(); this installation's presets are incomplete")
    return fn


def _frontends() -> Dict[str, str]:
    return dict(_presets_api("frontends")())


def _config_dict(config: Any) -> Dict[str, Any]:
    if hasattr(config, "as_dict"):
        return dict(config.as_dict())
    raise ParameterError(f"cannot describe the preset configuration {config!r} (it has no as_dict())")


def _preset_config(name: str) -> Dict[str, Any]:
    """The default configuration of preset ``name`` (or an alias) as a plain dict, via ``as_dict``."""
    return _config_dict(_presets_api("preset_config")(name))


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
        """Audio as float32 mono at the pipeline's rate (the file's own if none is fixed)."""
        from .audio import load

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


# =========================================================================== plotting
def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise _missing_extra("matplotlib", "plotting") from None


def _mel_scale(config: Optional[Mapping[str, Any]], sr: Optional[float]) -> Optional[Tuple[Optional[int], float, float, bool]]:
    """``(n_mels, fmin, fmax, htk)`` of a configuration (core parameters or a preset's), or ``None`` when unknown.

    ``n_mels`` may be ``None`` (take the array's rows). Kaldi-style front ends
    (``num_mel_bins``, ``low_freq``, ``high_freq``) use the HTK mel formula,
    with ``high_freq <= 0`` counted from the Nyquist frequency; an extra
    energy column (``use_energy``) has no frequency, so it makes the scale unknown.
    """
    if not config:
        return None
    if "num_mel_bins" in config:
        rate = sr or config.get("sample_frequency")
        if not rate or config.get("use_energy"):
            return None
        high = float(config.get("high_freq") or 0.0)
        return int(config["num_mel_bins"]), float(config.get("low_freq") or 0.0), (high if high > 0 else rate / 2.0 + high), True
    if "n_mels" in config or "fmax" in config:
        fmax = config.get("fmax")
        rate = sr or config.get("sr")
        if fmax is None and not rate:
            return None
        n_mels = config.get("n_mels")
        fmax = float(fmax) if fmax is not None else float(rate) / 2.0
        return (None if n_mels is None else int(n_mels)), float(config.get("fmin") or 0.0), fmax, bool(config.get("htk"))
    return None


def _hz_ticks(n_mels: int, fmin: float, fmax: float, htk: bool) -> Tuple[List[float], List[str]]:
    """Tick positions (fractional mel bins) and Hz labels for a mel axis, as ``specshow(y_axis="mel")`` reads.

    The bands' centres are ``mel_frequencies(n_mels + 2, fmin, fmax, htk)[1:-1]``:
    equally spaced in mel, so a frequency's position is linear in its mel value.
    Ticks sit at 0 and powers of two Hz (at least ~1/10 of the axis apart);
    a narrow band gets ticks at a few bins labelled with their centre frequencies.
    """
    import numpy as np

    import supermel

    lo, hi = supermel.hz_to_mel(np.array([fmin, fmax], dtype=np.float64), htk=htk)
    step = (hi - lo) / (n_mels + 1)  # mel between neighbouring band centres
    first = lo + step  # band 0's centre
    candidates = np.array([0.0] + [2.0 ** k for k in range(4, 16)])  # 0, 16 Hz ... 32 kHz
    positions = (supermel.hz_to_mel(candidates, htk=htk) - first) / step
    min_gap = max(1.0, n_mels / 10.0)
    ticks: List[Tuple[float, float]] = []
    for pos, hz in zip(positions[::-1], candidates[::-1]):  # from the top, where the mel scale is log-like
        if -0.5 <= pos <= n_mels - 0.5 and (not ticks or ticks[-1][0] - pos >= min_gap):
            ticks.append((float(pos), float(hz)))
    if len(ticks) < 3:  # a narrow band: label a few bins with their centre frequencies
        centres = supermel.mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax, htk=htk)[1:-1]
        bins = sorted({int(round(b)) for b in np.linspace(0, n_mels - 1, min(n_mels, 5))})
        ticks = [(float(b), float(centres[b])) for b in bins][::-1]
    ticks.reverse()
    return [p for p, _ in ticks], [f"{hz:.0f}" for _, hz in ticks]


def _mel_figure(
    mel: Any,
    *,
    sr: Optional[float],
    hop_length: Optional[int],
    is_db: bool = False,
    power: float = 2.0,
    preset: Optional[str] = None,
    time_axis: int = -1,
    title: str = "",
    mel_config: Optional[Mapping[str, Any]] = None,
) -> Any:
    """A labelled mel spectrogram as a :class:`matplotlib.figure.Figure` (Agg canvas, not shown).

    Time in seconds when ``sr`` and ``hop_length`` are known, else frames. The
    mel axis is in Hz (ticks at the frequencies of the bands, see
    :func:`_hz_ticks`) when ``mel_config`` (``n_mels``/``fmin``/``fmax``/``htk``,
    or a Kaldi preset's ``num_mel_bins``/``low_freq``/``high_freq``) and the
    rate describe the array's rows; otherwise in bin numbers, and the label says
    so. A power (or magnitude, ``power=1``) spectrogram is shown in dB relative
    to its maximum; ``is_db`` data as they are; a preset's features
    (``preset``) as they are, with the preset named on the colour bar.
    """
    import numpy as np

    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = np.asarray(mel)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise ParameterError(f"cannot plot an array of shape {data.shape}: expected (n_mels, n_frames)")
    if time_axis in (-2, 0):  # time-major features (Kaldi fbank, SpeechT5): (T, n_mels)
        data = data.T
    data = data.astype(np.float64)
    if not np.isfinite(data).all():
        raise ParameterError("cannot plot: the spectrogram has NaN or infinite values")
    if preset is not None:
        values, label = data, f"{preset} features"
    elif is_db or data.min() < 0:  # dB already (power spectra are never negative)
        values, label = data, "dB"
    else:
        values = _to_db(data, power)
        values = values - values.max()  # dB relative to the maximum, librosa's ref=np.max
        label = "dB (re max)"
    n_mels, n_frames = values.shape
    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if sr and hop_length:
        dt = float(hop_length) / float(sr)
        extent = (-0.5 * dt, (n_frames - 0.5) * dt, -0.5, n_mels - 0.5)
        xlabel = "Time (s)"
    else:
        extent = (-0.5, n_frames - 0.5, -0.5, n_mels - 0.5)
        xlabel = "Frame"
    img = ax.imshow(values, origin="lower", aspect="auto", interpolation="nearest", cmap="magma", extent=extent)
    ax.set_xlabel(xlabel)
    scale = _mel_scale(mel_config, sr)
    if scale is not None and scale[0] in (None, n_mels) and scale[2] > scale[1] >= 0:
        positions, labels = _hz_ticks(n_mels, scale[1], scale[2], scale[3])
        ax.set_yticks(positions, labels)
        ax.set_ylabel("Frequency (Hz, mel scale)")
    else:  # the bands' frequencies are not known (or do not match the rows)
        ax.set_ylabel("Mel bin (frequencies unknown)")
    ax.set_title(title or "Mel spectrogram")
    cbar = fig.colorbar(img, ax=ax, format="%+.0f" if label.startswith("dB") else None)
    cbar.set_label(label)
    return fig


def _plot_png(mel: Any, path: Path, **kwargs: Any) -> bool:
    """Write :func:`_mel_figure` (same keywords) to ``path`` as PNG; ``True`` when the mel axis is in Hz."""
    fig = _mel_figure(mel, **kwargs)
    with _atomic_open(path) as fh:
        fig.savefig(fh, format="png")
    return "Hz" in fig.axes[0].get_ylabel()


# =========================================================================== compute
def _resolve_format(fmt: Optional[str], output: Optional[str]) -> str:
    if fmt:
        return fmt
    if output and output.lower().endswith(".npz"):
        return "npz"
    return "npy"


def _is_dir_target(target: str) -> bool:
    return target.endswith(("/", os.sep)) or os.path.isdir(target)


#: File names that -o / --plot cannot mean as a folder for several inputs.
_ARRAY_SUFFIXES = (".npy", ".npz")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def _cmd_compute(args: argparse.Namespace) -> int:
    inputs: List[Tuple[Path, str]] = [(Path(f), Path(f).stem) for f in args.files]
    if args.example:
        from .audio import example_path

        inputs.append((Path(example_path()), "example_mel"))
    if not inputs:
        raise ParameterError("no input: pass audio FILES or --example (see `supermel compute --help`)")
    for src, _ in inputs:
        _check_input_file(src, "audio file", "not an audio file (for a folder of audio files use `supermel batch`)")
    fmt = _resolve_format(args.format, args.output)
    if args.plot:
        _require_matplotlib()
    several = len(inputs) > 1
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
    for (src, _), out, png in zip(inputs, outputs, plots):
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
                f"{(t2 - t0) * 1e3:.1f} ms (mel {(t2 - t1) * 1e3:.1f} ms){extra}"
            )
    return 0


# =========================================================================== batch
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
        from .audio import _wav_shortfall

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


def _cmd_batch(args: argparse.Namespace) -> int:
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


# =========================================================================== plot
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


def _cmd_plot(args: argparse.Namespace) -> int:
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


# =========================================================================== presets, bench
def _cmd_presets(args: argparse.Namespace) -> int:
    json_name = args.json if isinstance(args.json, str) else None
    if args.name and json_name and args.name != json_name:
        raise ParameterError(f"two preset names given ({args.name!r} and {json_name!r}); pass one")
    name = args.name or json_name
    if name:
        config = _finite_json(_preset_config(name))
        if args.json:
            print(json.dumps(config, indent=2, default=_json_default))
        else:
            canonical = config.get("name", name)
            print(f"{canonical}: {_frontends().get(canonical, '')}")
            for key, value in config.items():
                print(f"  {key} = {json.dumps(value, default=_json_default)}")
        return 0
    listing = _frontends()
    if args.json:
        print(json.dumps(listing, indent=2))
    else:
        width = max((len(n) for n in listing), default=0)
        for key in sorted(listing):
            print(f"{key:<{width}}  {listing[key]}")
    return 0


def _cmd_bench(argv: Sequence[str]) -> int:
    bench = _import_optional("supermel.bench", "the benchmark harness", "bench")
    try:
        rc = bench.main(list(argv))
    except SystemExit as exc:  # its own argparse (--help, usage errors)
        rc = exc.code if isinstance(exc.code, int) or exc.code is None else 2
    return int(rc or 0)


# =========================================================================== argument parsing
class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``supermel: error: <message> (see `supermel CMD --help`)``, status 2.

    ``--help`` is unchanged. The subcommands' parsers are this class too
    (``add_subparsers`` uses the parent's class); ``commands`` maps their names
    to them, so that unrecognised arguments point at the subcommand's help.
    """

    commands: Dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"supermel: error: {message} (see `{self.prog} --help`)\n")

    def parse_args(self, args: Optional[Sequence[str]] = None, namespace: Optional[argparse.Namespace] = None) -> argparse.Namespace:  # type: ignore[override]
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            owner = getattr(self, "commands", {}).get(getattr(ns, "command", None), self)
            owner.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns


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
    g.add_argument("--db", action="store_true", help="convert to decibels as librosa.power_to_db (amplitude_to_db for --power 1): ref 1.0, top_db 80"
                   + ("; with an .npy input: the array already holds dB" if for_plot else ""))
    g.add_argument("--set", action="append", type=_key_value, metavar="KEY=VALUE",
                   help="with --preset: change one field of its configuration (repeatable; VALUE is JSON, e.g. pad_or_trim=true; "
                   "see `supermel presets NAME`)")
    g.add_argument("--float64", action="store_true", help="compute in float64 (output float64); default float32, as librosa on float32 audio")
    g.add_argument("--device", type=_device, default="cpu", metavar="cpu|cuda", help="where to compute: cpu (default), cuda or cuda:N")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``supermel`` command (all subcommands).

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = _Parser(
        prog="supermel",
        description="librosa-exact mel spectrograms on PyTorch: compute, preprocess datasets, plot, list front ends, benchmark.",
        epilog="Run `supermel COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"supermel {__version__}", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "compute",
        help="mel spectrograms of audio files to .npy/.npz",
        description="Compute the mel spectrogram of each audio file, exactly as librosa.feature.melspectrogram "
        "(or a model front end with --preset), and save it. Without -o, FILE.wav gives FILE.npy in the current directory.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="audio files (WAV; FLAC/OGG/... with soundfile)")
    p.add_argument("--example", action="store_true", help="also process the bundled 12 s speech clip (written as example_mel.npy without -o)")
    p.add_argument("-o", "--output", metavar="OUT", help="output file for one input; a directory for several (default: <stem>.npy in the current directory)")
    p.add_argument("--format", choices=("npy", "npz"), help="npy: the array only (default); npz: array 'mel' plus sr, hop_length, db and the parameters as JSON 'params'")
    p.add_argument("--plot", metavar="PNG", help="also save an image of each spectrogram (a directory for several inputs); needs matplotlib")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-file summary line")
    _add_core_options(p)

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

    p = sub.add_parser("presets", help="list the model front ends, or show one's configuration",
                       description="List the front-end presets (name and description); with a NAME, show its configuration.")
    p.add_argument("name", nargs="?", metavar="NAME", help="a preset to describe")
    p.add_argument("--json", nargs="?", const=True, default=False, metavar="NAME", help="print as JSON; `--json NAME` prints NAME's configuration")

    sub.add_parser("bench", help="run the benchmark harness (arguments go to supermel.bench; see `supermel bench --help`)", add_help=False)
    parser.commands = dict(sub.choices)
    return parser


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Optional[str] = None) -> None:
    print(f"supermel: warning: {message}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``supermel`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 success; 1 some batch files failed (or an output
        could not be written); 2 invalid parameters, audio or usage (the
        message is printed as ``supermel: error: ...``); 130 interrupted.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            if args_list[:1] == ["bench"]:
                return _cmd_bench(args_list[1:])
            parser = build_parser()
            try:
                args = parser.parse_args(args_list)
            except SystemExit as exc:  # --help, --version, usage errors: return instead of exiting
                return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
            if args.command is None:
                parser.print_help()
                return 0
            handler = {"compute": _cmd_compute, "batch": _cmd_batch, "plot": _cmd_plot, "presets": _cmd_presets}[args.command]
            return handler(args)
        except ParameterError as exc:
            print(f"supermel: error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                return 0
            print(f"supermel: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("supermel: interrupted", file=sys.stderr)
            return 130
